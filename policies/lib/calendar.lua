-- lib/calendar.lua - working-day calendars and deadline arithmetic.
--
-- Data: calendar/<year>.lua holds the national days off (`holidays`, as
-- from/to ranges) and weekend days worked (`workdays`, 调休) of one year;
-- regions/<CODE>/calendar/<year>.lua adds a region's own days on top of its
-- parent's (GD-SZ on top of GD on top of national).  C.load() reads every
-- year it finds in C.FIRST_YEAR..C.LAST_YEAR once, when the first policy
-- loads, into a map day number -> working (true) / off (false), and numbers
-- the working days so that "n working days after" is a single lookup.
--
-- Counting rule (DOMAIN.md): the start day is not counted; a deadline that
-- falls on a day off moves to the next working day; a deadline ends at 24:00
-- of its day, which verdict writes as 23:59:59 of that day, local time.
-- Hour and minute limits are exact instants: they run through nights,
-- weekends and holidays.
--
-- A day outside every loaded year is decided by the policy's
-- `calendar_fallback` param: "error" raises bad_input naming the year;
-- "weekend_only" counts Saturdays and Sundays as the only days off and adds
-- the trace entry `calendar.weekend_only_fallback` saying so.

local T = require("lib.time")
local R = require("lib.rules")

-- Globals and library functions are read once, here (see lib/rules.lua).
local type, error, ipairs, pairs, pcall, require = type, error, ipairs, pairs, pcall, require
local sfind, smatch, sfmt = string.find, string.match, string.format
local concat, sort = table.concat, table.sort
local mtype = math.type
local civil_from_days, add_months = T.civil_from_days, T.add_months

local C = {}

C.FIRST_YEAR = 2000
C.LAST_YEAR = 2099

------------------------------------------------------------------------
-- Loading (once per engine).

-- require(name) if the file exists, nil if it does not; any other error
-- (a syntax error in an existing calendar file) is raised.
local function probe(name)
  local ok, mod = pcall(require, name)
  if ok then return mod end
  if type(mod) == "string" and sfind(mod, "not found", 1, true) then
    return nil
  end
  error(mod, 0)
end

local function bad_data(file, msg)
  error(file .. ": " .. msg, 0)
end

local function day_of(file, s)
  local dn, why = T.parse_date(s)
  if not dn then bad_data(file, "bad date " .. tostring(s) .. ": " .. why) end
  return dn
end

-- Check a year file's shape and call mark(dn, working) for each day it sets.
local function read_year(file, data, year, mark)
  if type(data) ~= "table" or data.year ~= year then
    bad_data(file, "must return a table with year = " .. year)
  end
  local first = T.days_from_civil(year, 1, 1)
  local last = T.days_from_civil(year, 12, 31)
  local function in_year(dn, s)
    if dn < first or dn > last then bad_data(file, s .. " is not in " .. year) end
  end
  for i, h in ipairs(data.holidays or {}) do
    if type(h) ~= "table" then bad_data(file, "holidays[" .. i .. "] must be a table") end
    local a, b = day_of(file, h.from), day_of(file, h.to)
    in_year(a, h.from)
    in_year(b, h.to)
    if b < a then bad_data(file, "holidays[" .. i .. "]: to is before from") end
    for dn = a, b do mark(dn, false) end
  end
  for _, s in ipairs(data.workdays or {}) do
    local dn = day_of(file, s)
    in_year(dn, s)
    mark(dn, true)
  end
end

-- Number the working days of a calendar: rank[dn] = working days up to and
-- including dn, nth[k] = the k-th working day, block[dn] = which run of
-- consecutive loaded years dn is in (a lookup never jumps a gap between
-- loaded years), chg[dn] = regionally changed days up to and including dn.
local function index(cal)
  local rank, nth, block, chg = {}, {}, {}, {}
  local k, c, b, prev = 0, 0, 0, nil
  for _, y in ipairs(cal.years) do
    if prev == nil or y ~= prev + 1 then b = b + 1 end
    prev = y
    for dn = T.days_from_civil(y, 1, 1), T.days_from_civil(y, 12, 31) do
      if cal.open[dn] then
        k = k + 1
        nth[k] = dn
      end
      if cal.changed[dn] then c = c + 1 end
      rank[dn], block[dn], chg[dn] = k, b, c
    end
  end
  cal.rank, cal.nth, cal.block, cal.chg = rank, nth, block, chg
  return cal
end

-- The national calendar: every calendar/<year>.lua found.
local function load_national()
  local open, years = {}, {}
  for y = C.FIRST_YEAR, C.LAST_YEAR do
    local data = probe("calendar." .. y)
    if data then
      years[#years + 1] = y
      for dn = T.days_from_civil(y, 1, 1), T.days_from_civil(y, 12, 31) do
        local wd = T.weekday(dn)
        open[dn] = wd ~= 0 and wd ~= 6
      end
      read_year("calendar/" .. y .. ".lua", data, y, function(dn, working)
        open[dn] = working
      end)
    end
  end
  -- Date strings of these years, and of the year after (deadlines run into
  -- it), are precomputed for T.format.
  if #years > 0 then T.cache_dates(years[1], years[#years] + 1) end
  return index({ region = "national", open = open, years = years, changed = {}, bases = {} })
end

-- A region's calendar: its parent's plus regions/<code>/calendar/<year>.lua
-- for each loaded year; nil when the region adds nothing.
local function load_region(code, base)
  local open, changed, bases
  for _, y in ipairs(base.years) do
    local data = probe("regions." .. code .. ".calendar." .. y)
    if data then
      if not open then
        open, changed, bases = {}, {}, {}
        for dn, w in pairs(base.open) do open[dn] = w end
        for dn, v in pairs(base.changed) do changed[dn] = v end
        for i, v in ipairs(base.bases) do bases[i] = v end
      end
      local file = "regions/" .. code .. "/calendar/" .. y .. ".lua"
      bases[#bases + 1] = data.basis or file
      read_year(file, data, y, function(dn, working)
        open[dn] = working
        changed[dn] = true
      end)
    end
  end
  if not open then return nil end
  -- The trace entry C.report adds when a decision used a regional day.
  local note = { rule = "calendar.regional." .. code,
    basis = "regional working-day calendar: " .. concat(bases, "; ") }
  return index({ region = code, open = open, years = base.years, changed = changed,
    bases = bases, note = note })
end

-- Load the national calendar and every region's additions (regions listed
-- in regions.lua, provinces before cities).  Returns a set keyed by code,
-- built once per engine, when this file loads, and shared read-only by
-- every policy.

-- PROVINCE[code]: the province of each city code in regions.lua.
local PROVINCE = {}
-- RESOLVED[code]: the calendar of each code in regions.lua (its own, its
-- province's or the national one), looked up once here rather than per
-- decision.
local RESOLVED = {}

local function load_all()
  local set = { national = load_national() }
  local provinces, cities = {}, {}
  for _, code in ipairs(probe("regions") or {}) do
    if sfind(code, "-", 1, true) then
      cities[#cities + 1] = code
      PROVINCE[code] = smatch(code, "^([^-]+)%-")
    else
      provinces[#provinces + 1] = code
    end
  end
  for _, code in ipairs(provinces) do
    set[code] = load_region(code, set.national)
  end
  for _, code in ipairs(cities) do
    set[code] = load_region(code, set[PROVINCE[code]] or set.national)
  end
  for _, code in ipairs(provinces) do
    RESOLVED[code] = set[code] or set.national
  end
  for _, code in ipairs(cities) do
    RESOLVED[code] = set[code] or set[PROVINCE[code]] or set.national
  end
  return set
end

-- Built here, not on a first call: a function may not assign to a
-- file-level local (the sandbox refuses it: no state between decisions).
local loaded = load_all()
function C.load() return loaded end

-- The calendar for a requested region: its own, else its province's, else
-- the national one.
function C.for_region(set, code)
  local cal = set == loaded and RESOLVED[code] or set[code]
  if cal then return cal end
  local parent = PROVINCE[code]
  if parent == nil then parent = type(code) == "string" and smatch(code, "^([^-]+)%-") end
  return parent and set[parent] or set.national
end

------------------------------------------------------------------------
-- Per decision: a clock is a calendar plus what one decision used of it
-- (regional days, fallback years), for the trace.

-- mode: the policy's calendar_fallback; path: the input field to name if a
-- year is missing and mode is "error".
function C.clock(cal, mode, path)
  return { cal = cal, mode = mode, path = path, fallback = nil, regional = false }
end

-- The clock of a decision in region `code`, on the calendars C.load() built
-- (call C.load() when the policy file loads, not per decision).
function C.clock_for(code, mode, path)
  return C.clock(C.for_region(loaded, code), mode, path)
end

-- Is day dn a working day?  Outside the loaded years: the fallback.
function C.is_working(clk, dn)
  local cal = clk.cal
  local w = cal.open[dn]
  if w ~= nil then
    if cal.changed[dn] then clk.regional = true end
    return w
  end
  local y = civil_from_days(dn)
  if clk.mode ~= "weekend_only" then
    error({
      code = "bad_input", path = clk.path,
      message = sfmt("no working-day calendar is loaded for %d "
        .. "(calendar/%d.lua is missing) and this policy does not fall back "
        .. "to weekends only", y, y),
    }, 0)
  end
  clk.fallback = clk.fallback or {}
  clk.fallback[y] = true
  local wd = (dn + 4) % 7                            -- T.weekday: 0 Sunday, 6 Saturday
  return wd ~= 0 and wd ~= 6
end

local is_working = C.is_working

-- The n-th working day after dn (dn itself not counted).
local function add_working_days(clk, dn, n)
  local cal = clk.cal
  local r = cal.rank[dn]
  if r then
    local d2 = cal.nth[r + n]
    if d2 and cal.block[d2] == cal.block[dn] then    -- within loaded years
      if cal.chg[d2] ~= cal.chg[dn] then clk.regional = true end
      return d2
    end
  end
  local guard = dn + 3660                            -- else day by day
  while n > 0 do
    dn = dn + 1
    if is_working(clk, dn) then n = n - 1 end
    if dn > guard then error("calendar: no working day within ten years", 0) end
  end
  return dn
end
C.add_working_days = add_working_days

-- The first working day on or after dn.
local function roll(clk, dn)
  if is_working(clk, dn) then return dn end
  return add_working_days(clk, dn, 1)
end
C.roll = roll

------------------------------------------------------------------------
-- Deadlines.

-- A deadline spec is exactly one of
--   { minutes = n }, { hours = n }          exact instants
--   { working_days = n }                    start day not counted
--   { days = n }, { months = n }            calendar; rolled to a working day
local UNITS = { "minutes", "hours", "working_days", "days", "months" }

-- The problem with a spec, or nil (checked when a policy loads).
function C.spec_error(spec)
  if type(spec) ~= "table" then return "a deadline must be a table such as { hours = 48 }" end
  local unit
  for _, u in ipairs(UNITS) do
    if spec[u] ~= nil then
      if unit then return "a deadline has one unit, not " .. unit .. " and " .. u end
      unit = u
    end
  end
  if not unit then return "a deadline needs one of minutes, hours, working_days, days, months" end
  local n = spec[unit]
  if mtype(n) ~= "integer" or n < 0 or n > 100000 then
    return "deadline " .. unit .. " must be an integer from 0 to 100000"
  end
  if unit == "working_days" and n == 0 then        -- the start day is not counted
    return "deadline working_days must be at least 1 (for the same day, use { days = 0 })"
  end
  return nil
end

-- The deadline instant for spec counted from instant t written in offset off.
function C.due(clk, t, off, spec)
  local n = spec.minutes
  if n then return t + n * 60 end
  n = spec.hours
  if n then return t + n * 3600 end
  local dn = (t + off) // 86400                      -- T.local_day
  n = spec.working_days
  if n then
    dn = add_working_days(clk, dn, n)
  else
    n = spec.days
    if n then
      dn = roll(clk, dn + n)
    else
      dn = roll(clk, add_months(dn, spec.months))
    end
  end
  return (dn + 1) * 86400 - off - 1                  -- T.end_of_day
end

-- Add to the trace what the decision's counting relied on beyond the
-- national data: a regional calendar, or the weekend-only fallback.
function C.report(clk, tr)
  if clk.regional then
    local note = clk.cal.note                        -- built by load_region
    if not tr.seen[note.rule] then
      tr.seen[note.rule] = true
      tr.list[#tr.list + 1] = note
    end
  end
  if clk.fallback then
    local years = {}
    for y in pairs(clk.fallback) do years[#years + 1] = y end
    sort(years)
    R.note(tr, "calendar.weekend_only_fallback",
      "no holiday calendar is loaded for " .. concat(years, ", ") .. "; counted "
      .. "Saturdays and Sundays as the only days off (policy param calendar_fallback = "
      .. "weekend_only)")
  end
end

return C
