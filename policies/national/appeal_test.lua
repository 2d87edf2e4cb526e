-- national/appeal_test.lua - cases for the national appeal policy.
-- Default appeal: billing, event 2026-06-01, appealed Wednesday 2026-07-15;
-- the 5-month window ends 2026-11-02 (Nov 1 is a Sunday); the appeal body
-- decides on acceptance by 2026-07-22 (5 working days).

local AT = "2026-07-20T10:00:00+08:00"

local input = with_defaults{ complaint_id = "C-1", category = "billing",
    event_at = "2026-06-01T10:00:00+08:00", appealed_at = "2026-07-15T10:00:00+08:00",
    complained_first = true }

-- One instant written in each offset a request may use: `variants` is a
-- list of { offset = "...", <field> = time, ... }, the same instants in each.
-- Adds one case per variant, built by make(v); all expect the same answer,
-- since days are China's civil days whatever the offset, and answers are
-- written in +08:00.
local cases = {
  { name = "a bar ending in 2027 with no 2027 calendar: weekend-only fallback nationally",
    at = "2026-11-20T10:00:00+08:00",
    input = input{ event_at = "2026-10-01T10:00:00+08:00",
      appealed_at = "2026-11-16T10:00:00+08:00" },
    expect = { appeal_window_ends = "2027-03-01T23:59:59+08:00", provisional = {} },
    fired = { "calendar.weekend_only_fallback" } },

  { name = "an acceptance deadline counted into 2027 nationally: weekends only, not provisional",
    at = "2026-12-31T12:00:00+08:00",
    input = input{ event_at = "2026-07-01T10:00:00+08:00",
      appealed_at = "2026-12-28T10:00:00+08:00" },
    expect = { outcome = "withdrawn", acceptance_decision_by = "2027-01-04T23:59:59+08:00",
      provisional = {} },
    fired = { "calendar.weekend_only_fallback" } },

  { name = "a court already accepted the matter: withdrawn, whatever was found",
    at = AT,
    input = input{ accepted_elsewhere = "court", findings = { "work_error" } },
    expect = { outcome = "withdrawn", grounds = { "appeal.withdrawn.handled_elsewhere" },
      counts_against_enterprise = false,
      appeal_window_ends = "2026-11-02T23:59:59+08:00",
      acceptance_decision_by = "2026-07-22T23:59:59+08:00",
      answer_due_by = verdict.null },
    fired = { "appeal.window.billing", "appeal.outcome.withdrawn", "appeal.deadline.acceptance" } },

  { name = "settled and carried out",
    at = AT,
    input = input{ settled_and_executed = true },
    expect = { outcome = "withdrawn", grounds = { "appeal.withdrawn.settled" } } },

  { name = "the appellant is not the customer",
    at = AT,
    input = input{ appellant_is_party = false },
    expect = { outcome = "withdrawn", grounds = { "appeal.withdrawn.not_party" } } },

  { name = "billing appeal after 5 months",
    at = AT,
    input = input{ event_at = "2026-01-10T10:00:00+08:00", appealed_at = "2026-06-20T10:00:00+08:00" },
    expect = { outcome = "withdrawn", grounds = { "appeal.withdrawn.out_of_time" },
      appeal_window_ends = "2026-06-10T23:59:59+08:00",
      acceptance_decision_by = "2026-06-26T23:59:59+08:00" } },   -- Jun 19-21 off

  { name = "billing window ending on a Sunday runs to Monday 24:00",
    at = AT,
    input = input{ event_at = "2025-12-31T10:00:00+08:00", appealed_at = "2026-06-01T20:00:00+08:00",
      findings = { "work_error" }, demand_has_basis = true },
    expect = { outcome = "enterprise_liable", appeal_window_ends = "2026-06-01T23:59:59+08:00" } },

  { name = "other disputes: 2 years",
    at = AT,
    input = input{ category = "network", event_at = "2024-03-01T10:00:00+08:00",
      appealed_at = "2026-03-05T10:00:00+08:00" },
    expect = { outcome = "withdrawn", grounds = { "appeal.withdrawn.out_of_time" },
      appeal_window_ends = "2026-03-02T23:59:59+08:00" },
    fired = { "appeal.window.other" } },

  { name = "never complained to the carrier first",
    at = AT,
    input = input{ complained_first = false },
    expect = { outcome = "withdrawn", grounds = { "appeal.withdrawn.no_prior_complaint" } } },

  { name = "every procedural bar is a ground",
    at = AT,
    input = input{ settled_and_executed = true, complained_first = false },
    expect = { outcome = "withdrawn",
      grounds = { "appeal.withdrawn.settled", "appeal.withdrawn.no_prior_complaint" } } },

  { name = "reply after the deadline: enterprise liable",
    at = AT,
    input = input{ carrier_replied_in_time = false },
    expect = { outcome = "enterprise_liable", grounds = { "appeal.finding.late_reply" },
      counts_against_enterprise = true },
    fired = { "appeal.outcome.liable_handling" } },

  { name = "shirking rules out 'properly handled' even with a demand without basis",
    at = AT,
    input = input{ findings = { "shirking", "work_error" }, handled_within_policy = true,
      demand_has_basis = false },
    expect = { outcome = "enterprise_liable",
      grounds = { "appeal.finding.shirking", "appeal.finding.work_error" },
      counts_against_enterprise = true } },

  { name = "at fault but handled within policy, demand without basis: properly handled",
    at = AT,
    input = input{ findings = { "work_error" }, handled_within_policy = true,
      demand_has_basis = false },
    expect = { outcome = "properly_handled", counts_against_enterprise = false,
      grounds = { "appeal.finding.work_error", "appeal.finding.handled_within_policy",
        "appeal.finding.demand_without_basis" } },
    fired = { "appeal.outcome.properly_handled" } },

  { name = "at fault and the demand had a basis: enterprise liable",
    at = AT,
    input = input{ findings = { "work_error" }, handled_within_policy = true,
      demand_has_basis = true },
    expect = { outcome = "enterprise_liable", grounds = { "appeal.finding.work_error" } },
    fired = { "appeal.outcome.liable" } },

  { name = "proper handling not established: enterprise liable",
    at = AT,
    input = input{ findings = { "work_error" }, demand_has_basis = false },
    expect = { outcome = "enterprise_liable", grounds = { "appeal.finding.work_error" } } },

  { name = "the customer misunderstood the published policy",
    at = AT,
    input = input{ findings = { "user_misunderstanding" } },
    expect = { outcome = "user_cause", grounds = { "appeal.finding.user_misunderstanding" },
      counts_against_enterprise = false },
    fired = { "appeal.outcome.user_cause" } },

  { name = "the customer operated the service wrongly",
    at = AT,
    input = input{ findings = { "user_operation_error" } },
    expect = { outcome = "user_cause", grounds = { "appeal.finding.user_operation_error" } } },

  { name = "a contract omission outweighs the misunderstanding it caused",
    at = AT,
    input = input{ findings = { "user_misunderstanding", "contract_omission" } },
    expect = { outcome = "enterprise_liable", grounds = { "appeal.finding.contract_omission" } } },

  { name = "several service faults are all grounds, in rule order",
    at = AT,
    input = input{ findings = { "management_negligence", "marketing_violation", "below_standard" } },
    expect = { outcome = "enterprise_liable", grounds = { "appeal.finding.marketing_violation",
      "appeal.finding.below_standard", "appeal.finding.management_negligence" } } },

  { name = "incomplete materials and an unagreed charge",
    at = AT,
    input = input{ findings = { "unagreed_charge", "incomplete_materials" } },
    expect = { outcome = "enterprise_liable", grounds = {
      "appeal.finding.incomplete_materials", "appeal.finding.unagreed_charge" } } },

  { name = "handling found improper",
    at = AT,
    input = input{ handled_within_policy = false },
    expect = { outcome = "enterprise_liable", grounds = { "appeal.finding.improper_handling" } } },

  { name = "nothing found on either side: not counted against the enterprise",
    at = AT,
    input = input(),
    expect = { outcome = "properly_handled", grounds = { "appeal.outcome.no_fault" },
      counts_against_enterprise = false },
    fired = { "appeal.outcome.no_fault" } },

  { name = "appeal filed just before Spring Festival: acceptance decision after it",
    at = "2026-02-12T12:00:00+08:00",
    input = input{ event_at = "2026-01-20T10:00:00+08:00", appealed_at = "2026-02-12T10:00:00+08:00" },
    expect = { acceptance_decision_by = "2026-02-26T23:59:59+08:00" } },  -- Feb 14 worked

  { name = "answer 30 days after complete materials, rolled past a Sunday",
    at = "2026-09-18T12:00:00+08:00",
    input = input{ event_at = "2026-09-01T10:00:00+08:00", appealed_at = "2026-09-16T10:00:00+08:00",
      materials_complete_at = "2026-09-18T09:00:00+08:00", findings = { "below_standard" } },
    expect = { outcome = "enterprise_liable",
      acceptance_decision_by = "2026-09-22T23:59:59+08:00",   -- Sep 20 (Sunday) worked
      answer_due_by = "2026-10-19T23:59:59+08:00" },
    fired = { "appeal.deadline.answer" } },

  { name = "a withdrawn appeal gets no answer deadline",
    at = AT,
    input = input{ complained_first = false, materials_complete_at = "2026-07-16T09:00:00+08:00" },
    expect = { outcome = "withdrawn", answer_due_by = verdict.null } },

  { name = "bad input: appealed before the event",
    at = AT,
    input = input{ appealed_at = "2026-05-01T10:00:00+08:00" },
    expect_error = { code = "bad_input", path = "input.appealed_at" } },

  { name = "bad input: unknown finding named by its index",
    at = AT,
    input = input{ findings = { "work_error", "bad_luck" } },
    expect_error = { code = "bad_input", path = "input.findings[2]" } },

  -- findings is a JSON array: an object is refused, even an empty one
  -- (verdict.array{} is written [], verdict.object{} is written {}).
  { name = "findings as an empty array: nothing found",
    at = AT,
    input = input{ findings = verdict.array{} },
    expect = { outcome = "properly_handled", grounds = { "appeal.outcome.no_fault" } } },

  { name = "bad input: findings as an empty object",
    at = AT,
    input = input{ findings = verdict.object{} },
    expect_error = { code = "bad_input", path = "input.findings" } },

  { name = "bad input: findings as an object of flags",
    at = AT,
    input = input{ findings = { work_error = true } },
    expect_error = { code = "bad_input", path = "input.findings" } },

  { name = "bad input: complained_first missing",
    at = AT,
    input = input{ complained_first = verdict.null },
    expect_error = { code = "bad_input", path = "input.complained_first" } },

  { name = "bad input: unknown body",
    at = AT,
    input = input{ accepted_elsewhere = "police" },
    expect_error = { code = "bad_input", path = "input.accepted_elsewhere" } },

  { name = "bad input: a string for a boolean",
    at = AT,
    input = input{ settled_and_executed = "yes" },
    expect_error = { code = "bad_input", path = "input.settled_and_executed" } },
}

-- Event on New Year's Day 2026 in China (New Year's Eve 2025 elsewhere): the
-- 5-month billing bar ends Monday 2026-06-01 24:00 China time.
local NEW_YEAR = {
  ["+08:00"] = "2026-01-01T00:30:00+08:00", Z = "2025-12-31T16:30:00Z",
  ["-05:00"] = "2025-12-31T11:30:00-05:00", ["+14:00"] = "2026-01-01T06:30:00+14:00",
}

in_every_offset(cases, "billing appeal 30 minutes after the 5-month bar ended in China", {
    { offset = "+08:00", appealed = "2026-06-02T00:30:00+08:00" },
    { offset = "Z", appealed = "2026-06-01T16:30:00Z" },
    { offset = "-05:00", appealed = "2026-06-01T11:30:00-05:00" },
    { offset = "+14:00", appealed = "2026-06-02T06:30:00+14:00" },
  }, function(v)
    return { at = v.appealed,
      input = input{ event_at = NEW_YEAR[v.offset], appealed_at = v.appealed,
        findings = { "shirking" } },
      expect = { outcome = "withdrawn", grounds = { "appeal.withdrawn.out_of_time" },
        counts_against_enterprise = false,
        appeal_window_ends = "2026-06-01T23:59:59+08:00",
        acceptance_decision_by = "2026-06-09T23:59:59+08:00",   -- from Tuesday Jun 2
        answer_due_by = verdict.null } }
  end)

in_every_offset(cases, "billing appeal 30 minutes before the bar ended in China; materials "
  .. "complete on National Day", {
    { offset = "+08:00", appealed = "2026-06-01T23:30:00+08:00",
      materials = "2026-10-01T01:00:00+08:00" },
    { offset = "Z", appealed = "2026-06-01T15:30:00Z", materials = "2026-09-30T17:00:00Z" },
    { offset = "-05:00", appealed = "2026-06-01T10:30:00-05:00",
      materials = "2026-09-30T12:00:00-05:00" },
    { offset = "+14:00", appealed = "2026-06-02T05:30:00+14:00",
      materials = "2026-10-01T07:00:00+14:00" },
  }, function(v)
    return { at = v.appealed,
      input = input{ event_at = NEW_YEAR[v.offset], appealed_at = v.appealed,
        materials_complete_at = v.materials, findings = { "shirking" } },
      expect = { outcome = "enterprise_liable", grounds = { "appeal.finding.shirking" },
        counts_against_enterprise = true,
        appeal_window_ends = "2026-06-01T23:59:59+08:00",
        acceptance_decision_by = "2026-06-08T23:59:59+08:00",   -- from Monday Jun 1
        answer_due_by = "2026-11-02T23:59:59+08:00" } }       -- Oct 31 is a Saturday
  end)

in_every_offset(cases, "appeal filed on a worked Saturday in China before Spring Festival", {
    { offset = "+08:00", appealed = "2026-02-14T00:30:00+08:00" },
    { offset = "Z", appealed = "2026-02-13T16:30:00Z" },
    { offset = "-05:00", appealed = "2026-02-13T11:30:00-05:00" },
    { offset = "+14:00", appealed = "2026-02-14T06:30:00+14:00" },
  }, function(v)
    return { at = v.appealed,
      input = input{ event_at = v.appealed, appealed_at = v.appealed },
      expect = {
        appeal_window_ends = "2026-07-14T23:59:59+08:00",       -- Feb 14 + 5 months
        acceptance_decision_by = "2026-02-28T23:59:59+08:00",   -- Feb 24-27, worked Feb 28
      } }
  end)

return cases
