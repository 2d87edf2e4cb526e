-- lib/rules.lua - the rule language policies are written in.
--
-- A rule is a table:
--   { id = "sla.repair.urban",                     unique in the policy
--     basis = "Telecom Regulations: ...",          what the rule relies on
--     when = function(f, r, p) return ... end,     condition (absent: always)
--     ... }                                        action: the rule's data
-- `when` gets the facts f (validated input, or what the policy passes), the
-- rule itself r (so a condition can read the rule's own numbers) and the
-- policy params p.  The action is the rule's data (a tier, a deadline, an
-- amount function, a level...), which the policy's evaluate applies.
--
-- A decision table is { name = "...", hit = "first" | "collect", rules = {},
-- data = { "field", ... } } (DMN's FIRST and COLLECT): `first` stops at the
-- first rule whose condition holds, `collect` keeps every one.  Each rule
-- that fires is added to the trace, once per decision, in firing order,
-- with its basis.  `data` declares the action fields the table's rules may
-- carry besides R.RULE_KEYS (id, basis, when, limits): it is the one list
-- of valid field names for the kind's rules, its regions' replacements and
-- additions included.  Any other field in a rule, a table, a policy spec,
-- an R.extend or its params is an error at load, naming the nearest valid
-- name ("unknown field 'per_dya_fen' ... (did you mean 'per_day_fen'?)").
--
-- What `when` may read: a table that declares `facts = { "name", ... }`
-- gets facts of its own from evaluate (its `when` reads only those names);
-- any other table's `when` reads the validated input, whose names are the
-- schema's fields and the policy's `facts` (what evaluate adds to the
-- input before it runs the tables).  At load, every read a `when` makes
-- straight from its first parameter (f.name, from the function's bytecode:
-- verdict.field_reads) must be one of those names.
--
-- A policy (R.policy) is { kind, fields (input schema), facts, tighter
-- (result field orders, below), params, tables, evaluate }, and gets
-- P.decide(input, ctx) -> result, trace.
--
-- `tighter` says, for each result field, which way a region may move it
-- (a region may only tighten its parent; a higher customer grade should
-- never get a looser answer than a lower one).  Data only, for a check
-- that compares two answers (P.tighter; see R.TIGHTER).  Keys are result
-- paths ("deadlines.*" for every key of a map, "next_deadline.at"); values:
--   "earlier"    a time: earlier is tighter; absent is looser than any
--   "later"      a time: later is tighter (the end of a customer's right)
--   "smaller"    a number: smaller is tighter; absent is looser than any
--   "larger"     a number: larger is tighter (an offer)
--   "true"       a boolean: true is tighter
--   "superset"   a list: one that holds every entry of the other and more
--                is tighter (parties notified, warnings raised)
--   { higher = list }  a value of the list: later in the list is tighter
--   "neutral"    follows from the others (a tier's name, a status) or is
--                not ordered: never compared
--
-- Exceptions: where a region or a grade has a basis to be looser, the
-- policy says so, field by field, with the reason (`loosens`, passed to
-- R.policy or R.extend and kept as P.loosens):
--   loosens = { { field = "deadlines.first_feedback", reason = "..." },
--               { field = "offer_fen", grade = "group", reason = "..." } }
-- Without `grade`: this region's answer may be looser than its parent's
-- on that field (a region file only; each file's own, not inherited by its
-- cities).  With `grade`: that grade may get a looser answer on the field
-- than the grade just below it (lib/domain.lua's order), in this policy
-- and in the regions that extend it.  `field` is a key of `tighter`, or a
-- key of a map under a "name.*" one ("deadlines.acceptance").  `verdict
-- check` lists every exception with its reason (core/grid.c).
--
-- A region file changes a fresh copy of its parent with R.extend: new
-- params, rules replaced by id, rules added, input fields added.
--
-- Where numbers live: a number a rule's basis states (48 h, 2x, 500 yuan)
-- is data of that rule, so basis and number change together; a number no
-- single rule states (approval limits, caps, the at-risk share) is in
-- P.params.
--
-- Published limits: a rule that encodes a published rule (a law, a
-- regulation: the MIIT 15 days, the repair hours, the appeal bars, void SP
-- charges, the fraud damages) carries the limit that rule sets on its data:
--   limits = { ["due.repair"] = { at_most = { hours = 48 } },
--              multiplier = { at_least = 2 } }
-- (a dotted path into the rule; a bound is a number or a deadline spec as
-- in lib/calendar.lua).  A region may tighten such a rule, never loosen it:
-- a replacement may change only its id, basis and the limited fields, and
-- those within the limit; not its condition, its amount function or its
-- limits.  Anything else fails to load with file:line, the rule and the
-- published basis (the national rule's basis, kept with its limits).

local S = require("lib.schema")
local T = require("lib.time")

-- Globals and library functions are read once, here: inside a decision
-- every global access goes through the sandbox's environment proxies.
local type, error, tostring, ipairs, pairs = type, error, tostring, ipairs, pairs
local setmetatable = setmetatable
local smatch, sgsub, gmatch = string.match, string.gsub, string.gmatch
local field_reads, run_rules, new_table = verdict.field_reads, verdict.run_rules, verdict.new_table

local R = {}

R.HITS = { first = true, collect = true }

-- The fields every rule may have; a table's `data` declares the rest.
R.RULE_KEYS = { id = true, basis = true, when = true, limits = true }
-- The fields of a decision table (`first` and `notes` are set at load).
R.TABLE_KEYS = { name = true, hit = true, rules = true, data = true, facts = true }

------------------------------------------------------------------------
-- Unknown names.

-- The edit distance between a and b, a transposition of two neighbours
-- counting as one edit (optimal string alignment): "per_dya_fen" is one
-- edit from "per_day_fen".
local function distance(a, b)
  local la, lb = #a, #b
  local d = {}
  for i = 0, la do d[i] = { [0] = i } end
  for j = 0, lb do d[0][j] = j end
  for i = 1, la do
    local ca = a:byte(i)
    for j = 1, lb do
      local cb = b:byte(j)
      local cost = ca == cb and 0 or 1
      local v = d[i - 1][j] + 1
      if d[i][j - 1] + 1 < v then v = d[i][j - 1] + 1 end
      if d[i - 1][j - 1] + cost < v then v = d[i - 1][j - 1] + cost end
      if i > 1 and j > 1 and ca == b:byte(j - 1) and a:byte(i - 1) == cb
        and d[i - 2][j - 2] + 1 < v then
        v = d[i - 2][j - 2] + 1
      end
      d[i][j] = v
    end
  end
  return d[la][lb]
end

-- The name among the keys of set `known` (a set, or several) nearest to
-- `name`, if one is near enough to be a misspelling of it (at most a
-- third of its letters changed), else nil.  Ties go to the name first in
-- byte order, so the suggestion is the same on every run.
function R.nearest(name, ...)
  if type(name) ~= "string" then return nil end
  local best, best_d = nil, #name // 3 + 1
  for i = 1, select("#", ...) do
    for k in pairs(select(i, ...) or {}) do
      if type(k) == "string" then
        local d = distance(name, k)
        if d < best_d or (d == best_d and best and k < best) then
          best, best_d = k, d
        end
      end
    end
  end
  if best_d > #name // 3 then return nil end
  return best
end

-- "unknown <what> 'name'" and the nearest valid name; `known` as above.
-- The quoted name is what `verdict check` looks for to give the line it
-- is written on (core/policytest.c).
function R.unknown(what, name, ...)
  local msg = "unknown " .. what .. " '" .. tostring(name) .. "'"
  local near = R.nearest(name, ...)
  if near then return msg .. " (did you mean '" .. near .. "'?)" end
  local all = {}
  for i = 1, select("#", ...) do
    for k in pairs(select(i, ...) or {}) do all[#all + 1] = tostring(k) end
  end
  table.sort(all)
  return msg .. "; expected one of " .. table.concat(all, ", ")
end

-- The first key of t (in byte order) that is in none of the sets, or nil.
local function stray_key(t, ...)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(x, y) return tostring(x) < tostring(y) end)
  for _, k in ipairs(keys) do
    local ok = false
    for i = 1, select("#", ...) do
      local set = select(i, ...)
      if set and set[k] then ok = true end
    end
    if not ok then return k end
  end
  return nil
end
R.stray_key = stray_key

------------------------------------------------------------------------
-- Trace.
--
-- A tracer is { list = trace entries in firing order, seen = ids noted }.
-- The entry of each rule, { rule = id, basis = basis }, is built once when
-- the policy loads (t.notes, parallel to t.rules) and shared by every
-- decision that fires the rule: entries are only read after decide.

function R.tracer()
  return { list = {}, seen = {} }
end

-- Add a trace entry (once per id per decision).
function R.note(tr, id, basis)
  local seen = tr.seen
  if seen[id] then return end
  seen[id] = true
  local list = tr.list
  list[#list + 1] = { rule = id, basis = basis }
end

------------------------------------------------------------------------
-- Evaluating tables.

function R.get(P, name)
  local t = P.by_name[name]
  if t == nil then error("policy has no decision table named " .. tostring(name), 2) end
  return t
end

-- R.run and R.decide run on every decision, several times.  Their loop is
-- verdict.run_rules (core/sandbox.c, "Rule tables"): the same loop in C,
-- reading each frozen table once per state rather than through its proxy
-- on every decision.  It says when it cannot run a table (one not frozen
-- yet, of an unusual shape, or a tracer that explains); the loops written
-- out below (run_loop, decide_loop) run it then.  Where the binary has
-- verdict.rule_runner, R.run and R.decide are its C functions themselves
-- (no Lua frame between the policy and the loop), which call the Lua
-- loops when run_rules would refuse; older binaries lack it, and get the
-- Lua R.run and R.decide below (a fleet mid-upgrade runs this file on
-- both).  Either way a Lua loop is called with one frame between it and
-- the policy (never as a tail call), so its errors, at level 3, name the
-- policy's line.
-- A rule that fires is added to the trace once per decision; its entry is
-- t.notes[i], built when the policy loads.

-- Run table `name` of P on facts f.  hit = first: returns the rule that
-- fired, or nil.  hit = collect: returns the array of rules that fired.
-- A rule fired: its trace entry goes into the trace once, in firing order.
local function fired(seen, list, id, note)
  if not seen[id] then
    seen[id] = true
    list[#list + 1] = note
  end
end

------------------------------------------------------------------------
-- Explaining (`verdict eval --explain`): the same choice as R.run and
-- R.decide make, and for every rule considered a record
--   { table = name, rule = id, fired = bool, reads = { {field, value}... } }
-- in ctx.explain, with the facts its condition read, in the order read
-- (in `a and b` the last one read is the condition that was false).  Only
-- a tracer with an `explain` list comes here (P.decide gives it one when
-- the engine put ctx.explain there, which the daemon never does), so the
-- daemon's decisions pay one field look-up per table for it.

-- A view of table v that notes in reads every value a condition reads
-- through it: a nested table is another view (its fields noted as
-- "done.acceptance"), one iterated or measured is noted whole.
local function reader(v, path, reads)
  local function note(p, x)
    if type(x) == "function" then x = tostring(x) end
    reads[#reads + 1] = { field = p, value = x }
  end
  return setmetatable({}, {
    __index = function(_, k)
      local x = v[k]
      local p = path and (path .. "." .. tostring(k)) or tostring(k)
      if type(x) == "table" then return reader(x, p, reads) end
      note(p, x)
      return x
    end,
    __len = function() note(path or "(facts)", v); return #v end,
    __pairs = function() note(path or "(facts)", v); return pairs(v) end,
  })
end

local function explained(P, name, t, f, tr, ex, must)
  local p, rules, seen = P.params, t.rules, tr.seen
  local hits, n = {}, 0
  for i = 1, #rules do
    local r = rules[i]
    local when, reads = r.when, {}
    local ok = when == nil or when(reader(f, nil, reads), r, p)
    ex[#ex + 1] = { table = name, rule = r.id, fired = ok and true or false,
                    reads = reads, always = when == nil or nil }
    if ok then
      fired(seen, tr.list, r.id, t.notes[i])
      if t.first then return r end
      n = n + 1
      hits[n] = r
    end
  end
  if t.first then
    if must then error("no rule in table " .. name .. " matched; it needs a default rule", 3) end
    return nil
  end
  return hits
end

local function run_loop(P, name, f, tr)
  local t = P.by_name[name]
  if t == nil then error("policy has no decision table named " .. tostring(name), 3) end
  local ex = tr.explain
  if ex then return explained(P, name, t, f, tr, ex, false) end
  local p, rules, seen = P.params, t.rules, tr.seen
  if t.first then
    for i = 1, #rules do
      local r = rules[i]
      local when = r.when
      if when == nil or when(f, r, p) then
        fired(seen, tr.list, r.id, t.notes[i])
        return r
      end
    end
    return nil
  end
  local hits, n = {}, 0
  for i = 1, #rules do
    local r = rules[i]
    local when = r.when
    if when == nil or when(f, r, p) then
      fired(seen, tr.list, r.id, t.notes[i])
      n = n + 1
      hits[n] = r
    end
  end
  return hits
end

-- A first-hit table that must decide (its last rule has no condition in
-- the shipped policies); a policy error if a change left it undecided.
-- Any other table is run as R.run runs it (run_loop, a tail call: its
-- errors are still at level 3).
local function decide_loop(P, name, f, tr)
  local t = P.by_name[name]
  if t == nil or not t.first then return run_loop(P, name, f, tr) end   -- run_loop explains
  local ex = tr.explain
  if ex then return explained(P, name, t, f, tr, ex, true) end
  local p, rules = P.params, t.rules
  for i = 1, #rules do
    local r = rules[i]
    local when = r.when
    if when == nil or when(f, r, p) then
      local seen, id = tr.seen, r.id
      if not seen[id] then
        seen[id] = true
        local list = tr.list
        list[#list + 1] = t.notes[i]
      end
      return r
    end
  end
  error("no rule in table " .. name .. " matched; it needs a default rule", 3)
end

-- An older binary (a fleet mid-upgrade) has no rule_runner: its check
-- would refuse the field as one of `verdict` it does not know (W143), and
-- the revision would not go live there at all; here it may be nil.
local rule_runner = verdict.rule_runner -- luacheck: ignore 143
if rule_runner then
  R.run = rule_runner(run_loop, false)
  R.decide = rule_runner(decide_loop, true)
else
  function R.run(P, name, f, tr)
    local ran, res = run_rules(P, name, f, tr)
    if ran then return res end
    res = run_loop(P, name, f, tr)   -- not a tail call: see above
    return res
  end

  function R.decide(P, name, f, tr)
    local ran, hit = run_rules(P, name, f, tr)
    if ran then
      if hit ~= nil then return hit end
      error("no rule in table " .. name .. " matched; it needs a default rule", 2)
    end
    hit = decide_loop(P, name, f, tr)   -- not a tail call: see above
    return hit
  end
end

------------------------------------------------------------------------
-- Published limits (see the top of this file).

local LIMIT_UNITS = { "minutes", "hours", "working_days", "days", "months" }
local TO_MINUTES = { minutes = 1, hours = 60 }

-- The unit and count of a deadline spec, or nil.
local function spec_unit(spec)
  if type(spec) ~= "table" then return nil end
  for _, u in ipairs(LIMIT_UNITS) do
    if spec[u] ~= nil then return u, spec[u] end
  end
  return nil
end

local function show(v)
  if type(v) ~= "table" then return tostring(v) end
  local u, n = spec_unit(v)
  if u then return "{ " .. u .. " = " .. tostring(n) .. " }" end
  return "a table"
end

-- Is value v within the bound?  bound is a number or a deadline spec; way
-- is "at_most" or "at_least".  Deadlines compare in one unit family
-- (minutes and hours together); an at-most limit in days also admits an
-- hour or minute limit that ends no later (t + 24n h is within day n).
local function within(v, bound, way)
  if type(bound) == "number" then
    if type(v) ~= "number" then return false end
    if way == "at_most" then return v <= bound end
    return v >= bound
  end
  local bu, bn = spec_unit(bound)
  local vu, vn = spec_unit(v)
  if not vu or type(vn) ~= "number" then return false end
  if TO_MINUTES[bu] and TO_MINUTES[vu] then
    bn, vn = bn * TO_MINUTES[bu], vn * TO_MINUTES[vu]
  elseif way == "at_most" and bu == "days" and TO_MINUTES[vu] then
    bn, vn = bn * 24 * 60, vn * TO_MINUTES[vu]
  elseif bu ~= vu then
    return false
  end
  if way == "at_most" then return vn <= bn end
  return vn >= bn
end

local function get_path(r, path)
  local v = r
  for key in gmatch(path, "[^.]+") do
    if type(v) ~= "table" then return nil end
    v = v[key]
  end
  return v
end

-- The problem with rule r's data against its published limits, or nil.
local function limits_problem(r)
  local limits = r.limits
  if limits == nil then return nil end
  if type(limits) ~= "table" then return "limits must be a table" end
  for path, lim in pairs(limits) do
    if path ~= "basis" then
      local way = lim.at_most ~= nil and "at_most" or "at_least"
      local bound = lim[way]
      if bound == nil then return "limits." .. path .. " needs at_most or at_least" end
      local v = get_path(r, path)
      if not within(v, bound, way) then
        return path .. " = " .. show(v) .. " loosens a published rule: "
          .. (sgsub(way, "_", " ")) .. " " .. show(bound) .. " (" .. limits.basis .. ")"
      end
    end
  end
  return nil
end

-- The problem with replacing rule old (which has limits) by new, or nil:
-- only id, basis and the limited fields (the first part of each path).
local function replace_problem(old, new)
  local allowed = { id = true, basis = true }
  for path in pairs(old.limits) do
    if path ~= "basis" then allowed[smatch(path, "^[^.]+")] = true end
  end
  for k in pairs(new) do
    if not allowed[k] then
      return "rule " .. tostring(new.id) .. " replaces " .. old.id .. ", which encodes a "
        .. "published rule (" .. old.limits.basis .. "): a region may change only its id, "
        .. "basis and limited data, within the limit, not " .. tostring(k)
    end
  end
  return nil
end

------------------------------------------------------------------------
-- Checking a policy at load time (what `verdict check` also checks).

-- The set of table t's `data` names, or a message if it is not a list of
-- names.
local function data_set(t)
  if t.data == nil then return {} end
  if type(t.data) ~= "table" then return "data must be a list of field names" end
  local set = {}
  for i, k in ipairs(t.data) do
    if type(k) ~= "string" then return "data[" .. i .. "] must be a field name" end
    if R.RULE_KEYS[k] then return "data[" .. i .. "]: " .. k .. " is a field of every rule" end
    set[k] = true
  end
  return set
end

-- What the `when` functions of table t read from their first argument:
-- "input field" and the input schema's fields plus the policy's `facts`
-- (what evaluate adds to the input before it runs the table), or, for a
-- table that declares `facts`, "fact" and those names.  Or a message.
local function facts_of(P, t)
  local known = {}
  local list, what = P.facts, "input field"
  if t.facts ~= nil then list, what = t.facts, "fact of table " .. t.name
  elseif P.schema then
    for k in pairs(P.schema.known) do known[k] = true end
  end
  if type(list) ~= "table" then return "facts must be a list of names" end
  for i, k in ipairs(list) do
    if type(k) ~= "string" then return "facts[" .. i .. "] must be a name" end
    known[k] = true
  end
  return known, what
end

-- Returns nil, or "message" for the first problem found.
function R.problem(P)
  if type(P.tables) ~= "table" then return "policy has no tables" end
  local ids, names = {}, {}
  for ti, t in ipairs(P.tables) do
    local where = "tables[" .. ti .. "]"
    if type(t.name) ~= "string" then return where .. ": table needs a name" end
    if names[t.name] then return "two tables are named " .. t.name end
    names[t.name] = true
    where = "table " .. t.name
    if not R.HITS[t.hit] then return where .. ": hit must be \"first\" or \"collect\"" end
    if type(t.rules) ~= "table" then return where .. ": rules must be an array" end
    local data = data_set(t)
    if type(data) == "string" then return where .. ": " .. data end
    local facts, what = facts_of(P, t)
    if type(facts) == "string" then return where .. ": " .. facts end
    for ri, r in ipairs(t.rules) do
      if type(r.id) ~= "string" or r.id == "" then
        return where .. ": rules[" .. ri .. "] needs a string id"
      end
      if ids[r.id] then return "rule id " .. r.id .. " is used twice" end
      ids[r.id] = true
      if type(r.basis) ~= "string" or r.basis == "" then
        return "rule " .. r.id .. " needs a basis"
      end
      local stray = stray_key(r, R.RULE_KEYS, data)
      if stray ~= nil then
        return "rule " .. r.id .. ": " .. R.unknown("field", stray, R.RULE_KEYS, data)
          .. " (a rule's fields are id, basis, when, limits and the table's data)"
      end
      if r.when ~= nil and type(r.when) ~= "function" then
        return "rule " .. r.id .. ": when must be a function"
      end
      if r.when ~= nil then
        local reads = field_reads(r.when)
        for i = 1, #reads do
          if not facts[reads[i]] then
            return "rule " .. r.id .. ": when reads " .. R.unknown(what, reads[i], facts)
          end
        end
      end
      local loose = limits_problem(r)
      if loose then return "rule " .. r.id .. ": " .. loose end
      if P.check_rule then
        local why = P.check_rule(P, t.name, r)
        if why then return "rule " .. r.id .. ": " .. why end
      end
    end
  end
  return nil
end

-- Check P, index its tables by name and prepare what R.run reads (after
-- every change at load time): t.first, and t.notes[i], the trace entry of
-- t.rules[i].  A rule with limits keeps the basis they were published with
-- (the first policy's rule), and is checked against them.
local function assert_ok(P)
  for _, t in ipairs(type(P.tables) == "table" and P.tables or {}) do
    for _, r in ipairs(type(t.rules) == "table" and t.rules or {}) do
      if type(r) == "table" and type(r.limits) == "table" and r.limits.basis == nil then
        r.limits.basis = r.basis
      end
    end
  end
  local why = R.problem(P)
  if why then error(P.kind .. " policy: " .. why, 0) end
  P.by_name = {}
  for _, t in ipairs(P.tables) do
    P.by_name[t.name] = t
    t.first = t.hit == "first"
    t.notes = {}
    for i, r in ipairs(t.rules) do t.notes[i] = { rule = r.id, basis = r.basis } end
  end
  return P
end

------------------------------------------------------------------------
-- Building a policy.

-- spec: { kind, fields, tighter, outcomes, params, tables, evaluate = function(P, f, ctx, tr),
--         check_rule = function(P, table_name, rule) -> nil | message }
-- The orders a `tighter` entry may name (see the top of this file).
R.TIGHTER = { earlier = true, later = true, smaller = true, larger = true, ["true"] = true,
  superset = true, neutral = true }

local function tighter_problem(tighter)
  if tighter == nil then return nil end
  if type(tighter) ~= "table" then return "tighter must be a table of result fields" end
  for path, order in pairs(tighter) do
    if type(path) ~= "string" then return "tighter: keys are result field paths" end
    if type(order) == "table" then
      if type(order.higher) ~= "table" or #order.higher == 0 then
        return "tighter." .. path .. ": a table order needs higher = { values, lowest first }"
      end
    elseif not R.TIGHTER[order] then
      return "tighter." .. path .. ": unknown order " .. tostring(order)
    end
  end
  return nil
end

-- The problem with a `loosens` list (see the top of this file), or nil.
-- region: the list is a region file's (entries without a grade allowed).
local function loosens_problem(tighter, loosens, region)
  if loosens == nil then return nil end
  if type(loosens) ~= "table" then return "loosens must be a list of exceptions" end
  if type(tighter) ~= "table" then return "loosens needs the policy's tighter orders" end
  for i, x in ipairs(loosens) do
    local where = "loosens[" .. i .. "]"
    if type(x) ~= "table" or type(x.field) ~= "string" then
      return where .. " needs field = a result field of tighter"
    end
    local prefix = smatch(x.field, "^(.+)%.[^.]+$")
    if tighter[x.field] == nil and (prefix == nil or tighter[prefix .. ".*"] == nil) then
      return where .. ": " .. x.field .. " is not a result field of tighter"
    end
    if type(x.reason) ~= "string" or smatch(x.reason, "^%s*$") then
      return where .. " (" .. x.field .. ") needs a reason: the basis to differ"
    end
    if x.grade ~= nil and type(x.grade) ~= "string" then
      return where .. ": grade must be a customer grade"
    end
    if x.grade == nil and not region then
      return where .. " (" .. x.field .. "): a national policy has no parent to be looser "
        .. "than; only a grade may have an exception here"
    end
    for k in pairs(x) do
      if k ~= "field" and k ~= "reason" and k ~= "grade" then
        return where .. ": unknown key " .. tostring(k)
      end
    end
  end
  return nil
end

-- What R.policy takes (see "Building a policy" above).
local SPEC_KEYS = { kind = true, fields = true, tighter = true, params = true, tables = true,
  evaluate = true, check_rule = true, loosens = true, facts = true, outcomes = true }

-- The first unknown key of the spec or of one of its tables, or nil.
local function spec_problem(spec)
  local stray = stray_key(spec, SPEC_KEYS)
  if stray ~= nil then return R.unknown("key", stray, SPEC_KEYS) .. " in R.policy" end
  for ti, t in ipairs(type(spec.tables) == "table" and spec.tables or {}) do
    if type(t) == "table" then
      stray = stray_key(t, R.TABLE_KEYS)
      if stray ~= nil then
        return "table " .. tostring(t.name or ti) .. ": " .. R.unknown("key", stray, R.TABLE_KEYS)
      end
    end
  end
  return nil
end

-- What an `outcomes` entry may say a result field is (replay's impact
-- report, core/replay.c): "money" (a whole number of fen, summed and
-- charted), "deadline" (an RFC 3339 time: earlier or later), "level" (a
-- rank: counted from -> to), "value" (compared as a whole).  A field named
-- here, or below it ("deadlines" covers "deadlines.solution"), is an
-- outcome: a result that differs there is a material change; one that
-- differs only elsewhere (echoed input, parameters) is not.
R.OUTCOMES = { money = true, deadline = true, level = true, value = true }

local function outcomes_problem(outcomes)
  if outcomes == nil then return nil end
  if type(outcomes) ~= "table" then return "outcomes must be a table of result fields" end
  for path, what in pairs(outcomes) do
    if type(path) ~= "string" then return "outcomes: keys are result field paths" end
    if not R.OUTCOMES[what] then
      return "outcomes." .. path .. ": unknown kind of outcome " .. tostring(what)
        .. " (money, deadline, level or value)"
    end
  end
  return nil
end

local function build(spec)
  local why = spec_problem(spec) or tighter_problem(spec.tighter)
    or loosens_problem(spec.tighter, spec.loosens, false) or outcomes_problem(spec.outcomes)
  if why then error(tostring(spec.kind) .. " policy: " .. why, 0) end
  local P = {
    kind = spec.kind,
    fields = spec.fields,
    facts = spec.facts or {},
    tighter = spec.tighter,
    outcomes = spec.outcomes,
    loosens = spec.loosens or {},
    params = spec.params or {},
    tables = spec.tables,
    evaluate = spec.evaluate,
    check_rule = spec.check_rule,
  }
  P.schema = S.compile(P.fields)
  -- decide reads P's fields when called, so a region's R.extend on this
  -- same table changes what it does.
  P.decide = function(input, ctx)
    local f = S.validate(P.schema, input)
    -- R.tracer(), with room for 8 trace entries so the list rarely regrows,
    -- and for 4 noted ids (a compensation fires 3): each growth of an empty
    -- set rehashes it (at 1, 2 and 4 keys); more room costs more collection
    local tr = { list = { nil, nil, nil, nil, nil, nil, nil, nil }, seen = new_table(0, 4) }
    if ctx ~= nil and ctx.explain then tr.explain = ctx.explain end
    local result = P.evaluate(P, f, ctx, tr)
    return result, tr.list
  end
  return assert_ok(P)
end

-- Load-time errors name the file and line that called R.policy / R.extend
-- ("regions/GD/sla.lua:8: ...").  A policy file usually ends with
-- `return R.extend(parent(), {...})`, a tail call that leaves no frame of
-- the file on the stack by the time R.extend runs, so the place is taken
-- earlier: when the file reads the field R.extend (or R.policy), through
-- R's __index, while the file's own frame is still the caller.  Each read
-- gets a function of its own that knows where it was read.
local PLACED = {}   -- name -> the implementation; R.<name> reads go through here

-- "file:line: " of the function `level` levels above the caller, as
-- error() writes it (no debug library in the sandbox).
local function caller_place(level)
  local _, msg = pcall(error, "", level + 2)
  return type(msg) == "string" and msg or ""
end

local function place(name, fn)
  PLACED[name] = fn
end

local function placed(_, name)
  local fn = PLACED[name]
  if fn == nil then return nil end
  local at = caller_place(2)                     -- the chunk reading R.<name>
  return function(a, b)
    local ok, res = pcall(fn, a, b)
    if not ok then
      if type(res) == "string" then error(at .. res, 0) end
      error(res, 0)
    end
    return res
  end
end

place("policy", build)

------------------------------------------------------------------------
-- Extending a parent policy (region files).

local function is_map(v)
  return type(v) == "table" and #v == 0
end

-- The keys of map t, each with prefix before it, as a set.
local function prefixed(t, prefix)
  local out = {}
  for k in pairs(t) do out[prefix .. tostring(k)] = true end
  return out
end

-- Merge src into dst: maps key by key (every key must exist already, so a
-- misspelt param is an error), anything else replaced whole.
local function merge_params(dst, src, where)
  for k, v in pairs(src) do
    if dst[k] == nil then
      error("extend: " .. R.unknown("param", where .. tostring(k), prefixed(dst, where)), 0)
    end
    if is_map(v) and is_map(dst[k]) then
      merge_params(dst[k], v, where .. k .. ".")
    else
      dst[k] = v
    end
  end
end

local function find_rule(P, id)
  for _, t in ipairs(P.tables) do
    for i, r in ipairs(t.rules) do
      if r.id == id then return t, i end
    end
  end
  return nil
end

-- Every rule id of P, as a set.
local function rule_ids(P)
  local ids = {}
  for _, t in ipairs(P.tables) do
    for _, r in ipairs(t.rules) do ids[r.id] = true end
  end
  return ids
end

local ADD_KEYS = { table = true, before = true, after = true, rule = true }
local EXT_KEYS = { params = true, replace = true, add = true, fields = true, loosens = true }

-- R.extend(P, {
--   params  = { name = value, map = { key = value } },   merged into P.params
--   replace = { ["old.id"] = { id = "new.id", basis = "...", ... } },
--             -- the old rule's fields overlaid with these; needs its own
--             -- id and basis, so the trace shows which rule decided
--   add     = { { table = "repair", before = "rule.id" | after = "rule.id",
--                 rule = { id = ..., basis = ..., when = ..., ... } } },
--             -- neither before nor after: appended to the table
--   fields  = { new_field = S.integer{ ... } },          added input fields
--   loosens = { { field = ..., reason = ... } },         exceptions (above)
-- })  -> P
local function extend(P, ext)
  for k in pairs(ext) do
    if not EXT_KEYS[k] then error("extend: " .. R.unknown("key", k, EXT_KEYS), 0) end
  end
  -- The parent's grade exceptions hold here too; its exceptions against
  -- its own parent are its own.
  local bad = loosens_problem(P.tighter, ext.loosens, true)
  if bad then error(P.kind .. " policy: " .. bad, 0) end
  local loosens = {}
  for _, x in ipairs(P.loosens or {}) do
    if x.grade ~= nil then loosens[#loosens + 1] = x end
  end
  for _, x in ipairs(ext.loosens or {}) do loosens[#loosens + 1] = x end
  P.loosens = loosens
  if ext.params then merge_params(P.params, ext.params, "") end
  for old_id, new in pairs(ext.replace or {}) do
    local t, i = find_rule(P, old_id)
    if not t then error("extend: replace: " .. R.unknown("rule", old_id, rule_ids(P)), 0) end
    local old = t.rules[i]
    local stray = stray_key(new, R.RULE_KEYS, data_set(t))
    if stray ~= nil then
      error("extend: the rule replacing " .. old_id .. " (table " .. t.name .. "): "
        .. R.unknown("field", stray, R.RULE_KEYS, data_set(t)), 0)
    end
    if new.id == nil or new.id == old_id or new.basis == nil or new.basis == old.basis then
      error("extend: the rule replacing '" .. old_id .. "' needs its own id and basis", 0)
    end
    if old.limits then
      local why = replace_problem(old, new)
      if why then error(P.kind .. " policy: " .. why, 0) end
    end
    local r = {}
    for k, v in pairs(old) do r[k] = v end
    for k, v in pairs(new) do r[k] = v end
    t.rules[i] = r
  end
  for n, a in ipairs(ext.add or {}) do
    local stray = stray_key(a, ADD_KEYS)
    if stray ~= nil then error("extend: add[" .. n .. "]: " .. R.unknown("key", stray, ADD_KEYS), 0) end
    local t = P.by_name[a.table]
    if t == nil then
      error("extend: add[" .. n .. "]: " .. R.unknown("table", a.table, P.by_name), 0)
    end
    local anchor = a.before or a.after
    local pos = #t.rules + 1
    if anchor then
      local at
      for i, r in ipairs(t.rules) do
        if r.id == anchor then at = i end
      end
      if not at then error("extend: add[" .. n .. "]: no rule " .. anchor .. " in table " .. a.table, 0) end
      pos = a.before and at or at + 1
    end
    table.insert(t.rules, pos, a.rule)
  end
  if ext.fields then
    P.fields = S.extend(P.fields, ext.fields)
    P.schema = S.compile(P.fields)
  end
  return assert_ok(P)
end

place("extend", extend)

------------------------------------------------------------------------
-- Small helpers.

-- The decision time ctx.at as t, off (lib.time); bad_input if unusable.
function R.at(ctx)
  local t, off = T.parse(ctx.at)
  if not t then S.fail("at", "expected the decision time as RFC 3339 with offset: " .. off) end
  return t, off
end

-- A set from an array: R.set{ "a", "b" } -> { a = true, b = true }.
function R.set(list)
  local s = {}
  for _, v in ipairs(list) do s[v] = true end
  return s
end

setmetatable(R, { __index = placed })

return R
