-- regions/GD/sla_test.lua - Guangdong's tighter SLA (1/4/5 working days,
-- 48 h first feedback, 24 h urban repair) and its refusal to guess years
-- without a calendar (regions/GD/calendar/settings.lua): what depends on
-- 2027 is provisional, never a weekend-only guess.  2026-11-23 is a Monday.

local input = with_defaults{ complaint_id = "GD-1", category = "billing", channel = "hotline",
    customer_grade = "retail", received_at = "2026-11-23T10:00:00+08:00" }

local cases = {
  { name = "standard tier tightened; the 15-day reply limit is unchanged",
    at = "2026-11-23T12:00:00+08:00",
    input = input(),
    expect = {
      tier = "standard",
      deadlines = {
        acceptance = "2026-11-24T23:59:59+08:00",
        first_feedback = "2026-11-25T10:00:00+08:00",
        investigation = "2026-11-27T23:59:59+08:00",
        solution = "2026-11-30T23:59:59+08:00",
        operator_reply = "2026-12-08T23:59:59+08:00",
      },
    },
    fired = { "gd.sla.tier.standard", "sla.operator_reply.miit35" } },

  { name = "urban broadband repair within 24 h",
    at = "2026-11-23T12:00:00+08:00",
    input = input{ category = "broadband_fault" },
    expect = { deadlines = { repair = "2026-11-24T10:00:00+08:00" } },
    fired = { "gd.sla.repair.urban" } },

  { name = "rural repair keeps the national 72 h",
    at = "2026-11-23T12:00:00+08:00",
    input = input{ category = "broadband_fault", area = "rural" },
    expect = { deadlines = { repair = "2026-11-26T10:00:00+08:00" } },
    fired = { "sla.repair.rural" } },

  { name = "23:59 on the eve of National Day under the tighter tier",
    at = "2026-10-01T10:00:00+08:00",
    input = input{ received_at = "2026-09-30T23:59:00+08:00" },
    expect = { deadlines = {
      acceptance = "2026-10-08T23:59:59+08:00",
      investigation = "2026-10-12T23:59:59+08:00",   -- Oct 10 (Saturday) is worked
      solution = "2026-10-13T23:59:59+08:00",
    } } },

  { name = "enterprise grades get Guangdong's handling days too, never later than retail",
    at = "2026-11-23T12:00:00+08:00",
    input = input{ customer_grade = "local_a" },
    expect = { tier = "enterprise", deadlines = {
      acceptance = "2026-11-24T23:59:59+08:00", first_feedback = "2026-11-24T10:00:00+08:00",
      investigation = "2026-11-27T23:59:59+08:00", solution = "2026-11-30T23:59:59+08:00" } },
    fired = { "gd.sla.tier.enterprise" } },

  { name = "top enterprise grades: Guangdong's handling days, 30 min first feedback",
    at = "2026-11-23T10:10:00+08:00",
    input = input{ customer_grade = "province", channel = "account_manager" },
    expect = { tier = "enterprise_top", updates_every_minutes = 60, deadlines = {
      acceptance = "2026-11-24T23:59:59+08:00", first_feedback = "2026-11-23T10:30:00+08:00",
      written_report = "2026-11-24T23:59:59+08:00",
      investigation = "2026-11-27T23:59:59+08:00", solution = "2026-11-30T23:59:59+08:00" } },
    fired = { "gd.sla.tier.enterprise_top" } },

  { name = "a city without its own files is decided by Guangdong's",
    region = "GD-GZ",
    at = "2026-11-23T12:00:00+08:00",
    input = input(),
    expect = { deadlines = { acceptance = "2026-11-24T23:59:59+08:00" } },
    fired = { "gd.sla.tier.standard" } },

  { name = "deadlines still inside 2026 in late December are fine",
    at = "2026-12-10T12:00:00+08:00",
    input = input{ received_at = "2026-12-10T10:00:00+08:00" },
    expect = { deadlines = {
      acceptance = "2026-12-11T23:59:59+08:00",
      solution = "2026-12-17T23:59:59+08:00",
      operator_reply = "2026-12-25T23:59:59+08:00",
    } } },

  -- A day in 2027, which has no calendar file, is never guessed here: a
  -- calendar-day deadline there is its own day, the earliest it can end; a
  -- working-day count into 2027 cannot be made (null).  Both are listed in
  -- `provisional`, as is a status that depends on them.  2026-12-20 is a
  -- Sunday.
  { name = "received 2026-12-20: the 2026 deadlines exact, the 2027 one provisional",
    at = "2026-12-21T12:00:00+08:00",
    input = input{ received_at = "2026-12-20T10:00:00+08:00" },
    expect = {
      deadlines = {
        acceptance = "2026-12-21T23:59:59+08:00",
        first_feedback = "2026-12-22T10:00:00+08:00",
        investigation = "2026-12-24T23:59:59+08:00",
        solution = "2026-12-25T23:59:59+08:00",
        operator_reply = "2027-01-04T23:59:59+08:00",   -- its own day, a Monday
      },
      status = { acceptance = "pending", first_feedback = "pending", investigation = "pending",
        solution = "pending", operator_reply = "pending" },
      next_deadline = { name = "acceptance", at = "2026-12-21T23:59:59+08:00" },
      provisional = { "deadlines.operator_reply" },
    },
    fired = { "calendar.provisional" } },

  { name = "received 2026-12-28: working days into 2027 cannot be counted, null",
    at = "2026-12-28T12:00:00+08:00",
    input = input{ received_at = "2026-12-28T10:00:00+08:00" },
    expect = {
      deadlines = {
        acceptance = "2026-12-29T23:59:59+08:00",
        first_feedback = "2026-12-30T10:00:00+08:00",
        investigation = verdict.null,
        solution = verdict.null,
        operator_reply = "2027-01-12T23:59:59+08:00",
      },
      -- pending whatever 2027's days are: not even 75% of the time to the
      -- earliest end has passed, and no later end can make it at risk
      status = { investigation = "pending", solution = "pending", operator_reply = "pending" },
      next_deadline = { name = "acceptance", at = "2026-12-29T23:59:59+08:00" },
      provisional = { "deadlines.investigation", "deadlines.solution",
        "deadlines.operator_reply" },
    } },

  { name = "a status that depends on 2027 is null too, and so is the next deadline",
    at = "2027-01-02T12:00:00+08:00",
    input = input{ received_at = "2026-12-28T10:00:00+08:00" },
    expect = {
      status = { acceptance = "breached", first_feedback = "breached",
        investigation = verdict.null, solution = verdict.null, operator_reply = "pending" },
      next_deadline = verdict.null,
      provisional = { "deadlines.investigation", "deadlines.solution",
        "deadlines.operator_reply", "status.investigation", "status.solution",
        "next_deadline" },
    } },

  { name = "done by the earliest end a count into 2027 can give: met, whatever 2027 says",
    at = "2027-01-02T12:00:00+08:00",
    input = input{ received_at = "2026-12-28T10:00:00+08:00",
      done = { acceptance = "2026-12-28T15:00:00+08:00",
        first_feedback = "2026-12-28T15:00:00+08:00",
        investigation = "2026-12-31T18:00:00+08:00" } },
    expect = {
      deadlines = { investigation = verdict.null },
      status = { acceptance = "met", investigation = "met", solution = verdict.null },
      provisional = { "deadlines.investigation", "deadlines.solution",
        "deadlines.operator_reply", "status.solution", "next_deadline" },
    } },

  { name = "the only deadline still open is next, at its provisional time",
    at = "2026-12-28T12:00:00+08:00",
    input = input{ received_at = "2026-12-20T10:00:00+08:00" },
    expect = {
      status = { acceptance = "breached", investigation = "breached", solution = "breached",
        operator_reply = "pending" },
      next_deadline = { name = "operator_reply", at = "2027-01-04T23:59:59+08:00" },
      provisional = { "deadlines.operator_reply", "next_deadline.at" },
    } },

  { name = "a Guangdong city with an SLA file of its own: the same provisional reply",
    region = "GD-SZ",
    at = "2026-12-21T12:00:00+08:00",
    input = input{ received_at = "2026-12-20T10:00:00+08:00" },
    expect = { deadlines = { solution = "2026-12-25T23:59:59+08:00",
        operator_reply = "2027-01-04T23:59:59+08:00" },
      provisional = { "deadlines.operator_reply" } },
    fired = { "calendar.provisional" } },

  { name = "hours are exact whatever the year: a 24 h repair into 2027 is not provisional",
    at = "2026-12-31T12:00:00+08:00",
    input = input{ category = "broadband_fault", received_at = "2026-12-31T10:00:00+08:00" },
    expect = { deadlines = { repair = "2027-01-01T10:00:00+08:00" },
      status = { repair = "pending" },
      next_deadline = { name = "repair", at = "2027-01-01T10:00:00+08:00" } } },
}

-- Every government and enterprise grade, in Guangdong and in a city with
-- an SLA file of its own: handling days no later than retail's (1/4/5).
for _, region in ipairs{ "GD", "GD-SZ" } do
  for _, grade in ipairs{ "group", "province", "local_a", "local_b", "local_c" } do
    cases[#cases + 1] = {
      name = grade .. " customer in " .. region .. ": no later than retail",
      region = region,
      at = "2026-11-23T12:00:00+08:00",
      input = input{ customer_grade = grade },
      expect = { deadlines = {
        acceptance = "2026-11-24T23:59:59+08:00",
        investigation = "2026-11-27T23:59:59+08:00",
        solution = "2026-11-30T23:59:59+08:00",
      } } }
  end
end

return cases
