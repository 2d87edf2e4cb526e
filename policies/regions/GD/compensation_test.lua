-- regions/GD/compensation_test.lua - Guangdong's higher approval limits.
-- Retail: frontline 10000, team_lead 50000, district 200000 fen (national:
-- 5000, 20000, 100000).

local AT = "2026-11-23T10:00:00+08:00"

local input = with_defaults{ complaint_id = "GD-1", category = "billing", customer_grade = "retail",
    cause = "carrier" }

return {
  { name = "a 80 yuan double refund is signed at the front line (team lead nationally)",
    at = AT,
    input = input{ charged_fen = 12000, due_fen = 8000 },
    expect = { offer_fen = 8000, approval_level = "frontline" },
    fired = { "comp.approval.frontline" } },

  { name = "300 yuan goodwill: team lead (district nationally)",
    at = AT,
    input = input{ category = "service_attitude", goodwill_fen = 30000 },
    expect = { offer_fen = 30000, approval_level = "team_lead" } },

  { name = "retail offer above the raised district limit: city",
    at = AT,
    input = input{ charged_fen = 200000, due_fen = 50000 },
    expect = { offer_fen = 300000, approval_level = "city" } },

  { name = "local B: raised team lead limit, national district limit",
    at = AT,
    input = input{ customer_grade = "local_b", charged_fen = 100000, due_fen = 25000 },
    expect = { offer_fen = 150000, approval_level = "district" } },

  { name = "group grade keeps the national limits",
    at = AT,
    input = input{ customer_grade = "group", charged_fen = 1500, due_fen = 1000 },
    expect = { offer_fen = 1000, approval_level = "team_lead" } },

  { name = "Shenzhen has no compensation file: Guangdong's decides",
    region = "GD-SZ",
    at = AT,
    input = input{ charged_fen = 12000, due_fen = 8000 },
    expect = { approval_level = "frontline" } },
}
