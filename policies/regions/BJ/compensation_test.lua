-- regions/BJ/compensation_test.lua - Beijing's delay compensation schedule
-- (20 yuan per late repair day up to 200 yuan, 50 yuan late installation),
-- goodwill up to 800 yuan and its 500 yuan retail cap on goodwill.

local AT = "2026-11-23T10:00:00+08:00"

local input = with_defaults{ complaint_id = "BJ-1", category = "broadband_fault", customer_grade = "retail",
    cause = "carrier" }

return {
  { name = "late repair: 20 yuan per started day",
    at = AT,
    input = input{ repair_overdue_hours = 50 },
    expect = { offer_fen = 6000, approval_level = "team_lead",
      components = { { type = "late_repair", amount_fen = 6000, rule = "bj.comp.repair.late" } } },
    fired = { "bj.comp.repair.late" } },

  { name = "late repair stops at 200 yuan",
    at = AT,
    input = input{ repair_overdue_hours = 300 },
    expect = { offer_fen = 20000 } },

  { name = "late installation: 50 yuan plus the 1% per day penalty",
    at = AT,
    input = input{ category = "install", install_late = true, install_fee_fen = 20000,
      install_overdue_days = 5 },
    expect = { offer_fen = 6000, components = {
      { type = "install_penalty", amount_fen = 1000, rule = "comp.install.penalty" },
      { type = "late_install", amount_fen = 5000, rule = "bj.comp.install.late" } } },
    fired = { "bj.comp.install.late" } },

  { name = "the retail cap of 500 yuan does not cut the delay promises",
    at = AT,
    input = input{ repair_overdue_hours = 300, fault_hours = 348, monthly_rental_fen = 10000,
      speed_percent = 50, goodwill_fen = 30000 },
    expect = { cap_fen = 50000, offer_fen = 60000, approval_level = "district", components = {
      { type = "late_repair", amount_fen = 20000 },
      { type = "rental_waiver", amount_fen = 5000 },
      { type = "speed_credit", amount_fen = 5000 },
      { type = "goodwill", amount_fen = 30000 } } } },

  { name = "goodwill above the retail cap of 500 yuan is cut to it",
    at = AT,
    input = input{ category = "service_attitude", goodwill_fen = 70000 },
    expect = { cap_fen = 50000, offer_fen = 50000, components = {
      { type = "goodwill", amount_fen = 70000, rule = "bj.comp.goodwill" },
      { type = "cap_adjustment", amount_fen = -20000, rule = "comp.cap.grade" } } },
    fired = { "comp.cap.grade" } },

  { name = "goodwill for a local C customer: up to 600 yuan under its cap",
    at = AT,
    input = input{ category = "service_attitude", customer_grade = "local_c", goodwill_fen = 90000 },
    expect = { offer_fen = 60000, components = {
      { type = "goodwill", amount_fen = 80000 },
      { type = "cap_adjustment", amount_fen = -20000 } } } },

  { name = "the double refund is the national one",
    at = AT,
    input = input{ category = "billing", charged_fen = 12000, due_fen = 8000 },
    expect = { offer_fen = 8000 },
    fired = { "comp.billing.double_refund" } },

  { name = "exemptions still apply",
    at = AT,
    input = input{ cause = "third_party", repair_overdue_hours = 50 },
    expect = { offer_fen = 0, components = {} } },
}
