-- calendar/2025.lua - national working-day calendar for 2025.
--
-- Source: the State Council General Office's notice on the 2025 public
-- holiday arrangements.  `utc_offset` is the civil time its dates are in
-- (China, UTC+8): every day deadline is counted and ends in it, whatever
-- offset a request uses.  `holidays` are days off (ranges, both ends
-- included); `workdays` are weekend days worked instead (调休).  Every other
-- Saturday and Sunday is a day off, every other weekday a working day.
-- To add a year: copy this file to calendar/<year>.lua and edit it (see
-- docs/policy-guide.md, "Add next year's holidays").
return {
  year = 2025,
  utc_offset = "+08:00",          -- the notice's dates are civil dates in China
  basis = "State Council holiday notice for 2025",
  holidays = {
    { from = "2025-01-01", to = "2025-01-01", name = "New Year's Day" },
    { from = "2025-01-28", to = "2025-02-04", name = "Spring Festival" },
    { from = "2025-04-04", to = "2025-04-06", name = "Qingming" },
    { from = "2025-05-01", to = "2025-05-05", name = "Labour Day" },
    { from = "2025-05-31", to = "2025-06-02", name = "Dragon Boat Festival" },
    { from = "2025-10-01", to = "2025-10-08", name = "National Day and Mid-Autumn" },
  },
  workdays = { "2025-01-26", "2025-02-08", "2025-04-27", "2025-09-28", "2025-10-11" },
}
