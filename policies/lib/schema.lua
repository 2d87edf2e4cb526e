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
-- Every spec takes `doc` (one line for the reader) and `requires` (names of
-- sibling fields that must be given when this one is set: present and not
-- false, 0 or "").  A field is `required`, or optional with or without a
-- `default`; JSON null counts as absent.  Unknown fields are refused.
--
-- S.validate raises error({code = "bad_input", path = "input.x",
-- message = "expected ..., got ..."}, 0) at the first problem, fields in
-- name order.  It returns the facts: a new table of checked values with
-- defaults filled in (and times parsed), which rules read.

local T = require("lib.time")

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
  o.expect = o.expect or ("one of " .. table.concat(o.values, ", "))
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

function S.fail(path, message)
  error({ code = "bad_input", path = path, message = message }, 0)
end

-- JSON arrays arrive as sequences and JSON object keys are always strings,
-- so a table with a border #v > 0 came from an array; an empty table may be
-- [] or {}.  (No pairs here: this runs on every request.)
local function is_array(v)
  return #v > 0
end

local function is_empty(v)
  for _ in pairs(v) do return false end -- luacheck: ignore 512 (a loop that only looks)
  return true
end

-- A short description of a given value for "got ..." in messages.
local function describe(v)
  if v == nil then return "nothing" end
  if rawequal(v, NULL) then return "null" end
  local ty = type(v)
  if ty == "string" then
    if #v > 40 then v = string.sub(v, 1, 40) .. "..." end
    return string.format("%q", v)
  elseif ty == "number" then
    if math.type(v) == "float" then return "the non-integer number " .. tostring(v) end
    return tostring(v)
  elseif ty == "table" then
    return is_array(v) and "an array" or "an object"
  end
  return tostring(v)
end

local function mismatch(path, sp, v)
  S.fail(path, "expected " .. sp.expect .. ", got " .. describe(v))
end

------------------------------------------------------------------------
-- Compiling: check a declaration once, at load time.

local TYPES = { string = true, integer = true, boolean = true, enum = true,
  time = true, set = true, list = true, object = true, map = true }

local compile_fields

local function compile_spec(sp, where)
  if type(sp) ~= "table" or not TYPES[sp.type] then
    error("schema " .. where .. ": not a field spec (use lib.schema constructors)", 0)
  end
  if sp.type == "enum" and #sp.values == 0 then
    error("schema " .. where .. ": enum without values", 0)
  end
  if sp.type == "set" or sp.type == "list" then
    compile_spec(sp.of, where .. "[]")
  elseif sp.type == "map" then
    compile_spec(sp.values, where .. ".*")
  elseif sp.type == "object" then
    sp.compiled = compile_fields(sp.fields or {}, where)
  end
  if sp.required and sp.default ~= nil then
    error("schema " .. where .. ": a required field cannot have a default", 0)
  end
end

function compile_fields(fields, where)
  local names, known = {}, {}
  for name, sp in pairs(fields) do
    if type(name) ~= "string" then error("schema " .. where .. ": field names are strings", 0) end
    compile_spec(sp, where .. "." .. name)
    names[#names + 1] = name
    known[name] = true
  end
  table.sort(names)
  local conditional = {}
  for _, name in ipairs(names) do
    local req = fields[name].requires
    if req then
      for _, r in ipairs(req) do
        if not known[r] then
          error("schema " .. where .. "." .. name .. ": requires unknown field " .. r, 0)
        end
      end
      conditional[#conditional + 1] = name
    end
  end
  return { fields = fields, names = names, known = known, conditional = conditional }
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

local check_object

local function check(sp, v, path)
  local ty = sp.type
  if ty == "string" then
    if type(v) ~= "string" or #v == 0 or #v > sp.max_len then mismatch(path, sp, v) end
    return v
  elseif ty == "integer" then
    if math.type(v) ~= "integer" then mismatch(path, sp, v) end
    if (sp.min and v < sp.min) or (sp.max and v > sp.max) then mismatch(path, sp, v) end
    return v
  elseif ty == "boolean" then
    if type(v) ~= "boolean" then mismatch(path, sp, v) end
    return v
  elseif ty == "enum" then
    if type(v) ~= "string" or not sp.set[v] then mismatch(path, sp, v) end
    return v
  elseif ty == "time" then
    local t, off = T.parse(v)
    if not t then
      if type(v) == "string" then
        S.fail(path, "expected " .. sp.expect .. ", got " .. describe(v) .. " (" .. off .. ")")
      end
      mismatch(path, sp, v)
    end
    return { t = t, off = off }
  elseif ty == "set" or ty == "list" then
    if type(v) ~= "table" or rawequal(v, NULL) or not (#v > 0 or is_empty(v)) then
      mismatch(path, sp, v)
    end
    local n = #v
    if ty == "list" and n > sp.max then
      S.fail(path, "expected at most " .. sp.max .. " elements, got " .. n)
    end
    local out = {}
    for i = 1, n do
      local e = check(sp.of, v[i], path .. "[" .. i .. "]")
      if ty == "set" then out[e] = true else out[i] = e end
    end
    return out
  elseif ty == "object" then
    if type(v) ~= "table" or rawequal(v, NULL) or is_array(v) then mismatch(path, sp, v) end
    return check_object(sp.compiled, v, path)
  else -- map
    if type(v) ~= "table" or rawequal(v, NULL) or is_array(v) then mismatch(path, sp, v) end
    local out = {}
    for k, e in pairs(v) do
      if type(k) ~= "string" then mismatch(path, sp, v) end
      if not rawequal(e, NULL) then out[k] = check(sp.values, e, path .. "." .. k) end
    end
    return out
  end
end

local function is_set(v)
  return v ~= nil and v ~= false and v ~= 0 and v ~= ""
end

function check_object(c, v, path)
  for k in pairs(v) do
    if not c.known[k] then
      S.fail(path .. "." .. tostring(k),
        "unknown field; expected one of " .. table.concat(c.names, ", "))
    end
  end
  local out = {}
  for _, name in ipairs(c.names) do
    local sp = c.fields[name]
    local e = v[name]
    if e == nil or rawequal(e, NULL) then
      if sp.required then
        S.fail(path .. "." .. name, "required: expected " .. sp.expect)
      end
      out[name] = sp.default
    else
      out[name] = check(sp, e, path .. "." .. name)
    end
  end
  for _, name in ipairs(c.conditional) do
    if is_set(out[name]) then
      for _, r in ipairs(c.fields[name].requires) do
        local e = v[r]
        if e == nil or rawequal(e, NULL) then
          S.fail(path .. "." .. r, "required when " .. name .. " is given: expected "
            .. c.fields[r].expect)
        end
      end
    end
  end
  return out
end

-- Check `input` against compiled schema c; return the facts.
function S.validate(c, input)
  if type(input) ~= "table" or rawequal(input, NULL) or is_array(input) then
    S.fail("input", "expected an object, got " .. describe(input))
  end
  return check_object(c, input, "input")
end

return S
