-- regions/GD/sla.lua - Guangdong: tighter handling deadlines than the
-- national baseline for standard complaints and urban repairs, and no
-- guessing about years without a calendar (a deadline in such a year is
-- bad_input instead of the weekend-only fallback).  Everything else is the
-- national policy.
local R = require("lib.rules")

return R.extend(parent(), {
  params = { calendar_fallback = "error" },
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
