-- regions/GD/appeal_test.lua - Guangdong decides appeals with the national
-- policy, but on its own calendar setting (regions/GD/calendar/
-- settings.lua): a day in a year with no calendar file (2027 and later) is
-- never guessed.  An appeal bar that ends in such a year ends on its own day
-- at the earliest (a day off can only move it later): an appeal filed by
-- then is decided, with appeal_window_ends listed as provisional; one filed
-- after it is bad_input, since whether it is in time depends on that year.
-- 2026-11-16 and 2026-12-28 are Mondays.

local input = with_defaults{ complaint_id = "GD-1", category = "billing",
    event_at = "2026-06-01T10:00:00+08:00", appealed_at = "2026-07-15T10:00:00+08:00",
    complained_first = true }

return {
  { name = "a bar inside 2026 is counted as nationally, nothing provisional",
    at = "2026-07-20T10:00:00+08:00",
    input = input(),
    expect = { appeal_window_ends = "2026-11-02T23:59:59+08:00",
      acceptance_decision_by = "2026-07-22T23:59:59+08:00", provisional = {} } },

  { name = "a 2-year bar ending in 2027: appealed long before it ends, in time",
    at = "2026-11-20T10:00:00+08:00",
    input = input{ category = "network", event_at = "2025-06-01T10:00:00+08:00",
      appealed_at = "2026-11-16T10:00:00+08:00" },
    expect = { outcome = "properly_handled", grounds = { "appeal.outcome.no_fault" },
      counts_against_enterprise = false,
      appeal_window_ends = "2027-06-01T23:59:59+08:00",     -- its own day, a Tuesday
      acceptance_decision_by = "2026-11-23T23:59:59+08:00",
      provisional = { "appeal_window_ends" } },
    fired = { "calendar.provisional" } },

  { name = "a 5-month bar ending in 2027: appealed before it ends, in time",
    at = "2026-11-20T10:00:00+08:00",
    input = input{ event_at = "2026-10-01T10:00:00+08:00",
      appealed_at = "2026-11-16T10:00:00+08:00", findings = { "work_error" } },
    expect = { outcome = "enterprise_liable", grounds = { "appeal.finding.work_error" },
      counts_against_enterprise = true,
      appeal_window_ends = "2027-03-01T23:59:59+08:00",
      provisional = { "appeal_window_ends" } } },

  { name = "the same in a Guangdong city without files of its own",
    region = "GD-GZ",
    at = "2026-11-20T10:00:00+08:00",
    input = input{ category = "network", event_at = "2025-06-01T10:00:00+08:00",
      appealed_at = "2026-11-16T10:00:00+08:00" },
    expect = { appeal_window_ends = "2027-06-01T23:59:59+08:00",
      provisional = { "appeal_window_ends" } } },

  { name = "appealed after the earliest end of a bar in 2027: in time or not depends on 2027",
    at = "2027-01-18T10:00:00+08:00",
    input = input{ category = "network", event_at = "2025-01-15T10:00:00+08:00",
      appealed_at = "2027-01-16T10:00:00+08:00" },
    expect_error = { code = "bad_input", path = "input.event_at",
      message = "no working-day calendar is loaded for 2027" } },

  { name = "a procedural bar besides does not settle it: the grounds depend on 2027 too",
    at = "2027-01-18T10:00:00+08:00",
    input = input{ category = "network", event_at = "2025-01-15T10:00:00+08:00",
      appealed_at = "2027-01-16T10:00:00+08:00", complained_first = false },
    expect_error = { code = "bad_input", path = "input.event_at",
      message = "depends on that year's calendar" } },

  { name = "acceptance in 5 working days reaching 2027: null and provisional, the outcome exact",
    at = "2026-12-31T12:00:00+08:00",
    input = input{ event_at = "2026-07-01T10:00:00+08:00",
      appealed_at = "2026-12-28T10:00:00+08:00" },
    expect = { outcome = "withdrawn", grounds = { "appeal.withdrawn.out_of_time" },
      appeal_window_ends = "2026-12-01T23:59:59+08:00",
      acceptance_decision_by = verdict.null,
      provisional = { "acceptance_decision_by" } },
    fired = { "calendar.provisional" } },

  { name = "an answer due 30 days on in 2027: its own day, provisional",
    at = "2026-12-10T12:00:00+08:00",
    input = input{ event_at = "2026-10-01T10:00:00+08:00",
      appealed_at = "2026-12-05T10:00:00+08:00",
      materials_complete_at = "2026-12-10T10:00:00+08:00" },
    expect = { appeal_window_ends = "2027-03-01T23:59:59+08:00",
      acceptance_decision_by = "2026-12-11T23:59:59+08:00",
      answer_due_by = "2027-01-09T23:59:59+08:00",          -- a Saturday: may move on
      provisional = { "appeal_window_ends", "answer_due_by" } } },
}
