/*
 * openapi.h - the machine-readable contract of verdictd's HTTP API: JSON
 * Schemas (draft 2020-12) of each decision kind's input, generated from
 * the input schemas the policies declare with lib/schema.lua, and the
 * OpenAPI 3.1 document of every endpoint (GET /v1/openapi.json, `verdict
 * schema`), which uses them.  Generated from the loaded policies, so the
 * contract changes when the policies do and cannot drift from them.
 *
 * What a schema says, for each lib/schema.lua constructor:
 *   string  {"type":"string","minLength":1,"maxLength":max_len}
 *           (max_len counts bytes, maxLength characters: a string of
 *           max_len characters outside ASCII passes the schema and is
 *           refused by the policy; the description says so)
 *   integer, fen  {"type":"integer","minimum":..,"maximum":..}
 *   boolean {"type":"boolean"};  enum {"enum":[values]}
 *   time    a string matching RFC 3339 with Z or an offset, "format":
 *           "date-time"
 *   set, list  {"type":"array","items":..} (list: "maxItems")
 *   object  "properties", "required", "additionalProperties": false
 *   map     {"type":"object","additionalProperties":values}
 * A field that is not required also accepts null (JSON null counts as
 * absent); `default` and `doc` become "default" and "description", and
 * `requires` an if/then under "allOf" with the same condition schema.lua
 * checks (the field's value, or its default, is not false, 0 or "").
 * A kind's regional file that adds fields gets a schema of its own, and
 * the request schema picks it by region; files that add nothing share the
 * national one.
 *
 * Field paths: where the policy says input.findings[2] (Lua counts from
 * 1), a JSON Schema validator says input/findings/1.
 *
 * Every function reads the engine's policy tables under lua_pcall in its
 * sandbox: call it on the thread that owns the engine, between decisions
 * (a daemon worker, or `verdict schema` with an engine of its own).
 * Returns 0 with the JSON appended to OUT, or VD_ENOT_FOUND (no such kind
 * or region) / VD_EPOLICY_ERROR (a policy table that cannot be read) with
 * ERR saying why; OUT may then hold part of a document.
 */
#ifndef VERDICT_OPENAPI_H
#define VERDICT_OPENAPI_H

#include "verdict/buf.h"
#include "verdict/bundle.h"
#include "verdict/engine.h"

/* The JSON Schema of KIND's input as the file that decides it for REGION
 * (NULL or "national": national/KIND.lua) declares it: a standalone
 * document with "$schema", "title" naming the file. */
int vd_openapi_input_schema(vd_engine_t *e, const char *kind,
                            const char *region, vd_buf_t *out,
                            vd_buf_t *err);

/* The OpenAPI 3.1 document for the engine's bundle: info.version is its
 * revision; one POST /v1/decisions/<kind> per kind it decides. */
int vd_openapi_document(vd_engine_t *e, vd_buf_t *out, vd_buf_t *err);

/* The same for bundle B, through an engine built for the purpose (the
 * whole bundle is loaded: tens of milliseconds).  Any thread. */
int vd_openapi_write(vd_bundle_t *b, vd_buf_t *out, vd_buf_t *err);

#endif
