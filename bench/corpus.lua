-- corpus.lua - the request corpus that checks a change to the decision
-- path gives the same answers (docs/performance.md, "Fewer instructions
-- per decision"): run by scripts/corpus with the system's lua5.4, never
-- inside verdict.
--
--   lua5.4 bench/corpus.lua POLICY_DIR REGION... > corpus.ndjson
--
-- Writes one request line for every case of every *_test.lua file under
-- POLICY_DIR (as `verdict test` builds it, core/policytest.c: kind from the
-- file name, the case's region or the file's, its `at` and `input`), then
-- the same case sent to each REGION, each of them twice: the envelope
-- first ("kind", "region", "at", "input"), and `input` first, before the
-- fields that say which policy decides it.  Keys are written in byte order
-- and numbers as Lua holds them, so the corpus is the same on every run.

local dir = arg[1]
local regions = { table.unpack(arg, 2) }
if not dir or #regions == 0 then
  io.stderr:write("usage: lua5.4 bench/corpus.lua POLICY_DIR REGION...\n")
  os.exit(2)
end

-- What test files read of the verdict library: null, and the markers that
-- make an empty table [] or {}.
local NULL, ARRAY, OBJECT = {}, {}, {}
local verdict = {
  null = NULL,
  array = function(t) return setmetatable(t or {}, ARRAY) end,
  object = function(t) return setmetatable(t or {}, OBJECT) end,
}

-- JSON, as vd_json_encode writes a test case's input: keys sorted, an
-- empty table nested in the input is [] (the input itself is {}) unless
-- it is marked.
local function encode(v, top)
  local t = type(v)
  if v == NULL then
    return "null"
  elseif t == "string" then
    return '"' .. v:gsub('[%c"\\]', function(c)
      local named = { ['"'] = '\\"', ['\\'] = '\\\\', ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t' }
      return named[c] or string.format("\\u%04x", c:byte())
    end) .. '"'
  elseif t == "number" then
    if math.type(v) == "integer" then return tostring(v) end
    local s = string.format("%.17g", v)
    if not s:find("[.eEn]") then s = s .. ".0" end
    return s
  elseif t == "boolean" then
    return tostring(v)
  elseif t == "table" then
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    local mt = getmetatable(v)
    if #keys == 0 then return (top or mt == OBJECT) and "{}" or "[]" end
    if #v == #keys and mt ~= OBJECT then
      local out = {}
      for i = 1, #v do out[i] = encode(v[i]) end
      return "[" .. table.concat(out, ",") .. "]"
    end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    local out = {}
    for i, k in ipairs(keys) do out[i] = encode(tostring(k)) .. ":" .. encode(v[k]) end
    return "{" .. table.concat(out, ",") .. "}"
  end
  error("cannot encode a " .. t)
end

-- The helpers a test file finds in its environment (core/policytest.c).
local function with_defaults(d)
  return function(o)
    local t = {}
    for k, v in pairs(d) do t[k] = v end
    for k, v in pairs(o or {}) do t[k] = v end
    return t
  end
end

local function in_every_offset(cases, name, variants, make)
  for _, v in ipairs(variants) do
    local c = make(v)
    c.name = name .. " (written in " .. v.offset .. ")"
    cases[#cases + 1] = c
  end
end

local files = {}
local p = io.popen("cd '" .. dir .. "' && find . -name '*_test.lua' | sort")
for line in p:lines() do files[#files + 1] = line:sub(3) end
p:close()

local n = 0
for _, file in ipairs(files) do
  local kind = file:match("([^/]+)_test%.lua$")
  local region = file:match("^regions/([^/]+)/") or "national"
  local env = setmetatable({ with_defaults = with_defaults, in_every_offset = in_every_offset,
    verdict = verdict },
    { __index = _G })
  local chunk = assert(loadfile(dir .. "/" .. file, "t", env))
  for i, c in ipairs(chunk()) do
    if c.at and type(c.input) == "table" then
      local input = encode(c.input, true)
      local sent = { c.region or region }
      for _, r in ipairs(regions) do sent[#sent + 1] = r end
      for j, r in ipairs(sent) do
        local id = encode(file .. "#" .. i .. "@" .. j)
        local env_part = '"kind":' .. encode(kind) .. ',"region":' .. encode(r)
          .. ',"at":' .. encode(c.at)
        print('{"id":' .. id .. "," .. env_part .. ',"input":' .. input .. "}")
        print('{"input":' .. input .. ',"id":' .. id .. "," .. env_part .. "}")
        n = n + 2
      end
    end
  end
end
io.stderr:write(string.format("corpus: %d requests from %d test files\n", n, #files))
