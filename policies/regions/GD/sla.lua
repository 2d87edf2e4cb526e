-- regions/GD/sla.lua - Guangdong: tighter handling deadlines than the
-- national baseline for standard complaints and urban repairs.  Everything
-- else is the national policy.  (Guangdong's "no calendar, no guessing" is
-- its calendar setting, regions/GD/calendar/settings.lua, which every kind
-- honours.)
local R = require("lib.rules")

return R.extend(parent(), {
  replace = {
    ["sla.tier.standard"] = {
      id = "gd.sla.tier.standard",
      basis = "Guangdong branch practice (tightens the national commitments): acceptance "
        .. "reply within 1 working day, investigation 4, solution 5 working days, first "
        .. "feedback within 48 h",
      due = { acceptance = { working_days = 1 }, first_feedback = { hours = 48 },
              investigation = { working_days = 4 }, solution = { working_days = 5 } },
    },
    ["sla.repair.urban"] = {
      id = "gd.sla.repair.urban",
      basis = "Guangdong branch practice (tightens the Telecom Regulations' 48 h): urban fault "
        .. "repair within 24 h",
      due = { repair = { hours = 24 } },
    },
  },
})
