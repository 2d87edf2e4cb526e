-- lib/grid.lua - the inputs `verdict check` decides to prove that no region
-- loosens its parent and that no higher customer grade gets a looser answer
-- than a lower one (core/grid.c decides them and compares the answers by
-- each kind's `tighter` orders, lib/rules.lua).
--
-- G.inputs(P, n) returns about n grid points for policy P, each
-- { at = decision time, input = the input without the grade field }; the
-- checker adds every grade of G.GRADES (highest first) to each point
-- itself, so every point is decided for every grade.
--
-- The grid has one axis per input field of P's schema (lib/schema.lua):
--   enum      every value (and "absent" when the field is optional with no
--             default): every category, channel, cause, ... the schema allows
--   boolean   false, true (and absent, as for enums)
--   integer   0, 1, 24, 50, 100, 1000, 20000 and 100000 within the field's
--             min and max (and absent, as for enums)
--   time      the days around every holiday of every loaded calendar year:
--             for each run of days that differ from the usual week (a
--             holiday on a weekday, a weekend day worked), the 5th, 2nd and
--             1st day before it, its first and last day and the day after,
--             and the 15th of every month; at 10:00 and 23:30 in turn, in
--             the calendar's civil time (and absent, as for enums)
--   set       the empty set, each value alone, and every value
--   string    a fixed text when required, else absent
--   map, object, list: their default (not an axis)
-- and one more for the decision time: the latest time of the input, then
-- 14.5 and 15.5 days later (around the MIIT 15-day reply window).  A field
-- set to something (not false, 0 or "") gets the fields it `requires`.
--
-- Sampling: when the full product of the axes has at most n points, every
-- point is taken.  Otherwise the first points walk every axis at once
-- (point i takes value i mod size of each axis), so every value of every
-- axis occurs at least once, and the rest, up to n, take each axis's value
-- from a fixed-seed linear congruential generator.  The same bundle gives
-- the same grid every time.

local T = require("lib.time")
local C = require("lib.calendar")
local D = require("lib.domain")

local ipairs, pairs = ipairs, pairs
local sort = table.sort

local G = {}

-- The input field that carries the customer grade, and the grades, highest
-- first (lib/domain.lua).
G.GRADE_FIELD = "customer_grade"
G.GRADES = D.GRADES

local NUMBERS = { 0, 1, 24, 50, 100, 1000, 20000, 100000 }
local BEFORE = { 5, 2, 1 }                 -- days before a run of special days
local TIMES_OF_DAY = { 10 * 3600, 23 * 3600 + 30 * 60 }
local AT_AFTER = { 0, 348 * 3600, 372 * 3600 }
local NONE = {}                            -- an axis value: the field is absent

-- The time axis: instants (seconds) written in the calendar's offset.
local times_cache
local function times()
  if times_cache then return times_cache end
  local cal = C.load().national
  local open, off = cal.open, cal.off
  local days, seen = {}, {}
  local function add(dn)
    if open[dn] ~= nil and not seen[dn] then
      seen[dn] = true
      days[#days + 1] = dn
    end
  end
  local function special(dn)
    local working = open[dn]
    local wd = T.weekday(dn)
    return working ~= nil and working ~= (wd ~= 0 and wd ~= 6)
  end
  for _, y in ipairs(cal.years) do
    local dn, last = T.days_from_civil(y, 1, 1), T.days_from_civil(y, 12, 31)
    while dn <= last do
      if special(dn) then
        local e = dn
        while e < last and special(e + 1) do e = e + 1 end
        for _, b in ipairs(BEFORE) do add(dn - b) end
        add(dn)
        add(e)
        add(e + 1)
        dn = e + 1
      else
        dn = dn + 1
      end
    end
    for m = 1, 12 do add(T.days_from_civil(y, m, 15)) end
  end
  sort(days)
  local out = {}
  for i, dn in ipairs(days) do
    out[i] = dn * 86400 - off + TIMES_OF_DAY[(i - 1) % #TIMES_OF_DAY + 1]
  end
  times_cache = { list = out, off = off }
  return times_cache
end

-- The axis of one field spec, or nil when the field is not varied.
local function axis(name, sp)
  local values = {}
  local optional = not sp.required and sp.default == nil
  local ty = sp.type
  if ty == "enum" then
    for i, v in ipairs(sp.values) do values[i] = v end
  elseif ty == "boolean" then
    values = { false, true }
  elseif ty == "integer" then
    for _, v in ipairs(NUMBERS) do
      if (sp.min == nil or v >= sp.min) and (sp.max == nil or v <= sp.max) then
        values[#values + 1] = v
      end
    end
  elseif ty == "time" then
    values = times().list
  elseif ty == "set" then
    values[1] = {}
    if sp.of and sp.of.type == "enum" then
      for _, v in ipairs(sp.of.values) do values[#values + 1] = { v } end
      local all = {}
      for i, v in ipairs(sp.of.values) do all[i] = v end
      if #all > 1 then values[#values + 1] = all end
    end
  elseif ty == "string" then
    if not sp.required then return nil end
    values = { "GRID-" .. name }
  else
    return nil
  end
  if optional and ty ~= "set" then values[#values + 1] = NONE end
  return { name = name, spec = sp, values = values, times = ty == "time" }
end

local function set_to_something(v)
  return v ~= NONE and v ~= nil and v ~= false and v ~= 0 and v ~= ""
end

-- Grid point from the chosen value index of each axis (idx[j], 1-based).
local function point(axes, idx, at_axis, i)
  local chosen = {}
  for j, a in ipairs(axes) do chosen[a.name] = a.values[idx[j]] end
  for _, a in ipairs(axes) do
    local req = a.spec.requires
    if req and set_to_something(chosen[a.name]) then
      for _, r in ipairs(req) do
        if chosen[r] == NONE or chosen[r] == nil then
          for _, b in ipairs(axes) do
            if b.name == r then
              -- a value other than "absent", chosen by the point's number
              local n = #b.values
              if b.values[n] == NONE then n = n - 1 end
              if n > 0 then chosen[r] = b.values[i % n + 1] end
            end
          end
        end
      end
    end
  end
  local input, latest = {}, nil
  for _, a in ipairs(axes) do
    local v = chosen[a.name]
    if v ~= NONE and v ~= nil then
      if a.times then
        if latest == nil or v > latest then latest = v end
        v = T.format(v, times().off)
      end
      input[a.name] = v
    end
  end
  local at = (latest or times().list[1]) + AT_AFTER[idx[at_axis]]
  return { at = T.format(at, times().off), input = input }
end

-- About n grid points of policy P (see the top of this file).
function G.inputs(P, n)
  local names = {}
  for name in pairs(P.fields) do
    if name ~= G.GRADE_FIELD then names[#names + 1] = name end
  end
  sort(names)
  local axes = {}
  for _, name in ipairs(names) do
    local a = axis(name, P.fields[name])
    if a then axes[#axes + 1] = a end
  end
  local sizes, total, widest = {}, 1, #AT_AFTER
  for j, a in ipairs(axes) do
    sizes[j] = #a.values
    if total <= n then total = total * sizes[j] end
    if sizes[j] > widest then widest = sizes[j] end
  end
  local at_axis = #axes + 1
  sizes[at_axis] = #AT_AFTER
  total = total * #AT_AFTER
  local out = {}
  if total <= n then                       -- the whole product
    for i = 0, total - 1 do
      local idx, rest = {}, i
      for j = 1, at_axis do
        idx[j] = rest % sizes[j] + 1
        rest = rest // sizes[j]
      end
      out[#out + 1] = point(axes, idx, at_axis, i)
    end
    return out
  end
  if n < widest then n = widest end
  local x = 0x2545F4914F6CDD1D             -- the generator's fixed seed
  for i = 0, n - 1 do
    local idx = {}
    for j = 1, at_axis do
      if i < widest then
        idx[j] = i % sizes[j] + 1
      else
        x = x * 6364136223846793005 + 1442695040888963407    -- wraps mod 2^64
        idx[j] = ((x >> 33) % sizes[j]) + 1
      end
    end
    out[#out + 1] = point(axes, idx, at_axis, i)
  end
  return out
end

return G
