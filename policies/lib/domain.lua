-- lib/domain.lua - the vocabulary every decision kind shares, written once.
--
-- Lists keep their order: the schema's "expected one of ..." messages name
-- the values in this order.  Pass a list to S.enum as
-- `S.enum{ required = true, table.unpack(D.CATEGORIES) }` (the S
-- constructors keep the table they are given, so give them a fresh one).

local R = require("lib.rules")

local D = {}

-- Complaint categories.
D.CATEGORIES = { "billing", "network", "broadband_fault", "install",
  "sp_subscription", "service_attitude", "business_handling", "cancellation",
  "porting", "other" }

-- Customer grades, highest first.
D.GRADES = { "group", "province", "local_a", "local_b", "local_c", "retail" }
D.TOP_GRADES = R.set{ "group", "province" }
D.LOCAL_ENTERPRISE = R.set{ "local_a", "local_b", "local_c" }

-- Who can own a complaint, lowest first.
D.LEVELS = { "frontline", "team_lead", "district", "city", "province" }

-- The milestones of handling a complaint, in the sla decision's output
-- order: the keys of its deadlines and status, of its input `done`, and of
-- escalation's input `sla_status` (the sla decision's status, passed on).
D.MILESTONES = { "acceptance", "first_feedback", "investigation", "solution",
  "written_report", "repair", "operator_reply" }

-- MIIT order no. 35 (2016): the operator replies to a complaint within 15
-- days (the sla milestone operator_reply, and escalation's reply window).
D.MIIT35_REPLY = { days = 15 }

return D
