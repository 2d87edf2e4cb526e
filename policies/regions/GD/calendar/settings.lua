-- regions/GD/calendar/settings.lua - Guangdong: no calendar, no guessing.
--
-- A day in a year with no calendar file is never guessed for a complaint
-- decided with region GD or a GD-... city, whichever kind decides it (sla,
-- escalation, appeal), instead of the national weekend-only fallback: a
-- deadline there is provisional (its earliest end, or null for a count of
-- working days, listed in the result's `provisional`), and an answer that
-- depends on it is bad_input naming the year (lib/calendar.lua).  Add next
-- year's calendar/<year>.lua when the State Council's notice appears.
return {
  fallback = "error",
  basis = "Guangdong branch practice: deadlines only on the published holiday calendar",
}
