/*
 * openapi.c - JSON Schemas of the decision kinds' inputs and the OpenAPI
 * 3.1 document of the HTTP API, generated from the loaded policies (see
 * include/verdict/openapi.h for what each lib/schema.lua spec becomes).
 *
 * Owns nothing past a call.  The walk reads the engine's policy tables
 * (vd_engine_push_policy) under lua_pcall in the engine's sandbox and only
 * reads: every Lua value it holds stays on the Lua stack, and the only C
 * memory it writes is the caller's buffers and the scratch buffer of the
 * call's context, which the caller releases, so an error raised mid-walk
 * leaks nothing.  Output is compact JSON with object members in a fixed
 * order (field names bytewise), so the same bundle always gives the same
 * bytes.
 *
 * The fixed parts of the document are written as JSON with ' for " (see
 * addj()), to keep them readable here.
 *
 * Runs on the thread that owns the engine.
 */
#include <string.h>

#include <lauxlib.h>

#include "verdict/error.h"
#include "verdict/openapi.h"
#include "verdict/sandbox.h"

/* RFC 3339 with Z or an offset, as lib/time.lua's T.parse reads it. */
#define TIME_PATTERN                                                         \
  "^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\\\\.[0-9]+)?"   \
  "([Zz]|[+-][0-9]{2}:[0-9]{2})$"

#define JSON_SCHEMA_DIALECT "https://json-schema.org/draft/2020-12/schema"

typedef struct oa_ctx {
  vd_engine_t *e;
  vd_buf_t *out;
  const char *kind;    /* input_schema_k */
  const char *region;
  vd_buf_t scratch;    /* document_k: one schema at a time */
  vd_buf_t national;   /*   and its kind's national one */
  char where[VD_PATH_MAX]; /* the policy file being read, for errors */
} oa_ctx_t;

/* Append S with every ' turned into ": the fixed JSON below. */
static void addj(vd_buf_t *out, const char *s) {
  size_t start = out->len;
  char *p;
  vd_buf_adds(out, s);
  for (p = out->data + start; *p; p++)
    if (*p == '\'')
      *p = '"';
}

static void add_str(vd_buf_t *out, const char *s) {
  vd_buf_add_json_str(out, s, strlen(s));
}

/* ,"NAME": -- or without the comma for an object's first member. */
static void member(vd_buf_t *out, int *first, const char *name) {
  if (!*first)
    vd_buf_addc(out, ',');
  *first = 0;
  add_str(out, name);
  vd_buf_addc(out, ':');
}

/* ------------------------------------------------------------------------
 * Input schemas, from the specs lib/schema.lua builds
 * ------------------------------------------------------------------------ */

/* The scalar at idx as JSON; 0 if it is not one (a table, a function). */
static int add_scalar(lua_State *L, int idx, vd_buf_t *out) {
  switch (lua_type(L, idx)) {
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    vd_buf_add_json_str(out, s, n);
    return 1;
  }
  case LUA_TBOOLEAN:
    vd_buf_adds(out, lua_toboolean(L, idx) ? "true" : "false");
    return 1;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx))
      vd_buf_add_int(out, (long long)lua_tointeger(L, idx));
    else
      vd_buf_addf(out, "%.17g", (double)lua_tonumber(L, idx));
    return 1;
  default:
    return 0;
  }
}

/* "type": T, or [T, "null"] when the value may be null (absent). */
static void add_type(vd_buf_t *out, int *first, const char *t, int nullable) {
  member(out, first, "type");
  if (nullable)
    vd_buf_addf(out, "[\"%s\",\"null\"]", t);
  else
    vd_buf_addf(out, "\"%s\"", t);
}

/* Set in the sense of lib/schema.lua's is_set: not nil, false, 0 or "". */
static int is_set(lua_State *L, int idx) {
  switch (lua_type(L, idx)) {
  case LUA_TNIL: return 0;
  case LUA_TBOOLEAN: return lua_toboolean(L, idx);
  case LUA_TNUMBER: return lua_tonumber(L, idx) != 0;
  case LUA_TSTRING: return lua_rawlen(L, idx) != 0;
  default: return 1;
  }
}

static void object_schema(lua_State *L, int fields, int nullable,
                          const char *doc, vd_buf_t *out);

/* "default": the spec's default, when it has one JSON can say: a scalar,
 * or an empty table ([] for a set or list, {} for an object or map). */
static void add_default(lua_State *L, int sp, const char *type, int *first,
                        vd_buf_t *out) {
  int t = lua_getfield(L, sp, "default");
  if (t == LUA_TSTRING || t == LUA_TBOOLEAN || t == LUA_TNUMBER) {
    member(out, first, "default");
    add_scalar(L, -1, out);
  } else if (t == LUA_TTABLE) {
    lua_pushnil(L);
    if (lua_next(L, -2)) {
      lua_pop(L, 2); /* not empty: left to the description */
    } else {
      member(out, first, "default");
      vd_buf_adds(out, strcmp(type, "set") == 0 || strcmp(type, "list") == 0
                           ? "[]" : "{}");
    }
  }
  lua_pop(L, 1);
}

/* The schema of the spec at idx.  NULLABLE: the field is optional, and
 * JSON null counts as absent. */
static void spec_schema(lua_State *L, int sp, int nullable, vd_buf_t *out) {
  int top = lua_gettop(L), first = 1;
  const char *type, *doc;
  sp = lua_absindex(L, sp);
  if (!lua_istable(L, sp))
    luaL_error(L, "a field spec is a %s, not a table", luaL_typename(L, sp));
  lua_getfield(L, sp, "type");
  type = lua_tostring(L, -1);
  lua_getfield(L, sp, "doc");
  doc = lua_tostring(L, -1);
  if (!type)
    luaL_error(L, "a field spec without a type");
  if (strcmp(type, "object") == 0) {
    lua_getfield(L, sp, "fields");
    object_schema(L, lua_gettop(L), nullable, doc, out);
    lua_settop(L, top);
    return;
  }
  vd_buf_addc(out, '{');
  if (strcmp(type, "string") == 0) {
    lua_Integer max;
    lua_getfield(L, sp, "max_len");
    max = lua_tointeger(L, -1);
    add_type(out, &first, "string", nullable);
    member(out, &first, "minLength");
    vd_buf_adds(out, "1");
    member(out, &first, "maxLength");
    vd_buf_add_int(out, (long long)max);
    /* the policy counts bytes, JSON Schema characters: say so */
    doc = doc ? lua_pushfstring(L, "%s; at most %I bytes of UTF-8", doc, max)
              : lua_pushfstring(L, "at most %I bytes of UTF-8", max);
  } else if (strcmp(type, "integer") == 0) {
    add_type(out, &first, "integer", nullable);
    if (lua_getfield(L, sp, "min") == LUA_TNUMBER) {
      member(out, &first, "minimum");
      add_scalar(L, -1, out);
    }
    if (lua_getfield(L, sp, "max") == LUA_TNUMBER) {
      member(out, &first, "maximum");
      add_scalar(L, -1, out);
    }
  } else if (strcmp(type, "boolean") == 0) {
    add_type(out, &first, "boolean", nullable);
  } else if (strcmp(type, "enum") == 0) {
    lua_Integer i, n;
    lua_getfield(L, sp, "values");
    if (!lua_istable(L, -1))
      luaL_error(L, "an enum spec without values");
    n = (lua_Integer)luaL_len(L, -1);
    member(out, &first, "enum");
    vd_buf_addc(out, '[');
    for (i = 1; i <= n; i++) {
      lua_geti(L, -1, i);
      if (i > 1)
        vd_buf_addc(out, ',');
      if (!add_scalar(L, -1, out))
        luaL_error(L, "an enum value is a %s", luaL_typename(L, -1));
      lua_pop(L, 1);
    }
    vd_buf_adds(out, nullable ? ",null]" : "]");
  } else if (strcmp(type, "time") == 0) {
    add_type(out, &first, "string", nullable);
    member(out, &first, "format");
    vd_buf_adds(out, "\"date-time\"");
    member(out, &first, "pattern");
    vd_buf_adds(out, "\"" TIME_PATTERN "\"");
  } else if (strcmp(type, "set") == 0 || strcmp(type, "list") == 0) {
    add_type(out, &first, "array", nullable);
    member(out, &first, "items");
    lua_getfield(L, sp, "of");
    spec_schema(L, -1, 0, out);
    lua_pop(L, 1);
    if (type[0] == 'l' && lua_getfield(L, sp, "max") == LUA_TNUMBER) {
      member(out, &first, "maxItems");
      add_scalar(L, -1, out);
    }
  } else if (strcmp(type, "map") == 0) {
    add_type(out, &first, "object", nullable);
    member(out, &first, "additionalProperties");
    lua_getfield(L, sp, "values");
    spec_schema(L, -1, 1, out); /* a null value is skipped */
  } else {
    luaL_error(L, "a field spec of unknown type '%s'", type);
  }
  if (doc) {
    member(out, &first, "description");
    add_str(out, doc);
  }
  add_default(L, sp, type, &first, out);
  vd_buf_addc(out, '}');
  lua_settop(L, top);
}

/* "if" of a `requires`: field NAME (spec at sp) is set once defaults are
 * filled in -- present with a set value, or absent (or null) with a set
 * default. */
static void add_requires_if(lua_State *L, int sp, const char *name,
                            vd_buf_t *out) {
  int set_default;
  lua_getfield(L, sp, "default");
  set_default = is_set(L, -1);
  lua_pop(L, 1);
  if (set_default) {
    addj(out, "{'not':{'required':[");
    add_str(out, name);
    addj(out, "],'properties':{");
    add_str(out, name);
    addj(out, ":{'enum':[false,0,'']}}}}");
  } else {
    addj(out, "{'required':[");
    add_str(out, name);
    addj(out, "],'properties':{");
    add_str(out, name);
    addj(out, ":{'not':{'enum':[false,0,'',null]}}}}");
  }
}

/* An object of the fields table at idx (absent: no fields). */
static void object_schema(lua_State *L, int fields, int nullable,
                          const char *doc, vd_buf_t *out) {
  int top = lua_gettop(L), first = 1, any;
  lua_Integer i, n;
  fields = lua_absindex(L, fields);
  vd_buf_addc(out, '{');
  add_type(out, &first, "object", nullable);
  if (doc) {
    member(out, &first, "description");
    add_str(out, doc);
  }
  if (!lua_istable(L, fields)) {
    vd_buf_adds(out, ",\"additionalProperties\":false}");
    lua_settop(L, top);
    return;
  }
  vd_sandbox_push_sorted_keys(L, fields);
  n = (lua_Integer)lua_rawlen(L, -1);
  member(out, &first, "properties");
  vd_buf_addc(out, '{');
  for (i = 1; i <= n; i++) {
    int req;
    lua_rawgeti(L, top + 1, i);
    lua_pushvalue(L, -1);
    lua_gettable(L, fields);
    if (!lua_istable(L, -1))
      luaL_error(L, "input field '%s' is a %s, not a spec made by "
                    "lib/schema.lua", lua_tostring(L, -2),
                 luaL_typename(L, -1));
    lua_getfield(L, -1, "required");
    req = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (i > 1)
      vd_buf_addc(out, ',');
    add_str(out, lua_tostring(L, -2));
    vd_buf_addc(out, ':');
    spec_schema(L, -1, !req, out);
    lua_pop(L, 2);
  }
  vd_buf_addc(out, '}');
  /* required, in name order */
  for (any = 0, i = 1; i <= n; i++) {
    lua_rawgeti(L, top + 1, i);
    lua_pushvalue(L, -1);
    lua_gettable(L, fields);
    lua_getfield(L, -1, "required");
    if (lua_toboolean(L, -1)) {
      if (!any)
        member(out, &first, "required");
      vd_buf_addc(out, any++ ? ',' : '[');
      add_str(out, lua_tostring(L, -3));
    }
    lua_pop(L, 3);
  }
  if (any)
    vd_buf_addc(out, ']');
  member(out, &first, "additionalProperties");
  vd_buf_adds(out, "false");
  /* requires: if this one is set, those are present and not null */
  for (any = 0, i = 1; i <= n; i++) {
    lua_Integer j, m;
    const char *name;
    lua_rawgeti(L, top + 1, i);
    name = lua_tostring(L, -1);
    lua_pushvalue(L, -1);
    lua_gettable(L, fields);
    if (lua_getfield(L, -1, "requires") != LUA_TTABLE) {
      lua_pop(L, 3);
      continue;
    }
    if (!any)
      member(out, &first, "allOf");
    vd_buf_addc(out, any++ ? ',' : '[');
    addj(out, "{'if':");
    add_requires_if(L, top + 3, name, out);
    addj(out, ",'then':{'required':[");
    m = (lua_Integer)luaL_len(L, -1);
    for (j = 1; j <= m; j++) {
      lua_geti(L, -1, j);
      if (j > 1)
        vd_buf_addc(out, ',');
      add_str(out, luaL_checkstring(L, -1));
      lua_pop(L, 1);
    }
    addj(out, "],'properties':{");
    for (j = 1; j <= m; j++) {
      lua_geti(L, -1, j);
      if (j > 1)
        vd_buf_addc(out, ',');
      add_str(out, lua_tostring(L, -1));
      addj(out, ":{'not':{'type':'null'}}");
      lua_pop(L, 1);
    }
    vd_buf_adds(out, "}}}");
    lua_pop(L, 3);
  }
  if (any)
    vd_buf_addc(out, ']');
  vd_buf_addc(out, '}');
  lua_settop(L, top);
}

/* The input schema of the policy table for KIND in REGION_WITH_FILE, not
 * standalone.  Raises when the pair has no policy. */
static void input_schema(lua_State *L, oa_ctx_t *c, const char *kind,
                         const char *region_with_file, vd_buf_t *out) {
  vd_engine_t *e = c->e;
  int top = lua_gettop(L);
  vd_engine_policy_path(c->where, region_with_file, kind);
  if (vd_engine_push_policy(e, kind, region_with_file))
    luaL_error(L, "no policy for %s in %s", kind, region_with_file);
  if (lua_getfield(L, -1, "fields") == LUA_TNIL) /* decide() checks it all */
    addj(out, "{'type':'object','description':'The policy declares no input "
              "schema: its decide function reads the input as it is.'}");
  else
    object_schema(L, -1, 0, NULL, out);
  lua_settop(L, top);
  c->where[0] = '\0';
}

static int input_schema_k(lua_State *L) {
  oa_ctx_t *c = lua_touserdata(L, 1);
  const char *file = vd_engine_policy_region(c->e, c->kind, c->region);
  char path[VD_PATH_MAX];
  size_t at;
  vd_engine_policy_path(path, file, c->kind);
  addj(c->out, "{'$schema':'" JSON_SCHEMA_DIALECT "','title':");
  add_str(c->out, lua_pushfstring(L, "%s input (%s)", c->kind, path));
  vd_buf_addc(c->out, ',');
  at = c->out->len;
  input_schema(L, c, c->kind, file, c->out);
  /* merge: drop the object's own opening brace */
  memmove(c->out->data + at, c->out->data + at + 1, c->out->len - at);
  c->out->len--;
  return 0;
}

/* Run FN(ctx) under lua_pcall in the engine's sandbox. */
static int run(vd_engine_t *e, lua_CFunction fn, oa_ctx_t *c, vd_buf_t *err) {
  vd_sandbox_t *sb = vd_engine_sandbox(e);
  lua_State *L = sb->L;
  int top = lua_gettop(L), rc = 0;
  vd_sandbox_arm(sb, 100000000UL, 0);
  lua_pushcfunction(L, fn);
  lua_pushlightuserdata(L, c);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    vd_buf_reset(err);
    if (c->where[0])
      vd_buf_addf(err, "%s: ", c->where);
    vd_buf_adds(err, lua_type(L, -1) == LUA_TSTRING
                         ? lua_tostring(L, -1)
                         : "reading the policies' schemas failed");
    rc = VD_EPOLICY_ERROR;
  }
  vd_sandbox_disarm(sb);
  lua_settop(L, top);
  return rc;
}

int vd_openapi_input_schema(vd_engine_t *e, const char *kind,
                            const char *region, vd_buf_t *out,
                            vd_buf_t *err) {
  oa_ctx_t c;
  int rc;
  if (!region)
    region = "national";
  if (!vd_engine_policy_region(e, kind, region)) {
    vd_buf_reset(err);
    vd_buf_addf(err, "no kind '%s' for region '%s' in revision %s", kind,
                region, vd_bundle_revision(vd_engine_bundle(e)));
    return VD_ENOT_FOUND;
  }
  memset(&c, 0, sizeof c);
  c.e = e;
  c.out = out;
  c.kind = kind;
  c.region = region;
  rc = run(e, input_schema_k, &c, err);
  return rc;
}

/* ------------------------------------------------------------------------
 * The OpenAPI document
 * ------------------------------------------------------------------------ */

#define REF(name) "{'$ref':'#/components/schemas/" name "'}"

/* Responses of every decision endpoint. */
static const char decision_responses[] =
    "'responses':{"
    "'200':{'description':'The decision, recorded in the history before "
    "this answer was sent.','content':{'application/json':{'schema':"
    REF("Decision") "}}},"
    "'400':{'$ref':'#/components/responses/BadRequest'},"
    "'401':{'$ref':'#/components/responses/Unauthorized'},"
    "'403':{'$ref':'#/components/responses/Forbidden'},"
    "'404':{'$ref':'#/components/responses/Unknown'},"
    "'413':{'$ref':'#/components/responses/TooLarge'},"
    "'422':{'$ref':'#/components/responses/BadInput'},"
    "'500':{'$ref':'#/components/responses/PolicyError'},"
    "'503':{'$ref':'#/components/responses/Unavailable'}}";

/* An idempotency key (wire.h's VD_IDEM_KEY_MAX): printable ASCII, no
 * spaces. */
#define IDEM_SCHEMA                                                          \
  "{'type':'string','minLength':1,'maxLength':255,'pattern':'^[!-~]+$'}"

static const char idempotency_param[] =
    "{'name':'Idempotency-Key','in':'header','required':false,"
    "'description':'A retried request with the same key and the same body "
    "returns the decision recorded for the first instead of deciding and "
    "recording it again.','schema':" IDEM_SCHEMA "}";

/* Components every document has; the generated ones come before. */
static const char fixed_schemas[] =
    "'Decision':{'type':'object','description':'A decision, as the socket "
    "protocol answers it (docs/protocol.md).','required':['decision_id',"
    "'kind','region','policy_region','revision','at','result','trace',"
    "'elapsed_us'],'properties':{'id':{'description':'The request id, "
    "echoed.'},'decision_id':{'type':'string','format':'uuid','description':"
    "'UUIDv7: the key of the record in the history.'},'kind':{'type':"
    "'string'},'region':{'type':'string'},'policy_region':{'type':'string',"
    "'description':'The region whose file decided.'},'revision':{'type':"
    "'string','pattern':'^sha256:[0-9a-f]{64}$'},'at':{'type':'string',"
    "'format':'date-time'},'result':{'type':'object'},'trace':{'type':"
    "'array','items':{'type':'object','required':['rule','basis'],"
    "'properties':{'rule':{'type':'string'},'basis':{'type':'string'}}}},"
    "'elapsed_us':{'type':'integer','minimum':0}}},"
    "'RecordedDecision':{'type':'object','description':'A recorded "
    "decision as `verdict history show` prints it: the request as received, "
    "the response as sent, and the record chain fields.','required':["
    "'decision_id'],'properties':{'decision_id':{'type':'string','format':"
    "'uuid'}}},"
    "'Activated':{'type':'object','required':['ok','revision'],"
    "'properties':{'id':{},'ok':{'const':true},'revision':{'type':'string'},"
    "'previous':{'type':['string','null']},'unchanged':{'type':'boolean'}}},"
    "'Revisions':{'type':'object','required':['activations','revisions'],"
    "'properties':{'id':{},'activations':{'type':'array'},'revisions':"
    "{'type':'array'}}},"
    "'Diff':{'type':'object','required':['from','to','diff'],'properties':"
    "{'id':{},'from':{'type':'string'},'to':{'type':'string'},'diff':"
    "{'type':'string','description':'A unified diff.'}}},"
    "'Health':{'type':'object','required':['status'],'properties':{"
    "'status':{'const':'ok'}}},"
    "'Ready':{'type':'object','required':['ready','revision'],'properties':{"
    "'ready':{'const':true},'revision':{'type':'string'}}}";

static const char fixed_responses[] =
    "'responses':{"
    "'BadRequest':{'description':'bad_request: the request is not a valid "
    "request (not JSON, an unknown or missing top-level field, a bad at).',"
    "'content':{'application/json':{'schema':" REF("Error") "}}},"
    "'Unauthorized':{'description':'No credential, or one that is not "
    "known.','content':{'application/json':{'schema':" REF("Error") "}}},"
    "'Forbidden':{'description':'forbidden: the credential has not the role "
    "this needs.','content':{'application/json':{'schema':" REF("Error")
    "}}},"
    "'Unknown':{'description':'unknown_kind, unknown_region, or not_found.',"
    "'content':{'application/json':{'schema':" REF("Error") "}}},"
    "'TooLarge':{'description':'too_large: the body is over the limit.',"
    "'content':{'application/json':{'schema':" REF("Error") "}}},"
    "'BadInput':{'description':'bad_input: the input schema refused a "
    "field; error.path names it (input.findings[2]: arrays count from 1).',"
    "'content':{'application/json':{'schema':" REF("Error") "}}},"
    "'PolicyError':{'description':'policy_error: the policy raised an error "
    "or returned a wrong shape.','content':{'application/json':{'schema':"
    REF("Error") "}}},"
    "'Unavailable':{'description':'policy_timeout, policy_memory or "
    "internal: nothing was decided, and a retry may succeed.','content':"
    "{'application/json':{'schema':" REF("Error") "}}}},"
    "'securitySchemes':{'bearer':{'type':'http','scheme':'bearer',"
    "'description':'A token from verdictd --tokens FILE; its role (decide, "
    "audit, admin) says what it may do.'},'mutualTLS':{'type':'mutualTLS',"
    "'description':'A client certificate signed by --tls-client-ca.'}}";

/* One GET path with no parameters: its summary and its 200.  OPEN: no
 * credential needed (the health checks). */
static void add_simple_path(vd_buf_t *o, const char *path, const char *op,
                            const char *summary, const char *ok, int open) {
  add_str(o, path);
  addj(o, ":{'get':{'operationId':");
  add_str(o, op);
  if (open)
    addj(o, ",'security':[]");
  addj(o, ",'summary':");
  add_str(o, summary);
  addj(o, ",'responses':{'200':");
  addj(o, ok);
  addj(o, "}}},");
}

/* The enum of every region code the bundle accepts, "national" first. */
static void add_region_enum(vd_buf_t *o, vd_engine_t *e) {
  size_t i;
  addj(o, "{'enum':['national'");
  for (i = 0; i < vd_engine_region_count(e); i++) {
    vd_buf_addc(o, ',');
    add_str(o, vd_engine_region(e, i));
  }
  vd_buf_adds(o, "]}");
}

/* Stack: comps = { [kind] = { [file region] = component name } }, one
 * name per distinct schema; texts = { [component name] = schema }. */
static const char *component_of(lua_State *L, int comps, const char *kind,
                                const char *file_region) {
  const char *name;
  lua_getfield(L, comps, kind);
  lua_getfield(L, -1, file_region);
  name = lua_tostring(L, -1);
  lua_pop(L, 2); /* comps keeps the string */
  return name;
}

/* How many distinct schemas KIND's files have (1: no regional file adds
 * a field). */
static lua_Integer distinct_schemas(lua_State *L, int comps,
                                    const char *kind) {
  int top = lua_gettop(L), seen;
  lua_Integer n = 0;
  lua_newtable(L);
  seen = lua_gettop(L);
  lua_getfield(L, comps, kind);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    lua_pushvalue(L, -1);
    if (lua_rawget(L, seen) == LUA_TNIL)
      n++;
    lua_pop(L, 1);
    lua_pushboolean(L, 1);
    lua_rawset(L, seen); /* seen[component] = true; the key stays */
  }
  lua_settop(L, top);
  return n;
}

/* The request body schema of KIND: its one input schema, or, when
 * regional files add fields, any of its distinct schemas (a body
 * schema cannot see the region query parameter). */
static void add_kind_input(lua_State *L, int comps, const char *kind,
                           vd_buf_t *o) {
  int top = lua_gettop(L), seen;
  lua_Integer i, n;
  lua_newtable(L);
  seen = lua_gettop(L);
  lua_getfield(L, comps, kind);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    lua_pushboolean(L, 1);
    lua_rawset(L, seen); /* seen[component] = true */
  }
  vd_sandbox_push_sorted_keys(L, seen);
  n = (lua_Integer)lua_rawlen(L, -1);
  if (n > 1)
    addj(o, "{'description':'The schema of the file that decides the "
            "region: see each','anyOf':[");
  for (i = 1; i <= n; i++) {
    lua_rawgeti(L, -1, i);
    if (i > 1)
      vd_buf_addc(o, ',');
    addj(o, "{'$ref':'#/components/schemas/");
    vd_buf_adds(o, lua_tostring(L, -1));
    addj(o, "'}");
    lua_pop(L, 1);
  }
  if (n > 1)
    vd_buf_adds(o, "]}");
  lua_settop(L, top);
}

/* DecisionRequest: the socket protocol's request object, its input
 * checked against the schema of the file that decides kind and region. */
static void add_decision_request(lua_State *L, vd_engine_t *e, int comps,
                                 vd_buf_t *o) {
  int top = lua_gettop(L);
  size_t k, i;
  lua_Integer j, n;
  addj(o, "'DecisionRequest':{'type':'object','description':'A decision "
          "request, as on the socket protocol (docs/protocol.md).',"
          "'required':['kind','region','input'],'additionalProperties':"
          "false,'properties':{'id':{'description':'Any JSON value, echoed "
          "in the response.'},'op':{'enum':['decide']},'idem':"
          IDEM_SCHEMA ",'kind':{'enum':[");
  for (k = 0; k < vd_engine_kind_count(e); k++) {
    if (k)
      vd_buf_addc(o, ',');
    add_str(o, vd_engine_kind(e, k));
  }
  addj(o, "]},'region':");
  add_region_enum(o, e);
  addj(o, ",'at':{'type':'string','format':'date-time','pattern':'"
          TIME_PATTERN "','description':'The decision time; absent: when "
          "the daemon received the request.'},'input':{'type':'object'}},"
          "'allOf':[");
  for (k = 0; k < vd_engine_kind_count(e); k++) {
    const char *kind = vd_engine_kind(e, k);
    int files, seen;
    if (k)
      vd_buf_addc(o, ',');
    addj(o, "{'if':{'required':['kind'],'properties':{'kind':{'const':");
    add_str(o, kind);
    addj(o, "}}},'then':");
    lua_newtable(L);
    seen = lua_gettop(L);
    lua_getfield(L, comps, kind);
    files = lua_gettop(L);
    vd_sandbox_push_sorted_keys(L, files);
    n = (lua_Integer)lua_rawlen(L, -1);
    if (distinct_schemas(L, comps, kind) == 1) { /* no file adds a field */
      addj(o, "{'properties':{'input':{'$ref':'#/components/schemas/");
      vd_buf_adds(o, component_of(L, comps, kind, "national"));
      addj(o, "'}}}}");
      lua_settop(L, top);
      continue;
    }
    /* each distinct schema, with the region codes whose deciding file
     * has it */
    addj(o, "{'allOf':[");
    for (j = 1; j <= n; j++) {
      const char *comp;
      int any = 0;
      lua_rawgeti(L, -1, j);
      lua_gettable(L, files);
      comp = lua_tostring(L, -1);
      lua_pushvalue(L, -1);
      if (lua_rawget(L, seen) != LUA_TNIL) {
        lua_pop(L, 2);
        continue;
      }
      lua_pop(L, 1);
      lua_pushvalue(L, -1);
      lua_pushboolean(L, 1);
      lua_rawset(L, seen);
      if (o->data[o->len - 1] != '[')
        vd_buf_addc(o, ',');
      addj(o, "{'if':{'required':['region'],'properties':{'region':"
              "{'enum':[");
      for (i = 0; i <= vd_engine_region_count(e); i++) {
        const char *r = i ? vd_engine_region(e, i - 1) : "national";
        const char *pr = vd_engine_policy_region(e, kind, r);
        if (!pr || strcmp(component_of(L, comps, kind, pr), comp) != 0)
          continue;
        if (any++)
          vd_buf_addc(o, ',');
        add_str(o, r);
      }
      addj(o, "]}}},'then':{'properties':{'input':{'$ref':"
              "'#/components/schemas/");
      vd_buf_adds(o, comp);
      addj(o, "'}}}}");
      lua_pop(L, 1);
    }
    lua_settop(L, top);
    vd_buf_adds(o, "]}}");
  }
  vd_buf_adds(o, "]}");
}

/* The error object, its code from error.h's table: the wire's names. */
static void add_error_schema(vd_buf_t *o) {
  int i;
  addj(o, "'Error':{'type':'object','description':'An error, as the socket "
          "protocol answers it.','required':['error'],'properties':{'id':"
          "{'description':'The request id, echoed.'},'decision_id':{'type':"
          "'string','format':'uuid','description':'Present when the request "
          "was recorded.'},'error':{'type':'object','required':['code',"
          "'message'],'properties':{'code':{'enum':[");
  for (i = 0; i < VD_ERR_COUNT; i++) {
    int code = VD_ERR_FIRST_ + 1 + i;
    if (i)
      vd_buf_addc(o, ',');
    add_str(o, vd_err_name(code));
  }
  addj(o, "]},'message':{'type':'string'},'path':{'type':'string',"
          "'description':'The field the error is about: kind, region, at, "
          "input, input.due_fen, input.findings[2] (arrays count from 1).'"
          "}}}}}");
}

static int document_k(lua_State *L) {
  oa_ctx_t *c = lua_touserdata(L, 1);
  vd_engine_t *e = c->e;
  vd_buf_t *o = c->out;
  const char *revision = vd_bundle_revision(vd_engine_bundle(e));
  size_t k, i;
  int comps, texts;

  /* every file's schema, once per distinct text: a regional file that
   * adds no field shares its kind's national schema */
  lua_newtable(L);
  comps = lua_gettop(L);
  lua_newtable(L);
  texts = lua_gettop(L);
  for (k = 0; k < vd_engine_kind_count(e); k++) {
    const char *kind = vd_engine_kind(e, k);
    lua_newtable(L); /* comps[kind] */
    vd_buf_reset(&c->national);
    for (i = 0; i <= vd_engine_region_count(e); i++) {
      const char *r = i ? vd_engine_region(e, i - 1) : "national";
      char path[VD_PATH_MAX];
      if (vd_engine_push_policy(e, kind, r))
        continue; /* no file of its own */
      lua_pop(L, 1);
      vd_buf_reset(&c->scratch);
      input_schema(L, c, kind, r, &c->scratch);
      if (i == 0)
        vd_buf_add(&c->national, c->scratch.data, c->scratch.len);
      if (i && strcmp(c->national.data, c->scratch.data) == 0) {
        lua_pushfstring(L, "input.%s", kind);
      } else {
        const char *name = i ? lua_pushfstring(L, "input.%s.%s", kind, r)
                             : lua_pushfstring(L, "input.%s", kind);
        vd_engine_policy_path(path, r, kind); /* the title names the file */
        lua_pushfstring(L, "{\"title\":\"%s input (%s)\",%s", kind, path,
                        c->scratch.data + 1);
        lua_setfield(L, texts, name);
      }
      lua_setfield(L, -2, r);
    }
    lua_setfield(L, comps, kind);
  }

  addj(o, "{'openapi':'3.1.0','jsonSchemaDialect':'" JSON_SCHEMA_DIALECT
          "','info':{'title':'verdict','version':");
  add_str(o, revision);
  addj(o, ",'description':'The HTTP API of verdictd, the policy engine "
          "for telecom complaint decisions. Generated from the policies of "
          "revision ");
  vd_buf_adds(o, revision);
  addj(o, ": the input schemas are those the policies declare "
          "(lib/schema.lua), so this document changes when they do. See "
          "docs/protocol.md.'},'security':[{'bearer':[]},{'mutualTLS':[]},"
          "{}],'paths':{");

  addj(o, "'/v1/decisions':{'post':{'operationId':'decide','summary':"
          "'Decide a request (role decide)','parameters':[");
  addj(o, idempotency_param);
  addj(o, "],'requestBody':{'required':true,'content':{'application/json':"
          "{'schema':" REF("DecisionRequest") "}}},");
  addj(o, decision_responses);
  addj(o, "}},");
  for (k = 0; k < vd_engine_kind_count(e); k++) {
    const char *kind = vd_engine_kind(e, k);
    add_str(o, lua_pushfstring(L, "/v1/decisions/%s", kind));
    lua_pop(L, 1);
    addj(o, ":{'post':{'operationId':");
    add_str(o, lua_pushfstring(L, "decide_%s", kind));
    lua_pop(L, 1);
    addj(o, ",'summary':");
    add_str(o, lua_pushfstring(L, "Decide a %s request, the input as the "
                                  "body (role decide)", kind));
    lua_pop(L, 1);
    addj(o, ",'parameters':[{'name':'region','in':'query','required':true,"
            "'schema':");
    add_region_enum(o, e);
    addj(o, "},{'name':'at','in':'query','required':false,'description':"
            "'The decision time; absent: when the daemon received the "
            "request.','schema':{'type':'string','format':'date-time',"
            "'pattern':'" TIME_PATTERN "'}},");
    addj(o, idempotency_param);
    addj(o, "],'requestBody':{'required':true,'content':{'application/json':"
            "{'schema':");
    add_kind_input(L, comps, kind, o);
    addj(o, "}}},");
    addj(o, decision_responses);
    addj(o, "}},");
  }
  addj(o, "'/v1/decisions/{decision_id}':{'get':{'operationId':"
          "'recorded_decision','summary':'A recorded decision (role "
          "audit)','parameters':[{'name':'decision_id','in':'path',"
          "'required':true,'schema':{'type':'string','format':'uuid'}}],"
          "'responses':{'200':{'description':'The record.','content':"
          "{'application/json':{'schema':" REF("RecordedDecision") "}}},"
          "'401':{'$ref':'#/components/responses/Unauthorized'},"
          "'403':{'$ref':'#/components/responses/Forbidden'},"
          "'404':{'$ref':'#/components/responses/Unknown'}}}},");
  add_simple_path(o, "/health", "health", "The process answers",
                  "{'description':'It does.','content':{'application/json':"
                  "{'schema':" REF("Health") "}}}", 1);
  addj(o, "'/health/ready':{'get':{'operationId':'ready','security':[],"
          "'summary':'Ready "
          "to decide: a revision is active and the history accepts "
          "records','responses':{'200':{'description':'Ready.','content':"
          "{'application/json':{'schema':" REF("Ready") "}}},'503':"
          "{'description':'Not ready; error.message says why.','content':"
          "{'application/json':{'schema':" REF("Error") "}}}}}},");
  add_simple_path(o, "/metrics", "metrics",
                  "Prometheus metrics, text exposition format 0.0.4",
                  "{'description':'The metrics (docs/protocol.md#metrics).',"
                  "'content':{'text/plain':{'schema':{'type':'string'}}}}",
                  0);
  add_simple_path(o, "/v1/openapi.json", "openapi",
                  "This document, for the revision that decides now",
                  "{'description':'OpenAPI 3.1.','content':"
                  "{'application/json':{'schema':{'type':'object'}}}}", 0);
  addj(o, "'/v1/admin/reload':{'post':{'operationId':'reload','summary':"
          "'Reload the policies from their directory (role admin)',"
          "'responses':{'200':{'description':'Activated.','content':"
          "{'application/json':{'schema':" REF("Activated") "}}},"
          "'401':{'$ref':'#/components/responses/Unauthorized'},"
          "'403':{'$ref':'#/components/responses/Forbidden'},"
          "'422':{'$ref':'#/components/responses/BadInput'}}}},");
  addj(o, "'/v1/admin/activate':{'post':{'operationId':'activate',"
          "'summary':'Activate a stored revision (role admin)',"
          "'parameters':[{'name':'revision','in':'query','required':true,"
          "'description':'sha256:..., a prefix of it, or a name the admin "
          "socket takes.','schema':{'type':'string'}}],"
          "'responses':{'200':{'description':'Activated.','content':"
          "{'application/json':{'schema':" REF("Activated") "}}},"
          "'401':{'$ref':'#/components/responses/Unauthorized'},"
          "'403':{'$ref':'#/components/responses/Forbidden'},"
          "'404':{'$ref':'#/components/responses/Unknown'}}}},");
  add_simple_path(o, "/v1/admin/revisions", "revisions",
                  "Stored revisions and activations (role admin)",
                  "{'description':'The lists.','content':{'application/json'"
                  ":{'schema':" REF("Revisions") "}}}", 0);
  addj(o, "'/v1/admin/diff':{'get':{'operationId':'diff','summary':'The "
          "difference between two revisions (role admin)','parameters':["
          "{'name':'from','in':'query','required':true,'schema':{'type':"
          "'string'}},{'name':'to','in':'query','required':false,'description':"
          "'Default: the active revision.','schema':{'type':'string'}}],"
          "'responses':{'200':{'description':'The "
          "diff.','content':{'application/json':{'schema':" REF("Diff")
          "}}}}}},");
  o->len--; /* the last path's comma */
  addj(o, "},'components':{'schemas':{");
  add_decision_request(L, e, comps, o);
  vd_buf_addc(o, ',');
  add_error_schema(o);
  vd_buf_addc(o, ',');
  addj(o, fixed_schemas);
  /* the input schemas, by name */
  vd_sandbox_push_sorted_keys(L, texts);
  for (i = 1; i <= (size_t)lua_rawlen(L, -1); i++) {
    lua_rawgeti(L, -1, (lua_Integer)i);
    vd_buf_addc(o, ',');
    add_str(o, lua_tostring(L, -1));
    vd_buf_addc(o, ':');
    lua_gettable(L, texts);
    vd_buf_adds(o, lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  addj(o, "},");
  addj(o, fixed_responses);
  vd_buf_adds(o, "}}");
  return 0;
}

int vd_openapi_document(vd_engine_t *e, vd_buf_t *out, vd_buf_t *err) {
  oa_ctx_t c;
  int rc;
  memset(&c, 0, sizeof c);
  c.e = e;
  c.out = out;
  vd_buf_init(&c.scratch);
  vd_buf_init(&c.national);
  rc = run(e, document_k, &c, err);
  vd_buf_release(&c.scratch);
  vd_buf_release(&c.national);
  return rc;
}

int vd_openapi_write(vd_bundle_t *b, vd_buf_t *out, vd_buf_t *err) {
  vd_engine_t *e;
  int rc = vd_engine_new(b, NULL, &e, err);
  if (rc)
    return rc;
  rc = vd_openapi_document(e, out, err);
  vd_engine_free(e);
  return rc;
}
