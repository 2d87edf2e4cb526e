-- regions/GX/calendar/2026.lua - Guangxi's additions to the 2026 calendar.
--
-- A regional calendar file has the national file's shape and adds to it:
-- its `holidays` are extra days off, its `workdays` extra working days, for
-- complaints decided with region GX (and any GX-... city).
--
-- Zhuang Sanyuesan (壮族三月三): Guangxi's regional holiday on the 3rd and
-- 4th days of the third lunar month, which fall on 2026-04-19 (a Sunday)
-- and 2026-04-20.  EXAMPLE DATA: dates derived from the lunar calendar, not
-- copied from the regional government's 2026 notice; check them against
-- that notice (which may also move a weekend day) before relying on them.
return {
  year = 2026,
  basis = "Guangxi regional holiday: Zhuang Sanyuesan (example data, see file)",
  holidays = {
    { from = "2026-04-19", to = "2026-04-20", name = "Zhuang Sanyuesan" },
  },
  workdays = {},
}
