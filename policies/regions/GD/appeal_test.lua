-- regions/GD/appeal_test.lua - Guangdong decides appeals with the national
-- policy, but on its own calendar setting (regions/GD/calendar/
-- settings.lua): an appeal bar that ends in a year with no calendar file is
-- bad_input here, as GD's SLA deadlines are, not a weekend-only guess.

local function input(t)
  local base = { complaint_id = "GD-1", category = "billing",
    event_at = "2026-06-01T10:00:00+08:00", appealed_at = "2026-07-15T10:00:00+08:00",
    complained_first = true }
  for k, v in pairs(t or {}) do base[k] = v end
  return base
end

return {
  { name = "a bar inside 2026 is counted as nationally",
    at = "2026-07-20T10:00:00+08:00",
    input = input(),
    expect = { appeal_window_ends = "2026-11-02T23:59:59+08:00",
      acceptance_decision_by = "2026-07-22T23:59:59+08:00" } },

  { name = "a 5-month bar ending in 2027 with no 2027 calendar is bad_input here",
    at = "2026-11-20T10:00:00+08:00",
    input = input{ event_at = "2026-10-01T10:00:00+08:00",
      appealed_at = "2026-11-16T10:00:00+08:00" },
    expect_error = { code = "bad_input", path = "input.event_at" } },

  { name = "an acceptance deadline in 2027 is bad_input here, on the field it counts from",
    at = "2026-12-31T12:00:00+08:00",
    input = input{ event_at = "2026-07-01T10:00:00+08:00",
      appealed_at = "2026-12-28T10:00:00+08:00" },
    expect_error = { code = "bad_input", path = "input.appealed_at" } },
}
