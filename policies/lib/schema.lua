-- lib/schema.lua - input schemas declared in Lua beside each policy.
--
-- A schema is a table field name -> spec, built with the constructors below:
--
--   S.string{ required = true, max_len = 64 }
--   S.integer{ min = 0, max = 1000, default = 0 }
--   S.fen{ default = 0 }                 -- integer number of fen, >= 0
--   S.boolean{ default = false }
--   S.enum{ "urban", "rural", default = "urban" }
--   S.time{ required = true }            -- RFC 3339 with offset; becomes { t, off }
--   S.set{ of = S.enum{ ... } }          -- JSON array; becomes { value = true }
--   S.list{ of = spec, max = 50 }        -- JSON array; becomes an array
--   S.object{ fields = { ... } }         -- nested object, same rules
--   S.map{ values = spec }               -- object with free string keys
--
-- A set or list takes a JSON array only, an object or map a JSON object
-- only, empty ones too: `[]` is not `{}` (verdict.json_type tells them
-- apart).  An object's keys are its fields; a map's are free, so declare
-- an object when the keys are a known list.
--
-- Every spec takes `doc` (one line for the reader) and `requires` (names of
-- sibling fields that must be given when this one is set: present and not
-- false, 0 or "").  A top-level input field that is personal information (a
-- customer id, a phone number) says `personal = true`: `verdict history
-- erase` removes such fields from the recorded requests (core/personal.c
-- reads the flag; docs/history.md, "Schema 4: the personal part").  A field is `required`, or optional with or without a
-- `default`; JSON null counts as absent.  Unknown fields are refused.
--
-- S.validate raises error({code = "bad_input", path = "input.x",
-- message = "expected ..., got ...", errors = { { path, message }, ... }},
-- 0): every problem of the request in `errors` (unknown fields, then
-- fields in name order, then `requires`; at most S.MAX_ERRORS), the first
-- as path and message.  It returns the facts: a new table of checked values with
-- defaults filled in (and times parsed), which rules read.

local T = require("lib.time")

-- Globals and library functions are read once, here (see lib/rules.lua).
local type, error, pairs, ipairs, rawequal, tostring = type, error, pairs, ipairs, rawequal, tostring
local mtype = math.type
local ssub, sfmt = string.sub, string.format
local concat, sort = table.concat, table.sort
local parse_time = T.parse

local S = {}

local NULL = verdict.null

------------------------------------------------------------------------
-- Constructors.

local function spec(kind, o, expect)
  o = o or {}
  o.type = kind
  o.expect = o.expect or expect
  return o
end

function S.string(o)
  o = spec("string", o)
  o.max_len = o.max_len or 128
  o.expect = o.expect or ("a non-empty string of at most " .. o.max_len .. " bytes")
  return o
end

function S.integer(o)
  o = spec("integer", o)
  if not o.expect then
    if o.min and o.max then
      o.expect = "an integer from " .. o.min .. " to " .. o.max
    elseif o.min then
      o.expect = "an integer of at least " .. o.min
    else
      o.expect = "an integer"
    end
  end
  return o
end

-- Money: a whole number of fen (1 yuan = 100 fen), never a float.
S.MAX_FEN = 100000000000000 -- 1e14 fen: far above any real amount, far below 2^53

function S.fen(o)
  o = o or {}
  o.min = o.min or 0
  o.max = o.max or S.MAX_FEN
  o.expect = o.expect or "an integer number of fen (1 yuan = 100 fen), 0 or more"
  return S.integer(o)
end

function S.boolean(o)
  return spec("boolean", o, "true or false")
end

function S.enum(o)
  o = spec("enum", o)
  o.values = {}
  o.set = {}
  for i, v in ipairs(o) do
    o.values[i] = v
    o.set[v] = true
  end
  o.expect = o.expect or ("one of " .. concat(o.values, ", "))
  return o
end

function S.time(o)
  return spec("time", o, "an RFC 3339 time with offset, such as 2026-11-23T10:00:00+08:00")
end

function S.set(o)
  o = spec("set", o)
  o.expect = o.expect or ("an array of " .. o.of.expect)
  return o
end

function S.list(o)
  o = spec("list", o)
  o.max = o.max or 100
  o.expect = o.expect or ("an array (at most " .. o.max .. ") of " .. o.of.expect)
  return o
end

function S.object(o)
  return spec("object", o, "an object")
end

function S.map(o)
  return spec("map", o, "an object whose values are " .. o.values.expect)
end

------------------------------------------------------------------------
-- Errors.

-- Raise bad_input for one problem (a policy's own check of its input).
function S.fail(path, message)
  error({ code = "bad_input", path = path, message = message,
          errors = { { path = path, message = message } } }, 0)
end

-- "array" or "object" for a table the JSON decoder made (its marker
-- metatable says which, so an empty [] is not an empty {}), nil for any
-- other value, null included: one C call, no walk over the table.
local json_type = verdict.json_type
local is_empty = verdict.is_empty

-- A short description of a given value for "got ..." in messages.
local function describe(v)
  if v == nil then return "nothing" end
  if rawequal(v, NULL) then return "null" end
  local ty = type(v)
  if ty == "string" then
    if #v > 40 then v = ssub(v, 1, 40) .. "..." end
    return sfmt("%q", v)
  elseif ty == "number" then
    if mtype(v) == "float" then return "the non-integer number " .. tostring(v) end
    return tostring(v)
  elseif ty == "table" then
    local jt = json_type(v)
    if not jt then return "a table" end
    return (is_empty(v) and "an empty " or "an ") .. jt
  end
  return tostring(v)
end

------------------------------------------------------------------------
-- Compiling: check a declaration once, at load time, and build its quick
-- checker (see "Validating a request" below).

local TYPES = { string = true, integer = true, boolean = true, enum = true,
  time = true, set = true, list = true, object = true, map = true }

local compile_fields
local REQUIRED = {}  -- absent[i] of a required field
local schema_plan, check_input = verdict.schema_plan, verdict.check_input
-- check_input for an object: nil too for anything json_type does not call
-- one, so json_type is asked only after a nil.  An older binary (a fleet
-- mid-upgrade) has none: then json_type first, as before.
local quick_object = verdict.check_object -- luacheck: ignore 143
if not quick_object then
  quick_object = function(plan, v)
    if json_type(v) ~= "object" then return nil end
    return check_input(plan, v)
  end
end

-- The quick checker of spec sp: function(v) -> the checked (and converted)
-- value of v, or nil if it is not valid (a checked value may be false).
-- v is present and not null.  Each is the check of the same type in
-- `check` below, with the spec's numbers as upvalues.  The schema's plan
-- (verdict.schema_plan, below) checks strings, integers, enums and
-- booleans itself and calls these for the other types.
local function quick_checker(sp)
  local ty = sp.type
  if ty == "string" then
    local max_len = sp.max_len
    return function(v)
      if type(v) ~= "string" or #v == 0 or #v > max_len then return nil end
      return v
    end
  elseif ty == "integer" then
    local min, max = sp.min, sp.max
    return function(v)
      if mtype(v) ~= "integer" or (min and v < min) or (max and v > max) then return nil end
      return v
    end
  elseif ty == "enum" then
    local set = sp.set                               -- string keys only
    return function(v)
      if not set[v] then return nil end
      return v
    end
  elseif ty == "boolean" then
    return function(v)
      if v ~= true and v ~= false then return nil end
      return v
    end
  elseif ty == "time" then
    return function(v)
      local t, off = parse_time(v)
      if not t then return nil end
      return { t = t, off = off }
    end
  elseif ty == "set" or ty == "list" then
    local of, max = sp.quick_of, ty == "list" and sp.max
    return function(v)
      if json_type(v) ~= "array" then return nil end
      local n, out = #v, {}
      if max then
        if n > max then return nil end
        for i = 1, n do
          local e = of(v[i])
          if e == nil then return nil end
          out[i] = e
        end
      else
        for i = 1, n do
          local e = of(v[i])
          if e == nil then return nil end
          out[e] = true
        end
      end
      return out
    end
  elseif ty == "object" then
    local c = sp.compiled
    return function(v)
      return quick_object(c.plan, v) -- nil for what is not an object
    end
  else -- map
    local values = sp.quick_values
    return function(v)
      if json_type(v) ~= "object" then return nil end
      local out = {}
      for k, e in pairs(v) do
        if type(k) ~= "string" then return nil end
        if e ~= NULL then
          local x = values(e)
          if x == nil then return nil end
          out[k] = x
        end
      end
      return out
    end
  end
end

local function compile_spec(sp, where)
  if type(sp) ~= "table" or not TYPES[sp.type] then
    error("schema " .. where .. ": not a field spec (use lib.schema constructors)", 0)
  end
  if sp.type == "enum" and #sp.values == 0 then
    error("schema " .. where .. ": enum without values", 0)
  end
  if sp.type == "set" or sp.type == "list" then
    sp.quick_of = compile_spec(sp.of, where .. "[]")
  elseif sp.type == "map" then
    sp.quick_values = compile_spec(sp.values, where .. ".*")
  elseif sp.type == "object" then
    sp.compiled = compile_fields(sp.fields or {}, where)
  end
  if sp.required and sp.default ~= nil then
    error("schema " .. where .. ": a required field cannot have a default", 0)
  end
  return quick_checker(sp)
end

-- A compiled object schema: fields, names (sorted), known (set of names),
-- conditional (names with `requires`), and for the quick walk: quick[name]
-- (the field's checker), absent[i] (what names[i] takes when absent: its
-- default, nil, or REQUIRED), requires[i] (the `requires` of
-- conditional[i]) and plan, all of it made flat for verdict.check_input
-- (core/sandbox.c), built once here when the policy loads.
function compile_fields(fields, where)
  local names, known, quick = {}, {}, {}
  for name, sp in pairs(fields) do
    if type(name) ~= "string" then error("schema " .. where .. ": field names are strings", 0) end
    quick[name] = compile_spec(sp, where .. "." .. name)
    names[#names + 1] = name
    known[name] = true
  end
  sort(names)
  local conditional, requires, absent = {}, {}, {}
  for i, name in ipairs(names) do
    local sp = fields[name]
    local req = sp.requires
    if req then
      for _, r in ipairs(req) do
        if not known[r] then
          error("schema " .. where .. "." .. name .. ": requires unknown field " .. r, 0)
        end
      end
      conditional[#conditional + 1] = name
      requires[#conditional] = req
    end
    if sp.required then
      absent[i] = REQUIRED
    else
      absent[i] = sp.default
    end
  end
  local c = { fields = fields, names = names, known = known, conditional = conditional,
    quick = quick, absent = absent, requires = requires }
  c.plan = schema_plan(c, REQUIRED)
  return c
end

-- Compile a top-level schema (fields of `input`).
function S.compile(fields)
  return compile_fields(fields, "input")
end

-- A copy of `fields` with `more` added; a region may add fields, never
-- redefine or remove one.
function S.extend(fields, more)
  local out = {}
  for k, v in pairs(fields) do out[k] = v end
  for k, v in pairs(more) do
    if out[k] ~= nil then
      error("schema: a region may add fields but not redefine " .. k, 0)
    end
    out[k] = v
  end
  return out
end

------------------------------------------------------------------------
-- Validating a request.
--
-- Two walks with the same checks.  The quick one, verdict.check_input
-- with the plan compiled at load time (core/sandbox.c, "Schema plans"),
-- checks and converts the request in one pass over the schema's fields,
-- building no paths and no messages; it checks that the request has no
-- unknown key, and gives up (returns nil) at the first problem.  Only then
-- does check_object, slower, walk the request again in the documented
-- order (unknown fields, then fields in name order, then `requires`) to
-- raise bad_input with every problem, the first as its path and message.

-- The reporting walk: the same checks, noting every problem (errs, a list
-- of { path, message }) and going on: a field with a problem gives no
-- value, and the fields it `requires` are not asked for.

local check_object

S.MAX_ERRORS = 100   -- problems listed per request at most

local function note(errs, path, message)
  if #errs < S.MAX_ERRORS then errs[#errs + 1] = { path = path, message = message } end
  return nil
end

local function mismatched(errs, path, sp, v)
  return note(errs, path, "expected " .. sp.expect .. ", got " .. describe(v))
end

local function check(sp, v, path, errs)
  local ty = sp.type
  if ty == "string" then
    if type(v) ~= "string" or #v == 0 or #v > sp.max_len then return mismatched(errs, path, sp, v) end
    return v
  elseif ty == "integer" then
    if mtype(v) ~= "integer" or (sp.min and v < sp.min) or (sp.max and v > sp.max) then
      return mismatched(errs, path, sp, v)
    end
    return v
  elseif ty == "boolean" then
    if type(v) ~= "boolean" then return mismatched(errs, path, sp, v) end
    return v
  elseif ty == "enum" then
    if type(v) ~= "string" or not sp.set[v] then return mismatched(errs, path, sp, v) end
    return v
  elseif ty == "time" then
    local t, off = parse_time(v)
    if not t then
      if type(v) == "string" then
        return note(errs, path, "expected " .. sp.expect .. ", got " .. describe(v) .. " (" .. off .. ")")
      end
      return mismatched(errs, path, sp, v)
    end
    return { t = t, off = off }
  elseif ty == "set" or ty == "list" then
    if json_type(v) ~= "array" then return mismatched(errs, path, sp, v) end
    local n = #v
    if ty == "list" and n > sp.max then
      return note(errs, path, "expected at most " .. sp.max .. " elements, got " .. n)
    end
    local out = {}
    for i = 1, n do
      local e = check(sp.of, v[i], path .. "[" .. i .. "]", errs)
      if e ~= nil then
        if ty == "set" then out[e] = true else out[i] = e end
      end
    end
    return out
  elseif ty == "object" then
    if json_type(v) ~= "object" then return mismatched(errs, path, sp, v) end
    return check_object(sp.compiled, v, path, errs)
  else -- map
    if json_type(v) ~= "object" then return mismatched(errs, path, sp, v) end
    local out = {}
    for k, e in pairs(v) do
      if type(k) ~= "string" then return mismatched(errs, path, sp, v) end
      if not rawequal(e, NULL) then out[k] = check(sp.values, e, path .. "." .. k, errs) end
    end
    return out
  end
end

local function is_set(v)
  return v ~= nil and v ~= false and v ~= 0 and v ~= ""
end

-- In the documented order: unknown fields, then fields in name order,
-- then `requires`.
function check_object(c, v, path, errs)
  for k in pairs(v) do
    if not c.known[k] then
      note(errs, path .. "." .. tostring(k),
        "unknown field; expected one of " .. concat(c.names, ", "))
    end
  end
  local out = {}
  for _, name in ipairs(c.names) do
    local sp = c.fields[name]
    local e = v[name]
    if e == nil or rawequal(e, NULL) then
      if sp.required then
        note(errs, path .. "." .. name, "required: expected " .. sp.expect)
      end
      out[name] = sp.default
    else
      out[name] = check(sp, e, path .. "." .. name, errs)
    end
  end
  for _, name in ipairs(c.conditional) do
    if is_set(out[name]) then
      for _, r in ipairs(c.fields[name].requires) do
        local e = v[r]
        if e == nil or rawequal(e, NULL) then
          note(errs, path .. "." .. r, "required when " .. name .. " is given: expected "
            .. c.fields[r].expect)
        end
      end
    end
  end
  return out
end

-- Check `input` against compiled schema c; return the facts.  Only a
-- request quick finds wrong takes the slower, reporting walk.
function S.validate(c, input)
  local quick = quick_object(c.plan, input)
  if quick then return quick end
  if json_type(input) ~= "object" then
    S.fail("input", "expected an object, got " .. describe(input))
  end
  local errs = {}
  local f = check_object(c, input, "input", errs)
  if #errs == 0 then return f end          -- the quick walk's doubt, unfounded
  -- bad_input: the first problem as path and message, and every one
  error({ code = "bad_input", path = errs[1].path, message = errs[1].message, errors = errs }, 0)
end

return S
