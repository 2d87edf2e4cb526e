-- national/sla_test.lua - cases for the national SLA policy.
-- Dates: 2026-11-23 is a Monday.  2026 days off: Jan 1-3, Feb 15-23,
-- Apr 4-6, May 1-5, Jun 19-21, Sep 25-27, Oct 1-7; weekend days worked:
-- Jan 4, Feb 14, Feb 28, May 9, Sep 20, Oct 10.

local input = with_defaults{ complaint_id = "C-1", category = "billing", channel = "hotline",
    customer_grade = "retail", received_at = "2026-11-23T10:00:00+08:00" }

-- One instant written in each offset a request may use: `variants` is a
-- list of { offset = "...", <field> = time, ... }, the same instants in each.
-- Adds one case per variant, built by make(v); all expect the same answer,
-- since days are China's civil days whatever the offset, and answers are
-- written in +08:00.
local cases = {
  { name = "standard retail complaint on an ordinary Monday",
    at = "2026-11-23T12:00:00+08:00",
    input = input(),
    expect = {
      tier = "standard",
      deadlines = {
        acceptance = "2026-11-25T23:59:59+08:00",
        first_feedback = "2026-11-26T10:00:00+08:00",
        investigation = "2026-11-30T23:59:59+08:00",
        solution = "2026-12-02T23:59:59+08:00",
        operator_reply = "2026-12-08T23:59:59+08:00",
      },
      status = { acceptance = "pending", first_feedback = "pending", investigation = "pending",
        solution = "pending", operator_reply = "pending" },
      next_deadline = { name = "acceptance", at = "2026-11-25T23:59:59+08:00" },
    },
    fired = { "sla.tier.standard", "sla.operator_reply.miit35", "sla.status.pending" } },

  { name = "received the day before the National Day holiday",
    at = "2026-09-30T12:00:00+08:00",
    input = input{ received_at = "2026-09-30T10:00:00+08:00" },
    expect = {
      deadlines = {
        acceptance = "2026-10-09T23:59:59+08:00",      -- Oct 8, Oct 9
        first_feedback = "2026-10-03T10:00:00+08:00",  -- hours run through holidays
        investigation = "2026-10-13T23:59:59+08:00",   -- Oct 10 (Saturday) is worked
        solution = "2026-10-15T23:59:59+08:00",
        operator_reply = "2026-10-15T23:59:59+08:00",
      },
    } },

  { name = "23:59 on the eve of National Day, urban broadband fault at 75% of repair time",
    at = "2026-10-02T12:00:00+08:00",
    input = input{ category = "broadband_fault", received_at = "2026-09-30T23:59:00+08:00" },
    expect = {
      deadlines = {
        acceptance = "2026-10-09T23:59:59+08:00",
        repair = "2026-10-02T23:59:00+08:00",
        first_feedback = "2026-10-03T23:59:00+08:00",
      },
      status = { repair = "at_risk", first_feedback = "pending" },
      next_deadline = { name = "repair", at = "2026-10-02T23:59:00+08:00" },
    },
    fired = { "sla.repair.urban", "sla.status.at_risk" } },

  { name = "received the Friday before the Spring Festival holiday",
    at = "2026-02-13T16:30:00+08:00",
    input = input{ received_at = "2026-02-13T16:00:00+08:00" },
    expect = {
      deadlines = {
        acceptance = "2026-02-24T23:59:59+08:00",      -- Feb 14 (worked Saturday), Feb 24
        first_feedback = "2026-02-16T16:00:00+08:00",
        investigation = "2026-02-27T23:59:59+08:00",
        solution = "2026-03-02T23:59:59+08:00",        -- Feb 28 (worked Saturday), Mar 2
        operator_reply = "2026-02-28T23:59:59+08:00",  -- a worked Saturday: no roll
      },
    } },

  { name = "23:59 on a worked Saturday that is the eve of Spring Festival",
    at = "2026-02-15T09:00:00+08:00",
    input = input{ received_at = "2026-02-14T23:59:00+08:00" },
    expect = {
      deadlines = {
        acceptance = "2026-02-25T23:59:59+08:00",      -- start day not counted
        first_feedback = "2026-02-17T23:59:00+08:00",
        investigation = "2026-02-28T23:59:59+08:00",
        solution = "2026-03-03T23:59:59+08:00",
        operator_reply = "2026-03-02T23:59:59+08:00",  -- Mar 1 is a Sunday: next working day
      },
    } },

  { name = "received on a worked Saturday (2026-10-10, 调休)",
    at = "2026-10-10T11:00:00+08:00",
    input = input{ received_at = "2026-10-10T10:00:00+08:00" },
    expect = {
      deadlines = {
        acceptance = "2026-10-13T23:59:59+08:00",      -- start day not counted: Oct 12, 13
        investigation = "2026-10-16T23:59:59+08:00",
        solution = "2026-10-20T23:59:59+08:00",
        operator_reply = "2026-10-26T23:59:59+08:00",  -- Oct 25 is a Sunday
      },
    } },

  { name = "received on Friday before a worked Sunday, reply day falls in Mid-Autumn/National Day",
    at = "2026-09-18T09:30:00+08:00",
    input = input{ received_at = "2026-09-18T09:00:00+08:00" },
    expect = {
      deadlines = {
        acceptance = "2026-09-21T23:59:59+08:00",      -- Sep 20 (Sunday) is worked
        investigation = "2026-09-24T23:59:59+08:00",
        solution = "2026-09-29T23:59:59+08:00",        -- Sep 25-27 off
        operator_reply = "2026-10-08T23:59:59+08:00",  -- Oct 3 is a holiday: rolled
      },
    } },

  { name = "23:59 on New Year's Eve 2025: counting crosses into the 2026 calendar",
    at = "2026-01-01T10:00:00+08:00",
    input = input{ received_at = "2025-12-31T23:59:00+08:00" },
    expect = {
      deadlines = {
        acceptance = "2026-01-05T23:59:59+08:00",      -- Jan 4 (Sunday) is worked
        investigation = "2026-01-08T23:59:59+08:00",
        solution = "2026-01-12T23:59:59+08:00",
        operator_reply = "2026-01-15T23:59:59+08:00",
      },
    } },

  { name = "top enterprise grade: 30 min first feedback at risk, written report next working day",
    at = "2026-11-23T10:25:00+08:00",
    input = input{ customer_grade = "group", channel = "account_manager" },
    expect = {
      tier = "enterprise_top",
      updates_every_minutes = 60,
      deadlines = {
        first_feedback = "2026-11-23T10:30:00+08:00",
        written_report = "2026-11-24T23:59:59+08:00",
        acceptance = "2026-11-25T23:59:59+08:00",
      },
      status = { first_feedback = "at_risk", written_report = "pending" },
      next_deadline = { name = "first_feedback", at = "2026-11-23T10:30:00+08:00" },
    },
    fired = { "sla.tier.enterprise_top", "sla.status.at_risk" } },

  { name = "local enterprise grade: first feedback within 24 h",
    at = "2026-11-23T10:00:00+08:00",
    input = input{ customer_grade = "local_b" },
    expect = {
      tier = "enterprise",
      deadlines = { first_feedback = "2026-11-24T10:00:00+08:00",
        acceptance = "2026-11-25T23:59:59+08:00" },
    },
    fired = { "sla.tier.enterprise" } },

  { name = "done on time is met, done late is breached",
    at = "2026-11-27T10:00:00+08:00",
    input = input{ done = {
      acceptance = "2026-11-24T09:00:00+08:00",
      first_feedback = "2026-11-27T09:00:00+08:00",
    } },
    expect = {
      status = { acceptance = "met", first_feedback = "breached", investigation = "pending",
        solution = "pending", operator_reply = "pending" },
      next_deadline = { name = "investigation", at = "2026-11-30T23:59:59+08:00" },
    },
    fired = { "sla.status.met", "sla.status.done_late", "sla.status.pending" } },

  { name = "done at 23:59:59 of the deadline day is met",
    at = "2026-11-26T10:00:00+08:00",
    input = input{ done = { acceptance = "2026-11-25T23:59:59+08:00" } },
    expect = { status = { acceptance = "met" } } },

  { name = "everything open and past its deadline: breached, no next deadline",
    at = "2026-11-20T10:00:00+08:00",
    input = input{ received_at = "2026-11-02T10:00:00+08:00" },
    expect = {
      status = { acceptance = "breached", first_feedback = "breached",
        investigation = "breached", solution = "breached", operator_reply = "breached" },
      next_deadline = verdict.null,
    },
    fired = { "sla.status.breached" } },

  { name = "first feedback exactly at 75% of 72 h is at risk",
    at = "2026-11-25T16:00:00+08:00",
    input = input(),
    expect = { status = { first_feedback = "at_risk" } } },

  { name = "rural broadband fault: 72 h repair",
    at = "2026-11-23T10:00:00+08:00",
    input = input{ category = "broadband_fault", area = "rural" },
    expect = { deadlines = { repair = "2026-11-26T10:00:00+08:00" } },
    fired = { "sla.repair.rural" } },

  { name = "mobile network fault: 48 h at most",
    at = "2026-11-23T10:00:00+08:00",
    input = input{ category = "network", channel = "sms" },
    expect = { deadlines = { repair = "2026-11-25T10:00:00+08:00" } },
    fired = { "sla.repair.mobile" } },

  { name = "deadlines in 2027 with no 2027 calendar: weekend-only fallback, said in the trace",
    at = "2026-12-28T10:00:00+08:00",
    input = input{ received_at = "2026-12-28T10:00:00+08:00" },
    expect = {
      deadlines = {
        acceptance = "2026-12-30T23:59:59+08:00",
        investigation = "2027-01-04T23:59:59+08:00",   -- 2027-01-01 counted as a working day
        solution = "2027-01-06T23:59:59+08:00",
        operator_reply = "2027-01-12T23:59:59+08:00",
      },
      provisional = {},                                -- a fallback, not a missing answer
    },
    fired = { "calendar.weekend_only_fallback" } },

  { name = "Guangxi's regional holiday (example data) moves the acceptance deadline",
    region = "GX",
    at = "2026-04-16T10:00:00+08:00",
    input = input{ received_at = "2026-04-16T10:00:00+08:00" },
    expect = { deadlines = {
      acceptance = "2026-04-21T23:59:59+08:00",
      investigation = "2026-04-24T23:59:59+08:00",
    } },
    fired = { "calendar.regional.GX" } },

  { name = "same complaint nationally: no regional holiday",
    at = "2026-04-16T10:00:00+08:00",
    input = input{ received_at = "2026-04-16T10:00:00+08:00" },
    expect = { deadlines = {
      acceptance = "2026-04-20T23:59:59+08:00",
      investigation = "2026-04-23T23:59:59+08:00",
    } } },

  { name = "other offsets: days are China's; deadlines are the same instants, written in +08:00",
    at = "2026-11-23T02:00:00Z",
    input = input{ received_at = "2026-11-23T02:00:00Z" },
    expect = { deadlines = {
      acceptance = "2026-11-25T23:59:59+08:00",
      first_feedback = "2026-11-26T10:00:00+08:00",
    } } },

  { name = "a deadline day ends at 24:00 China time: 15:59:59Z meets it",
    at = "2026-02-26T10:00:00+08:00",
    input = input{ received_at = "2026-02-13T16:30:00Z",
      done = { acceptance = "2026-02-25T15:59:59Z", investigation = "2026-02-25T11:00:00-05:00" } },
    expect = { deadlines = { acceptance = "2026-02-25T23:59:59+08:00" },
      status = { acceptance = "met", investigation = "met" } } },

  { name = "a deadline day ends at 24:00 China time: 16:00:00Z (11:00-05:00 the same day) is late",
    at = "2026-02-26T10:00:00+08:00",
    input = input{ received_at = "2026-02-13T16:30:00Z",
      done = { acceptance = "2026-02-25T11:00:00-05:00" } },
    expect = { status = { acceptance = "breached" } } },

  { name = "bad input: category missing",
    at = "2026-11-23T10:00:00+08:00",
    input = input{ category = verdict.null },
    expect_error = { code = "bad_input", path = "input.category" } },

  { name = "bad input: unknown channel",
    at = "2026-11-23T10:00:00+08:00",
    input = input{ channel = "fax" },
    expect_error = { code = "bad_input", path = "input.channel" } },

  { name = "bad input: received_at without an offset",
    at = "2026-11-23T10:00:00+08:00",
    input = input{ received_at = "2026-11-23T10:00:00" },
    expect_error = { code = "bad_input", path = "input.received_at" } },

  { name = "bad input: a completion time that is not a time",
    at = "2026-11-23T10:00:00+08:00",
    input = input{ done = { acceptance = "yesterday" } },
    expect_error = { code = "bad_input", path = "input.done.acceptance" } },

  { name = "bad input: unknown milestone in done",
    at = "2026-11-23T10:00:00+08:00",
    input = input{ done = { callback = "2026-11-23T11:00:00+08:00" } },
    expect_error = { code = "bad_input", path = "input.done.callback" } },

  { name = "bad input: misspelt field is refused, not ignored",
    at = "2026-11-23T10:00:00+08:00",
    input = input{ aera = "rural" },
    expect_error = { code = "bad_input", path = "input.aera" } },

  -- done is a JSON object: an array is refused, even an empty one
  -- (verdict.array{} is written [], verdict.object{} is written {}).
  { name = "done as an empty object: nothing done yet",
    at = "2026-11-27T10:00:00+08:00",
    input = input{ done = verdict.object{} },
    expect = {
      status = { acceptance = "breached", first_feedback = "breached", investigation = "pending",
        solution = "pending", operator_reply = "pending" },
      next_deadline = { name = "investigation", at = "2026-11-30T23:59:59+08:00" },
    } },

  { name = "bad input: done as an empty array",
    at = "2026-11-23T10:00:00+08:00",
    input = input{ done = verdict.array{} },
    expect_error = { code = "bad_input", path = "input.done" } },

  { name = "bad input: done as an array of times",
    at = "2026-11-23T10:00:00+08:00",
    input = input{ done = { "2026-11-23T11:00:00+08:00" } },
    expect_error = { code = "bad_input", path = "input.done" } },
}

in_every_offset(cases, "received on a worked Saturday in China (Friday elsewhere) before "
  .. "Spring Festival", {
    { offset = "+08:00", received = "2026-02-14T00:30:00+08:00", at = "2026-02-14T01:30:00+08:00" },
    { offset = "Z", received = "2026-02-13T16:30:00Z", at = "2026-02-13T17:30:00Z" },
    { offset = "-05:00", received = "2026-02-13T11:30:00-05:00", at = "2026-02-13T12:30:00-05:00" },
    { offset = "+14:00", received = "2026-02-14T06:30:00+14:00", at = "2026-02-14T07:30:00+14:00" },
  }, function(v)
    return { at = v.at, input = input{ received_at = v.received },
      expect = {
        deadlines = {
          acceptance = "2026-02-25T23:59:59+08:00",     -- Feb 14 not counted; Feb 24, 25
          first_feedback = "2026-02-17T00:30:00+08:00",
          investigation = "2026-02-28T23:59:59+08:00",  -- Feb 28 is a worked Saturday
          solution = "2026-03-03T23:59:59+08:00",
          operator_reply = "2026-03-02T23:59:59+08:00", -- Mar 1 is a Sunday
        },
        status = { acceptance = "pending", first_feedback = "pending", investigation = "pending",
          solution = "pending", operator_reply = "pending" },
        next_deadline = { name = "first_feedback", at = "2026-02-17T00:30:00+08:00" },
      } }
  end)

in_every_offset(cases, "urban broadband fault received on National Day in China (Sep 30 elsewhere)", {
    { offset = "+08:00", received = "2026-10-01T01:00:00+08:00", at = "2026-10-01T02:00:00+08:00" },
    { offset = "Z", received = "2026-09-30T17:00:00Z", at = "2026-09-30T18:00:00Z" },
    { offset = "-05:00", received = "2026-09-30T12:00:00-05:00", at = "2026-09-30T13:00:00-05:00" },
    { offset = "+14:00", received = "2026-10-01T07:00:00+14:00", at = "2026-10-01T08:00:00+14:00" },
  }, function(v)
    return { at = v.at, input = input{ category = "broadband_fault", received_at = v.received },
      expect = {
        deadlines = {
          acceptance = "2026-10-09T23:59:59+08:00",     -- Oct 8, 9
          first_feedback = "2026-10-04T01:00:00+08:00",
          investigation = "2026-10-13T23:59:59+08:00",  -- Oct 10 is a worked Saturday
          solution = "2026-10-15T23:59:59+08:00",
          operator_reply = "2026-10-16T23:59:59+08:00", -- Oct 1 + 15 days
          repair = "2026-10-03T01:00:00+08:00",
        },
        next_deadline = { name = "repair", at = "2026-10-03T01:00:00+08:00" },
      } }
  end)

in_every_offset(cases, "received on New Year's Day 2026 in China (New Year's Eve 2025 elsewhere)", {
    { offset = "+08:00", received = "2026-01-01T00:30:00+08:00", at = "2026-01-01T01:30:00+08:00" },
    { offset = "Z", received = "2025-12-31T16:30:00Z", at = "2025-12-31T17:30:00Z" },
    { offset = "-05:00", received = "2025-12-31T11:30:00-05:00", at = "2025-12-31T12:30:00-05:00" },
    { offset = "+14:00", received = "2026-01-01T06:30:00+14:00", at = "2026-01-01T07:30:00+14:00" },
  }, function(v)
    return { at = v.at, input = input{ received_at = v.received },
      expect = {
        deadlines = {
          acceptance = "2026-01-05T23:59:59+08:00",     -- Jan 4 (Sunday) is worked
          first_feedback = "2026-01-04T00:30:00+08:00",
          investigation = "2026-01-08T23:59:59+08:00",
          solution = "2026-01-12T23:59:59+08:00",
          operator_reply = "2026-01-16T23:59:59+08:00", -- Jan 1 + 15 days
        },
      } }
  end)

return cases
