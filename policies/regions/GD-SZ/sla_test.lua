-- regions/GD-SZ/sla_test.lua - Shenzhen's enterprise repair tiers, and
-- everything else inherited from Guangdong.  2026-11-23 is a Monday.

local input = with_defaults{ complaint_id = "SZ-1", category = "broadband_fault", channel = "monitoring",
    customer_grade = "group", received_at = "2026-11-23T10:00:00+08:00" }

return {
  { name = "group customer's circuit fault: 4 h",
    at = "2026-11-23T12:00:00+08:00",
    input = input(),
    expect = { tier = "enterprise_top", deadlines = { repair = "2026-11-23T14:00:00+08:00" },
      status = { repair = "pending" } },
    fired = { "gd-sz.sla.repair.enterprise_top" } },

  { name = "group customer's circuit fault at 75% of 4 h: at risk",
    at = "2026-11-23T13:00:00+08:00",
    input = input{ customer_grade = "province" },
    expect = { status = { repair = "at_risk" } } },

  { name = "local B customer's fault: 8 h",
    at = "2026-11-23T12:00:00+08:00",
    input = input{ customer_grade = "local_b" },
    expect = { deadlines = { repair = "2026-11-23T18:00:00+08:00" } },
    fired = { "gd-sz.sla.repair.enterprise_local" } },

  { name = "local C customer's rural fault: the enterprise tier comes first",
    at = "2026-11-23T12:00:00+08:00",
    input = input{ customer_grade = "local_c", area = "rural" },
    expect = { deadlines = { repair = "2026-11-23T18:00:00+08:00" } } },

  { name = "retail fault: Guangdong's 24 h",
    at = "2026-11-23T12:00:00+08:00",
    input = input{ customer_grade = "retail", channel = "hotline" },
    expect = { deadlines = { repair = "2026-11-24T10:00:00+08:00" } },
    fired = { "gd.sla.repair.urban" } },

  { name = "retail billing: Guangdong's tighter tier",
    at = "2026-11-23T12:00:00+08:00",
    input = input{ customer_grade = "retail", category = "billing", channel = "hotline" },
    expect = { deadlines = { acceptance = "2026-11-24T23:59:59+08:00" } },
    fired = { "gd.sla.tier.standard" } },

  { name = "mobile network fault of a group customer: the national 48 h",
    at = "2026-11-23T12:00:00+08:00",
    input = input{ category = "network" },
    expect = { deadlines = { repair = "2026-11-25T10:00:00+08:00" } },
    fired = { "sla.repair.mobile" } },
}
