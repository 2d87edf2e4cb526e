-- regions/GD/compensation.lua - Guangdong: higher approval limits for
-- retail and local enterprise offers (a larger share is signed at the front
-- line and by team leads).  Amounts and rules are the national ones; grades
-- and levels not named here keep their national limits.
local R = require("lib.rules")

return R.extend(parent(), {
  params = {
    approval_limits = {
      retail  = { frontline = 10000, team_lead = 50000, district = 200000 },
      local_c = { frontline = 20000, team_lead = 100000 },
      local_b = { frontline = 20000, team_lead = 100000 },
      local_a = { frontline = 20000, team_lead = 100000 },
    },
  },
})
