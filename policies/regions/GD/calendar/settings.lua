-- regions/GD/calendar/settings.lua - Guangdong: no calendar, no guessing.
--
-- A deadline, reply window or appeal bar in a year with no calendar file is
-- bad_input for every complaint decided with region GD or a GD-... city,
-- whichever kind decides it (sla, escalation, appeal), instead of the
-- national weekend-only fallback.  Add next year's calendar/<year>.lua when
-- the State Council's notice appears.
return {
  fallback = "error",
  basis = "Guangdong branch practice: deadlines only on the published holiday calendar",
}
