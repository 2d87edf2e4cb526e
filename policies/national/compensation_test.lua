-- national/compensation_test.lua - cases for the national compensation policy.
-- Retail approval limits (fen): frontline 5000, team_lead 20000,
-- district 100000, city 500000; retail cap on capped components: 40000.

local AT = "2026-11-23T10:00:00+08:00"

local input = with_defaults{ complaint_id = "C-1", category = "billing", customer_grade = "retail",
    cause = "carrier" }

return {
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

  { name = "fraud: 3x the fee, and the overcharge refunded once instead of double",
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

  { name = "capped components over the retail cap are cut; the rental waiver is not",
    at = AT,
    input = input{ category = "broadband_fault", repair_overdue_hours = 300, fault_hours = 348,
      monthly_rental_fen = 10000, speed_percent = 50, goodwill_fen = 30000 },
    expect = {
      offer_fen = 45000,
      components = {
        { type = "late_repair", amount_fen = 10000 },
        { type = "rental_waiver", amount_fen = 5000 },
        { type = "speed_credit", amount_fen = 5000 },
        { type = "goodwill", amount_fen = 30000 },
        { type = "cap_adjustment", amount_fen = -5000, rule = "comp.cap.grade" },
      },
      cap_fen = 40000,
    },
    fired = { "comp.cap.grade" } },

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
