-- calendar/2026.lua - national working-day calendar for 2026.
--
-- Source: the State Council General Office's notice on the 2026 public
-- holiday arrangements.  `utc_offset` is the civil time its dates are in
-- (China, UTC+8): every day deadline is counted and ends in it, whatever
-- offset a request uses.  `holidays` are days off (ranges, both ends
-- included); `workdays` are weekend days worked instead (调休).  Every other
-- Saturday and Sunday is a day off, every other weekday a working day.
return {
  year = 2026,
  utc_offset = "+08:00",          -- the notice's dates are civil dates in China
  basis = "State Council holiday notice for 2026",
  holidays = {
    { from = "2026-01-01", to = "2026-01-03", name = "New Year's Day" },
    { from = "2026-02-15", to = "2026-02-23", name = "Spring Festival" },
    { from = "2026-04-04", to = "2026-04-06", name = "Qingming" },
    { from = "2026-05-01", to = "2026-05-05", name = "Labour Day" },
    { from = "2026-06-19", to = "2026-06-21", name = "Dragon Boat Festival" },
    { from = "2026-09-25", to = "2026-09-27", name = "Mid-Autumn" },
    { from = "2026-10-01", to = "2026-10-07", name = "National Day" },
  },
  workdays = { "2026-01-04", "2026-02-14", "2026-02-28", "2026-05-09", "2026-09-20", "2026-10-10" },
}
