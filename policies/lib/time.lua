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

local T = {}

T.DAY = 86400
T.HOUR = 3600
T.MINUTE = 60

-- Days from 1970-01-01 to the civil date y-m-d (proleptic Gregorian).
function T.days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = y // 400
  local yoe = y - era * 400                          -- [0, 399]
  local mp = (m + 9) % 12                            -- March = 0
  local doy = (153 * mp + 2) // 5 + d - 1            -- [0, 365]
  local doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
  return era * 146097 + doe - 719468
end

-- The civil date (y, m, d) of day number dn.
function T.civil_from_days(dn)
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

function T.is_leap(y)
  return y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0)
end

local MONTH_DAYS = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }

function T.days_in_month(y, m)
  if m == 2 and T.is_leap(y) then return 29 end
  return MONTH_DAYS[m]
end

-- 0 = Sunday ... 6 = Saturday.
function T.weekday(dn)
  return (dn + 4) % 7
end

-- Day number of a "YYYY-MM-DD" string, or nil and a reason.
function T.parse_date(s)
  if type(s) ~= "string" or #s ~= 10 then return nil, "expected YYYY-MM-DD" end
  local y, m, d = string.match(s, "^(%d%d%d%d)%-(%d%d)%-(%d%d)$")
  if not y then return nil, "expected YYYY-MM-DD" end
  y, m, d = tonumber(y), tonumber(m), tonumber(d)
  if m < 1 or m > 12 or d < 1 or d > T.days_in_month(y, m) then
    return nil, "no such date"
  end
  return T.days_from_civil(y, m, d)
end

-- Two-digit strings "00".."99", for formatting without string.format
-- (which the sandbox wraps, so it costs more than concatenation).
local D2 = {}
for i = 0, 99 do D2[i] = (i < 10 and "0" or "") .. i end

local function year4(y)
  if y >= 1000 and y <= 9999 then return D2[y // 100] .. D2[y % 100] end
  return string.format("%04d", y)
end

local RFC3339_HINT = "expected an RFC 3339 time such as 2026-11-23T10:00:00+08:00"

-- Check the fields of a parsed time and return t, off (or nil, reason).
local function assemble(y, mo, d, h, mi, se, off)
  if mo < 1 or mo > 12 or d < 1 or d > T.days_in_month(y, mo) then
    return nil, "no such date"
  end
  if h > 23 or mi > 59 or se > 60 then return nil, "time of day out of range" end
  if se == 60 then se = 59 end                      -- leap second: keep the day
  return T.days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - off, off
end

-- The general form: optional fraction, Z or an offset.
local function parse_general(s)
  local y, mo, d, h, mi, se, rest = string.match(s,
    "^(%d%d%d%d)%-(%d%d)%-(%d%d)[Tt](%d%d):(%d%d):(%d%d)(.*)$")
  if not y then return nil, RFC3339_HINT end
  local frac = string.match(rest, "^%.%d+")
  if frac then rest = string.sub(rest, #frac + 1) end
  local off
  if rest == "Z" or rest == "z" then
    off = 0
  else
    local sign, oh, om = string.match(rest, "^([%+%-])(%d%d):(%d%d)$")
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

-- Parse an RFC 3339 date-time with an offset ("2026-11-23T10:00:00+08:00",
-- "...Z", optional fraction).  Returns t, off; or nil and a reason.  The
-- usual fixed-width form "YYYY-MM-DDTHH:MM:SS+HH:MM" is read byte by byte
-- (one call into C); anything else goes through the patterns.
function T.parse(s)
  if type(s) ~= "string" then return nil, "expected an RFC 3339 time" end
  local n = #s
  if n < 20 or n > 40 then return nil, RFC3339_HINT end
  if n == 25 then
    local y1, y2, y3, y4, c1, m1, m2, c2, d1, d2, tt, h1, h2, c3, i1, i2, c4, s1, s2,
      sg, o1, o2, c5, p1, p2 = string.byte(s, 1, 25)
    -- every digit position must hold 0-9 (48-57); separators - - T : : + :
    if c1 == 45 and c2 == 45 and (tt == 84 or tt == 116) and c3 == 58 and c4 == 58
      and (sg == 43 or sg == 45) and c5 == 58
      and y1 >= 48 and y1 <= 57 and y2 >= 48 and y2 <= 57 and y3 >= 48 and y3 <= 57
      and y4 >= 48 and y4 <= 57 and m1 >= 48 and m1 <= 57 and m2 >= 48 and m2 <= 57
      and d1 >= 48 and d1 <= 57 and d2 >= 48 and d2 <= 57 and h1 >= 48 and h1 <= 57
      and h2 >= 48 and h2 <= 57 and i1 >= 48 and i1 <= 57 and i2 >= 48 and i2 <= 57
      and s1 >= 48 and s1 <= 57 and s2 >= 48 and s2 <= 57 and o1 >= 48 and o1 <= 57
      and o2 >= 48 and o2 <= 57 and p1 >= 48 and p1 <= 57 and p2 >= 48 and p2 <= 57 then
      local oh, om = (o1 - 48) * 10 + o2 - 48, (p1 - 48) * 10 + p2 - 48
      if oh > 23 or om > 59 then return nil, "offset out of range" end
      local off = (oh * 60 + om) * 60
      if sg == 45 then off = -off end
      return assemble((y1 - 48) * 1000 + (y2 - 48) * 100 + (y3 - 48) * 10 + y4 - 48,
        (m1 - 48) * 10 + m2 - 48, (d1 - 48) * 10 + d2 - 48,
        (h1 - 48) * 10 + h2 - 48, (i1 - 48) * 10 + i2 - 48, (s1 - 48) * 10 + s2 - 48, off)
    end
  end
  return parse_general(s)
end

-- Format instant t in offset off: "YYYY-MM-DDTHH:MM:SS+HH:MM".
function T.format(t, off)
  local l = t + off
  local dn = l // 86400
  local sec = l - dn * 86400
  local y, m, d = T.civil_from_days(dn)
  local sign, a = "+", off
  if a < 0 then sign, a = "-", -a end
  return year4(y) .. "-" .. D2[m] .. "-" .. D2[d] .. "T" .. D2[sec // 3600] .. ":"
    .. D2[sec % 3600 // 60] .. ":" .. D2[sec % 60] .. sign .. D2[a // 3600] .. ":"
    .. D2[a % 3600 // 60]
end

-- Format a day number as "YYYY-MM-DD".
function T.format_date(dn)
  local y, m, d = T.civil_from_days(dn)
  return year4(y) .. "-" .. D2[m] .. "-" .. D2[d]
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
  local y, m, d = T.civil_from_days(dn)
  local idx = y * 12 + (m - 1) + n
  y, m = idx // 12, idx % 12 + 1
  local last = T.days_in_month(y, m)
  if d > last then d = last end
  return T.days_from_civil(y, m, d)
end

return T
