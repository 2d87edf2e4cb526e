-- regions/GD-SZ/sla.lua - Shenzhen: Guangdong's SLA plus enterprise repair
-- tiers for fixed-line and circuit faults.  It changes this one thing; the
-- rest comes from regions/GD/sla.lua and, through it, the national policy.
local R = require("lib.rules")
local D = require("lib.domain")

local TOP_GRADES, LOCAL_ENTERPRISE = D.TOP_GRADES, D.LOCAL_ENTERPRISE

return R.extend(parent(), {
  add = {
    { table = "repair", before = "sla.repair.mobile", rule = {
      id = "gd-sz.sla.repair.enterprise_top",
      basis = "Shenzhen branch practice: fixed-line and circuit faults of group and province "
        .. "grade enterprise customers repaired within 4 h",
      when = function(f) return f.category == "broadband_fault" and TOP_GRADES[f.customer_grade] end,
      due = { repair = { hours = 4 } },
    } },
    { table = "repair", before = "sla.repair.mobile", rule = {
      id = "gd-sz.sla.repair.enterprise_local",
      basis = "Shenzhen branch practice: fixed-line and circuit faults of local A/B/C grade "
        .. "enterprise customers repaired within 8 h",
      when = function(f)
        return f.category == "broadband_fault" and LOCAL_ENTERPRISE[f.customer_grade]
      end,
      due = { repair = { hours = 8 } },
    } },
  },
})
