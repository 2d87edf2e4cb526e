-- regions/GD/escalation_test.lua - Guangdong decides escalation with the
-- national policy, but on its own calendar setting (regions/GD/calendar/
-- settings.lua): a reply window that ends in a year with no calendar file
-- is never guessed.  It ends on its own day at the earliest (a day off can
-- only move it later): the decision is made while the window has not begun
-- to close at that end, or when the sla_status's operator_reply settles
-- its warnings; otherwise bad_input, naming the year.

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

  -- Received 2026-12-20: the 15-day window ends 2027-01-04 (a Monday) at
  -- the earliest, later if 2027's notice makes that day off.
  { name = "a reply window ending in 2027 that has not begun to close: decided",
    at = "2026-12-28T12:00:00+08:00",
    input = input{ received_at = "2026-12-20T10:00:00+08:00" },
    expect = { level = "frontline", warnings = {}, notify = {},
      next_review_at = "2026-12-29T12:00:00+08:00" },
    fired = { "calendar.provisional", "esc.review.daily" } },

  { name = "up to 24 hours before the earliest end the window has not begun to close",
    at = "2027-01-03T23:59:58+08:00",
    input = input{ received_at = "2026-12-20T10:00:00+08:00" },
    expect = { warnings = {}, next_review_at = "2027-01-04T23:59:58+08:00" } },

  { name = "within 24 hours of the earliest end: closing or not depends on 2027",
    at = "2027-01-04T10:00:00+08:00",
    input = input{ received_at = "2026-12-20T10:00:00+08:00" },
    expect_error = { code = "bad_input", path = "input.received_at",
      message = "no working-day calendar is loaded for 2027" } },

  { name = "past the earliest end: passed or not depends on 2027, even with a pending reply",
    at = "2027-01-06T10:00:00+08:00",
    input = input{ received_at = "2026-12-20T10:00:00+08:00",
      sla_status = { operator_reply = "pending" } },
    expect_error = { code = "bad_input", path = "input.received_at",
      message = "depend on where it ends" } },

  { name = "past the earliest end with the reply met: the window's warnings are not needed",
    at = "2027-01-06T10:00:00+08:00",
    input = input{ received_at = "2026-12-20T10:00:00+08:00",
      sla_status = { operator_reply = "met" } },
    expect = { level = "frontline", warnings = {}, next_review_at = "2027-01-07T10:00:00+08:00" },
    fired = { "calendar.provisional" } },

  { name = "past the earliest end with the reply breached: overdue, whatever 2027 says",
    at = "2027-01-06T10:00:00+08:00",
    input = input{ received_at = "2026-12-20T10:00:00+08:00",
      sla_status = { operator_reply = "breached" } },
    expect = { level = "district", warnings = { "reply_overdue", "sla_breached" },
      next_review_at = "2027-01-06T14:00:00+08:00" } },

  { name = "a Guangdong city without files of its own has Guangdong's setting",
    region = "GD-GZ",
    at = "2027-01-04T10:00:00+08:00",
    input = input{ received_at = "2026-12-20T10:00:00+08:00" },
    expect_error = { code = "bad_input", path = "input.received_at" } },

  { name = "a Guangdong city with an SLA file of its own has Guangdong's setting too",
    region = "GD-SZ",
    at = "2027-01-04T10:00:00+08:00",
    input = input{ received_at = "2026-12-20T10:00:00+08:00" },
    expect_error = { code = "bad_input", path = "input.received_at" } },

  { name = "the same decision nationally: the weekend-only fallback, never refused",
    region = "national",
    at = "2027-01-04T10:00:00+08:00",
    input = input{ received_at = "2026-12-20T10:00:00+08:00" },
    expect = { warnings = { "reply_window_closing" } },
    fired = { "calendar.weekend_only_fallback" } },
}
