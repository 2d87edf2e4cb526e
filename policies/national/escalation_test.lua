-- national/escalation_test.lua - cases for the national escalation policy.
-- Default complaint: received Friday 2026-11-20 10:00, decided Monday
-- 2026-11-23 10:00, owned by the front line; its 15-day reply window ends
-- 2026-12-07 (Dec 5 is a Saturday).

local AT = "2026-11-23T10:00:00+08:00"

local input = with_defaults{ complaint_id = "C-1", customer_id = "U-1", category = "network",
    customer_grade = "retail", received_at = "2026-11-20T10:00:00+08:00",
    handled_by = "frontline" }

-- One instant written in each offset a request may use: `variants` is a
-- list of { offset = "...", <field> = time, ... }, the same instants in each.
-- Adds one case per variant, built by make(v); all expect the same answer,
-- since days are China's civil days whatever the offset, and answers are
-- written in +08:00.
local cases = {
  -- The counts from history (repeat_30d, over_head_30d, refunds_90d,
  -- similar_recent) are omitted here: verdict test has no history, so each
  -- is 0.  tests/blackbox/test_history.py counts them against a daemon.
  { name = "nothing to act on: the front line keeps it, daily review",
    at = AT,
    input = input(),
    expect = { level = "frontline", notify = {}, warnings = {}, incident = false,
      next_review_at = "2026-11-24T10:00:00+08:00", similar_window_hours = 24 },
    fired = { "esc.owner.first_contact", "esc.review.daily" } },

  { name = "the customer mentions the regulator: city, compliance told, every level between",
    at = AT,
    input = input{ signals = { "regulator" } },
    expect = { level = "city", notify = { "team_lead", "district", "city", "compliance" },
      warnings = { "regulator" }, next_review_at = "2026-11-23T14:00:00+08:00" },
    fired = { "esc.signal.regulator", "esc.review.high_risk" } },

  { name = "media exposure",
    at = AT,
    input = input{ signals = { "media" } },
    expect = { level = "city", notify = { "team_lead", "district", "city", "public_relations" },
      warnings = { "media" } },
    fired = { "esc.signal.media" } },

  { name = "threatened lawsuit",
    at = AT,
    input = input{ signals = { "lawsuit" } },
    expect = { level = "city", notify = { "team_lead", "district", "city", "legal" },
      warnings = { "lawsuit" } },
    fired = { "esc.signal.lawsuit" } },

  { name = "consumer association: district, reviewed every 4 hours",
    at = AT,
    input = input{ signals = { "consumer_association" } },
    expect = { level = "district", notify = { "team_lead", "district" },
      warnings = { "consumer_association" }, next_review_at = "2026-11-23T14:00:00+08:00" },
    fired = { "esc.signal.consumer_association" } },

  { name = "a breached deadline: the team lead takes over",
    at = AT,
    input = input{ sla_status = { acceptance = "breached", first_feedback = "met" } },
    expect = { level = "team_lead", notify = { "team_lead" }, warnings = { "sla_breached" },
      next_review_at = "2026-11-23T14:00:00+08:00" },
    fired = { "esc.sla.breached", "esc.review.deadline" } },

  { name = "operator reply overdue: district",
    at = AT,
    input = input{ sla_status = { operator_reply = "breached" } },
    expect = { level = "district", notify = { "team_lead", "district" },
      warnings = { "reply_overdue", "sla_breached" } },
    fired = { "esc.sla.reply_overdue" } },

  { name = "15 days passed (Oct 3 holiday rolled to Oct 8) and no reply status known",
    at = "2026-10-09T10:00:00+08:00",
    input = input{ received_at = "2026-09-18T09:00:00+08:00" },
    expect = { level = "district", warnings = { "reply_window_passed" },
      next_review_at = "2026-10-09T14:00:00+08:00" },
    fired = { "esc.sla.reply_window_passed" } },

  { name = "15 calendar days passed but the window runs to the next working day",
    at = "2026-10-05T10:00:00+08:00",
    input = input{ received_at = "2026-09-18T09:00:00+08:00" },
    expect = { level = "frontline", warnings = {} } },

  { name = "no reply status given: the reply window closing within 24 h (Dec 7 24:00) is "
      .. "a warning",
    at = "2026-12-06T23:59:59+08:00",
    input = input(),
    expect = { level = "frontline", notify = { "team_lead" }, warnings = { "reply_window_closing" },
      next_review_at = "2026-12-07T03:59:59+08:00" },
    fired = { "esc.sla.reply_window_closing", "esc.review.deadline" } },

  { name = "no reply status given: 24 h and a second before the window closes, no warning yet",
    at = "2026-12-06T23:59:58+08:00",
    input = input(),
    expect = { level = "frontline", notify = {}, warnings = {},
      next_review_at = "2026-12-07T23:59:58+08:00" } },

  { name = "the reply window closing is the caller's to say when sla_status has operator_reply",
    at = "2026-12-07T12:00:00+08:00",
    input = input{ sla_status = { operator_reply = "pending" } },
    expect = { warnings = {} } },

  { name = "a deadline at risk: tell the team lead, keep the owner",
    at = AT,
    input = input{ sla_status = { solution = "at_risk", acceptance = "met" } },
    expect = { level = "frontline", notify = { "team_lead" }, warnings = { "sla_at_risk" },
      next_review_at = "2026-11-23T14:00:00+08:00" },
    fired = { "esc.sla.at_risk" } },

  { name = "repeat complaints in 30 days",
    at = AT,
    input = input{ repeat_30d = 2 },
    expect = { level = "team_lead", warnings = { "repeat_complaints" } },
    fired = { "esc.repeat.customer" } },

  { name = "one repeat complaint is not yet a warning",
    at = AT,
    input = input{ repeat_30d = 1 },
    expect = { level = "frontline", warnings = {} } },

  { name = "over-the-head complaint: district",
    at = AT,
    input = input{ over_head_30d = 1 },
    expect = { level = "district", warnings = { "over_head_complaints" } },
    fired = { "esc.repeat.over_head" } },

  { name = "every count given: the input decides, whatever history holds",
    at = AT,
    input = input{ repeat_30d = 2, over_head_30d = 1, refunds_90d = 3, similar_recent = 0 },
    expect = { level = "district", notify = { "team_lead", "district" },
      warnings = { "repeat_complaints", "over_head_complaints", "frequent_refunds",
        "pay_within_basis" } },
    fired = { "esc.repeat.customer", "esc.repeat.over_head", "esc.repeat.refunds",
      "esc.pattern.within_basis" } },

  { name = "counts given as 0 are 0",
    at = AT,
    input = input{ repeat_30d = 0, over_head_30d = 0, refunds_90d = 0 },
    expect = { level = "frontline", warnings = {} } },

  { name = "frequent refunds and repeat complaints: pay within basis, keep evidence",
    at = AT,
    input = input{ refunds_90d = 3, repeat_30d = 2 },
    expect = { level = "team_lead", notify = { "team_lead" },
      warnings = { "repeat_complaints", "frequent_refunds", "pay_within_basis" } },
    fired = { "esc.repeat.refunds", "esc.pattern.within_basis" } },

  { name = "top-grade enterprise customer: district with the account manager, hourly review",
    at = AT,
    input = input{ customer_grade = "group" },
    expect = { level = "district", notify = { "team_lead", "district", "account_manager" },
      warnings = { "top_grade_customer" }, next_review_at = "2026-11-23T11:00:00+08:00" },
    fired = { "esc.grade.top", "esc.review.top_grade" } },

  { name = "five customers with the same problem: a systemic incident",
    at = AT,
    input = input{ similar_recent = 5 },
    expect = { level = "city", incident = true,
      notify = { "team_lead", "district", "city", "network_operations" },
      warnings = { "systemic_fault" }, next_review_at = "2026-11-23T11:00:00+08:00" },
    fired = { "esc.incident.systemic", "esc.review.incident" } },

  { name = "four similar complaints are not yet an incident",
    at = AT,
    input = input{ similar_recent = 4 },
    expect = { level = "frontline", incident = false } },

  { name = "a major incident goes to the province",
    at = AT,
    input = input{ similar_recent = 60, handled_by = "team_lead" },
    expect = { level = "province", incident = true,
      notify = { "district", "city", "province", "network_operations", "province_duty_manager" },
      warnings = { "systemic_fault", "major_incident" } },
    fired = { "esc.incident.major" } },

  { name = "already owned above what the signal needs: level kept, no one re-notified",
    at = AT,
    input = input{ handled_by = "city", signals = { "consumer_association" } },
    expect = { level = "city", notify = {}, warnings = { "consumer_association" },
      next_review_at = "2026-11-23T14:00:00+08:00" } },

  { name = "bad input: an unknown signal is named by its index",
    at = AT,
    input = input{ signals = { "regulator", "tv" } },
    expect_error = { code = "bad_input", path = "input.signals[2]" } },

  { name = "bad input: negative count",
    at = AT,
    input = input{ repeat_30d = -1 },
    expect_error = { code = "bad_input", path = "input.repeat_30d" } },

  { name = "bad input: a count that is not an integer",
    at = AT,
    input = input{ refunds_90d = 1.5 },
    expect_error = { code = "bad_input", path = "input.refunds_90d" } },

  { name = "bad input: unknown status value",
    at = AT,
    input = input{ sla_status = { acceptance = "late" } },
    expect_error = { code = "bad_input", path = "input.sla_status.acceptance" } },

  -- sla_status is a JSON object keyed by milestone, signals a JSON array:
  -- the other shape is refused, even empty (verdict.array{} is written [],
  -- verdict.object{} is written {}).
  { name = "sla_status as an empty object and signals as an empty array: nothing to act on",
    at = AT,
    input = input{ sla_status = verdict.object{}, signals = verdict.array{} },
    expect = { level = "frontline", notify = {}, warnings = {}, incident = false,
      next_review_at = "2026-11-24T10:00:00+08:00" },
    fired = { "esc.owner.first_contact", "esc.review.daily" } },

  { name = "bad input: sla_status as an empty array",
    at = AT,
    input = input{ sla_status = verdict.array{} },
    expect_error = { code = "bad_input", path = "input.sla_status" } },

  { name = "bad input: sla_status as an array of statuses",
    at = AT,
    input = input{ sla_status = { "breached" } },
    expect_error = { code = "bad_input", path = "input.sla_status" } },

  { name = "bad input: a key in sla_status that is no milestone is named",
    at = AT,
    input = input{ sla_status = { acceptance = "met", callback = "breached" } },
    expect_error = { code = "bad_input", path = "input.sla_status.callback" } },

  { name = "bad input: signals as an empty object",
    at = AT,
    input = input{ signals = verdict.object{} },
    expect_error = { code = "bad_input", path = "input.signals" } },

  { name = "bad input: signals as an object of flags",
    at = AT,
    input = input{ signals = { regulator = true } },
    expect_error = { code = "bad_input", path = "input.signals" } },

  { name = "bad input: unknown level",
    at = AT,
    input = input{ handled_by = "manager" },
    expect_error = { code = "bad_input", path = "input.handled_by" } },

  { name = "bad input: customer_id missing",
    at = AT,
    input = input{ customer_id = verdict.null },
    expect_error = { code = "bad_input", path = "input.customer_id" } },
}

in_every_offset(cases, "received on New Year's Day 2026 in China: the reply window ended "
  .. "Jan 16 24:00 China time", {
    { offset = "+08:00", received = "2026-01-01T00:30:00+08:00", at = "2026-01-17T00:00:00+08:00" },
    { offset = "Z", received = "2025-12-31T16:30:00Z", at = "2026-01-16T16:00:00Z" },
    { offset = "-05:00", received = "2025-12-31T11:30:00-05:00", at = "2026-01-16T11:00:00-05:00" },
    { offset = "+14:00", received = "2026-01-01T06:30:00+14:00", at = "2026-01-17T06:00:00+14:00" },
  }, function(v)
    return { at = v.at, input = input{ received_at = v.received },
      expect = { level = "district", notify = { "team_lead", "district" },
        warnings = { "reply_window_passed" }, next_review_at = "2026-01-17T04:00:00+08:00" },
      fired = { "esc.sla.reply_window_passed", "esc.review.deadline" } }
  end)

in_every_offset(cases, "received on a worked Saturday in China before Spring Festival: the "
  .. "window ended Mar 2 24:00 China time", {
    { offset = "+08:00", received = "2026-02-14T00:30:00+08:00", at = "2026-03-03T00:00:00+08:00" },
    { offset = "Z", received = "2026-02-13T16:30:00Z", at = "2026-03-02T16:00:00Z" },
    { offset = "-05:00", received = "2026-02-13T11:30:00-05:00", at = "2026-03-02T11:00:00-05:00" },
    { offset = "+14:00", received = "2026-02-14T06:30:00+14:00", at = "2026-03-03T06:00:00+14:00" },
  }, function(v)
    return { at = v.at, input = input{ received_at = v.received },
      expect = { level = "district", warnings = { "reply_window_passed" },
        next_review_at = "2026-03-03T04:00:00+08:00" } }
  end)

in_every_offset(cases, "received on National Day in China: at 23:00 China time on Oct 16 the "
  .. "window is still open, and closes within the hour", {
    { offset = "+08:00", received = "2026-10-01T01:00:00+08:00", at = "2026-10-16T23:00:00+08:00" },
    { offset = "Z", received = "2026-09-30T17:00:00Z", at = "2026-10-16T15:00:00Z" },
    { offset = "-05:00", received = "2026-09-30T12:00:00-05:00", at = "2026-10-16T10:00:00-05:00" },
    { offset = "+14:00", received = "2026-10-01T07:00:00+14:00", at = "2026-10-17T05:00:00+14:00" },
  }, function(v)
    return { at = v.at, input = input{ received_at = v.received },
      expect = { level = "frontline", notify = { "team_lead" }, warnings = { "reply_window_closing" },
        next_review_at = "2026-10-17T03:00:00+08:00" },
      fired = { "esc.sla.reply_window_closing", "esc.review.deadline" } }
  end)

return cases
