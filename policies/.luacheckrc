-- .luacheckrc - luacheck's view of the policies: exactly the globals the
-- sandbox gives them (core/sandbox.c's base environment, and what the
-- engine adds: require, and parent in a policy file), all read-only, and
-- what the test harness adds to a test file.  `verdict check` runs
-- luacheck with the same std, built from the sandbox itself (core/lint.c),
-- so in this directory
--     luacheck .
-- (or, from the repository, luacheck --config policies/.luacheckrc
-- policies) gives the warnings `verdict check` gives.
-- tests/blackbox/test_authoring.py holds the two together.

local string_fields = { "byte", "char", "find", "format", "gmatch", "gsub", "len", "lower",
  "match", "pack", "packsize", "rep", "reverse", "sub", "unpack", "upper" }
local table_fields = { "concat", "insert", "move", "pack", "remove", "sort", "unpack" }
local math_fields = { "abs", "acos", "asin", "atan", "ceil", "cos", "deg", "exp", "floor",
  "fmod", "huge", "log", "max", "maxinteger", "min", "mininteger", "modf", "pi", "rad", "sin",
  "sqrt", "tan", "tointeger", "type", "ult" }
local utf8_fields = { "char", "charpattern", "codepoint", "codes", "len", "offset" }
local verdict_fields = { "array", "check_input", "check_object", "field_reads", "is_empty", "is_null", "json_type",
  "new_table", "null", "object", "only_keys", "rule_runner", "run_rules", "schema_plan" }

stds.verdict_sandbox = {
  read_globals = {
    "_VERSION", "assert", "error", "getmetatable", "ipairs", "load", "pairs", "pcall",
    "rawequal", "rawget", "rawlen", "select", "setmetatable", "tonumber", "tostring", "type",
    "xpcall", "require", "parent",
    string = { fields = string_fields },
    table = { fields = table_fields },
    math = { fields = math_fields },
    utf8 = { fields = utf8_fields },
    verdict = { fields = verdict_fields },
  },
}

std = "verdict_sandbox"
max_line_length = false

-- What the test harness gives a test file (core/policytest.c).
files["**/*_test.lua"] = { read_globals = { "with_defaults", "in_every_offset" } }
