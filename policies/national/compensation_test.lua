-- national/compensation_test.lua - cases for the national compensation policy.
-- Retail approval limits (fen): frontline 5000, team_lead 20000,
-- district 100000, city 500000; retail cap on capped components: 40000.

local AT = "2026-11-23T10:00:00+08:00"

local input = with_defaults{ complaint_id = "C-1", category = "billing", customer_grade = "retail",
    cause = "carrier" }

-- One instant written in each offset a request may use: `variants` is a
-- list of { offset = "...", <field> = time, ... }, the same instants in each.
-- Adds one case per variant, built by make(v); all expect the same answer,
-- since days are China's civil days whatever the offset, and answers are
-- written in +08:00.
local cases = {
  { name = "overcharge caused by the carrier: double refund",
    at = AT,
    input = input{ charged_fen = 12000, due_fen = 8000 },
    expect = {
      offer_fen = 8000,
      components = { { type = "double_refund", amount_fen = 8000, rule = "comp.billing.double_refund" } },
      cap_fen = 40000,
      approval_level = "team_lead",
      claim_beyond_basis = false,
    },
    fired = { "comp.billing.double_refund", "comp.approval.team_lead" } },

  { name = "the customer may be named, for history's counts; it changes nothing here",
    at = AT,
    input = input{ customer_id = "U-1", charged_fen = 12000, due_fen = 8000 },
    expect = { offer_fen = 8000, approval_level = "team_lead" } },

  { name = "overcharge a third party caused: the amount not due is returned once",
    at = AT,
    input = input{ cause = "third_party", charged_fen = 12000, due_fen = 8000 },
    expect = {
      offer_fen = 4000,
      components = { { type = "overcharge_refund", amount_fen = 4000 } },
      approval_level = "frontline",
    },
    fired = { "comp.exempt.third_party", "comp.billing.refund", "comp.approval.frontline" } },

  { name = "charged less than due: nothing to refund",
    at = AT,
    input = input{ charged_fen = 5000, due_fen = 8000 },
    expect = { offer_fen = 0, components = {}, approval_level = "frontline" } },

  { name = "unconfirmed value-added subscription: full refund whoever caused it",
    at = AT,
    input = input{ category = "sp_subscription", cause = "third_party", sp_unconfirmed_fen = 3000 },
    expect = { offer_fen = 3000,
      components = { { type = "sp_refund", amount_fen = 3000, rule = "comp.sp.void_refund" } } } },

  { name = "fraud: 3x the fee on top of the overcharge refunded once (not double)",
    at = AT,
    input = input{ fraud_established = true, fee_fen = 30000, charged_fen = 13000, due_fen = 8000 },
    expect = {
      offer_fen = 95000,
      components = {
        { type = "overcharge_refund", amount_fen = 5000 },
        { type = "fraud_damages", amount_fen = 90000, rule = "comp.fraud.cpl55" },
      },
      approval_level = "district",
    },
    fired = { "comp.fraud.cpl55", "comp.approval.district" } },

  { name = "fraud on a small fee: at least 500 yuan",
    at = AT,
    input = input{ fraud_established = true, fee_fen = 2000 },
    expect = { offer_fen = 50000, components = { { type = "fraud_damages", amount_fen = 50000 } } } },

  { name = "late repair: started days count whole, and the rental for the fault period is waived",
    at = AT,
    input = input{ category = "broadband_fault", repair_overdue_hours = 50, fault_hours = 98,
      monthly_rental_fen = 9900 },
    expect = {
      offer_fen = 4650,
      components = {
        { type = "late_repair", amount_fen = 3000, rule = "comp.repair.late" },
        { type = "rental_waiver", amount_fen = 1650, rule = "comp.repair.rental_waiver" },
      },
      approval_level = "frontline",
    } },

  { name = "late repair compensation stops at 100 yuan",
    at = AT,
    input = input{ category = "broadband_fault", repair_overdue_hours = 300 },
    expect = { offer_fen = 10000, components = { { type = "late_repair", amount_fen = 10000 } } } },

  { name = "late repair the customer caused: exempt",
    at = AT,
    input = input{ category = "broadband_fault", cause = "customer", repair_overdue_hours = 50 },
    expect = { offer_fen = 0, components = {}, approval_level = "frontline" },
    fired = { "comp.exempt.customer" } },

  { name = "late installation in force majeure: exempt",
    at = AT,
    input = input{ category = "install", cause = "force_majeure", install_late = true,
      install_fee_fen = 20000, install_overdue_days = 5 },
    expect = { offer_fen = 0, components = {} },
    fired = { "comp.exempt.force_majeure" } },

  { name = "late installation: 1% of the fee per day plus the 20 yuan commitment",
    at = AT,
    input = input{ category = "install", install_late = true, install_fee_fen = 20000,
      install_overdue_days = 5 },
    expect = {
      offer_fen = 3000,
      components = {
        { type = "install_penalty", amount_fen = 1000, rule = "comp.install.penalty" },
        { type = "late_install", amount_fen = 2000, rule = "comp.install.late" },
      },
    } },

  { name = "speed at 60% of the contract: credit of 40% of the month's rental",
    at = AT,
    input = input{ category = "broadband_fault", speed_percent = 60, monthly_rental_fen = 10000 },
    expect = { offer_fen = 4000,
      components = { { type = "speed_credit", amount_fen = 4000, rule = "comp.speed.credit" } } } },

  { name = "speed at exactly 90%: no credit",
    at = AT,
    input = input{ category = "broadband_fault", speed_percent = 90, monthly_rental_fen = 10000 },
    expect = { offer_fen = 0, components = {} } },

  { name = "no rental given: no speed credit, no zero-amount component",
    at = AT,
    input = input{ category = "broadband_fault", speed_percent = 0, monthly_rental_fen = 0 },
    expect = { offer_fen = 0, components = {} } },

  { name = "goodwill is bounded at 300 yuan",
    at = AT,
    input = input{ category = "service_attitude", goodwill_fen = 50000 },
    expect = { offer_fen = 30000,
      components = { { type = "goodwill", amount_fen = 30000, rule = "comp.goodwill" } },
      approval_level = "district" } },

  -- National goodwill (at most 300 yuan) stays under every grade's cap, so
  -- the cap (comp.cap.grade) acts where a region allows more goodwill than
  -- its cap: Beijing allows 800 yuan with a 500 yuan retail cap.
  { name = "the grade's cap cuts goodwill a region allows above it (BJ: 700 yuan to 500)",
    region = "BJ",
    at = AT,
    input = input{ category = "service_attitude", goodwill_fen = 70000 },
    expect = { cap_fen = 50000, offer_fen = 50000, approval_level = "district",
      components = {
        { type = "goodwill", amount_fen = 70000, rule = "bj.comp.goodwill" },
        { type = "cap_adjustment", amount_fen = -20000, rule = "comp.cap.grade" } } },
    fired = { "comp.cap.grade" } },

  { name = "the retail cap does not cut promises: late repair, the rental waiver and the speed "
      .. "credit are owed in full, and the approval level follows the full amount",
    at = AT,
    input = input{ category = "broadband_fault", repair_overdue_hours = 300, fault_hours = 348,
      monthly_rental_fen = 10000, speed_percent = 50, goodwill_fen = 30000 },
    expect = {
      offer_fen = 50000,
      components = {
        { type = "late_repair", amount_fen = 10000 },
        { type = "rental_waiver", amount_fen = 5000 },
        { type = "speed_credit", amount_fen = 5000 },
        { type = "goodwill", amount_fen = 30000 },
      },
      cap_fen = 40000,
      approval_level = "district",
    } },

  { name = "a 45-day fault waives 45 days of rental: 9,000 fen on a 6,000-fen month",
    at = AT,
    input = input{ category = "broadband_fault", repair_overdue_hours = 1032, fault_hours = 1080,
      monthly_rental_fen = 6000 },
    expect = {
      offer_fen = 19000,
      components = {
        { type = "late_repair", amount_fen = 10000, rule = "comp.repair.late" },
        { type = "rental_waiver", amount_fen = 9000, rule = "comp.repair.rental_waiver" },
      },
      approval_level = "team_lead",
    } },

  { name = "a fault of 30 days and an hour waives 31 days of rental (a started day counts)",
    at = AT,
    input = input{ category = "broadband_fault", repair_overdue_hours = 1, fault_hours = 721,
      monthly_rental_fen = 6000 },
    expect = { components = {
      { type = "late_repair", amount_fen = 1000 },
      { type = "rental_waiver", amount_fen = 6200 } } } },

  { name = "late installation promise and penalty are owed in full over the retail cap",
    at = AT,
    input = input{ category = "install", install_late = true, install_fee_fen = 100000,
      install_overdue_days = 60, goodwill_fen = 30000 },
    expect = { offer_fen = 92000, cap_fen = 40000, approval_level = "district",
      components = {
        { type = "install_penalty", amount_fen = 60000 },
        { type = "late_install", amount_fen = 2000 },
        { type = "goodwill", amount_fen = 30000 } } } },

  { name = "claim beyond what any rule grants",
    at = AT,
    input = input{ charged_fen = 12000, due_fen = 8000, claimed_fen = 50000 },
    expect = { offer_fen = 8000, claim_beyond_basis = true },
    fired = { "comp.claim.beyond_basis" } },

  { name = "claim equal to the offer is within basis",
    at = AT,
    input = input{ charged_fen = 12000, due_fen = 8000, claimed_fen = 8000 },
    expect = { claim_beyond_basis = false } },

  { name = "group customer: a large double refund needs the province",
    at = AT,
    input = input{ customer_grade = "group", charged_fen = 2000000, due_fen = 500000 },
    expect = { offer_fen = 3000000, approval_level = "province", cap_fen = 300000 },
    fired = { "comp.approval.province" } },

  { name = "local A customer: city approves up to 10,000 yuan",
    at = AT,
    input = input{ customer_grade = "local_a", charged_fen = 600000, due_fen = 200000 },
    expect = { offer_fen = 800000, approval_level = "city" },
    fired = { "comp.approval.city" } },

  { name = "bad input: a float amount",
    at = AT,
    input = input{ charged_fen = 12000, due_fen = 12.5 },
    expect_error = { code = "bad_input", path = "input.due_fen" } },

  { name = "bad input: charged_fen without due_fen",
    at = AT,
    input = input{ charged_fen = 12000 },
    expect_error = { code = "bad_input", path = "input.due_fen" } },

  { name = "bad input: fraud without the fee",
    at = AT,
    input = input{ fraud_established = true },
    expect_error = { code = "bad_input", path = "input.fee_fen" } },

  { name = "bad input: overdue repair and a rental but no fault period",
    at = AT,
    input = input{ repair_overdue_hours = 30, monthly_rental_fen = 5000 },
    expect_error = { code = "bad_input", path = "input.fault_hours" } },

  { name = "bad input: unknown cause",
    at = AT,
    input = input{ cause = "carrier_fault" },
    expect_error = { code = "bad_input", path = "input.cause" } },

  { name = "bad input: negative amount",
    at = AT,
    input = input{ sp_unconfirmed_fen = -1 },
    expect_error = { code = "bad_input", path = "input.sp_unconfirmed_fen" } },
}

in_every_offset(cases, "the decision time's offset changes nothing in an offer", {
    { offset = "+08:00", at = "2026-01-01T00:30:00+08:00" },
    { offset = "Z", at = "2025-12-31T16:30:00Z" },
    { offset = "-05:00", at = "2025-12-31T11:30:00-05:00" },
    { offset = "+14:00", at = "2026-01-01T06:30:00+14:00" },
  }, function(v)
    return { at = v.at, input = input{ charged_fen = 12000, due_fen = 8000 },
      expect = { offer_fen = 8000, approval_level = "team_lead" } }
  end)

return cases
