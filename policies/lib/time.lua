-- lib/time.lua - instants and civil dates in pure Lua (no os, no clock).
--
-- An instant is an integer number of seconds since 1970-01-01T00:00:00Z
-- (`t`) plus the UTC offset, in seconds, it was written in (`off`).  A day
-- number (`dn`) counts civil days since 1970-01-01 (day 0, a Thursday).
-- The local day of an instant is (t + off) // 86400.
--
-- Fractions of a second are accepted on input and dropped: verdict works to
-- the second.  Output is always "YYYY-MM-DDTHH:MM:SS+HH:MM" in the offset of
-- the instant it formats ("+00:00" for UTC).

-- Library functions are read once, here: inside a decision every global
-- access goes through the sandbox's environment proxies.
local type, tonumber = type, tonumber
local sbyte, sfind, smatch, ssub, sfmt = string.byte, string.find, string.match, string.sub,
  string.format

local T = {}

T.DAY = 86400
T.HOUR = 3600
T.MINUTE = 60

-- Days from 1970-01-01 to the civil date y-m-d (proleptic Gregorian).
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = y // 400
  local yoe = y - era * 400                          -- [0, 399]
  local mp = (m + 9) % 12                            -- March = 0
  local doy = (153 * mp + 2) // 5 + d - 1            -- [0, 365]
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end
T.days_from_civil = days_from_civil

-- The civil date (y, m, d) of day number dn.
local function civil_from_days(dn)
  local z = dn + 719468
  local era = z // 146097
  local doe = z - era * 146097                       -- [0, 146096]
  local yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
  local mp = (5 * doy + 2) // 153
  local d = doy - (153 * mp + 2) // 5 + 1
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return y, m, d
end
T.civil_from_days = civil_from_days

local function is_leap(y)
  return y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0)
end
T.is_leap = is_leap

local MONTH_DAYS = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }

local function days_in_month(y, m)
  if m == 2 and is_leap(y) then return 29 end
  return MONTH_DAYS[m]
end
T.days_in_month = days_in_month

-- 0 = Sunday ... 6 = Saturday.
function T.weekday(dn)
  return (dn + 4) % 7
end

-- Day number of a "YYYY-MM-DD" string, or nil and a reason.
function T.parse_date(s)
  if type(s) ~= "string" or #s ~= 10 then return nil, "expected YYYY-MM-DD" end
  local y, m, d = smatch(s, "^(%d%d%d%d)%-(%d%d)%-(%d%d)$")
  if not y then return nil, "expected YYYY-MM-DD" end
  y, m, d = tonumber(y), tonumber(m), tonumber(d)
  if m < 1 or m > 12 or d < 1 or d > days_in_month(y, m) then
    return nil, "no such date"
  end
  return days_from_civil(y, m, d)
end

-- Two-digit strings "00".."99", for formatting without string.format
-- (which the sandbox wraps, so it costs more than concatenation).
local D2 = {}
for i = 0, 99 do D2[i] = (i < 10 and "0" or "") .. i end

local function year4(y)
  if y >= 1000 and y <= 9999 then return D2[y // 100] .. D2[y % 100] end
  return sfmt("%04d", y)
end

-- "YYYY-MM-DD" of day number dn, computed.
local function date_string(dn)
  local y, m, d = civil_from_days(dn)
  return year4(y) .. "-" .. D2[m] .. "-" .. D2[d]
end

-- Precomputed, looked up before computing: DATES[dn] ("2026-11-23") and
-- DAY_OF["2026-11-23"] (dn) for the days of the years T.cache_dates was
-- given (lib/calendar gives the years it loads, and the year after), and
-- OFFSETS[off] ("+08:00") for every offset on a quarter hour.  Filled at
-- load time only.
local DATES, DAY_OF = {}, {}

-- Precompute the date strings of years y1..y2 (at load time).
function T.cache_dates(y1, y2)
  for y = y1, y2 do
    local yyyy = year4(y)
    for m = 1, 12 do
      local prefix, dn = yyyy .. "-" .. D2[m] .. "-", days_from_civil(y, m, 1)
      for d = 1, days_in_month(y, m) do
        local date = prefix .. D2[d]
        DATES[dn + d - 1], DAY_OF[date] = date, dn + d - 1
      end
    end
  end
end

local function offset_string(off)
  local sign = "+"
  if off < 0 then sign, off = "-", -off end
  return sign .. D2[off // 3600] .. ":" .. D2[off % 3600 // 60]
end

local OFFSETS, OFFSET_OF = {}, {}
for q = -24 * 4 + 1, 24 * 4 - 1 do
  local text = offset_string(q * 900)
  OFFSETS[q * 900], OFFSET_OF[text] = text, q * 900
end
OFFSET_OF["-00:00"] = 0

-- The offset in seconds of a "+HH:MM" / "-HH:MM" string (on a quarter
-- hour, as every civil offset in use is), or nil and a reason.
function T.parse_offset(s)
  local off = type(s) == "string" and OFFSET_OF[s]
  if not off then return nil, "expected an offset such as +08:00 (on a quarter hour)" end
  return off
end

-- HHMM[minute of the day] = "HH:MM" and MINUTE_OF["HH:MM"] = minute of the
-- day; SECOND_OF["SS"] = 0..60 (60: a leap second, read as 59).
local HHMM, MINUTE_OF, SECOND_OF = {}, {}, {}
for m = 0, 24 * 60 - 1 do
  HHMM[m] = D2[m // 60] .. ":" .. D2[m % 60]
  MINUTE_OF[HHMM[m]] = m
end
for sec = 0, 59 do SECOND_OF[D2[sec]] = sec end
SECOND_OF["60"] = 59

local RFC3339_HINT = "expected an RFC 3339 time such as 2026-11-23T10:00:00+08:00"

-- Check the fields of a parsed time and return t, off (or nil, reason).
local function assemble(y, mo, d, h, mi, se, off)
  if mo < 1 or mo > 12 or d < 1 or (d > 28 and d > days_in_month(y, mo)) then
    return nil, "no such date"
  end
  if h > 23 or mi > 59 or se > 60 then return nil, "time of day out of range" end
  if se == 60 then se = 59 end                      -- leap second: keep the day
  return days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - off, off
end

-- The general form: optional fraction, Z or an offset.
local function parse_general(s)
  local y, mo, d, h, mi, se, rest = smatch(s,
    "^(%d%d%d%d)%-(%d%d)%-(%d%d)[Tt](%d%d):(%d%d):(%d%d)(.*)$")
  if not y then return nil, RFC3339_HINT end
  local frac = smatch(rest, "^%.%d+")
  if frac then rest = ssub(rest, #frac + 1) end
  local off
  if rest == "Z" or rest == "z" then
    off = 0
  else
    local sign, oh, om = smatch(rest, "^([%+%-])(%d%d):(%d%d)$")
    if not sign then
      return nil, "expected an offset (Z or +HH:MM) at the end of the time"
    end
    oh, om = tonumber(oh), tonumber(om)
    if oh > 23 or om > 59 then return nil, "offset out of range" end
    off = (oh * 60 + om) * 60
    if sign == "-" then off = -off end
  end
  return assemble(tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi),
    tonumber(se), off)
end

-- The usual fixed-width form "YYYY-MM-DDTHH:MM:SS+HH:MM" with a date in
-- DAY_OF and an offset on a quarter hour: four table lookups.  Returns t,
-- off; or nothing when s is not such a time (the other paths then say why).
local function parse_cached(s)
  local dn = DAY_OF[ssub(s, 1, 10)]
  local m = MINUTE_OF[ssub(s, 12, 16)]
  local sec = SECOND_OF[ssub(s, 18, 19)]
  local off = OFFSET_OF[ssub(s, 20, 25)]
  if not (dn and m and sec and off) then return end
  local tt, _, _, _, _, _, c = sbyte(s, 11, 17)     -- the T and the second ":"
  if c ~= 58 or (tt ~= 84 and tt ~= 116) then return end
  return dn * 86400 + m * 60 + sec - off, off
end

-- Parse an RFC 3339 date-time with an offset ("2026-11-23T10:00:00+08:00",
-- "...Z", optional fraction).  Returns t, off; or nil and a reason.  The
-- usual fixed-width form "YYYY-MM-DDTHH:MM:SS+HH:MM" is read by
-- parse_cached for a cached day, else checked by one anchored pattern
-- without repetitions and read byte by byte; anything else goes through
-- parse_general.
local FIXED = "^%d%d%d%d%-%d%d%-%d%d[Tt]%d%d:%d%d:%d%d[%+%-]%d%d:%d%d$"

function T.parse(s)
  if type(s) ~= "string" then return nil, "expected an RFC 3339 time" end
  local n = #s
  if n < 20 or n > 40 then return nil, RFC3339_HINT end
  if n == 25 then
    local t, off = parse_cached(s)
    if t then return t, off end
  end
  if n == 25 and sfind(s, FIXED) then
    local y1, y2, y3, y4, _, m1, m2, _, d1, d2, _, h1, h2, _, i1, i2, _, s1, s2,
      sg, o1, o2, _, p1, p2 = sbyte(s, 1, 25)
    -- digits are bytes 48-57: ab - 528 = 10 * a + b - 11 * 48
    local oh, om = o1 * 10 + o2 - 528, p1 * 10 + p2 - 528
    if oh > 23 or om > 59 then return nil, "offset out of range" end
    local off = (oh * 60 + om) * 60
    if sg == 45 then off = -off end                          -- "-"
    return assemble(y1 * 1000 + y2 * 100 + y3 * 10 + y4 - 53328,  -- 1111 * 48
      m1 * 10 + m2 - 528, d1 * 10 + d2 - 528,
      h1 * 10 + h2 - 528, i1 * 10 + i2 - 528, s1 * 10 + s2 - 528, off)
  end
  return parse_general(s)
end

-- Format instant t in offset off: "YYYY-MM-DDTHH:MM:SS+HH:MM".
function T.format(t, off)
  local l = t + off
  local dn = l // 86400
  local sec = l - dn * 86400
  return (DATES[dn] or date_string(dn)) .. "T" .. HHMM[sec // 60] .. ":" .. D2[sec % 60]
    .. (OFFSETS[off] or offset_string(off))
end

-- Format a day number as "YYYY-MM-DD".
function T.format_date(dn)
  return DATES[dn] or date_string(dn)
end

-- The local day number of instant t in offset off.
function T.local_day(t, off)
  return (t + off) // 86400
end

-- The last second (23:59:59 local) of day dn in offset off: a deadline that
-- "ends at 24:00 of its day" is met by anything up to and including it.
function T.end_of_day(dn, off)
  return (dn + 1) * 86400 - off - 1
end

-- Day number n months after day dn, the day of month clamped to the end of
-- a shorter month (2026-01-31 + 1 month = 2026-02-28).
function T.add_months(dn, n)
  local y, m, d = civil_from_days(dn)
  local idx = y * 12 + (m - 1) + n
  y, m = idx // 12, idx % 12 + 1
  local last = days_in_month(y, m)
  if d > last then d = last end
  return days_from_civil(y, m, d)
end

return T
