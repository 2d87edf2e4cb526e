-- regions/GD/sla.lua - Guangdong: tighter handling deadlines than the
-- national baseline (acceptance 1, investigation 4, solution 5 working
-- days) for every customer grade, 48 h first feedback for retail, and 24 h
-- urban repairs.  Enterprise grades keep their faster first feedback (24 h,
-- 30 min at the top), so no government or enterprise customer gets a later
-- deadline than a retail one.  Everything else is the national policy.  (Guangdong's "no calendar, no guessing" is
-- its calendar setting, regions/GD/calendar/settings.lua, which every kind
-- honours.)
local R = require("lib.rules")

return R.extend(parent(), {
  replace = {
    ["sla.tier.enterprise_top"] = {
      id = "gd.sla.tier.enterprise_top",
      basis = "Guangdong branch practice (top enterprise grades; tightens the national "
        .. "commitments as for retail): 24x7 service; first feedback within 30 min, updates "
        .. "every 60 min after the first hour, written report within 1 working day; "
        .. "acceptance 1, investigation 4, solution 5 working days",
      due = { acceptance = { working_days = 1 }, first_feedback = { minutes = 30 },
              investigation = { working_days = 4 }, solution = { working_days = 5 },
              written_report = { working_days = 1 } },
    },
    ["sla.tier.enterprise"] = {
      id = "gd.sla.tier.enterprise",
      basis = "Guangdong branch practice (enterprise grades local A/B/C; tightens the "
        .. "national commitments as for retail): first feedback within 24 h; acceptance 1, "
        .. "investigation 4, solution 5 working days",
      due = { acceptance = { working_days = 1 }, first_feedback = { hours = 24 },
              investigation = { working_days = 4 }, solution = { working_days = 5 } },
    },
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
