-- lib/calendar.lua - working-day calendars and deadline arithmetic.
--
-- Data: calendar/<year>.lua holds the national days off (`holidays`, as
-- from/to ranges) and weekend days worked (`workdays`, 调休) of one year,
-- and the UTC offset of the civil time its dates are in (`utc_offset`,
-- "+08:00": the holiday notice is a calendar of dates in China);
-- regions/<CODE>/calendar/<year>.lua adds a region's own days on top of its
-- parent's (GD-SZ on top of GD on top of national).  C.load() reads every
-- year it finds in C.FIRST_YEAR..C.LAST_YEAR once, when the first policy
-- loads, into a map day number -> working (true) / off (false), and numbers
-- the working days so that "n working days after" is a single lookup.
--
-- Civil time: every calendar quantity (the day an instant falls on, working
-- days, calendar days, months, "ends at 24:00 of its day") is counted on the
-- calendar's own civil time, whatever offset the input was written in:
-- 2026-02-13T16:30:00Z is Saturday 14 February in China, and a deadline on
-- that day ends at 2026-02-14T23:59:59+08:00 (= 15:59:59Z).  The same
-- instant written in any offset therefore gets the same deadlines.  The
-- policies write every time they answer in the calendar's offset
-- (C.offset; "+08:00" for the shipped calendars), so a deadline day reads
-- as the date it is in China.
--
-- Counting rule (DOMAIN.md): the start day is not counted; a deadline that
-- falls on a day off moves to the next working day; a deadline ends at 24:00
-- of its day, which verdict writes as 23:59:59 of that day, calendar time.
-- Hour and minute limits are exact instants: they run through nights,
-- weekends and holidays.
--
-- A day outside every loaded year is decided by the calendar's `fallback`
-- setting, one per region for every kind (sla, escalation, appeal alike):
-- calendar/settings.lua nationally, regions/<CODE>/calendar/settings.lua
-- for a region and the cities in it (GD: "error").  "weekend_only" counts
-- Saturdays and Sundays as the only days off and adds the trace entry
-- `calendar.weekend_only_fallback` saying so.  "error" never guesses: such
-- a day is unknown.  C.due then raises bad_input naming the year; a kind
-- that can still decide asks C.due_earliest instead, which answers the
-- earliest the deadline can end whatever that year's notice says, and the
-- year it depends on.  The kind decides what does not depend on the year,
-- refuses (C.refuse) what does, writes what may still move as provisional,
-- and records the year (C.depends) for the trace entry C.report adds,
-- `calendar.provisional`.  With no settings file at all: "error".

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

-- The offset (seconds) a year file's utc_offset gives; nil if it has none.
local function offset_of(file, data)
  local s = data.utc_offset
  if s == nil then return nil end
  local off, why = T.parse_offset(s)
  if not off then bad_data(file, "bad utc_offset " .. tostring(s) .. ": " .. why) end
  return off
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

-- The national calendar: every calendar/<year>.lua found.  Each names the
-- offset of its civil time (utc_offset); all must name the same one, which
-- is the calendar's (cal.off).
local function load_national()
  local open, years, off, off_file = {}, {}, nil, nil
  for y = C.FIRST_YEAR, C.LAST_YEAR do
    local data = probe("calendar." .. y)
    if data then
      local file = "calendar/" .. y .. ".lua"
      if type(data) ~= "table" then bad_data(file, "must return a table with year = " .. y) end
      local o = offset_of(file, data)
      if o == nil then
        bad_data(file, "needs utc_offset, the offset of the civil time its dates are in "
          .. "(\"+08:00\" for the State Council's notice)")
      elseif off ~= nil and o ~= off then
        bad_data(file, "utc_offset " .. data.utc_offset .. " differs from " .. off_file
          .. "'s; one calendar counts days in one civil time")
      end
      off, off_file = o, off_file or file
      years[#years + 1] = y
      for dn = T.days_from_civil(y, 1, 1), T.days_from_civil(y, 12, 31) do
        local wd = T.weekday(dn)
        open[dn] = wd ~= 0 and wd ~= 6
      end
      read_year(file, data, y, function(dn, working)
        open[dn] = working
      end)
    end
  end
  if off == nil then
    bad_data("calendar/", "no calendar/<year>.lua: at least one year file is needed, for its "
      .. "days and for utc_offset, the civil time deadlines are counted in")
  end
  -- Date strings of these years, and of the year after (deadlines run into
  -- it), are precomputed for T.format.
  T.cache_dates(years[1], years[#years] + 1)
  return index({ region = "national", open = open, years = years, changed = {}, bases = {},
    off = off })
end

-- The fallback setting of calendar/settings.lua or
-- regions/<code>/calendar/settings.lua (`file`), checked; nil if no file.
local FALLBACKS = { error = true, weekend_only = true }

local function read_settings(file, data)
  if data == nil then return nil end
  if type(data) ~= "table" or not FALLBACKS[data.fallback] then
    bad_data(file, "must return { fallback = \"error\" | \"weekend_only\" }")
  end
  for k in pairs(data) do
    if k ~= "fallback" and k ~= "basis" then bad_data(file, "unknown setting " .. tostring(k)) end
  end
  return { mode = data.fallback, file = file }
end

-- A region's calendar: its parent's plus regions/<code>/calendar/<year>.lua
-- for each loaded year, and its own settings.lua; nil when the region adds
-- nothing.  A regional year file for a year with no national file is an
-- error: its days would silently count for nothing.
local function load_region(code, base, national_years)
  local dir = "regions/" .. code .. "/calendar/"
  for y = C.FIRST_YEAR, C.LAST_YEAR do
    if not national_years[y] and probe("regions." .. code .. ".calendar." .. y) ~= nil then
      bad_data(dir .. y .. ".lua", "there is no calendar/" .. y .. ".lua; a regional "
        .. "calendar adds to the national year, so add that first")
    end
  end
  local settings = read_settings(dir .. "settings.lua", probe("regions." .. code
    .. ".calendar.settings"))
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
      local file = dir .. y .. ".lua"
      if type(data) ~= "table" then bad_data(file, "must return a table with year = " .. y) end
      local o = offset_of(file, data)
      if o ~= nil and o ~= base.off then
        bad_data(file, "utc_offset " .. data.utc_offset .. " differs from the national "
          .. "calendar's; a region adds days, it does not move the civil time")
      end
      bases[#bases + 1] = data.basis or file
      read_year(file, data, y, function(dn, working)
        open[dn] = working
        changed[dn] = true
      end)
    end
  end
  if not open and not settings then return nil end
  local cal
  if open then
    -- The trace entry C.report adds when a decision used a regional day.
    local note = { rule = "calendar.regional." .. code,
      basis = "regional working-day calendar: " .. concat(bases, "; ") }
    cal = index({ region = code, open = open, years = base.years, changed = changed,
      bases = bases, note = note, off = base.off })
  else                                  -- the parent's days, shared read-only
    cal = {}
    for k, v in pairs(base) do cal[k] = v end
    cal.region = code
  end
  if settings then
    cal.mode, cal.settings_file = settings.mode, settings.file
  else
    cal.mode, cal.settings_file = base.mode, base.settings_file
  end
  return cal
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
  local national = load_national()
  -- The national fallback setting; without calendar/settings.lua, no
  -- guessing: a year without a file is an error.
  local settings = read_settings("calendar/settings.lua", probe("calendar.settings"))
  national.mode = settings and settings.mode or "error"
  national.settings_file = settings and settings.file or "calendar/settings.lua"
  local national_years = {}
  for _, y in ipairs(national.years) do national_years[y] = true end
  local set = { national = national }
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
    set[code] = load_region(code, set.national, national_years)
  end
  for _, code in ipairs(cities) do
    set[code] = load_region(code, set[PROVINCE[code]] or set.national, national_years)
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

-- path: the input field to name if a year is missing and the calendar's
-- fallback setting is "error".
function C.clock(cal, path)
  return { cal = cal, off = cal.off, mode = cal.mode, path = path, fallback = nil,
    regional = false }
end

-- The offset (seconds) of the clock's civil time: the one results are
-- written in (T.format(t, C.offset(clk))).
function C.offset(clk)
  return clk.off
end

-- The clock of a decision in region `code`, on the calendars C.load() built
-- (call C.load() when the policy file loads, not per decision).  Every
-- kind gets the same calendar and the same fallback setting for a region.
function C.clock_for(code, path)
  return C.clock(C.for_region(loaded, code), path)
end

-- The bad_input error for a decision that needs a day of year y, which
-- has no calendar file, in a calendar that does not fall back to weekends
-- only; `why` (optional) says what depends on the year.
local function refuse(clk, y, why)
  local cal = clk.cal
  error({
    code = "bad_input", path = clk.path,
    message = sfmt("no working-day calendar is loaded for %d "
      .. "(calendar/%d.lua is missing) and the calendar of region %s does not fall "
      .. "back to weekends only (%s)", y, y, cal.region, cal.settings_file)
      .. (why and "; " .. why or ""),
  }, 0)
end
C.refuse = refuse

-- Is day dn a working day: true or false; nil when dn is in a year with
-- no calendar file and the fallback setting is "error" (unknown: the
-- caller decides).  With "weekend_only", Saturdays and Sundays are off and
-- the year is recorded for the trace.
local function state(clk, dn)
  local cal = clk.cal
  local w = cal.open[dn]
  if w ~= nil then
    if cal.changed[dn] then clk.regional = true end
    return w
  end
  if clk.mode ~= "weekend_only" then return nil end
  local y = civil_from_days(dn)
  clk.fallback = clk.fallback or {}
  clk.fallback[y] = true
  local wd = (dn + 4) % 7                            -- T.weekday: 0 Sunday, 6 Saturday
  return wd ~= 0 and wd ~= 6
end

-- Is day dn a working day?  Outside the loaded years: the fallback, or
-- bad_input (C.refuse) where the setting is "error".
function C.is_working(clk, dn)
  local w = state(clk, dn)
  if w == nil then refuse(clk, (civil_from_days(dn))) end
  return w
end

-- The n-th working day after dn (dn itself not counted), and the first
-- year with no calendar the count went through (nil: none, the day is
-- exact).  A day of such a year is counted as a working day, so the day
-- returned is the earliest the count can end: that year's notice can only
-- make fewer of its days working days (a 调休 weekend day worked counts
-- already).
local function earliest_working_day(clk, dn, n)
  local cal = clk.cal
  local r = cal.rank[dn]
  if r then
    local d2 = cal.nth[r + n]
    if d2 and cal.block[d2] == cal.block[dn] then    -- within loaded years
      if cal.chg[d2] ~= cal.chg[dn] then clk.regional = true end
      return d2, nil
    end
  end
  local guard, missing = dn + 3660, nil              -- else day by day
  while n > 0 do
    dn = dn + 1
    local w = state(clk, dn)
    if w == nil then
      missing = missing or civil_from_days(dn)
      w = true
    end
    if w then n = n - 1 end
    if dn > guard then error("calendar: no working day within ten years", 0) end
  end
  return dn, missing
end

-- The n-th working day after dn (dn itself not counted); bad_input for a
-- day it cannot count.
local function add_working_days(clk, dn, n)
  local d, missing = earliest_working_day(clk, dn, n)
  if missing then refuse(clk, missing) end
  return d
end
C.add_working_days = add_working_days

-- The first day on or after dn that is a working day or unknown, and the
-- year of an unknown one (nil: the day is a known working day).  An unknown
-- day is the earliest the rolled day can be: only a day off moves it on.
local function earliest_roll(clk, dn)
  local w = state(clk, dn)
  if w then return dn, nil end
  if w == nil then return dn, (civil_from_days(dn)) end
  return earliest_working_day(clk, dn, 1)
end

-- The first working day on or after dn; bad_input for a day it cannot
-- decide.
local function roll(clk, dn)
  local d, missing = earliest_roll(clk, dn)
  if missing then refuse(clk, missing) end
  return d
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

-- The deadline for spec counted from instant t, as the earliest it can
-- be: returns the instant, the year with no calendar file it depends on
-- (nil: the instant is exact), and whether the instant is the deadline's
-- own day (true; false: a working-day count through that year, which
-- counted each of its days as worked, a bound rather than a date anyone
-- would name).  Days are the calendar's civil days (clk.off), whatever
-- offset t was written in.  Only an "error" calendar has unknown days; a
-- "weekend_only" one counts them by its fallback, exact as far as it goes.
function C.due_earliest(clk, t, spec)
  local n = spec.minutes
  if n then return t + n * 60, nil, true end
  n = spec.hours
  if n then return t + n * 3600, nil, true end
  local off = clk.off
  local dn = (t + off) // 86400                      -- T.local_day
  local missing, own
  n = spec.working_days
  if n then
    dn, missing = earliest_working_day(clk, dn, n)
    own = missing == nil
  else
    n = spec.days
    if n then
      dn, missing = earliest_roll(clk, dn + n)
    else
      dn, missing = earliest_roll(clk, add_months(dn, spec.months))
    end
    own = true
  end
  return (dn + 1) * 86400 - off - 1, missing, own    -- T.end_of_day
end
local due_earliest = C.due_earliest

-- The deadline instant for spec counted from instant t; bad_input (naming
-- clk.path and the year) when it depends on a year with no calendar file.
function C.due(clk, t, spec)
  local d, missing = due_earliest(clk, t, spec)
  if missing then refuse(clk, missing) end
  return d
end

-- The earlier of two deadlines given as C.due_earliest answers them
-- (t1, y1, own1 may be nil: none yet): the earlier of the two instants, and
-- the year it still depends on (nil when an exact one is no later than
-- the other's earliest), with `own` as in C.due_earliest.  For an output
-- that takes the earliest deadline any rule gives.
function C.earlier(t1, y1, own1, t2, y2, own2)
  if t1 == nil or t2 < t1 then return t2, y2, own2 end
  if t2 == t1 then
    if y1 == nil or y2 == nil then return t1, nil, true end
    return t1, y1, own1 or own2
  end
  return t1, y1, own1
end

-- Record that an answer of this decision depended on year y, which has no
-- calendar file: C.report then says so in the trace
-- (`calendar.provisional`).
function C.depends(clk, y)
  clk.unknown = clk.unknown or {}
  clk.unknown[y] = true
end

-- The keys of set t (years), in order.
local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  sort(keys)
  return keys
end

-- Add to the trace what the decision's counting relied on beyond the
-- national data: a regional calendar, the weekend-only fallback, or a year
-- with no calendar that its answer is provisional on (C.depends).
function C.report(clk, tr)
  if clk.regional then
    local note = clk.cal.note                        -- built by load_region
    if not tr.seen[note.rule] then
      tr.seen[note.rule] = true
      tr.list[#tr.list + 1] = note
    end
  end
  if clk.fallback then
    local years = sorted_keys(clk.fallback)
    R.note(tr, "calendar.weekend_only_fallback",
      "no holiday calendar is loaded for " .. concat(years, ", ") .. "; counted "
      .. "Saturdays and Sundays as the only days off (fallback = \"weekend_only\" in "
      .. clk.cal.settings_file .. ")")
  end
  if clk.unknown then
    local years = sorted_keys(clk.unknown)
    R.note(tr, "calendar.provisional",
      "no holiday calendar is loaded for " .. concat(years, ", ") .. " and region "
      .. clk.cal.region .. " does not guess its days (fallback = \"error\" in "
      .. clk.cal.settings_file .. "): a deadline there is known only not to end before "
      .. "its own day (a day off can only move it later) and a working-day count into it "
      .. "cannot be made; this decision's answer is the same for every such shift, except "
      .. "the outputs its result lists as provisional")
  end
end

return C
