/*
 * test_buf.c - unit tests for core/buf.c: growable byte buffers (growth,
 * appending and formatting, JSON string literals, UTF-8 checking, and the
 * init/reset/consume/detach/release life cycle that buf.h promises).
 *
 * Pure functions, except that running out of room is checked in a child
 * process (buf.h: it aborts).  Runs single-threaded.
 */
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "verdict/buf.h"

/* buf.h's invariant: empty and unallocated, or NUL-terminated in cap. */
static void assert_sound(const vd_buf_t *b) {
  if (!b->data) {
    assert_int_equal(b->len, 0);
    assert_int_equal(b->cap, 0);
    return;
  }
  assert_true(b->len < b->cap);
  assert_int_equal(b->data[b->len], '\0');
}

/* ------------------------------------------------------------------------
 * Life cycle
 * ------------------------------------------------------------------------ */

static void init_does_not_allocate(void **state) {
  vd_buf_t a = VD_BUF_INIT, b;
  (void)state;
  assert_null(a.data);
  assert_int_equal(a.len, 0);
  assert_int_equal(a.cap, 0);
  memset(&b, 0x5A, sizeof b);
  vd_buf_init(&b);
  assert_null(b.data);
  assert_int_equal(b.len, 0);
  assert_int_equal(b.cap, 0);
  /* releasing an empty buffer is fine, and leaves it empty */
  vd_buf_release(&b);
  assert_null(b.data);
  assert_sound(&b);
  /* so are reset and consume */
  vd_buf_reset(&a);
  vd_buf_consume(&a, 10);
  assert_null(a.data);
  assert_sound(&a);
}

static void release_leaves_init(void **state) {
  vd_buf_t b = VD_BUF_INIT;
  (void)state;
  vd_buf_adds(&b, "hello");
  assert_non_null(b.data);
  vd_buf_release(&b);
  assert_null(b.data);
  assert_int_equal(b.len, 0);
  assert_int_equal(b.cap, 0);
  /* and the buffer is usable again */
  vd_buf_adds(&b, "again");
  assert_string_equal(b.data, "again");
  assert_int_equal(b.len, 5);
  vd_buf_release(&b);
}

static void reset_keeps_allocation(void **state) {
  vd_buf_t b = VD_BUF_INIT;
  char *data;
  size_t cap;
  (void)state;
  vd_buf_adds(&b, "some text");
  data = b.data;
  cap = b.cap;
  vd_buf_reset(&b);
  assert_ptr_equal(b.data, data);
  assert_int_equal(b.cap, cap);
  assert_int_equal(b.len, 0);
  assert_string_equal(b.data, "");
  vd_buf_adds(&b, "xy");
  assert_ptr_equal(b.data, data);
  assert_string_equal(b.data, "xy");
  vd_buf_release(&b);
}

static void consume_front(void **state) {
  vd_buf_t b = VD_BUF_INIT;
  (void)state;
  vd_buf_adds(&b, "0123456789");
  vd_buf_consume(&b, 3);
  assert_string_equal(b.data, "3456789");
  assert_int_equal(b.len, 7);
  vd_buf_consume(&b, 0);
  assert_string_equal(b.data, "3456789");
  vd_buf_consume(&b, 7); /* all of it */
  assert_int_equal(b.len, 0);
  assert_string_equal(b.data, "");
  vd_buf_adds(&b, "abc");
  vd_buf_consume(&b, 100); /* more than there is */
  assert_int_equal(b.len, 0);
  assert_string_equal(b.data, "");
  assert_sound(&b);
  vd_buf_release(&b);
}

static void detach_hands_over(void **state) {
  vd_buf_t b = VD_BUF_INIT;
  size_t len = 99;
  char *p, *data;
  (void)state;
  vd_buf_add(&b, "ab\0cd", 5);
  data = b.data;
  p = vd_buf_detach(&b, &len);
  assert_ptr_equal(p, data);
  assert_int_equal(len, 5);
  assert_memory_equal(p, "ab\0cd", 6); /* with its NUL */
  assert_null(b.data);
  assert_int_equal(b.len, 0);
  assert_int_equal(b.cap, 0);
  free(p);
  /* an empty buffer still gives a string the caller can free */
  p = vd_buf_detach(&b, &len);
  assert_non_null(p);
  assert_int_equal(len, 0);
  assert_string_equal(p, "");
  free(p);
  /* the length is optional */
  vd_buf_adds(&b, "x");
  p = vd_buf_detach(&b, NULL);
  assert_string_equal(p, "x");
  free(p);
  assert_null(b.data);
}

/* ------------------------------------------------------------------------
 * Growth
 * ------------------------------------------------------------------------ */

static void growth_doubles(void **state) {
  vd_buf_t b = VD_BUF_INIT;
  size_t i, prev_cap = 0, grew = 0;
  (void)state;
  /* the first room asked for is 64 bytes, even for nothing */
  vd_buf_grow(&b, 0);
  assert_non_null(b.data);
  assert_int_equal(b.cap, 64);
  assert_int_equal(b.len, 0);
  /* growing within cap keeps the block */
  {
    char *data = b.data;
    vd_buf_grow(&b, 63);
    assert_ptr_equal(b.data, data);
    assert_int_equal(b.cap, 64);
  }
  /* byte by byte: cap doubles, always leaves room for the NUL */
  for (i = 0; i < 100000; i++) {
    vd_buf_addc(&b, (char)('a' + i % 26));
    assert_sound(&b);
    if (b.cap != prev_cap) {
      if (prev_cap)
        assert_int_equal(b.cap, prev_cap * 2);
      prev_cap = b.cap;
      grew++;
    }
  }
  assert_int_equal(b.len, 100000);
  assert_int_equal(b.cap, 131072);
  assert_int_equal(grew, 12); /* 64 .. 131072 */
  for (i = 0; i < 100000; i++)
    if (b.data[i] != (char)('a' + i % 26))
      fail_msg("byte %zu is '%c'", i, b.data[i]);
  vd_buf_release(&b);
  /* one large request: the next power-of-two multiple of 64 that fits */
  vd_buf_grow(&b, 1000);
  assert_int_equal(b.cap, 1024);
  vd_buf_grow(&b, 1024); /* 1025 with the NUL */
  assert_int_equal(b.cap, 2048);
  vd_buf_release(&b);
}

static void add_appends(void **state) {
  vd_buf_t b = VD_BUF_INIT;
  (void)state;
  vd_buf_add(&b, "", 0); /* nothing added, but now a C string */
  assert_non_null(b.data);
  assert_string_equal(b.data, "");
  vd_buf_add(&b, "abc", 2);
  vd_buf_adds(&b, "-");
  vd_buf_addc(&b, 'z');
  vd_buf_add(&b, "\0\1", 2); /* bytes, not only text */
  assert_int_equal(b.len, 6);
  assert_memory_equal(b.data, "ab-z\0\1", 7);
  assert_sound(&b);
  vd_buf_release(&b);
  /* every length to 40 (a short one is copied inline in pieces that
   * overlap), after every prefix to 9 bytes, a length not known where it
   * is called: each byte once, in place, nothing after it touched */
  {
    /* the prefix from an array longer than any copy of it (GCC at -O1
     * could not bound pre, and warned of the literal's 11 bytes) */
    static const char digits[48] = "0123456789";
    char src[48], want[64];
    size_t n, pre, i;
    volatile size_t vn; /* not a constant the compiler could fold */
    for (i = 0; i < sizeof src; i++)
      src[i] = (char)('A' + i);
    for (pre = 0; pre <= 9; pre++)
      for (n = 0; n <= 40; n++) {
        vd_buf_t c = VD_BUF_INIT;
        vd_buf_grow(&c, 60);
        memset(c.data, '#', c.cap);
        vd_buf_add(&c, digits, pre);
        vn = n;
        vd_buf_add(&c, src + 1, vn);
        memcpy(want, "0123456789", pre);
        memcpy(want + pre, src + 1, n);
        want[pre + n] = '\0';
        assert_int_equal(c.len, pre + n);
        assert_memory_equal(c.data, want, pre + n + 1);
        for (i = pre + n + 1; i < c.cap; i++)
          assert_int_equal(c.data[i], '#');
        vd_buf_release(&c);
      }
  }
}

/* A request so large that len + extra + 1 wraps around aborts (buf.h:
 * running out of memory aborts); checked in a child, which must die of
 * SIGABRT and say why on stderr. */
static void growth_overflow_aborts(void **state) {
  int fds[2], status;
  char msg[256] = "";
  ssize_t n;
  pid_t pid;
  (void)state;
  assert_int_equal(pipe(fds), 0);
  pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    vd_buf_t b = VD_BUF_INIT;
    dup2(fds[1], 2);
    close(fds[0]);
    vd_buf_adds(&b, "x");
    vd_buf_grow(&b, SIZE_MAX);
    _exit(0); /* not reached */
  }
  close(fds[1]);
  n = read(fds[0], msg, sizeof msg - 1);
  close(fds[0]);
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFSIGNALED(status));
  assert_int_equal(WTERMSIG(status), SIGABRT);
  assert_true(n > 0);
  msg[n > 0 ? n : 0] = '\0';
  assert_non_null(strstr(msg, "verdict: out of memory growing a buffer"));
}

/* ------------------------------------------------------------------------
 * Formatting
 * ------------------------------------------------------------------------ */

static void add_int(void **state) {
  static const struct {
    long long v;
    const char *text;
  } cases[] = {{0, "0"},
               {7, "7"},
               {-7, "-7"},
               {10, "10"},
               {1234567890123LL, "1234567890123"},
               {-1000000, "-1000000"},
               {LLONG_MAX, "9223372036854775807"},
               {LLONG_MIN, "-9223372036854775808"}};
  vd_buf_t b = VD_BUF_INIT;
  size_t i;
  (void)state;
  for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    vd_buf_reset(&b);
    vd_buf_add_int(&b, cases[i].v);
    assert_string_equal(b.data, cases[i].text);
    assert_int_equal(b.len, strlen(cases[i].text));
  }
  /* appends after what is there */
  vd_buf_reset(&b);
  vd_buf_adds(&b, "n=");
  vd_buf_add_int(&b, -42);
  assert_string_equal(b.data, "n=-42");
  /* every number of digits, each pair of digits and both ends of a run
   * of two-digit steps, as printf writes them */
  {
    long long p = 1;
    int k, d;
    char want[32];
    for (k = 0; k < 19; k++, p = k < 19 ? p * 10 : p) /* 10^18 the last */
      for (d = -101; d <= 101; d++) {
        long long v = p + d, s;
        for (s = -1; s <= 1; s += 2) {
          vd_buf_reset(&b);
          vd_buf_adds(&b, "x");
          vd_buf_add_int(&b, s * v);
          snprintf(want, sizeof want, "x%lld", s * v);
          assert_string_equal(b.data, want);
          assert_int_equal(b.len, strlen(want));
        }
      }
  }
  vd_buf_release(&b);
}

static void addf_formats(void **state) {
  vd_buf_t b = VD_BUF_INIT;
  char big[3000];
  size_t cap;
  (void)state;
  vd_buf_addf(&b, "%s=%d", "a", 1);
  assert_string_equal(b.data, "a=1");
  vd_buf_addf(&b, ",%05.1f,%x,%.*s,%%", 3.14159, 255, 2, "xyz");
  assert_string_equal(b.data, "a=1,003.1,ff,xy,%");
  assert_int_equal(b.len, strlen("a=1,003.1,ff,xy,%"));
  vd_buf_addf(&b, "%s", ""); /* nothing */
  assert_int_equal(b.len, strlen("a=1,003.1,ff,xy,%"));
  /* output longer than the room left: formatted again after growing */
  memset(big, 'q', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  vd_buf_reset(&b);
  vd_buf_adds(&b, "<");
  vd_buf_addf(&b, "%s|%d>", big, 12345);
  assert_int_equal(b.len, 1 + 2999 + 7);
  assert_int_equal(b.data[0], '<');
  assert_int_equal(b.data[1], 'q');
  assert_int_equal(b.data[2999], 'q');
  assert_string_equal(b.data + 3000, "|12345>");
  assert_sound(&b);
  /* output that exactly fills the room left: no second pass needed, and
   * still NUL-terminated */
  vd_buf_release(&b);
  vd_buf_grow(&b, 64); /* what vd_buf_vaddf asks for first */
  cap = b.cap;
  vd_buf_addf(&b, "%.*s", (int)(cap - 1), big);
  assert_int_equal(b.len, cap - 1);
  assert_int_equal(b.cap, cap);
  assert_sound(&b);
  vd_buf_addf(&b, "%c", 'r'); /* one more: grows */
  assert_int_equal(b.len, cap);
  assert_true(b.cap > cap);
  assert_int_equal(b.data[cap - 1], 'r');
  assert_sound(&b);
  vd_buf_release(&b);
}

/* ------------------------------------------------------------------------
 * JSON strings
 * ------------------------------------------------------------------------ */

/* Encode S (N bytes) as a JSON string; compare with WANT and the count of
 * bytes replaced with BAD. */
static void json_is(const char *s, size_t n, const char *want, size_t bad) {
  vd_buf_t b = VD_BUF_INIT;
  size_t got = vd_buf_add_json_str(&b, s, n);
  if (strcmp(b.data, want) != 0)
    fail_msg("encoded as %s, wanted %s", b.data, want);
  assert_int_equal(b.len, strlen(want));
  assert_int_equal(got, bad);
  vd_buf_release(&b);
}
#define JSON_IS(lit, want, bad) json_is(lit, sizeof lit - 1, want, bad)

static void json_plain_and_escapes(void **state) {
  (void)state;
  JSON_IS("", "\"\"", 0);
  JSON_IS("plain text", "\"plain text\"", 0);
  JSON_IS("say \"hi\"", "\"say \\\"hi\\\"\"", 0);
  JSON_IS("a\\b", "\"a\\\\b\"", 0);
  JSON_IS("/", "\"/\"", 0); /* the solidus is left alone */
  JSON_IS("\n\r\t", "\"\\n\\r\\t\"", 0);
  /* the other control bytes as \u00XX, lowercase hex; DEL is not one */
  JSON_IS("\x01\x08\x0c\x1f\x7f", "\"\\u0001\\u0008\\u000c\\u001f\x7f\"", 0);
  JSON_IS("nul\0inside", "\"nul\\u0000inside\"", 0);
  /* appends after what the buffer holds */
  {
    vd_buf_t b = VD_BUF_INIT;
    vd_buf_adds(&b, "{\"k\":");
    vd_buf_add_json_str(&b, "v", 1);
    vd_buf_addc(&b, '}');
    assert_string_equal(b.data, "{\"k\":\"v\"}");
    vd_buf_release(&b);
  }
}

static void json_every_control_byte(void **state) {
  vd_buf_t b = VD_BUF_INIT;
  char want[16];
  int c;
  (void)state;
  for (c = 0; c < 0x20; c++) {
    char in = (char)c;
    vd_buf_reset(&b);
    vd_buf_add_json_str(&b, &in, 1);
    if (c == '\n')
      snprintf(want, sizeof want, "\"\\n\"");
    else if (c == '\r')
      snprintf(want, sizeof want, "\"\\r\"");
    else if (c == '\t')
      snprintf(want, sizeof want, "\"\\t\"");
    else
      snprintf(want, sizeof want, "\"\\u%04x\"", c);
    assert_string_equal(b.data, want);
  }
  vd_buf_release(&b);
}

static void json_utf8(void **state) {
  (void)state;
  /* valid UTF-8 passes through untouched: 2, 3 and 4-byte forms */
  JSON_IS("caf\xc3\xa9", "\"caf\xc3\xa9\"", 0);
  JSON_IS("\xe4\xb8\xad\xe6\x96\x87", "\"\xe4\xb8\xad\xe6\x96\x87\"", 0);
  JSON_IS("\xf0\x9f\x98\x80!", "\"\xf0\x9f\x98\x80!\"", 0);
  JSON_IS("\xef\xbf\xbf\xf4\x8f\xbf\xbf", "\"\xef\xbf\xbf\xf4\x8f\xbf\xbf\"", 0);
  /* every byte that does not start a valid sequence becomes U+FFFD, one
   * replacement per byte, and is counted */
  JSON_IS("a\x80z", "\"a\xef\xbf\xbdz\"", 1);              /* stray continuation */
  JSON_IS("\xff", "\"\xef\xbf\xbd\"", 1);                  /* never valid */
  JSON_IS("\xc0\x80", "\"\xef\xbf\xbd\xef\xbf\xbd\"", 2);  /* overlong NUL */
  JSON_IS("\xe0\x80\xaf",                                  /* overlong '/' */
          "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"", 3);
  JSON_IS("\xed\xa0\x80",                                  /* surrogate */
          "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"", 3);
  JSON_IS("\xf4\x90\x80\x80",                              /* > U+10FFFF */
          "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"", 4);
  JSON_IS("\xe4\xb8", "\"\xef\xbf\xbd\xef\xbf\xbd\"", 2);  /* cut short */
  JSON_IS("\xc3(", "\"\xef\xbf\xbd(\"", 1);                /* bad follower */
  /* a bad byte next to a good sequence leaves the good one alone */
  JSON_IS("\xc3\xa9\xa9\xc3\xa9", "\"\xc3\xa9\xef\xbf\xbd\xc3\xa9\"", 1);
  /* a replaced byte before an escape */
  JSON_IS("\xfe\"", "\"\xef\xbf\xbd\\\"\"", 1);
}

/* The encoder skips plain ASCII sixteen bytes at a time (SSE2) or eight,
 * and reads a tail shorter than that as the string's last sixteen or
 * eight bytes: put each kind of byte that needs care at every offset of
 * strings of every length to 45, so that it falls in every position of a
 * block and of every tail. */
static void json_every_offset(void **state) {
  static const struct {
    const char *in;  /* one byte or sequence */
    const char *out; /* its encoding */
    size_t bad;
  } kinds[] = {{"\"", "\\\"", 0},       {"\\", "\\\\", 0},
               {"\n", "\\n", 0},        {"\x01", "\\u0001", 0},
               {"\x1f", "\\u001f", 0},  {"\xc3\xa9", "\xc3\xa9", 0},
               {"\xff", "\xef\xbf\xbd", 1}, {"\x80", "\xef\xbf\xbd", 1},
               {" ", " ", 0},           {"\x7f", "\x7f", 0}};
  vd_buf_t in = VD_BUF_INIT, want = VD_BUF_INIT, got = VD_BUF_INIT;
  size_t k, off, len;
  (void)state;
  for (k = 0; k < sizeof kinds / sizeof kinds[0]; k++)
    for (len = 0; len <= 44; len++)
    for (off = 0; off <= len; off++) {
      vd_buf_reset(&in);
      vd_buf_reset(&want);
      vd_buf_reset(&got);
      vd_buf_add(&in, "abcdefghijklmnopqrstuvwxyzA0123456789+-*/=!?", off);
      vd_buf_adds(&in, kinds[k].in);
      vd_buf_add(&in, "ABCDEFGHIJKLMNOPQRSTUVWXYZa9876543210~|;.,&#", len - off);
      vd_buf_addc(&want, '"');
      vd_buf_add(&want, "abcdefghijklmnopqrstuvwxyzA0123456789+-*/=!?", off);
      vd_buf_adds(&want, kinds[k].out);
      vd_buf_add(&want, "ABCDEFGHIJKLMNOPQRSTUVWXYZa9876543210~|;.,&#", len - off);
      vd_buf_addc(&want, '"');
      assert_int_equal(vd_buf_add_json_str(&got, in.data, in.len),
                       kinds[k].bad);
      if (strcmp(got.data, want.data) != 0)
        fail_msg("kind %zu at offset %zu of %zu: %s, wanted %s", k, off,
                 len, got.data, want.data);
    }
  vd_buf_release(&in);
  vd_buf_release(&want);
  vd_buf_release(&got);
}

static void utf8_valid(void **state) {
  static const char *const good[] = {
      "", "ascii", "caf\xc3\xa9", "\xdf\xbf", "\xe0\xa0\x80", "\xed\x9f\xbf",
      "\xee\x80\x80", "\xef\xbf\xbf", "\xf0\x90\x80\x80", "\xf4\x8f\xbf\xbf"};
  static const char *const bad[] = {
      "\x80", "\xbf", "\xc0\x80", "\xc1\xbf", "\xe0\x9f\xbf", "\xed\xa0\x80",
      "\xed\xbf\xbf", "\xf0\x8f\xbf\xbf", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80",
      "\xff", "\xc3", "\xe4\xb8", "\xf0\x9f\x98", "\xc3(", "ok\xe4\xb8"};
  size_t i;
  (void)state;
  for (i = 0; i < sizeof good / sizeof good[0]; i++)
    if (!vd_utf8_valid(good[i], strlen(good[i])))
      fail_msg("good[%zu] refused", i);
  for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (vd_utf8_valid(bad[i], strlen(bad[i])))
      fail_msg("bad[%zu] accepted", i);
  /* n bounds the check: a sequence cut by n is invalid, bytes past n are
   * not looked at */
  assert_false(vd_utf8_valid("\xc3\xa9", 1));
  assert_true(vd_utf8_valid("a\xff", 1));
  /* NUL is a valid character */
  assert_true(vd_utf8_valid("a\0b", 3));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(init_does_not_allocate),
      cmocka_unit_test(release_leaves_init),
      cmocka_unit_test(reset_keeps_allocation),
      cmocka_unit_test(consume_front),
      cmocka_unit_test(detach_hands_over),
      cmocka_unit_test(growth_doubles),
      cmocka_unit_test(add_appends),
      cmocka_unit_test(growth_overflow_aborts),
      cmocka_unit_test(add_int),
      cmocka_unit_test(addf_formats),
      cmocka_unit_test(json_plain_and_escapes),
      cmocka_unit_test(json_every_control_byte),
      cmocka_unit_test(json_utf8),
      cmocka_unit_test(json_every_offset),
      cmocka_unit_test(utf8_valid),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
