-- regions/GD/escalation_test.lua - Guangdong decides escalation with the
-- national policy, but on its own calendar setting (regions/GD/calendar/
-- settings.lua): a reply window that runs into a year with no calendar
-- file is bad_input here, as it is for GD's SLA, not a weekend-only guess.

local function input(t)
  local base = { complaint_id = "GD-1", customer_id = "U-1", category = "network",
    customer_grade = "retail", received_at = "2026-11-20T10:00:00+08:00",
    handled_by = "frontline" }
  for k, v in pairs(t or {}) do base[k] = v end
  return base
end

return {
  { name = "a reply window inside 2026 is counted as nationally",
    at = "2026-11-23T10:00:00+08:00",
    input = input(),
    expect = { level = "frontline", warnings = {}, next_review_at = "2026-11-24T10:00:00+08:00" } },

  { name = "a reply window ending in 2027 with no 2027 calendar is bad_input here",
    at = "2026-12-28T12:00:00+08:00",
    input = input{ received_at = "2026-12-28T10:00:00+08:00" },
    expect_error = { code = "bad_input", path = "input.received_at" } },

  { name = "a Guangdong city without files of its own has Guangdong's setting",
    region = "GD-GZ",
    at = "2026-12-28T12:00:00+08:00",
    input = input{ received_at = "2026-12-28T10:00:00+08:00" },
    expect_error = { code = "bad_input", path = "input.received_at" } },

  { name = "a Guangdong city with an SLA file of its own has Guangdong's setting too",
    region = "GD-SZ",
    at = "2026-12-28T12:00:00+08:00",
    input = input{ received_at = "2026-12-28T10:00:00+08:00" },
    expect_error = { code = "bad_input", path = "input.received_at" } },
}
