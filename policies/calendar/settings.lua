-- calendar/settings.lua - what the national calendar does with a day in a
-- year that has no calendar/<year>.lua (lib/calendar.lua).
--
--   "weekend_only": count Saturdays and Sundays as the only days off, and
--                   say so in the decision's trace
--                   (calendar.weekend_only_fallback);
--   "error":        guess nothing: what depends on the year is provisional
--                   in the result, or bad_input naming the year where the
--                   answer itself depends on it.
--
-- A region overrides it, for every kind and for its cities, with
-- regions/<CODE>/calendar/settings.lua (see regions/GD).  Without this file
-- the national setting is "error".
return {
  fallback = "weekend_only",
}
