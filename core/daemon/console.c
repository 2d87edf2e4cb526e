/*
 * console.c - the web console: HTML pages under /console/ on the HTTP
 * listener, for auditors (docs/console.md).
 *
 * Pages are rendered whole on the server (they read without JavaScript);
 * console/console.js, compiled in by the Makefile with console.css, sorts
 * tables, exports them as CSV and draws the Health and Impact charts
 * with Debian's Chart.js, read from /usr/share/javascript/chart.js at run time.
 *
 * Credentials: the bearer tokens of --tokens.  A browser sends its token
 * once, through the login form, and gets it back as an HttpOnly,
 * SameSite=Strict cookie scoped to /console (Secure on TLS); every page
 * needs the audit role.  Without --tokens the console, like the API,
 * serves loopback clients only.  No page changes recorded data; the
 * POSTs (a decision's replay, an Impact run and its cancel, which needs
 * the run's starter or the admin role and a confirmation) carry a form
 * token (csrf_ok()), so no request made from another site can act for
 * a user.
 *
 * vd_console_serve() runs on libuv's thread pool (worker.c's
 * http_console() queues it), never on a worker's loop: some searches
 * take most of a second on a history of millions (docs/console.md).  It
 * reads only what is safe from any thread: the tokens under their lock,
 * the activation under state_lock, the workers' atomic counters, and the
 * history through read-only connections of its own.  Every read is
 * bounded: a search reads at most PAGE_ROWS + 1 rows, newest first, a
 * decision is one decision_id lookup and one seq lookup, the chart one
 * range of decisions_received over RATE_BUCKETS * RATE_BUCKET_MS.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sys/random.h>
#include <unistd.h>

#include <nettle/hmac.h>
#include <yajl/yajl_tree.h>

#include "daemon_int.h"
#include "verdict/history.h"
#include "verdict/replay.h"
#include "verdict/report.h"
#include "verdict/textdiff.h"
#include "verdict/timefmt.h"

/* The console's files (console/), compiled in by the Makefile. */
typedef struct vd_console_asset {
  const char *name, *data;
  size_t len;
} vd_console_asset_t;
extern const vd_console_asset_t vd_console_assets[];
extern const size_t vd_console_nassets;

#define PAGE_ROWS 50
#define RATE_BUCKETS 30
#define RATE_BUCKET_MS 10000
#define CHINA_OFFSET_MIN (8 * 60)
#define CHART_JS "/usr/share/javascript/chart.js/chart.min.js"
#define COOKIE "verdict_token"

/* ========================================================================
 * Text
 * ====================================================================== */

static void esc(vd_buf_t *b, const char *s, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    switch (s[i]) {
    case '&': vd_buf_adds(b, "&amp;"); break;
    case '<': vd_buf_adds(b, "&lt;"); break;
    case '>': vd_buf_adds(b, "&gt;"); break;
    case '"': vd_buf_adds(b, "&quot;"); break;
    case '\'': vd_buf_adds(b, "&#39;"); break;
    default: vd_buf_addc(b, s[i]);
    }
  }
}

static void escs(vd_buf_t *b, const char *s) {
  if (s)
    esc(b, s, strlen(s));
}

/* S percent-encoded for a query string. */
static void pct(vd_buf_t *b, const char *s) {
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (isalnum(ch) || strchr("-._~:", ch))
      vd_buf_addc(b, (char)ch);
    else
      vd_buf_addf(b, "%%%02X", ch);
  }
}

static int hex(int ch) {
  if (ch >= '0' && ch <= '9')
    return ch - '0';
  ch = tolower(ch);
  return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* Field NAME of the form-encoded [s, s+n) (a query string or a POST
 * body), decoded into out[cap]: 1, 0 when absent or empty, -1 when
 * malformed or longer than cap - 1. */
static int form_field(const char *s, size_t n, const char *name, char *out,
                      size_t cap) {
  size_t nl = strlen(name), i = 0;
  while (i < n) {
    size_t end = i, k = 0;
    while (end < n && s[end] != '&')
      end++;
    if (end - i > nl && memcmp(s + i, name, nl) == 0 && s[i + nl] == '=') {
      size_t j;
      for (j = i + nl + 1; j < end; j++) {
        int ch = s[j];
        if (ch == '+')
          ch = ' ';
        else if (ch == '%') {
          if (j + 2 >= end)
            return -1;
          if (hex(s[j + 1]) < 0 || hex(s[j + 2]) < 0)
            return -1;
          ch = hex(s[j + 1]) * 16 + hex(s[j + 2]);
          j += 2;
        }
        if (ch == '\0' || k + 1 >= cap)
          return -1;
        out[k++] = (char)ch;
      }
      out[k] = '\0';
      return k > 0;
    }
    i = end + 1;
  }
  return 0;
}

/* MS in OFFSET_MIN as "YYYY-MM-DD HH:MM:SS+HH:MM". */
/* N with a comma between thousands: "48,000". */
static void add_count(vd_buf_t *b, long long n) {
  char digits[32];
  int len, i;
  if (n < 0) {
    vd_buf_addc(b, '-');
    n = -n;
  }
  len = snprintf(digits, sizeof digits, "%lld", n);
  for (i = 0; i < len; i++) {
    if (i && (len - i) % 3 == 0)
      vd_buf_addc(b, ',');
    vd_buf_addc(b, digits[i]);
  }
}

static void add_time(vd_buf_t *b, int64_t ms, int offset_min) {
  char t[32];
  size_t n = vd_time_format(ms - ms % 1000, offset_min, t);
  if (n > 10)
    t[10] = ' ';
  esc(b, t, n);
}

/* The decision time AT (RFC 3339, its own offset) and the same instant
 * in China time. */
static void add_at(vd_buf_t *b, const char *at, int64_t at_ms) {
  int64_t ms;
  int off;
  if (!at || vd_time_parse(at, strlen(at), &ms, &off) != 0) {
    escs(b, at ? at : "");
    return;
  }
  vd_buf_adds(b, "<time datetime=\"");
  escs(b, at);
  vd_buf_adds(b, "\">");
  add_time(b, ms, off);
  vd_buf_adds(b, "</time>");
  if (off != CHINA_OFFSET_MIN) {
    vd_buf_adds(b, "<br><small>China: ");
    add_time(b, at_ms ? at_ms : ms, CHINA_OFFSET_MIN);
    vd_buf_adds(b, "</small>");
  }
}

/* JSON [s, s+n) indented two spaces a level, for a <pre>. */
static void add_json_pretty(vd_buf_t *b, const char *s, size_t n) {
  size_t i;
  int depth = 0, in_str = 0, k;
  for (i = 0; i < n; i++) {
    char ch = s[i];
    if (in_str) { /* text of an element: a quote needs no escape */
      if (ch == '"') {
        vd_buf_addc(b, ch);
        in_str = 0;
      } else {
        esc(b, &ch, 1);
        if (ch == '\\' && i + 1 < n)
          esc(b, &s[++i], 1);
      }
      continue;
    }
    switch (ch) {
    case '"': in_str = 1; vd_buf_addc(b, ch); break;
    case '{': case '[':
      vd_buf_addc(b, ch);
      if (i + 1 < n && (s[i + 1] == '}' || s[i + 1] == ']'))
        break;
      depth++;
      vd_buf_addc(b, '\n');
      for (k = 0; k < depth; k++) vd_buf_adds(b, "  ");
      break;
    case '}': case ']':
      if (i > 0 && (s[i - 1] == '{' || s[i - 1] == '[')) {
        vd_buf_addc(b, ch);
        break;
      }
      depth = depth > 0 ? depth - 1 : 0;
      vd_buf_addc(b, '\n');
      for (k = 0; k < depth; k++) vd_buf_adds(b, "  ");
      vd_buf_addc(b, ch);
      break;
    case ',':
      vd_buf_adds(b, ",\n");
      for (k = 0; k < depth; k++) vd_buf_adds(b, "  ");
      break;
    case ':': vd_buf_adds(b, ": "); break;
    case ' ': case '\n': case '\r': case '\t': break;
    default: esc(b, &ch, 1);
    }
  }
}

/* ========================================================================
 * Pages: frame, login, refusal
 * ====================================================================== */

static void page_begin(vd_console_answer_t *a, int status, const char *title,
                       const char *who) {
  vd_buf_t *b = &a->body;
  a->status = status;
  a->type = "text/html; charset=utf-8";
  vd_buf_adds(&a->headers,
              "Cache-Control: no-store\r\n"
              "X-Content-Type-Options: nosniff\r\n"
              "Content-Security-Policy: default-src 'self'; "
              "frame-ancestors 'none'; form-action 'self'\r\n");
  vd_buf_adds(b, "<!DOCTYPE html>\n<html lang=\"en\"><head>"
                 "<meta charset=\"utf-8\">"
                 "<meta name=\"viewport\" "
                 "content=\"width=device-width, initial-scale=1\">"
                 "<title>");
  escs(b, title);
  vd_buf_adds(b, " - verdict console</title>"
                 "<link rel=\"stylesheet\" href=\"/console/console.css\">"
                 "<script src=\"/console/console.js\" defer></script>"
                 "</head><body><header><nav aria-label=\"Console\">"
                 "<a href=\"/console/decisions\">Decisions</a> "
                 "<a href=\"/console/revisions\">Revisions</a> "
                 "<a href=\"/console/impact\">Impact</a> "
                 "<a href=\"/console/health\">Health</a>");
  if (who) {
    vd_buf_adds(b, "<form method=\"post\" action=\"/console/logout\" "
                   "class=\"logout\"><span>");
    escs(b, who[0] ? who : "loopback");
    vd_buf_adds(b, "</span> <button type=\"submit\">Log out</button>"
                   "</form>");
  }
  vd_buf_adds(b, "</nav></header><main><h1>");
  escs(b, title);
  vd_buf_adds(b, "</h1>\n");
}

static void page_end(vd_console_answer_t *a) {
  vd_buf_adds(&a->body, "</main></body></html>\n");
}

static void login_page(vd_console_answer_t *a, int status, const char *why) {
  page_begin(a, status, "Log in", NULL);
  if (why) {
    vd_buf_adds(&a->body, "<p role=\"alert\" class=\"refused\">");
    escs(&a->body, why);
    vd_buf_adds(&a->body, "</p>");
  }
  vd_buf_adds(&a->body,
              "<form method=\"post\" action=\"/console/login\">"
              "<label for=\"token\">Bearer token (a line of verdictd "
              "--tokens with the audit role)</label> "
              "<input id=\"token\" name=\"token\" type=\"password\" "
              "autocomplete=\"current-password\" required> "
              "<button type=\"submit\">Log in</button></form>");
  page_end(a);
  if (status == 401)
    vd_buf_adds(&a->headers,
                "WWW-Authenticate: Bearer realm=\"verdict\"\r\n");
}

static void redirect(vd_console_answer_t *a, const char *to) {
  a->status = 303;
  a->type = "text/plain; charset=utf-8";
  vd_buf_addf(&a->headers, "Location: %s\r\n", to);
  vd_buf_addf(&a->body, "See %s\n", to);
}

/* ========================================================================
 * Credentials
 * ====================================================================== */

/* The token the request carries: the console's cookie, else an
 * Authorization: Bearer header; [*tok, *tok + *n), or 0. */
static int request_token(const vd_http_req_t *req, const char **tok,
                         size_t *n) {
  static const char bearer[] = "Bearer ";
  const char *s = req->cookie.data, *end = s + req->cookie.len;
  while (s && s < end) {
    const char *e;
    while (s < end && (*s == ' ' || *s == ';'))
      s++;
    e = s;
    while (e < end && *e != ';')
      e++;
    if ((size_t)(e - s) > sizeof COOKIE &&
        memcmp(s, COOKIE "=", sizeof COOKIE) == 0) {
      *tok = s + sizeof COOKIE;
      *n = (size_t)(e - *tok);
      return 1;
    }
    s = e;
  }
  if (req->auth.len > sizeof bearer - 1 &&
      strncasecmp(req->auth.data, bearer, sizeof bearer - 1) == 0) {
    *tok = req->auth.data + sizeof bearer - 1;
    *n = req->auth.len - (sizeof bearer - 1);
    return 1;
  }
  return 0;
}

/* The roles of TOK under D's --tokens (name into name[cap]); without
 * credentials configured, every role for a loopback peer and none for
 * another (*configured says which). */
static unsigned roles_of(vd_daemon_t *d, int loopback, const char *tok,
                         size_t n, char *name, size_t cap, int *configured) {
  unsigned roles = 0;
  name[0] = '\0';
  uv_rwlock_rdlock(&d->tokens_lock);
  *configured = d->tokens != NULL || vd_tls_ctx_verifies(d->tls);
  if (d->tokens && tok)
    roles = vd_tokens_check(d->tokens, tok, n, name, cap);
  uv_rwlock_rdunlock(&d->tokens_lock);
  if (!*configured && loopback)
    roles = VD_ROLE_DECIDE | VD_ROLE_AUDIT | VD_ROLE_ADMIN;
  return roles;
}

/* A token the cookie can carry as it is. */
static int cookie_safe(const char *s) {
  for (; *s; s++)
    if (!isalnum((unsigned char)*s) && !strchr("-._~+/=", *s))
      return 0;
  return 1;
}

/* The form token of a credential, against cross-site requests: the
 * HMAC-SHA-256, under a key drawn once per process, of the bearer token
 * the request carries (or of "loopback" without one), in hex.  A page of
 * another site can make a browser post to the console, and the cookie
 * (SameSite=Strict) already stays home then; but a loopback console
 * without --tokens needs no cookie at all, so every POST that acts (the
 * replay buttons) must also carry this token, which only a page the
 * console served can hold (the same-origin rule keeps other sites from
 * reading it). */
static unsigned char csrf_key[32];
static int csrf_key_ok;
static uv_once_t csrf_once = UV_ONCE_INIT;

static void csrf_init(void) {
  csrf_key_ok = getrandom(csrf_key, sizeof csrf_key, 0) ==
                (ssize_t)sizeof csrf_key;
}

static void csrf_of(const char *tok, size_t n, char out[65]) {
  struct hmac_sha256_ctx h;
  unsigned char mac[SHA256_DIGEST_SIZE];
  size_t i;
  uv_once(&csrf_once, csrf_init);
  hmac_sha256_set_key(&h, sizeof csrf_key, csrf_key);
  if (tok)
    hmac_sha256_update(&h, n, (const uint8_t *)tok);
  else
    hmac_sha256_update(&h, 8, (const uint8_t *)"loopback");
  hmac_sha256_digest(&h, sizeof mac, mac);
  for (i = 0; i < sizeof mac; i++)
    snprintf(out + 2 * i, 3, "%02x", mac[i]);
}

/* 1 when the form body of REQ carries the token of TOK: compared in time
 * independent of where they differ; 0 without a key (getrandom failed). */
static int csrf_ok(const vd_http_req_t *req, const char *tok, size_t n) {
  char want[65], got[72];
  unsigned diff = 0;
  size_t i;
  csrf_of(tok, n, want);
  if (!csrf_key_ok ||
      form_field(req->body.data ? req->body.data : "", req->body.len,
                 "csrf", got, sizeof got) != 1 || strlen(got) != 64)
    return 0;
  for (i = 0; i < 64; i++)
    diff |= (unsigned)(want[i] ^ got[i]);
  return diff == 0;
}

static void csrf_refused(vd_console_answer_t *a, const char *who) {
  page_begin(a, 403, "Refused", who);
  vd_buf_adds(&a->body, "<p role=\"alert\" class=\"refused\">This form "
                        "did not come from a console page (its csrf field "
                        "is missing or wrong): open the page again and "
                        "press its button there.</p>");
  page_end(a);
}

static void csrf_input(vd_buf_t *b, const char *csrf) {
  vd_buf_adds(b, "<input type=\"hidden\" name=\"csrf\" value=\"");
  escs(b, csrf);
  vd_buf_adds(b, "\">");
}

static void login(vd_daemon_t *d, int loopback, int tls,
                  const vd_http_req_t *req, vd_console_answer_t *a) {
  char tok[256], name[64];
  int configured, r;
  unsigned roles;
  r = form_field(req->body.data ? req->body.data : "", req->body.len,
                 "token", tok, sizeof tok);
  if (r != 1) {
    login_page(a, 400, "Enter a token.");
    return;
  }
  roles = roles_of(d, loopback, tok, strlen(tok), name, sizeof name,
                   &configured);
  if (!configured) {
    login_page(a, 400, "verdictd runs without --tokens: the console needs "
                       "no login from this machine.");
    return;
  }
  if (!roles || !cookie_safe(tok)) {
    login_page(a, 401, "That token is not known.");
    return;
  }
  vd_buf_addf(&a->headers,
              "Set-Cookie: " COOKIE "=%s; Path=/console; HttpOnly; "
              "SameSite=Strict%s\r\n", tok, tls ? "; Secure" : "");
  redirect(a, "/console/decisions");
}

/* ========================================================================
 * Decisions: the search
 * ====================================================================== */

/* The search form's fields: query name, label, filter member. */
#define SEARCH_FIELDS(X)                                                     \
  X(complaint_id, "Complaint id")                                            \
  X(customer_id, "Customer id")                                              \
  X(decision_id, "Decision id")                                              \
  X(kind, "Kind")                                                            \
  X(region, "Region")                                                        \
  X(revision, "Revision")                                                    \
  X(error_code, "Error code (none: successful only)")

typedef struct search {
#define FIELD_(name, label) char name[128];
  SEARCH_FIELDS(FIELD_)
#undef FIELD_
  char since[40], until[40], before[48];
} search_t;

/* A time field: RFC 3339, or a browser's datetime-local
 * ("YYYY-MM-DDTHH:MM", read as China time). */
static int parse_when(const char *s, int64_t *ms) {
  char t[48];
  int off;
  size_t n = strlen(s);
  if (vd_time_parse(s, n, ms, &off) == 0)
    return 0;
  if (n == 16 && s[10] == 'T') {
    snprintf(t, sizeof t, "%s:00+08:00", s);
    return vd_time_parse(t, strlen(t), ms, &off);
  }
  return -1;
}

static void add_search_query(vd_buf_t *b, const search_t *s) {
#define Q_(name, label)                                                      \
  if (s->name[0]) {                                                          \
    vd_buf_adds(b, "&amp;" #name "=");                                       \
    pct(b, s->name);                                                         \
  }
  SEARCH_FIELDS(Q_)
  Q_(since, "") Q_(until, "")
#undef Q_
}

static void decisions_page(vd_daemon_t *d, const char *who, const char *q,
                           size_t qn, vd_console_answer_t *a) {
  search_t s;
  vd_history_filter_t f;
  vd_history_rows_t *rows = NULL;
  const vd_history_value_t *row;
  vd_buf_t *b = &a->body, err = VD_BUF_INIT;
  const char *bad = NULL;
  int64_t last_seq = 0, last_ms = 0;
  int n = 0, rc;
  memset(&s, 0, sizeof s);
  memset(&f, 0, sizeof f);
#define GET_(name, label)                                                    \
  if (form_field(q, qn, #name, s.name, sizeof s.name) < 0)                   \
    bad = #name;
  SEARCH_FIELDS(GET_)
  GET_(since, "") GET_(until, "") GET_(before, "")
#undef GET_
#define SET_(name, label) f.name = s.name[0] ? s.name : NULL;
  SEARCH_FIELDS(SET_)
#undef SET_
  if (s.since[0] && parse_when(s.since, &f.since_ms) != 0)
    bad = "since";
  f.has_since = s.since[0] != 0;
  if (s.until[0] && parse_when(s.until, &f.until_ms) != 0)
    bad = "until";
  f.has_until = s.until[0] != 0;
  if (s.before[0]) { /* the next page: RECEIVED_MS.SEQ of the last row */
    char *e, *e2 = NULL;
    f.before_ms = strtoll(s.before, &e, 10);
    f.before_seq = *e == '.' ? strtoll(e + 1, &e2, 10) : 0;
    if (*e != '.' || e2 == e + 1 || *e2 || f.before_seq <= 0)
      bad = "before";
    f.has_before = 1;
  }
  f.newest_first = 1;
  f.has_limit = 1;
  f.limit = PAGE_ROWS + 1;

  page_begin(a, bad ? 400 : 200, "Decisions", who);
  vd_buf_adds(b, "<form method=\"get\" action=\"/console/decisions\" "
                 "class=\"search\" role=\"search\">");
#define INPUT_(name, label)                                                  \
  vd_buf_adds(b, "<div><label for=\"" #name "\">" label "</label>"           \
                 "<input id=\"" #name "\" name=\"" #name "\" value=\"");     \
  escs(b, s.name);                                                           \
  vd_buf_adds(b, "\"></div>");
  SEARCH_FIELDS(INPUT_)
  INPUT_(since, "Received from (RFC 3339, or local China time)")
  INPUT_(until, "Received before")
#undef INPUT_
  vd_buf_adds(b, "<div><button type=\"submit\">Search</button></div>"
                 "</form>\n");
  if (bad) {
    vd_buf_adds(b, "<p role=\"alert\" class=\"refused\">The field ");
    escs(b, bad);
    vd_buf_adds(b, " is not valid (times: 2026-12-04T10:00:00+08:00 or "
                   "2026-12-04T10:00).</p>");
    page_end(a);
    return;
  }
  rc = vd_history_rows_open(&rows, d->opts.db, &f, &err);
  if (rc != 0) {
    a->status = 500;
    vd_buf_adds(b, "<p role=\"alert\" class=\"refused\">The history could "
                   "not be read: ");
    esc(b, err.data ? err.data : "", err.len);
    vd_buf_adds(b, "</p>");
    page_end(a);
    vd_buf_release(&err);
    return;
  }
  vd_buf_adds(b, "<table class=\"data\" id=\"decisions\"><caption>Newest "
                 "first (by arrival)</caption><thead><tr>"
                 "<th scope=\"col\">Seq</th>"
                 "<th scope=\"col\">Received (China time)</th>"
                 "<th scope=\"col\">Decision time</th>"
                 "<th scope=\"col\">Decision</th>"
                 "<th scope=\"col\">Kind</th><th scope=\"col\">Region</th>"
                 "<th scope=\"col\">Complaint</th>"
                 "<th scope=\"col\">Customer</th>"
                 "<th scope=\"col\">Revision</th>"
                 "<th scope=\"col\">Outcome</th></tr></thead><tbody>\n");
  while ((rc = vd_history_rows_next(rows, &row)) == 1) {
    const vd_history_value_t *v = row;
    if (++n > PAGE_ROWS)
      break;
    last_seq = v[VD_HISTORY_SEQ].i;
    last_ms = v[VD_HISTORY_RECEIVED_MS].i;
    vd_buf_addf(b, "<tr><td>%lld</td><td>", (long long)last_seq);
    add_time(b, v[VD_HISTORY_RECEIVED_MS].i, CHINA_OFFSET_MIN);
    vd_buf_adds(b, "</td><td>");
    add_at(b, v[VD_HISTORY_AT].text, v[VD_HISTORY_AT_MS].i);
    vd_buf_adds(b, "</td><td><a href=\"/console/decisions/");
    pct(b, v[VD_HISTORY_DECISION_ID].text);
    vd_buf_adds(b, "\">");
    escs(b, v[VD_HISTORY_DECISION_ID].text);
    vd_buf_adds(b, "</a></td><td>");
    escs(b, v[VD_HISTORY_KIND].text);
    vd_buf_adds(b, "</td><td>");
    escs(b, v[VD_HISTORY_REGION].text);
    vd_buf_adds(b, "</td><td>");
    escs(b, v[VD_HISTORY_COMPLAINT_ID].text);
    vd_buf_adds(b, "</td><td>");
    escs(b, v[VD_HISTORY_CUSTOMER_ID].text);
    vd_buf_adds(b, "</td><td><code title=\"");
    escs(b, v[VD_HISTORY_REVISION].text);
    vd_buf_adds(b, "\">");
    if (v[VD_HISTORY_REVISION].text)
      esc(b, v[VD_HISTORY_REVISION].text,
          v[VD_HISTORY_REVISION].len < 19 ? v[VD_HISTORY_REVISION].len : 19);
    vd_buf_adds(b, "</code></td><td>");
    escs(b, v[VD_HISTORY_ERROR_CODE].text ? v[VD_HISTORY_ERROR_CODE].text
                                          : "decided");
    vd_buf_adds(b, "</td></tr>\n");
  }
  vd_buf_adds(b, "</tbody></table>\n");
  if (rc < 0) {
    vd_buf_adds(b, "<p role=\"alert\" class=\"refused\">Reading stopped: ");
    escs(b, vd_history_rows_errmsg(rows));
    vd_buf_adds(b, "</p>");
  } else if (n == 0) {
    vd_buf_adds(b, "<p>No decision matches.</p>");
  } else if (n > PAGE_ROWS) {
    vd_buf_addf(b, "<p><a rel=\"next\" href=\"/console/decisions?before=%lld"
                   ".%lld", (long long)last_ms, (long long)last_seq);
    add_search_query(b, &s);
    vd_buf_adds(b, "\">Older decisions</a></p>");
  }
  vd_history_rows_close(rows);
  vd_buf_release(&err);
  page_end(a);
}

/* ========================================================================
 * A decision
 * ====================================================================== */

static void section(vd_buf_t *b, const char *title, const vd_history_value_t *v) {
  vd_buf_adds(b, "<section><h2>");
  escs(b, title);
  vd_buf_adds(b, "</h2>");
  if (v->text) {
    vd_buf_adds(b, "<pre class=\"json\" tabindex=\"0\">");
    add_json_pretty(b, v->text, v->len);
    vd_buf_adds(b, "</pre>");
  } else {
    vd_buf_adds(b, "<p>None.</p>");
  }
  vd_buf_adds(b, "</section>\n");
}

static void dl_row(vd_buf_t *b, const char *term, const char *value) {
  vd_buf_adds(b, "<dt>");
  escs(b, term);
  vd_buf_adds(b, "</dt><dd>");
  escs(b, value ? value : "-");
  vd_buf_adds(b, "</dd>");
}

/* The hash of row SEQ (hex into hex[65]), "" when there is none. */
static void hash_of(const char *db, int64_t seq, char *hexout) {
  vd_history_filter_t f;
  vd_history_rows_t *rows = NULL;
  const vd_history_value_t *row;
  vd_buf_t err = VD_BUF_INIT;
  hexout[0] = '\0';
  memset(&f, 0, sizeof f);
  f.has_seq = 1;
  f.seq_lo = seq;
  f.seq_hi = seq + 1;
  if (vd_history_rows_open(&rows, db, &f, &err) == 0 &&
      vd_history_rows_next(rows, &row) == 1 && row[VD_HISTORY_HASH].text)
    snprintf(hexout, 65, "%s", row[VD_HISTORY_HASH].text);
  vd_history_rows_close(rows);
  vd_buf_release(&err);
}

static void decision_page(vd_daemon_t *d, const char *who, const char *id,
                          const char *csrf, vd_console_answer_t *a) {
  vd_history_filter_t f;
  vd_history_rows_t *rows = NULL;
  const vd_history_value_t *v;
  vd_buf_t *b = &a->body, err = VD_BUF_INIT;
  char prev[65], line[64];
  int rc;
  memset(&f, 0, sizeof f);
  f.decision_id = id;
  f.has_limit = 1;
  f.limit = 1;
  rc = vd_history_rows_open(&rows, d->opts.db, &f, &err);
  if (rc == 0)
    rc = vd_history_rows_next(rows, &v);
  if (rc != 1) {
    page_begin(a, rc == 0 ? 404 : 500, "No such decision", who);
    vd_buf_adds(b, "<p role=\"alert\" class=\"refused\">");
    if (rc == 0) {
      vd_buf_adds(b, "No decision ");
      escs(b, id);
      vd_buf_adds(b, " in the history.");
    } else {
      escs(b, rows ? vd_history_rows_errmsg(rows) : err.data);
    }
    vd_buf_adds(b, "</p>");
    page_end(a);
    goto out;
  }
  page_begin(a, 200, "Decision", who);
  vd_buf_adds(b, "<dl class=\"facts\">");
  dl_row(b, "Decision id", v[VD_HISTORY_DECISION_ID].text);
  vd_buf_adds(b, "<dt>Decision time</dt><dd>");
  add_at(b, v[VD_HISTORY_AT].text, v[VD_HISTORY_AT_MS].i);
  vd_buf_adds(b, "</dd><dt>Received (China time)</dt><dd>");
  add_time(b, v[VD_HISTORY_RECEIVED_MS].i, CHINA_OFFSET_MIN);
  vd_buf_adds(b, "</dd>");
  dl_row(b, "Kind", v[VD_HISTORY_KIND].text);
  dl_row(b, "Region", v[VD_HISTORY_REGION].text);
  dl_row(b, "Policy region", v[VD_HISTORY_POLICY_REGION].text);
  dl_row(b, "Complaint", v[VD_HISTORY_COMPLAINT_ID].text);
  dl_row(b, "Customer", v[VD_HISTORY_CUSTOMER_ID].text);
  dl_row(b, "Category", v[VD_HISTORY_CATEGORY].text);
  vd_buf_adds(b, "<dt>Revision</dt><dd><a href=\"/console/decisions?"
                 "revision=");
  pct(b, v[VD_HISTORY_REVISION].text ? v[VD_HISTORY_REVISION].text : "");
  vd_buf_adds(b, "\"><code>");
  escs(b, v[VD_HISTORY_REVISION].text);
  vd_buf_adds(b, "</code></a> (its decisions)</dd>");
  dl_row(b, "Outcome", v[VD_HISTORY_ERROR_CODE].text
                           ? v[VD_HISTORY_ERROR_CODE].text : "decided");
  if (v[VD_HISTORY_ERROR_CODE].text) {
    dl_row(b, "Error message", v[VD_HISTORY_ERROR_MESSAGE].text);
    dl_row(b, "Error path", v[VD_HISTORY_ERROR_PATH].text);
  }
  snprintf(line, sizeof line, "%lld us", (long long)v[VD_HISTORY_ELAPSED_US].i);
  dl_row(b, "Decided in", line);
  dl_row(b, "Client", v[VD_HISTORY_CLIENT].text);
  vd_buf_adds(b, "</dl>\n<section><h2>Place in the hash chain</h2>"
                 "<dl class=\"facts\">");
  snprintf(line, sizeof line, "%lld", (long long)v[VD_HISTORY_SEQ].i);
  dl_row(b, "Sequence number", line);
  hash_of(d->opts.db, v[VD_HISTORY_SEQ].i - 1, prev);
  dl_row(b, "Previous record's hash",
         v[VD_HISTORY_SEQ].i == 1 ? "(the first record: 32 zero bytes)"
                                  : prev);
  dl_row(b, "This record's hash: SHA-256(previous hash || canonical bytes)",
         v[VD_HISTORY_HASH].text);
  vd_buf_adds(b, "</dl><p>Check the whole chain with <code>verdict history "
                 "verify</code>.</p></section>\n");
  vd_buf_adds(b, "<section><h2>Replay</h2><form method=\"post\" "
                 "class=\"replay\" action=\"/console/decisions/");
  pct(b, id);
  vd_buf_adds(b, "/replay\">");
  csrf_input(b, csrf);
  vd_buf_adds(b, "<button type=\"submit\" id=\"replay\">Replay this "
                 "decision now</button> <small>decides the recorded "
                 "request again with the revision that made it, rebuilt "
                 "from the files the history stored, and says whether it "
                 "reproduces</small></form></section>\n");
  section(b, "Result", &v[VD_HISTORY_RESULT]);
  section(b, "Trace: each rule, its outcome and its basis", &v[VD_HISTORY_TRACE]);
  section(b, "Request", &v[VD_HISTORY_REQUEST]);
  section(b, "Facts read from the history", &v[VD_HISTORY_FACTS]);
  page_end(a);
out:
  vd_history_rows_close(rows);
  vd_buf_release(&err);
}

/* POST /console/decisions/ID/replay: the determinism check of one
 * decision (vd_replay_run() with no candidate), on this pool thread. */
static void replay_decision_page(vd_daemon_t *d, const char *who,
                                 const char *id, vd_console_answer_t *a) {
  vd_replay_opts_t o;
  vd_replay_report_t rep;
  vd_buf_t *b = &a->body, err = VD_BUF_INIT;
  size_t i, k;
  int rc;
  memset(&o, 0, sizeof o);
  memset(&rep, 0, sizeof rep);
  o.db = d->opts.db;
  o.select.decision_id = id;
  o.threads = 1;
  o.max_changes = 1;
  rc = vd_replay_run(&o, &rep, &err);
  page_begin(a, rc == 0 ? 200 : 500, "Replay of a decision", who);
  vd_buf_adds(b, "<p>Decision <a href=\"/console/decisions/");
  pct(b, id);
  vd_buf_adds(b, "\"><code>");
  escs(b, id);
  vd_buf_adds(b, "</code></a>, its recorded request decided again now "
                 "with the revision that made it.</p>\n<p id=\"verdict\" "
                 "role=\"status\" class=\"");
  if (rc != 0) {
    vd_buf_adds(b, "refused\">The replay failed: ");
    esc(b, err.data ? err.data : "", err.len);
  } else if (rep.nunloadable) {
    vd_buf_adds(b, "refused\">Not replayed: its revision ");
    escs(b, rep.unloadable[0].revision);
    vd_buf_adds(b, " does not load under the present engine: ");
    escs(b, rep.unloadable[0].why);
  } else if (rep.errors || rep.nrow_errors) {
    vd_buf_adds(b, "refused\">Not replayed: ");
    escs(b, rep.nrow_errors ? rep.row_errors[0].why : "an error");
  } else if (rep.replayed == 0) {
    vd_buf_adds(b, "refused\">Not replayed: the history holds no request "
                   "for it to decide again.");
  } else if (rep.changed == 0) {
    vd_buf_adds(b, "same\">Reproduces: the same result and trace as "
                   "recorded.");
  } else {
    vd_buf_adds(b, "differs\">Does not reproduce: ");
    vd_buf_adds(b, rep.material ? "an outcome differs (a determinism "
                                  "violation)."
                                : "only fields that are not outcomes "
                                  "differ.");
  }
  vd_buf_adds(b, "</p>\n");
  for (i = 0; rc == 0 && i < rep.nchanges; i++) {
    const vd_replay_change_t *c = &rep.changes[i];
    vd_buf_adds(b, "<table class=\"data\" id=\"differences\"><thead><tr>"
                   "<th scope=\"col\">Field</th>"
                   "<th scope=\"col\">Recorded</th>"
                   "<th scope=\"col\">Decided now</th>"
                   "<th scope=\"col\">An outcome</th></tr></thead><tbody>\n");
    for (k = 0; k < c->ndiffs; k++) {
      const vd_replay_diff_t *df = &c->diffs[k];
      vd_buf_adds(b, "<tr><td><code>");
      escs(b, df->field);
      vd_buf_adds(b, "</code></td><td><pre class=\"json\">");
      escs(b, df->old_json ? df->old_json : "(absent)");
      vd_buf_adds(b, "</pre></td><td><pre class=\"json\">");
      escs(b, df->new_json ? df->new_json : "(absent)");
      vd_buf_addf(b, "</pre></td><td>%s</td></tr>\n",
                  df->outcome ? "yes" : "no");
    }
    vd_buf_adds(b, "</tbody></table>\n");
  }
  page_end(a);
  vd_replay_report_release(&rep);
  vd_buf_release(&err);
}

/* ========================================================================
 * Impact
 * ====================================================================== */

/* One run at a time, the process's: the form starts it (a POST, which
 * checks everything and resolves both bundles on its own pool thread),
 * worker.c's console_done() queues impact_run() on the pool once the
 * answer has gone, and the page reads the counter the replay adds to and,
 * once done, the report's JSON, vd_report_write()'s (core/report.c): the
 * figures `verdict replay --format json|html` gives, from the same
 * computation.  Everything here is under impact.lock but the run's
 * inputs, which only impact_run() reads while state is IMPACT_RUNNING. */
enum { IMPACT_NONE = 0, IMPACT_RUNNING, IMPACT_DONE, IMPACT_CANCELLED };

#define IMPACT_FORM(X)                                                       \
  X(candidate, "Candidate: a stored revision (any name: sha256 prefix, "     \
               "active, previous, @-N, a tag), or directory (the daemon's "  \
               "policy directory as it is now)")                             \
  X(baseline, "Baseline (a revision's name, or directory)")                  \
  X(at_since, "Decision time from (RFC 3339, or local China time)")          \
  X(at_until, "Decision time before")                                        \
  X(kind, "Kind")                                                            \
  X(region, "Region")

typedef struct impact_form {
#define FIELD_(name, label) char name[128];
  IMPACT_FORM(FIELD_)
#undef FIELD_
} impact_form_t;

static struct impact {
  uv_mutex_t lock;
  int state;
  long long progress;        /* rows read (vd_replay_opts_t.progress) */
  long long total;           /* rows selected, -1 until counted */
  int cancel;                /* set to stop the run (.cancel) */
  char cancelled_by[64];     /* who set it, or "the daemon, stopping" */
  char who[64];
  int64_t started_ms;
  impact_form_t form;        /* what was asked */
  vd_replay_opts_t o;        /* the run's inputs */
  char *db;
  vd_bundle_t *cand, *base;
  vd_buf_t cname, bname, selection;
  vd_buf_t json, error;      /* its outcome */
  vd_buf_t csv, html;        /* the same report as `verdict replay
                              * --format csv|html` writes it: downloads */
  vd_buf_t html_error;       /* why there is no HTML (the chart library) */
} impact;
static uv_once_t impact_once = UV_ONCE_INIT;

static void impact_init(void) {
  uv_mutex_init(&impact.lock);
}

/* Runs on the pool (RUN 1), or gives the run up (RUN 0).  A run
 * cancelled (impact_cancel(), vd_console_stop()) keeps no figures: they
 * would cover only the rows done. */
static void impact_run(void *arg, int run) {
  vd_replay_report_t rep;
  vd_report_opts_t ro;
  vd_buf_t json = VD_BUF_INIT, err = VD_BUF_INIT, csv = VD_BUF_INIT,
           html = VD_BUF_INIT, html_err = VD_BUF_INIT;
  int64_t t0 = vd_now_ms();
  int rc = -1;
  (void)arg;
  memset(&rep, 0, sizeof rep);
  memset(&ro, 0, sizeof ro);
  if (!run)
    vd_buf_adds(&err, "the run could not be queued on the thread pool");
  else if ((rc = vd_replay_run(&impact.o, &rep, &err)) == 0 &&
           !rep.cancelled) {
    ro.seconds = (double)(vd_now_ms() - t0) / 1000.0;
    if (ro.seconds <= 0)
      ro.seconds = 0.001;
    ro.selection = impact.selection.len ? impact.selection.data : NULL;
    vd_report_write(&rep, VD_REPORT_JSON, &ro, &json, &err);
    vd_report_write(&rep, VD_REPORT_CSV, &ro, &csv, &err);
    if (vd_report_write(&rep, VD_REPORT_HTML, &ro, &html, &html_err) != 0)
      vd_buf_release(&html);
  } else if (rc != 0 && !err.len)
    vd_buf_adds(&err, "the replay failed");
  vd_buf_addc(&json, '\0');
  vd_buf_addc(&err, '\0');
  uv_mutex_lock(&impact.lock);
  vd_buf_release(&impact.json);
  vd_buf_release(&impact.error);
  vd_buf_release(&impact.csv);
  vd_buf_release(&impact.html);
  vd_buf_release(&impact.html_error);
  impact.json = json;
  impact.csv = csv;
  impact.html = html;
  impact.html_error = html_err;
  if (err.len > 1)
    impact.error = err;
  else
    vd_buf_release(&err);
  vd_bundle_unref(impact.cand);
  if (impact.base)
    vd_bundle_unref(impact.base);
  impact.cand = impact.base = NULL;
  impact.state = rc == 0 && rep.cancelled ? IMPACT_CANCELLED : IMPACT_DONE;
  if (impact.state == IMPACT_CANCELLED)
    vd_log(VD_LEVEL_NOTICE, "impact_cancelled",
           "the console's Impact run started by %s was cancelled by %s "
           "after %lld of %lld decisions", impact.who, impact.cancelled_by,
           __atomic_load_n(&impact.progress, __ATOMIC_RELAXED),
           __atomic_load_n(&impact.total, __ATOMIC_RELAXED));
  uv_mutex_unlock(&impact.lock);
  vd_replay_report_release(&rep);
}

void vd_console_stop(vd_daemon_t *d) {
  (void)d;
  uv_once(&impact_once, impact_init);
  uv_mutex_lock(&impact.lock);
  if (impact.state == IMPACT_RUNNING &&
      !__atomic_load_n(&impact.cancel, __ATOMIC_RELAXED)) {
    snprintf(impact.cancelled_by, sizeof impact.cancelled_by,
             "the daemon, stopping");
    __atomic_store_n(&impact.cancel, 1, __ATOMIC_RELAXED);
  }
  uv_mutex_unlock(&impact.lock);
}

/* SPEC (a form's value) as a bundle: "directory" is the daemon's policy
 * directory as it is now; anything else names a stored revision. */
static int impact_bundle(vd_daemon_t *d, const char *field, const char *spec,
                         vd_bundle_t **out, vd_buf_t *name, vd_buf_t *err) {
  char rev[VD_REVISION_NAME_MAX];
  char *msg = NULL;
  int rc;
  if (strcmp(spec, "directory") == 0)
    rc = vd_replay_resolve(d->opts.db, d->opts.policies, out, name, err);
  else if (strcmp(spec, "active") == 0) /* named "active (sha256:...)" */
    rc = vd_replay_resolve(d->opts.db, spec, out, name, err);
  else if ((rc = vd_history_resolve(d->opts.db, spec, rev, &msg)) != 0) {
    vd_buf_addf(err, "no stored revision '%s': %s", spec,
                msg ? msg : "not found");
    free(msg);
  } else
    rc = vd_replay_resolve(d->opts.db, rev, out, name, err);
  if (rc != 0) {
    vd_buf_t why = VD_BUF_INIT;
    vd_buf_addf(&why, "%s: %.*s", field, (int)err->len,
                err->data ? err->data : "");
    vd_buf_release(err);
    *err = why;
  }
  return rc;
}

static void impact_form_html(vd_buf_t *b, const impact_form_t *f,
                             const char *csrf) {
  vd_buf_adds(b, "<form method=\"post\" action=\"/console/impact\" "
                 "class=\"search\" id=\"impact-form\">");
  csrf_input(b, csrf);
#define INPUT_(name, label)                                                  \
  vd_buf_adds(b, "<div><label for=\"" #name "\">" label "</label>"           \
                 "<input id=\"" #name "\" name=\"" #name "\" value=\"");     \
  escs(b, f->name);                                                          \
  vd_buf_adds(b, "\"></div>");
  IMPACT_FORM(INPUT_)
#undef INPUT_
  vd_buf_adds(b, "<div><button type=\"submit\" id=\"run\">Replay</button>"
                 "</div></form>\n");
}

/* POST /console/impact: check the form, resolve both bundles, start. */
static void impact_start(vd_daemon_t *d, const char *who,
                         const vd_http_req_t *req, vd_console_answer_t *a,
                         const char *csrf) {
  const char *body = req->body.data ? req->body.data : "";
  impact_form_t f;
  vd_history_filter_t sel;
  vd_bundle_t *cand = NULL, *base = NULL;
  vd_buf_t cname = VD_BUF_INIT, bname = VD_BUF_INIT, err = VD_BUF_INIT,
           desc = VD_BUF_INIT;
  const char *bad = NULL;
  int busy;
  memset(&f, 0, sizeof f);
  memset(&sel, 0, sizeof sel);
#define GET_(name, label)                                                    \
  if (form_field(body, req->body.len, #name, f.name, sizeof f.name) < 0)     \
    bad = #name;
  IMPACT_FORM(GET_)
#undef GET_
  if (!f.baseline[0])
    snprintf(f.baseline, sizeof f.baseline, "active");
  if (!bad && !f.candidate[0])
    bad = "candidate";
  if (!bad && f.at_since[0] && parse_when(f.at_since, &sel.at_since_ms))
    bad = "at_since";
  if (!bad && f.at_until[0] && parse_when(f.at_until, &sel.at_until_ms))
    bad = "at_until";
  if (bad)
    vd_buf_addf(&err, "The field %s is not valid (a candidate is needed; "
                      "times: 2026-12-04T10:00:00+08:00 or "
                      "2026-12-04T10:00).", bad);
  else if (impact_bundle(d, "candidate", f.candidate, &cand, &cname,
                         &err) == 0)
    impact_bundle(d, "baseline", f.baseline, &base, &bname, &err);
  if (err.len) {
    page_begin(a, 400, "Impact", who);
    vd_buf_adds(&a->body, "<p role=\"alert\" class=\"refused\">");
    esc(&a->body, err.data, err.len);
    vd_buf_adds(&a->body, "</p>");
    impact_form_html(&a->body, &f, csrf);
    page_end(a);
    goto out;
  }
  sel.has_at_since = f.at_since[0] != 0;
  sel.has_at_until = f.at_until[0] != 0;
#define DESC_(cond, what, v)                                                 \
  if (cond)                                                                  \
    vd_buf_addf(&desc, "%s%s %s", desc.len ? ", " : "", what, v);
  DESC_(f.at_since[0], "decision time from", f.at_since)
  DESC_(f.at_until[0], "decision time before", f.at_until)
  DESC_(f.region[0], "region", f.region)
  DESC_(f.kind[0], "kind", f.kind)
#undef DESC_
  vd_buf_addc(&desc, '\0');

  uv_mutex_lock(&impact.lock);
  busy = impact.state == IMPACT_RUNNING;
  if (!busy) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    vd_buf_release(&impact.cname);
    vd_buf_release(&impact.bname);
    vd_buf_release(&impact.selection);
    vd_buf_release(&impact.json);
    vd_buf_release(&impact.error);
    vd_buf_release(&impact.csv);
    vd_buf_release(&impact.html);
    vd_buf_release(&impact.html_error);
    free(impact.db);
    impact.db = strdup(d->opts.db);
    impact.form = f;
    snprintf(impact.who, sizeof impact.who, "%s", who[0] ? who : "loopback");
    impact.started_ms = vd_now_ms();
    impact.progress = 0;
    impact.total = -1;
    impact.cancel = 0;
    impact.cancelled_by[0] = '\0';
    impact.cand = cand;
    impact.base = base;
    impact.cname = cname;
    impact.bname = bname;
    impact.selection = desc;
    cand = base = NULL;
    vd_buf_init(&cname);
    vd_buf_init(&bname);
    vd_buf_init(&desc);
    memset(&impact.o, 0, sizeof impact.o);
    impact.o.db = impact.db;
    impact.o.candidate = impact.cand;
    impact.o.baseline = impact.base;
    impact.o.candidate_name = impact.cname.data;
    impact.o.baseline_name = impact.bname.data;
    impact.o.select = sel;
    impact.o.select.kind = impact.form.kind[0] ? impact.form.kind : NULL;
    impact.o.select.region = impact.form.region[0] ? impact.form.region
                                                   : NULL;
    /* half the machine: the other half decides */
    impact.o.threads = n > 1 ? (int)(n / 2 < 8 ? n / 2 : 8) : 1;
    impact.o.progress = &impact.progress;
    impact.o.total = &impact.total;
    impact.o.cancel = &impact.cancel;
    impact.state = IMPACT_RUNNING;
  }
  uv_mutex_unlock(&impact.lock);
  if (busy) {
    page_begin(a, 409, "Impact", who);
    vd_buf_adds(&a->body, "<p role=\"alert\" class=\"refused\" id=\"busy\">"
                          "A replay is running (one at a time): wait for "
                          "it on <a href=\"/console/impact\">the Impact "
                          "page</a>, then start yours.</p>");
    page_end(a);
    goto out;
  }
  a->after = impact_run;
  a->after_arg = NULL;
  redirect(a, "/console/impact");
out:
  if (cand)
    vd_bundle_unref(cand);
  if (base)
    vd_bundle_unref(base);
  vd_buf_release(&cname);
  vd_buf_release(&bname);
  vd_buf_release(&desc);
  vd_buf_release(&err);
}

static yajl_val jget(yajl_val o, const char *key) {
  const char *path[2];
  path[0] = key;
  path[1] = NULL;
  return o ? yajl_tree_get(o, path, yajl_t_any) : NULL;
}

/* A JSON value as a cell's text: numbers as the report wrote them. */
static void add_value(vd_buf_t *b, yajl_val v) {
  size_t i;
  if (!v || YAJL_IS_NULL(v))
    vd_buf_adds(b, "-");
  else if (YAJL_IS_STRING(v))
    escs(b, YAJL_GET_STRING(v));
  else if (YAJL_IS_NUMBER(v))
    escs(b, YAJL_GET_NUMBER(v));
  else if (YAJL_IS_TRUE(v))
    vd_buf_adds(b, "yes");
  else if (YAJL_IS_FALSE(v))
    vd_buf_adds(b, "no");
  else if (YAJL_IS_ARRAY(v))
    for (i = 0; i < YAJL_GET_ARRAY(v)->len; i++) {
      if (i)
        vd_buf_adds(b, ", ");
      add_value(b, YAJL_GET_ARRAY(v)->values[i]);
    }
}

/* A table of the objects of LIST, columns KEYS (NULL-terminated pairs of
 * key and heading). */
/* V as compact JSON text, escaped for HTML: a changed field's value. */
static void add_json_text(vd_buf_t *b, yajl_val v) {
  size_t i;
  if (!v || YAJL_IS_NULL(v))
    vd_buf_adds(b, "null (absent)");
  else if (YAJL_IS_STRING(v)) {
    vd_buf_adds(b, "&quot;");
    escs(b, YAJL_GET_STRING(v));
    vd_buf_adds(b, "&quot;");
  } else if (YAJL_IS_NUMBER(v))
    escs(b, YAJL_GET_NUMBER(v));
  else if (YAJL_IS_TRUE(v) || YAJL_IS_FALSE(v))
    vd_buf_adds(b, YAJL_IS_TRUE(v) ? "true" : "false");
  else if (YAJL_IS_ARRAY(v)) {
    vd_buf_addc(b, '[');
    for (i = 0; i < YAJL_GET_ARRAY(v)->len; i++) {
      if (i)
        vd_buf_adds(b, ", ");
      add_json_text(b, YAJL_GET_ARRAY(v)->values[i]);
    }
    vd_buf_addc(b, ']');
  } else if (YAJL_IS_OBJECT(v)) {
    vd_buf_addc(b, '{');
    for (i = 0; i < YAJL_GET_OBJECT(v)->len; i++) {
      if (i)
        vd_buf_adds(b, ", ");
      escs(b, YAJL_GET_OBJECT(v)->keys[i]);
      vd_buf_adds(b, ": ");
      add_json_text(b, YAJL_GET_OBJECT(v)->values[i]);
    }
    vd_buf_addc(b, '}');
  }
}

static void json_table(vd_buf_t *b, const char *id, const char *caption,
                       yajl_val list, const char *const *keys) {
  size_t i, k;
  vd_buf_addf(b, "<table class=\"data\" id=\"%s\"><caption>", id);
  escs(b, caption);
  vd_buf_adds(b, "</caption><thead><tr>");
  for (k = 0; keys[k]; k += 2) {
    vd_buf_adds(b, "<th scope=\"col\">");
    escs(b, keys[k + 1]);
    vd_buf_adds(b, "</th>");
  }
  vd_buf_adds(b, "</tr></thead><tbody>\n");
  for (i = 0; list && YAJL_IS_ARRAY(list) && i < YAJL_GET_ARRAY(list)->len;
       i++) {
    yajl_val o = YAJL_GET_ARRAY(list)->values[i];
    vd_buf_adds(b, "<tr>");
    for (k = 0; keys[k]; k += 2) {
      yajl_val v = jget(o, keys[k]), did = jget(o, "decision_id");
      vd_buf_addf(b, "<td data-key=\"%s\">", keys[k]);
      if (strcmp(keys[k], "versions") == 0 && did && YAJL_IS_STRING(did)) {
        vd_buf_adds(b, "<a href=\"/console/impact/decision/");
        pct(b, YAJL_GET_STRING(did));
        vd_buf_adds(b, "\">baseline and candidate</a>");
      } else if (strcmp(keys[k], "decision_id") == 0 && v &&
                 YAJL_IS_STRING(v)) {
        vd_buf_adds(b, "<a href=\"/console/decisions/");
        pct(b, YAJL_GET_STRING(v));
        vd_buf_adds(b, "\">");
        add_value(b, v);
        vd_buf_adds(b, "</a>");
      } else
        add_value(b, v);
      vd_buf_adds(b, "</td>");
    }
    vd_buf_adds(b, "</tr>\n");
  }
  vd_buf_adds(b, "</tbody></table>\n");
}

/* The money moved per decision, bucketed by the report's edges: a
 * table, and console.js draws it as a bar chart. */
static void impact_histogram(vd_buf_t *b, yajl_val h) {
  yajl_val edges = jget(h, "edges_yuan"), counts = jget(h, "counts");
  size_t i, ne, nc;
  if (!edges || !counts || !YAJL_IS_ARRAY(edges) || !YAJL_IS_ARRAY(counts))
    return;
  ne = YAJL_GET_ARRAY(edges)->len;
  nc = YAJL_GET_ARRAY(counts)->len;
  if (nc != ne + 1)
    return;
  vd_buf_adds(b, "</section>\n<section><h2 id=\"hist-title\">Money moved "
                 "per changed decision (candidate - baseline, yuan)</h2>"
                 "<canvas id=\"hist\" role=\"img\" "
                 "aria-labelledby=\"hist-title\" width=\"800\" "
                 "height=\"260\"></canvas><table class=\"data\" "
                 "id=\"impact-hist\"><thead><tr><th scope=\"col\">Moved "
                 "(yuan)</th><th scope=\"col\">Decisions</th></tr></thead>"
                 "<tbody>\n");
  for (i = 0; i < nc; i++) {
    vd_buf_adds(b, "<tr><td>");
    if (i == 0) {
      vd_buf_adds(b, "below ");
      add_value(b, YAJL_GET_ARRAY(edges)->values[0]);
    } else if (i == ne) {
      add_value(b, YAJL_GET_ARRAY(edges)->values[ne - 1]);
      vd_buf_adds(b, " and up");
    } else {
      add_value(b, YAJL_GET_ARRAY(edges)->values[i - 1]);
      vd_buf_adds(b, " to ");
      add_value(b, YAJL_GET_ARRAY(edges)->values[i]);
    }
    vd_buf_adds(b, "</td><td>");
    add_value(b, YAJL_GET_ARRAY(counts)->values[i]);
    vd_buf_adds(b, "</td></tr>\n");
  }
  vd_buf_adds(b, "</tbody></table>\n");
}

static void impact_result(vd_buf_t *b, const char *json) {
  static const char *const summary[] = {
      "candidate", "baseline", "selection", "replayed", "unchanged",
      "changed", "material", "immaterial", "errors", "unreplayable",
      "asked_now", "seconds", NULL};
  static const char *const group[] = {
      "kind", "Kind", "region", "Region", "replayed", "Replayed",
      "changed", "Changed", "material", "Material", "offers",
      "With an offer", "before_yuan", "Before (yuan)", "after_yuan",
      "After (yuan)", "moved_yuan", "Moved (yuan)", "up", "Up", "down",
      "Down", NULL};
  static const char *const change[] = {
      "decision_id", "Decision", "complaint_id", "Complaint", "kind", "Kind",
      "region", "Region", "at", "Decision time", "material", "Material",
      "offer_before_yuan", "Offer before (yuan)", "offer_after_yuan",
      "Offer after (yuan)", "rules_gained", "Rules that fire now",
      "rules_lost", "Rules that no longer fire", "versions", "Both versions",
      NULL};
  char why[256];
  yajl_val root = yajl_tree_parse(json, why, sizeof why), v, offers;
  size_t i;
  if (!root) {
    vd_buf_adds(b, "<p role=\"alert\" class=\"refused\">The report could "
                   "not be read: ");
    escs(b, why);
    vd_buf_adds(b, "</p>");
    return;
  }
  vd_buf_adds(b, "<section><h2>Summary</h2><table class=\"data\" "
                 "id=\"impact-summary\"><tbody>\n");
  for (i = 0; summary[i]; i++) {
    vd_buf_addf(b, "<tr><th scope=\"row\">%s</th><td data-key=\"%s\">",
                summary[i], summary[i]);
    add_value(b, jget(root, summary[i]));
    vd_buf_adds(b, "</td></tr>\n");
  }
  vd_buf_adds(b, "</tbody></table></section>\n<section><h2>Money "
                 "(offers, yuan)</h2><table class=\"data\" "
                 "id=\"impact-money\"><tbody>");
  offers = jget(root, "offers");
  vd_buf_adds(b, "<tr><th scope=\"row\">decisions with an offer</th>"
                 "<td data-key=\"count\">");
  add_value(b, jget(offers, "count"));
  vd_buf_adds(b, "</td></tr><tr><th scope=\"row\">baseline total</th>"
                 "<td data-key=\"before\">");
  add_value(b, jget(jget(offers, "before"), "total_yuan"));
  vd_buf_adds(b, "</td></tr><tr><th scope=\"row\">candidate total</th>"
                 "<td data-key=\"after\">");
  add_value(b, jget(jget(offers, "after"), "total_yuan"));
  vd_buf_adds(b, "</td></tr><tr><th scope=\"row\">moved</th>"
                 "<td data-key=\"moved_yuan\">");
  add_value(b, jget(offers, "moved_yuan"));
  vd_buf_adds(b, "</td></tr></tbody></table></section>\n<section><h2>By "
                 "kind and region</h2>");
  json_table(b, "by-kind", "By kind", jget(root, "by_kind"), group + 0);
  {
    static const char *const byregion[] = {
        "region", "Region", "replayed", "Replayed", "changed", "Changed",
        "material", "Material", "before_yuan", "Before (yuan)",
        "after_yuan", "After (yuan)", "moved_yuan", "Moved (yuan)", NULL};
    json_table(b, "by-region", "By region", jget(root, "by_region"),
               byregion);
  }
  json_table(b, "by-kind-region", "By kind and region",
             jget(root, "by_kind_region"), group);
  {
    static const char *const outcomes[] = {
        "kind", "Kind", "field", "Outcome", "as", "As", "changed",
        "Changed", "earlier", "Earlier", "later", "Later", NULL};
    static const char *const moves[] = {
        "kind", "Kind", "field", "Outcome", "from", "From", "to", "To",
        "count", "Decisions", NULL};
    vd_buf_adds(b, "</section>\n<section><h2>Outcomes that change: SLA "
                   "deadlines, escalation levels</h2>");
    json_table(b, "impact-outcomes", "Material changes by outcome field",
               jget(root, "outcomes"), outcomes);
    json_table(b, "impact-levels", "Levels, from and to",
               jget(root, "level_moves"), moves);
  }
  impact_histogram(b, jget(root, "histogram"));
  vd_buf_adds(b, "</section>\n<section><h2>Rules that fire more or less "
                 "often</h2><table class=\"data\" id=\"impact-rules\">"
                 "<thead><tr><th scope=\"col\">Rule</th>"
                 "<th scope=\"col\">Baseline</th>"
                 "<th scope=\"col\">Candidate</th>"
                 "<th scope=\"col\">Difference</th></tr></thead><tbody>\n");
  v = jget(root, "rules");
  for (i = 0; v && YAJL_IS_OBJECT(v) && i < YAJL_GET_OBJECT(v)->len; i++) {
    yajl_val r = YAJL_GET_OBJECT(v)->values[i];
    yajl_val bf = jget(r, "before"), af = jget(r, "after");
    long long nb = bf && YAJL_IS_INTEGER(bf) ? YAJL_GET_INTEGER(bf) : 0;
    long long na = af && YAJL_IS_INTEGER(af) ? YAJL_GET_INTEGER(af) : 0;
    if (na == nb)
      continue;
    vd_buf_adds(b, "<tr><td><code>");
    escs(b, YAJL_GET_OBJECT(v)->keys[i]);
    vd_buf_addf(b, "</code></td><td>%lld</td><td>%lld</td><td>%+lld</td>"
                   "</tr>\n", nb, na, na - nb);
  }
  vd_buf_adds(b, "</tbody></table></section>\n<section><h2>Changed "
                 "decisions</h2>");
  json_table(b, "impact-changes", "Each links to its decision page (the "
             "recorded one) and to its baseline and candidate results side "
             "by side", jget(root, "changes"), change);
  v = jget(root, "changes_not_listed");
  if (v && YAJL_IS_INTEGER(v) && YAJL_GET_INTEGER(v) > 0)
    vd_buf_addf(b, "<p>%lld more not listed: <code>verdict replay</code> "
                   "gives them all.</p>", (long long)YAJL_GET_INTEGER(v));
  vd_buf_adds(b, "</section>\n");
  yajl_tree_free(root);
}

/* GET /console/impact: the form, the run in progress, or its result. */
static void impact_page(const char *who, const char *csrf,
                        vd_console_answer_t *a) {
  vd_buf_t *b = &a->body;
  impact_form_t f;
  int state;
  memset(&f, 0, sizeof f);
  uv_mutex_lock(&impact.lock);
  state = impact.state;
  if (state != IMPACT_NONE)
    f = impact.form;
  else {
    snprintf(f.candidate, sizeof f.candidate, "directory");
    snprintf(f.baseline, sizeof f.baseline, "active");
  }
  if (state == IMPACT_RUNNING)
    vd_buf_adds(&a->headers, "Refresh: 1\r\n");
  page_begin(a, 200, "Impact", who);
  vd_buf_adds(b, "<p>Replays the recorded requests the filters select "
                 "with a candidate and a baseline and shows only their "
                 "difference (<code>verdict replay --against C --baseline "
                 "B</code>; the same report).</p>");
  impact_form_html(b, &f, csrf);
  if (state == IMPACT_RUNNING) {
    long long done = __atomic_load_n(&impact.progress, __ATOMIC_RELAXED);
    long long total = __atomic_load_n(&impact.total, __ATOMIC_RELAXED);
    vd_buf_addf(b, "<p role=\"status\" id=\"impact-state\" "
                   "class=\"running\">Running, started by ");
    escs(b, impact.who);
    vd_buf_addf(b, " %lld s ago: ",
                (long long)((vd_now_ms() - impact.started_ms) / 1000));
    if (__atomic_load_n(&impact.cancel, __ATOMIC_RELAXED)) {
      vd_buf_adds(b, "cancelled by ");
      escs(b, impact.cancelled_by);
      vd_buf_adds(b, ", stopping after the decisions in hand");
    } else if (total < 0) {
      add_count(b, done);
      vd_buf_adds(b, " decisions read (counting what the filters select)");
    } else {
      vd_buf_adds(b, "<span id=\"impact-done\">");
      add_count(b, done);
      vd_buf_adds(b, "</span> of <span id=\"impact-total\">");
      add_count(b, total);
      vd_buf_addf(b, "</span> decisions (%lld%%)",
                  total ? done * 100 / total : 100);
    }
    vd_buf_adds(b, ".  This page refreshes every second.</p>");
    if (total >= 0)
      vd_buf_addf(b, "<progress id=\"impact-progress\" max=\"%lld\" "
                     "value=\"%lld\" aria-labelledby=\"impact-state\">"
                     "</progress>", total ? total : 1,
                  total ? done : 1);
    vd_buf_adds(b, "<form method=\"post\" action=\"/console/impact/"
                   "cancel\" id=\"cancel-form\">");
    csrf_input(b, csrf);
    vd_buf_adds(b, "<button type=\"submit\" id=\"cancel\">Cancel this "
                   "run&hellip;</button></form>\n");
  } else if (state == IMPACT_CANCELLED) {
    vd_buf_adds(b, "<p role=\"status\" id=\"impact-state\" "
                   "class=\"cancelled\">Cancelled by ");
    escs(b, impact.cancelled_by);
    vd_buf_adds(b, " after ");
    add_count(b, __atomic_load_n(&impact.progress, __ATOMIC_RELAXED));
    vd_buf_adds(b, " of ");
    add_count(b, __atomic_load_n(&impact.total, __ATOMIC_RELAXED));
    vd_buf_adds(b, " decisions: the run started by ");
    escs(b, impact.who);
    vd_buf_adds(b, " at ");
    add_time(b, impact.started_ms, CHINA_OFFSET_MIN);
    vd_buf_adds(b, " (China time).  Its partial figures are not shown.</p>");
  } else if (state == IMPACT_DONE) {
    vd_buf_adds(b, "<p role=\"status\" id=\"impact-state\" class=\"done\">"
                   "Done: the last run, started by ");
    escs(b, impact.who);
    vd_buf_adds(b, " at ");
    add_time(b, impact.started_ms, CHINA_OFFSET_MIN);
    vd_buf_adds(b, " (China time).</p>");
    if (impact.error.len) {
      vd_buf_adds(b, "<p role=\"alert\" class=\"refused\">It failed: ");
      escs(b, impact.error.data);
      vd_buf_adds(b, "</p>");
    } else {
      vd_buf_adds(b, "<p id=\"downloads\">Download this report: <a "
                     "href=\"/console/impact/report.csv\" download>the "
                     "changed decisions as CSV</a>");
      if (impact.html.len)
        vd_buf_adds(b, ", <a href=\"/console/impact/report.html\" "
                       "download>the whole report as one HTML file</a> "
                       "(it opens with no server)");
      else if (impact.html_error.len) {
        vd_buf_adds(b, " (no HTML report: ");
        esc(b, impact.html_error.data, impact.html_error.len);
        vd_buf_adds(b, ")");
      }
      vd_buf_adds(b, "; <code>verdict replay --format csv|html</code> "
                     "writes the same files.</p>");
      impact_result(b, impact.json.data);
    }
  }
  uv_mutex_unlock(&impact.lock);
  page_end(a);
}

/* GET /console/impact/decision/{id}: one changed decision of the last
 * run, both versions side by side: each field that differs as the
 * baseline and the candidate decide it (and as recorded), and the rules
 * each fires that the other does not; the recorded decision is a link
 * to its own page.  From the run's report: what it replayed, nothing
 * decided again. */
static void impact_versions(const char *who, const char *id,
                            vd_console_answer_t *a) {
  vd_buf_t *b = &a->body;
  yajl_val root = NULL, c = NULL, list, fields;
  char why[256];
  size_t i;
  uv_mutex_lock(&impact.lock);
  if (impact.state == IMPACT_DONE && !impact.error.len && impact.json.len)
    root = yajl_tree_parse(impact.json.data, why, sizeof why);
  uv_mutex_unlock(&impact.lock);
  list = jget(root, "changes");
  for (i = 0; list && YAJL_IS_ARRAY(list) && i < YAJL_GET_ARRAY(list)->len;
       i++) {
    yajl_val v = jget(YAJL_GET_ARRAY(list)->values[i], "decision_id");
    const char *s = v && YAJL_IS_STRING(v) ? v->u.string : NULL;
    if (s && strcmp(s, id) == 0)
      c = YAJL_GET_ARRAY(list)->values[i];
  }
  if (!c) {
    page_begin(a, 404, "Baseline and candidate", who);
    vd_buf_adds(b, "<p role=\"alert\" class=\"refused\">Decision ");
    escs(b, id);
    vd_buf_adds(b, " is not among the changed decisions the last Impact "
                   "run lists: see <a href=\"/console/impact\">the Impact "
                   "page</a>.</p>");
    page_end(a);
    yajl_tree_free(root);
    return;
  }
  page_begin(a, 200, "Baseline and candidate", who);
  vd_buf_adds(b, "<p>Decision <a id=\"recorded\" href=\"/console/decisions/");
  pct(b, id);
  vd_buf_adds(b, "\">");
  escs(b, id);
  vd_buf_adds(b, "</a> (the recorded decision), complaint ");
  add_value(b, jget(c, "complaint_id"));
  vd_buf_adds(b, ", ");
  add_value(b, jget(c, "kind"));
  vd_buf_adds(b, " in ");
  add_value(b, jget(c, "region"));
  vd_buf_adds(b, ", decision time ");
  add_value(b, jget(c, "at"));
  vd_buf_adds(b, ": decided again by the baseline <code>");
  add_value(b, jget(root, "baseline"));
  vd_buf_adds(b, "</code> and by the candidate <code>");
  add_value(b, jget(root, "candidate"));
  vd_buf_adds(b, "</code>.  ");
  vd_buf_adds(b, YAJL_IS_TRUE(jget(c, "material"))
                     ? "The change is material: an outcome differs."
                     : "The change is not material: no outcome differs.");
  vd_buf_adds(b, "</p>\n<table class=\"data\" id=\"versions\"><caption>"
                 "Each field that differs (the others are the same)"
                 "</caption><thead><tr><th scope=\"col\">Field</th>"
                 "<th scope=\"col\">Baseline</th><th scope=\"col\">"
                 "Candidate</th><th scope=\"col\">Recorded</th>"
                 "<th scope=\"col\">Outcome</th></tr></thead><tbody>\n");
  fields = jget(c, "fields");
  for (i = 0; fields && YAJL_IS_ARRAY(fields) &&
              i < YAJL_GET_ARRAY(fields)->len; i++) {
    yajl_val f = YAJL_GET_ARRAY(fields)->values[i];
    vd_buf_adds(b, "<tr><th scope=\"row\"><code>");
    add_value(b, jget(f, "field"));
    vd_buf_adds(b, "</code></th><td data-key=\"old\">");
    add_json_text(b, jget(f, "old"));
    vd_buf_adds(b, "</td><td data-key=\"new\">");
    add_json_text(b, jget(f, "new"));
    vd_buf_adds(b, "</td><td data-key=\"recorded\">");
    add_json_text(b, jget(f, "recorded"));
    vd_buf_adds(b, "</td><td>");
    add_value(b, jget(f, "outcome"));
    vd_buf_adds(b, "</td></tr>\n");
  }
  vd_buf_adds(b, "</tbody></table>\n<h2>Rules</h2><dl>"
                 "<dt>Fire for the candidate only</dt><dd id=\"gained\">");
  add_value(b, jget(c, "rules_gained"));
  vd_buf_adds(b, "</dd><dt>Fire for the baseline only</dt><dd id=\"lost\">");
  add_value(b, jget(c, "rules_lost"));
  vd_buf_adds(b, "</dd></dl>\n<p><a href=\"/console/impact\">Back to the "
                 "Impact report</a></p>");
  page_end(a);
  yajl_tree_free(root);
}

/* GET /console/impact/report.{csv,html}: the last run's report, written
 * by core/report.c as `verdict replay --format csv|html` writes it. */
static void impact_download(const char *who, int html,
                            vd_console_answer_t *a) {
  vd_buf_t *file;
  uv_mutex_lock(&impact.lock);
  file = html ? &impact.html : &impact.csv;
  if (impact.state != IMPACT_DONE || impact.error.len || !file->len) {
    uv_mutex_unlock(&impact.lock);
    page_begin(a, 404, "Impact", who);
    vd_buf_adds(&a->body, "<p role=\"alert\" class=\"refused\">No "
                          "report to download: see <a href=\"/console/"
                          "impact\">the Impact page</a>.</p>");
    page_end(a);
    return;
  }
  vd_buf_add(&a->body, file->data, file->len);
  uv_mutex_unlock(&impact.lock);
  a->status = 200;
  a->type = html ? "text/html; charset=utf-8" : "text/csv; charset=utf-8";
  vd_buf_addf(&a->headers, "Content-Disposition: attachment; "
                           "filename=\"impact-report.%s\"\r\n",
              html ? "html" : "csv");
}

/* POST /console/impact/cancel: stop the run in progress, for the
 * credential that started it or one with the admin role.  The first POST
 * asks for a confirmation (a page with a second form); the run stops
 * only on the second, with confirm=yes. */
static void impact_cancel(const char *who, unsigned roles,
                          const vd_http_req_t *req, const char *csrf,
                          vd_console_answer_t *a) {
  const char *body = req->body.data ? req->body.data : "";
  const char *me = who[0] ? who : "loopback";
  char confirm[8] = "";
  vd_buf_t *b = &a->body;
  form_field(body, req->body.len, "confirm", confirm, sizeof confirm);
  uv_mutex_lock(&impact.lock);
  if (impact.state != IMPACT_RUNNING ||
      __atomic_load_n(&impact.cancel, __ATOMIC_RELAXED)) {
    page_begin(a, 409, "Impact", who);
    vd_buf_adds(b, "<p role=\"alert\" class=\"refused\" id=\"not-running\">"
                   "No replay is running (or it is stopping already): "
                   "see <a href=\"/console/impact\">the Impact page</a>."
                   "</p>");
  } else if (!(roles & VD_ROLE_ADMIN) && strcmp(me, impact.who) != 0) {
    page_begin(a, 403, "Refused", who);
    vd_buf_adds(b, "<p role=\"alert\" class=\"refused\">Only ");
    escs(b, impact.who);
    vd_buf_adds(b, ", who started this run, or a credential with the admin "
                   "role can cancel it.</p>");
  } else if (strcmp(confirm, "yes") != 0) {
    page_begin(a, 200, "Cancel the replay?", who);
    vd_buf_adds(b, "<p id=\"confirm-text\">Cancel the replay started by ");
    escs(b, impact.who);
    vd_buf_addf(b, " %lld s ago?  It has read ",
                (long long)((vd_now_ms() - impact.started_ms) / 1000));
    add_count(b, __atomic_load_n(&impact.progress, __ATOMIC_RELAXED));
    vd_buf_adds(b, " decisions; what it found so far is not kept.</p>"
                   "<form method=\"post\" action=\"/console/impact/cancel\">");
    csrf_input(b, csrf);
    vd_buf_adds(b, "<input type=\"hidden\" name=\"confirm\" value=\"yes\">"
                   "<button type=\"submit\" id=\"confirm\">Yes, cancel the "
                   "run</button> <a href=\"/console/impact\">No, back to "
                   "the run</a></form>\n");
  } else {
    snprintf(impact.cancelled_by, sizeof impact.cancelled_by, "%s", me);
    __atomic_store_n(&impact.cancel, 1, __ATOMIC_RELAXED);
    uv_mutex_unlock(&impact.lock);
    redirect(a, "/console/impact");
    return;
  }
  uv_mutex_unlock(&impact.lock);
  page_end(a);
}

/* ========================================================================
 * Revisions
 * ====================================================================== */

static const char *str_of(yajl_val o, const char *key) {
  const char *path[2];
  yajl_val v;
  path[0] = key;
  path[1] = NULL;
  v = yajl_tree_get(o, path, yajl_t_any);
  return v && YAJL_IS_STRING(v) ? YAJL_GET_STRING(v) : NULL;
}

static void revision_cell(vd_buf_t *b, const char *rev) {
  vd_buf_adds(b, "<td><a href=\"/console/decisions?revision=");
  pct(b, rev ? rev : "");
  vd_buf_adds(b, "\" title=\"its decisions\"><code>");
  escs(b, rev);
  vd_buf_adds(b, "</code></a></td>");
}

static void revisions_page(vd_daemon_t *d, const char *who,
                           vd_console_answer_t *a) {
  vd_buf_t json = VD_BUF_INIT, err = VD_BUF_INIT, *b = &a->body;
  static const char *acts[] = {"activations", NULL};
  static const char *revs[] = {"revisions", NULL};
  yajl_val root = NULL, list;
  char why[256];
  size_t i;
  vd_buf_addc(&json, '{');
  if (vd_history_revisions_json(d->opts.db, &json, &err) == 0) {
    vd_buf_adds(&json, "}");
    vd_buf_addc(&json, '\0');
    root = yajl_tree_parse(json.data, why, sizeof why);
  }
  if (!root) {
    page_begin(a, 500, "Revisions", who);
    vd_buf_adds(b, "<p role=\"alert\" class=\"refused\">The history could "
                   "not be read: ");
    esc(b, err.len ? err.data : why, err.len ? err.len : strlen(why));
    vd_buf_adds(b, "</p>");
    page_end(a);
    goto out;
  }
  page_begin(a, 200, "Revisions", who);
  vd_buf_adds(b, "<section><h2>Activations, newest first (the last "
                 "200)</h2><table class=\"data\" id=\"activations\"><thead>"
                 "<tr><th scope=\"col\">When</th>"
                 "<th scope=\"col\">Revision</th>"
                 "<th scope=\"col\">Why</th><th scope=\"col\">Who</th>"
                 "<th scope=\"col\">From</th>"
                 "<th scope=\"col\">Result</th></tr></thead><tbody>\n");
  list = yajl_tree_get(root, acts, yajl_t_array);
  for (i = 0; list && i < YAJL_GET_ARRAY(list)->len; i++) {
    yajl_val o = YAJL_GET_ARRAY(list)->values[i];
    const char *path[] = {"ok", NULL};
    yajl_val ok = yajl_tree_get(o, path, yajl_t_any);
    vd_buf_adds(b, "<tr><td>");
    escs(b, str_of(o, "at"));
    vd_buf_adds(b, "</td>");
    revision_cell(b, str_of(o, "revision"));
    vd_buf_adds(b, "<td>");
    escs(b, str_of(o, "trigger"));
    vd_buf_adds(b, "</td><td>");
    escs(b, str_of(o, "who"));
    vd_buf_adds(b, "</td><td>");
    escs(b, str_of(o, "source"));
    vd_buf_adds(b, "</td><td>");
    if (ok && YAJL_IS_TRUE(ok))
      vd_buf_adds(b, "activated");
    else {
      vd_buf_adds(b, "refused: ");
      escs(b, str_of(o, "error"));
    }
    vd_buf_adds(b, "</td></tr>\n");
  }
  vd_buf_adds(b, "</tbody></table></section>\n<section><h2>Stored "
                 "revisions, newest first</h2><table class=\"data\" "
                 "id=\"revisions\"><thead><tr>"
                 "<th scope=\"col\">Revision</th>"
                 "<th scope=\"col\">Stored (China time)</th>"
                 "<th scope=\"col\">Files</th><th scope=\"col\">Bytes</th>"
                 "</tr></thead><tbody>\n");
  list = yajl_tree_get(root, revs, yajl_t_array);
  for (i = 0; list && i < YAJL_GET_ARRAY(list)->len; i++) {
    yajl_val o = YAJL_GET_ARRAY(list)->values[i];
    const char *pf[] = {"files", NULL}, *pb[] = {"bytes", NULL};
    yajl_val nf = yajl_tree_get(o, pf, yajl_t_number);
    yajl_val nb = yajl_tree_get(o, pb, yajl_t_number);
    vd_buf_adds(b, "<tr>");
    revision_cell(b, str_of(o, "revision"));
    vd_buf_adds(b, "<td>");
    escs(b, str_of(o, "stored_at"));
    vd_buf_adds(b, "</td><td><a href=\"/console/revisions/files?"
                   "revision=");
    pct(b, str_of(o, "revision") ? str_of(o, "revision") : "");
    vd_buf_addf(b, "\" title=\"its files\">%lld</a></td><td>%lld</td>"
                   "</tr>\n",
                nf ? (long long)YAJL_GET_INTEGER(nf) : 0LL,
                nb ? (long long)YAJL_GET_INTEGER(nb) : 0LL);
  }
  vd_buf_adds(b, "</tbody></table></section>\n<section><h2>Compare two "
                 "revisions</h2><form method=\"get\" "
                 "action=\"/console/revisions/diff\" class=\"search\" "
                 "id=\"compare\"><div><label for=\"a\">Old (any name: "
                 "sha256 prefix, active, previous, @-N, a tag)</label>"
                 "<input id=\"a\" name=\"a\" value=\"previous\"></div>"
                 "<div><label for=\"b\">New</label><input id=\"b\" "
                 "name=\"b\" value=\"active\"></div><div><button "
                 "type=\"submit\">Compare</button></div></form>"
                 "</section>\n");
  page_end(a);
out:
  yajl_tree_free(root);
  vd_buf_release(&json);
  vd_buf_release(&err);
}

/* ------------------------------------------------------------------------
 * Two revisions side by side, and a revision's files
 * ---------------------------------------------------------------------- */

/* One side of a run of changed lines: [line, line+n) of the diff. */
typedef struct diff_run {
  const char *lines[256];
  size_t lens[256];
  size_t n;
} diff_run_t;

static void diff_cell(vd_buf_t *b, const char *cls, long no, const char *s,
                      size_t n) {
  if (s)
    vd_buf_addf(b, "<td class=\"no\">%ld</td><td class=\"%s\">", no, cls);
  else
    vd_buf_adds(b, "<td class=\"no\"></td><td class=\"none\">");
  if (s)
    esc(b, s, n);
  vd_buf_adds(b, "</td>");
}

/* The removed and added lines of a run, paired row by row. */
static void diff_flush(vd_buf_t *b, diff_run_t *del, diff_run_t *add,
                       long *la, long *lb) {
  size_t i, n = del->n > add->n ? del->n : add->n;
  for (i = 0; i < n; i++) {
    vd_buf_adds(b, "<tr>");
    diff_cell(b, "del", *la, i < del->n ? del->lines[i] : NULL,
              i < del->n ? del->lens[i] : 0);
    diff_cell(b, "add", *lb, i < add->n ? add->lines[i] : NULL,
              i < add->n ? add->lens[i] : 0);
    vd_buf_adds(b, "</tr>\n");
    *la += i < del->n;
    *lb += i < add->n;
  }
  del->n = add->n = 0;
}

/* The unified diff [s, s+n) (textdiff.h) as tables, a file each, old on
 * the left and new on the right. */
static void diff_side_by_side(vd_buf_t *b, const char *s, size_t n) {
  diff_run_t *del = calloc(1, sizeof *del), *add = calloc(1, sizeof *add);
  const char *end = s + n, *p = s;
  long la = 0, lb = 0;
  int open = 0;
  if (!del || !add)
    goto out;
  while (p < end) {
    const char *e = memchr(p, '\n', (size_t)(end - p));
    size_t len = e ? (size_t)(e - p) : (size_t)(end - p);
    if (len >= 4 && memcmp(p, "--- ", 4) == 0 && p + len + 4 < end &&
        memcmp(p + len + 1, "+++ ", 4) == 0) {
      const char *e2 = memchr(p + len + 1, '\n', (size_t)(end - p - len - 1));
      size_t len2 = e2 ? (size_t)(e2 - p - len - 1)
                       : (size_t)(end - p - len - 1);
      diff_flush(b, del, add, &la, &lb);
      if (open)
        vd_buf_adds(b, "</tbody></table>\n");
      vd_buf_adds(b, "<table class=\"diff\"><caption><code>");
      esc(b, p + 4, len - 4);
      vd_buf_adds(b, "</code> &rarr; <code>");
      esc(b, p + len + 5, len2 - 4);
      vd_buf_adds(b, "</code></caption><thead><tr><th scope=\"col\" "
                     "colspan=\"2\">Old</th><th scope=\"col\" "
                     "colspan=\"2\">New</th></tr></thead><tbody>\n");
      open = 1;
      p = e2 ? e2 + 1 : end;
      continue;
    }
    if (len >= 2 && memcmp(p, "@@", 2) == 0) {
      char hunk[128];
      long a0 = 0, b0 = 0;
      diff_flush(b, del, add, &la, &lb);
      snprintf(hunk, sizeof hunk, "%.*s", (int)(len < 127 ? len : 127), p);
      if (sscanf(hunk, "@@ -%ld", &a0) == 1) {
        const char *plus = strchr(hunk, '+');
        if (plus)
          b0 = strtol(plus + 1, NULL, 10);
      }
      la = a0;
      lb = b0;
      vd_buf_adds(b, "<tr class=\"hunk\"><td colspan=\"4\">");
      esc(b, p, len);
      vd_buf_adds(b, "</td></tr>\n");
    } else if (open && len >= 1 && (p[0] == '-' || p[0] == '+')) {
      diff_run_t *r = p[0] == '-' ? del : add;
      if (r->n == sizeof r->lines / sizeof r->lines[0])
        diff_flush(b, del, add, &la, &lb);
      r->lines[r->n] = p + 1;
      r->lens[r->n++] = len - 1;
    } else if (open && len >= 1 && p[0] == ' ') {
      diff_flush(b, del, add, &la, &lb);
      vd_buf_adds(b, "<tr>");
      diff_cell(b, "same", la++, p + 1, len - 1);
      diff_cell(b, "same", lb++, p + 1, len - 1);
      vd_buf_adds(b, "</tr>\n");
    } /* "\ No newline at end of file" and the like: not shown */
    p = e ? e + 1 : end;
  }
  diff_flush(b, del, add, &la, &lb);
  if (open)
    vd_buf_adds(b, "</tbody></table>\n");
out:
  free(del);
  free(add);
}

/* Revision NAME (any name the history gives one) resolved into rev and
 * its files read; 0, or an error page's sentence in err. */
static int revision_files(vd_daemon_t *d, const char *field, const char *name,
                          char rev[VD_REVISION_NAME_MAX],
                          vd_bundle_file_t **files, size_t *n, vd_buf_t *err) {
  char *msg = NULL;
  int rc = vd_history_resolve(d->opts.db, name, rev, &msg);
  if (rc == 0)
    rc = vd_history_load_revision(d->opts.db, rev, files, n, &msg);
  if (rc != 0)
    vd_buf_addf(err, "%s: '%s': %s", field, name,
                msg ? msg : "no such revision");
  free(msg);
  return rc;
}

/* GET /console/revisions/diff?a=A&b=B */
static void diff_page(vd_daemon_t *d, const char *who, const char *q,
                      size_t qn, vd_console_answer_t *a) {
  char na[128] = "previous", nb[128] = "active";
  char ra[VD_REVISION_NAME_MAX], rb[VD_REVISION_NAME_MAX];
  vd_bundle_file_t *fa = NULL, *fb = NULL;
  size_t ka = 0, kb = 0, i = 0, j = 0;
  vd_buf_t *b = &a->body, err = VD_BUF_INIT, diff = VD_BUF_INIT;
  if (form_field(q, qn, "a", na, sizeof na) < 0)
    vd_buf_adds(&err, "a: not a revision's name");
  if (form_field(q, qn, "b", nb, sizeof nb) < 0)
    vd_buf_adds(&err, "b: not a revision's name");
  if (!err.len && revision_files(d, "a", na, ra, &fa, &ka, &err) == 0)
    revision_files(d, "b", nb, rb, &fb, &kb, &err);
  page_begin(a, err.len ? 400 : 200, "Two revisions", who);
  vd_buf_adds(b, "<form method=\"get\" action=\"/console/revisions/diff\" "
                 "class=\"search\"><div><label for=\"a\">Old (any name: "
                 "sha256 prefix, active, previous, @-N, a tag)</label>"
                 "<input id=\"a\" name=\"a\" value=\"");
  escs(b, na);
  vd_buf_adds(b, "\"></div><div><label for=\"b\">New</label><input id=\"b\" "
                 "name=\"b\" value=\"");
  escs(b, nb);
  vd_buf_adds(b, "\"></div><div><button type=\"submit\">Compare</button>"
                 "</div></form>\n");
  if (err.len) {
    vd_buf_adds(b, "<p role=\"alert\" class=\"refused\">");
    esc(b, err.data, err.len);
    vd_buf_adds(b, "</p>");
    goto out;
  }
  /* both in path order: each path once, /dev/null for the side without */
  while (i < ka || j < kb) {
    int c = i >= ka ? 1 : j >= kb ? -1 : strcmp(fa[i].path, fb[j].path);
    vd_buf_t pa = VD_BUF_INIT, pb = VD_BUF_INIT;
    if (c <= 0)
      vd_buf_addf(&pa, "a/%s", fa[i].path);
    else
      vd_buf_adds(&pa, "/dev/null");
    if (c >= 0)
      vd_buf_addf(&pb, "b/%s", fb[j].path);
    else
      vd_buf_adds(&pb, "/dev/null");
    vd_buf_addc(&pa, '\0');
    vd_buf_addc(&pb, '\0');
    vd_text_diff(pa.data, c <= 0 ? fa[i].data : "", c <= 0 ? fa[i].len : 0,
                 pb.data, c >= 0 ? fb[j].data : "", c >= 0 ? fb[j].len : 0,
                 &diff);
    vd_buf_release(&pa);
    vd_buf_release(&pb);
    i += c <= 0;
    j += c >= 0;
  }
  vd_buf_adds(b, "<p>Old: <a href=\"/console/revisions/files?revision=");
  pct(b, ra);
  vd_buf_adds(b, "\"><code>");
  escs(b, ra);
  vd_buf_adds(b, "</code></a><br>New: <a href=\"/console/revisions/files?"
                 "revision=");
  pct(b, rb);
  vd_buf_adds(b, "\"><code>");
  escs(b, rb);
  vd_buf_adds(b, "</code></a></p>\n<section id=\"diff\">");
  if (!diff.len)
    vd_buf_adds(b, "<p id=\"same\">The two revisions' files are the "
                   "same.</p>");
  else
    diff_side_by_side(b, diff.data, diff.len);
  vd_buf_adds(b, "</section>");
out:
  page_end(a);
  vd_history_free_files(fa, ka);
  vd_history_free_files(fb, kb);
  vd_buf_release(&err);
  vd_buf_release(&diff);
}

/* GET /console/revisions/files?revision=R[&path=P] */
static void files_page(vd_daemon_t *d, const char *who, const char *q,
                       size_t qn, vd_console_answer_t *a) {
  char name[128], path[512], rev[VD_REVISION_NAME_MAX];
  vd_bundle_file_t *files = NULL;
  size_t n = 0, i;
  int has_path;
  vd_buf_t *b = &a->body, err = VD_BUF_INIT;
  if (form_field(q, qn, "revision", name, sizeof name) != 1)
    vd_buf_adds(&err, "revision: give a revision's name");
  has_path = form_field(q, qn, "path", path, sizeof path);
  if (has_path < 0)
    vd_buf_adds(&err, "path: not a file's path");
  if (!err.len)
    revision_files(d, "revision", name, rev, &files, &n, &err);
  if (!err.len && has_path == 1) {
    for (i = 0; i < n && strcmp(files[i].path, path) != 0; i++)
      ;
    if (i == n)
      vd_buf_addf(&err, "path: %s is not a file of %s", path, rev);
    else {
      page_begin(a, 200, "A revision's file", who);
      vd_buf_adds(b, "<p><code>");
      escs(b, path);
      vd_buf_adds(b, "</code> of <a href=\"/console/revisions/files?"
                     "revision=");
      pct(b, rev);
      vd_buf_adds(b, "\"><code>");
      escs(b, rev);
      vd_buf_adds(b, "</code></a></p><pre class=\"json\" id=\"file\" "
                     "tabindex=\"0\">");
      esc(b, files[i].data, files[i].len);
      vd_buf_adds(b, "</pre>");
      goto out;
    }
  }
  if (err.len) {
    page_begin(a, strstr(err.data, "not found") || strstr(err.data, "no "
               "such") ? 404 : 400, "A revision's files", who);
    vd_buf_adds(b, "<p role=\"alert\" class=\"refused\">");
    esc(b, err.data, err.len);
    vd_buf_adds(b, "</p>");
    goto out;
  }
  page_begin(a, 200, "A revision's files", who);
  vd_buf_adds(b, "<p>Revision <a href=\"/console/decisions?revision=");
  pct(b, rev);
  vd_buf_adds(b, "\" title=\"its decisions\"><code>");
  escs(b, rev);
  vd_buf_addf(b, "</code></a>: %zu files, each checked against its hash."
                 "</p><table class=\"data\" id=\"files\"><thead><tr>"
                 "<th scope=\"col\">File</th><th scope=\"col\">Bytes</th>"
                 "</tr></thead><tbody>\n", n);
  for (i = 0; i < n; i++) {
    vd_buf_adds(b, "<tr><td><a href=\"/console/revisions/files?revision=");
    pct(b, rev);
    vd_buf_adds(b, "&amp;path=");
    pct(b, files[i].path);
    vd_buf_adds(b, "\"><code>");
    escs(b, files[i].path);
    vd_buf_addf(b, "</code></a></td><td>%zu</td></tr>\n", files[i].len);
  }
  vd_buf_adds(b, "</tbody></table>");
out:
  page_end(a);
  vd_history_free_files(files, n);
  vd_buf_release(&err);
}

/* ========================================================================
 * Health
 * ====================================================================== */

/* The Health page's nodes: in a fleet (a PostgreSQL history,
 * docs/fleet.md) each node's row of node_status, read through
 * vd_history_fleet_status() (core/history_pg.c); on SQLite, one node. */
static void health_nodes(vd_daemon_t *d, int64_t now, vd_buf_t *b) {
  vd_buf_t json = VD_BUF_INIT, err = VD_BUF_INIT;
  yajl_val root = NULL;
  char why[256];
  size_t i;
  vd_buf_adds(b, "<section><h2>Nodes</h2>");
  if (!vd_history_is_postgres(d->opts.db)) {
    vd_buf_adds(b, "<p id=\"nodes\">One node: this verdictd, with a "
                   "SQLite history of its own (a fleet of nodes shares a "
                   "PostgreSQL history: docs/fleet.md).</p></section>\n");
    return;
  }
  if (vd_history_fleet_status(d->opts.db, &json, &err) != 0 ||
      (vd_buf_addc(&json, '\0'),
       !(root = yajl_tree_parse(json.data, why, sizeof why))) ||
      !YAJL_IS_ARRAY(root)) {
    vd_buf_adds(b, "<p role=\"alert\" class=\"refused\">The fleet's "
                   "node_status could not be read: ");
    if (err.len)
      esc(b, err.data, err.len);
    else
      escs(b, why);
    vd_buf_adds(b, "</p></section>\n");
    goto out;
  }
  vd_buf_addf(b, "<table class=\"data\" id=\"nodes\"><caption>%zu nodes "
                 "share this history (node_status)</caption><thead><tr>"
                 "<th scope=\"col\">Node</th><th scope=\"col\">Revision"
                 "</th><th scope=\"col\">Last activation (China time)</th>"
                 "<th scope=\"col\">Last error</th><th scope=\"col\">"
                 "Heartbeat (China time)</th><th scope=\"col\">Seconds "
                 "since</th><th scope=\"col\">Decisions</th></tr></thead>"
                 "<tbody>\n", YAJL_GET_ARRAY(root)->len);
  for (i = 0; i < YAJL_GET_ARRAY(root)->len; i++) {
    yajl_val n = YAJL_GET_ARRAY(root)->values[i], v;
    vd_buf_adds(b, "<tr><td data-key=\"node\">");
    add_value(b, jget(n, "node"));
    vd_buf_adds(b, "</td><td data-key=\"revision\"><code>");
    add_value(b, jget(n, "revision"));
    vd_buf_adds(b, "</code></td><td data-key=\"activated\">");
    v = jget(n, "activated_ms");
    if (v && YAJL_IS_INTEGER(v))
      add_time(b, YAJL_GET_INTEGER(v), CHINA_OFFSET_MIN);
    else
      vd_buf_adds(b, "-");
    vd_buf_adds(b, "</td><td data-key=\"last_error\">");
    add_value(b, jget(n, "last_error"));
    vd_buf_adds(b, "</td><td data-key=\"heartbeat\">");
    v = jget(n, "heartbeat_ms");
    if (v && YAJL_IS_INTEGER(v)) {
      add_time(b, YAJL_GET_INTEGER(v), CHINA_OFFSET_MIN);
      vd_buf_addf(b, "</td><td data-key=\"age\">%lld",
                  (long long)((now - YAJL_GET_INTEGER(v)) / 1000));
    } else
      vd_buf_adds(b, "-</td><td data-key=\"age\">-");
    vd_buf_adds(b, "</td><td data-key=\"decisions\">");
    add_value(b, jget(n, "decisions"));
    vd_buf_adds(b, "</td></tr>\n");
  }
  vd_buf_adds(b, "</tbody></table></section>\n");
out:
  yajl_tree_free(root);
  vd_buf_release(&json);
  vd_buf_release(&err);
}

static void health_page(vd_daemon_t *d, const char *who,
                        vd_console_answer_t *a) {
  vd_buf_t *b = &a->body, err = VD_BUF_INIT;
  int64_t now = vd_now_ms(), since, total[RATE_BUCKETS], errors[RATE_BUCKETS];
  int64_t up, activated;
  char rev[80] = "", by[32] = "", line[96];
  const char *check;
  uint64_t decided = 0;
  unsigned i;
  int rc;
  uv_mutex_lock(&d->state_lock);
  if (d->bundle)
    snprintf(rev, sizeof rev, "%s", vd_bundle_revision(d->bundle));
  snprintf(by, sizeof by, "%s", d->activated_by);
  activated = d->activated_ms;
  check = d->check_state ? d->check_state : "not run";
  uv_mutex_unlock(&d->state_lock);
  for (i = 0; i < d->nslots; i++) /* replaced workers' count too */
    decided += atomic_load(&d->workers[i].decisions);
  up = (now - d->started_ms) / 1000;

  page_begin(a, 200, "Health", who);
  vd_buf_adds(b, "<dl class=\"facts\">");
  dl_row(b, "Active revision", rev[0] ? rev : "(none)");
  vd_buf_adds(b, "<dt>Activated (China time)</dt><dd>");
  add_time(b, activated, CHINA_OFFSET_MIN);
  vd_buf_adds(b, " by ");
  escs(b, by);
  vd_buf_adds(b, "</dd>");
  snprintf(line, sizeof line, "%lldd %02lld:%02lld:%02lld",
           (long long)(up / 86400), (long long)(up / 3600 % 24),
           (long long)(up / 60 % 60), (long long)(up % 60));
  dl_row(b, "Uptime", line);
  snprintf(line, sizeof line, "%llu", (unsigned long long)decided);
  dl_row(b, "Decisions since start", line);
  dl_row(b, "History check (PRAGMA quick_check)", check);
  vd_buf_adds(b, "</dl>\n");
  health_nodes(d, now, b);

  since = (now / RATE_BUCKET_MS - (RATE_BUCKETS - 1)) * RATE_BUCKET_MS;
  rc = vd_history_rate(d->opts.db, since, RATE_BUCKET_MS, RATE_BUCKETS,
                       total, errors, &err);
  vd_buf_adds(b, "<section><h2 id=\"rate-title\">Decisions per second and "
                 "error rate, last five minutes</h2>");
  if (rc != 0) {
    vd_buf_adds(b, "<p role=\"alert\" class=\"refused\">");
    esc(b, err.data ? err.data : "", err.len);
    vd_buf_adds(b, "</p></section>");
    page_end(a);
    vd_buf_release(&err);
    return;
  }
  vd_buf_adds(b, "<canvas id=\"rate\" role=\"img\" "
                 "aria-labelledby=\"rate-title\" width=\"800\" "
                 "height=\"260\"></canvas>"
                 "<table class=\"data\" id=\"rate-table\"><thead><tr>"
                 "<th scope=\"col\">From (China time)</th>"
                 "<th scope=\"col\">Decisions per second</th>"
                 "<th scope=\"col\">Error rate (%)</th>"
                 "<th scope=\"col\">Decisions</th>"
                 "<th scope=\"col\">Errors</th></tr></thead><tbody>\n");
  for (i = 0; i < RATE_BUCKETS; i++) {
    vd_buf_adds(b, "<tr><td>");
    add_time(b, since + (int64_t)i * RATE_BUCKET_MS, CHINA_OFFSET_MIN);
    vd_buf_addf(b, "</td><td>%.1f</td><td>%.1f</td><td>%lld</td>"
                   "<td>%lld</td></tr>\n",
                (double)total[i] * 1000.0 / RATE_BUCKET_MS,
                total[i] ? 100.0 * (double)errors[i] / (double)total[i] : 0.0,
                (long long)total[i], (long long)errors[i]);
  }
  vd_buf_adds(b, "</tbody></table></section>\n");
  page_end(a);
  vd_buf_release(&err);
}

/* ========================================================================
 * Files
 * ====================================================================== */

static void asset(const char *name, vd_console_answer_t *a) {
  size_t i, n = strlen(name);
  for (i = 0; i < vd_console_nassets; i++) {
    if (strcmp(vd_console_assets[i].name, name) == 0) {
      a->status = 200;
      a->type = n > 4 && strcmp(name + n - 4, ".css") == 0
                    ? "text/css; charset=utf-8"
                    : "text/javascript; charset=utf-8";
      vd_buf_adds(&a->headers, "Cache-Control: max-age=300\r\n");
      vd_buf_add(&a->body, vd_console_assets[i].data,
                 vd_console_assets[i].len);
      return;
    }
  }
  a->status = 404;
  vd_buf_adds(&a->body, "no such file\n");
}

/* Debian's Chart.js (libjs-chart.js), read where Debian installs it. */
static void chart_js(vd_console_answer_t *a) {
  FILE *f = fopen(CHART_JS, "rb");
  char buf[65536];
  size_t n;
  if (!f) {
    a->status = 404;
    vd_buf_adds(&a->body, "// " CHART_JS " is missing: install Debian's "
                          "libjs-chart.js\n");
    a->type = "text/javascript; charset=utf-8";
    return;
  }
  while ((n = fread(buf, 1, sizeof buf, f)) > 0)
    vd_buf_add(&a->body, buf, n);
  fclose(f);
  a->status = 200;
  a->type = "text/javascript; charset=utf-8";
  vd_buf_adds(&a->headers, "Cache-Control: max-age=3600\r\n");
}

/* ========================================================================
 * Routing
 * ====================================================================== */

void vd_console_answer_release(vd_console_answer_t *a) {
  vd_buf_release(&a->headers);
  vd_buf_release(&a->body);
}

void vd_console_serve(vd_daemon_t *d, int loopback, int tls,
                      const vd_http_req_t *req, vd_console_answer_t *a) {
  const char *t = req->target.data ? req->target.data : "";
  size_t tn = req->target.len;
  const char *qm = memchr(t, '?', tn);
  size_t pn = qm ? (size_t)(qm - t) : tn;
  const char *q = qm ? qm + 1 : "";
  size_t qn = qm ? tn - pn - 1 : 0;
  const char *tok = NULL;
  size_t tokn = 0;
  char name[64], path[160], csrf[65];
  int configured;
  unsigned roles;

  vd_buf_init(&a->headers);
  vd_buf_init(&a->body);
  a->status = 200;
  a->type = "text/plain; charset=utf-8";
  if (pn >= sizeof path) {
    a->status = 404;
    vd_buf_adds(&a->body, "no such page\n");
    return;
  }
  memcpy(path, t, pn);
  path[pn] = '\0';

  /* what anyone may fetch: the files, the login form */
  if (strcmp(path, "/console/console.css") == 0 ||
      strcmp(path, "/console/console.js") == 0) {
    asset(path + 9, a);
    return;
  }
  if (strcmp(path, "/console/chart.js") == 0) {
    chart_js(a);
    return;
  }
  if (strcmp(path, "/console/login") == 0) {
    if (req->method == HTTP_POST)
      login(d, loopback, tls, req, a);
    else
      login_page(a, 200, NULL);
    return;
  }
  if (strcmp(path, "/console/logout") == 0 && req->method == HTTP_POST) {
    vd_buf_adds(&a->headers, "Set-Cookie: " COOKIE "=; Path=/console; "
                             "HttpOnly; SameSite=Strict; Max-Age=0\r\n");
    redirect(a, "/console/login");
    return;
  }

  request_token(req, &tok, &tokn);
  roles = roles_of(d, loopback, tok, tokn, name, sizeof name, &configured);
  if (!configured && !loopback) {
    page_begin(a, 403, "Refused", NULL);
    vd_buf_adds(&a->body, "<p role=\"alert\" class=\"refused\">This "
                          "listener has no credentials (verdictd --tokens) "
                          "and serves loopback clients only.</p>");
    page_end(a);
    return;
  }
  if (!roles) {
    login_page(a, 401, tok ? "That token is not known: log in again."
                           : "Log in with a token that has the audit role.");
    return;
  }
  if (!(roles & VD_ROLE_AUDIT)) {
    page_begin(a, 403, "Refused", name);
    vd_buf_adds(&a->body, "<p role=\"alert\" class=\"refused\">The "
                          "credential '");
    escs(&a->body, name);
    vd_buf_adds(&a->body, "' lacks the audit role: the console shows "
                          "recorded decisions to auditors only.</p>");
    page_end(a);
    return;
  }
  if (req->method == HTTP_POST && strncmp(path, "/console/decisions/", 19) == 0
      && pn > 26 && strcmp(path + pn - 7, "/replay") == 0) {
    char seg[sizeof path + 4], id[64];
    path[pn - 7] = '\0';
    snprintf(seg, sizeof seg, "id=%s", path + 19);
    if (strchr(path + 19, '/') ||
        form_field(seg, strlen(seg), "id", id, sizeof id) != 1) {
      a->status = 404;
      vd_buf_adds(&a->body, "no such decision\n");
      return;
    }
    if (!csrf_ok(req, tok, tokn)) {
      csrf_refused(a, name);
      return;
    }
    replay_decision_page(d, name, id, a);
    return;
  }
  if (strcmp(path, "/console/impact") == 0) {
    uv_once(&impact_once, impact_init);
    csrf_of(tok, tokn, csrf);
    if (req->method == HTTP_GET)
      impact_page(name, csrf, a);
    else if (req->method != HTTP_POST) {
      a->status = 405;
      vd_buf_adds(&a->headers, "Allow: GET, POST\r\n");
    } else if (!csrf_ok(req, tok, tokn))
      csrf_refused(a, name);
    else
      impact_start(d, name, req, a, csrf);
    return;
  }
  if (req->method == HTTP_GET &&
      strncmp(path, "/console/impact/decision/", 25) == 0 && path[25] &&
      !strchr(path + 25, '/')) {
    char seg[sizeof path + 4], id[64];
    snprintf(seg, sizeof seg, "id=%s", path + 25);
    uv_once(&impact_once, impact_init);
    if (form_field(seg, strlen(seg), "id", id, sizeof id) != 1) {
      a->status = 404;
      vd_buf_adds(&a->body, "no such decision\n");
      return;
    }
    impact_versions(name, id, a);
    return;
  }
  if (req->method == HTTP_GET &&
      (strcmp(path, "/console/impact/report.csv") == 0 ||
       strcmp(path, "/console/impact/report.html") == 0)) {
    uv_once(&impact_once, impact_init);
    impact_download(name, path[pn - 1] == 'l', a);
    return;
  }
  if (strcmp(path, "/console/impact/cancel") == 0) {
    uv_once(&impact_once, impact_init);
    csrf_of(tok, tokn, csrf);
    if (req->method != HTTP_POST) {
      a->status = 405;
      vd_buf_adds(&a->headers, "Allow: POST\r\n");
    } else if (!csrf_ok(req, tok, tokn))
      csrf_refused(a, name);
    else
      impact_cancel(name, roles, req, csrf, a);
    return;
  }
  if (req->method != HTTP_GET) {
    a->status = 405;
    vd_buf_adds(&a->headers, "Allow: GET\r\n");
    vd_buf_adds(&a->body, "the console's pages are read with GET\n");
    return;
  }
  if (strcmp(path, "/console") == 0 || strcmp(path, "/console/") == 0)
    redirect(a, "/console/decisions");
  else if (strcmp(path, "/console/decisions") == 0)
    decisions_page(d, name, q, qn, a);
  else if (strncmp(path, "/console/decisions/", 19) == 0 && path[19] &&
           !strchr(path + 19, '/')) {
    char seg[sizeof path + 4], id[64];
    /* the id, percent-decoded as a form field's value is */
    snprintf(seg, sizeof seg, "id=%s", path + 19);
    if (pn - 19 >= sizeof id ||
        form_field(seg, strlen(seg), "id", id, sizeof id) != 1) {
      a->status = 404;
      vd_buf_adds(&a->body, "no such decision\n");
      return;
    }
    csrf_of(tok, tokn, csrf);
    decision_page(d, name, id, csrf, a);
  } else if (strcmp(path, "/console/health") == 0)
    health_page(d, name, a);
  else if (strcmp(path, "/console/revisions") == 0)
    revisions_page(d, name, a);
  else if (strcmp(path, "/console/revisions/diff") == 0)
    diff_page(d, name, q, qn, a);
  else if (strcmp(path, "/console/revisions/files") == 0)
    files_page(d, name, q, qn, a);
  else {
    page_begin(a, 404, "No such page", name);
    vd_buf_adds(&a->body, "<p>Try <a href=\"/console/decisions\">the "
                          "decisions</a>.</p>");
    page_end(a);
  }
}
