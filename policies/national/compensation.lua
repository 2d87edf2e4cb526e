-- national/compensation.lua - what the carrier offers, on which basis, up to
-- which cap, and who must approve it.
--
-- Only what a rule or a law gives a basis for is offered (有根有据).  The
-- `components` table collects every amount the facts support.  What a rule,
-- a law or a published carrier promise gives (refunds, fraud damages, the
-- rental waiver, the installation penalty, the late-repair and
-- late-installation promises, the speed credit) is owed in full: no
-- configurable cap cuts it, and where a promise has a limit it is the
-- promise's own published one, cited in its basis (late repair: at most 100
-- yuan).  Only discretionary amounts, marked `capped` (goodwill), are
-- limited to the grade's cap (params.cap_fen).  Delay compensation is not
-- paid when the customer, a third party or force majeure caused the delay
-- (`exemption`).  The offer, in full, then needs the approval level whose
-- limit for the customer's grade covers it.
--
-- The components a law or regulation sets (the refund of what was not due,
-- void SP charges, the fraud damages, the rental waiver, the installation
-- penalty) and the published double refund carry their limits (`limits`,
-- lib/rules.lua: at least x2, at least x3 and 500 yuan, ...): a region may
-- raise them, and one that lowers them, or changes when they apply or how
-- they are computed, fails to load.

local R = require("lib.rules")
local S = require("lib.schema")
local M = require("lib.money")
local D = require("lib.domain")

-- Read once, here: inside a decision every global access goes through the
-- sandbox's environment proxies.
local error, mtype = error, math.type

local CATEGORIES, GRADES = D.CATEGORIES, D.GRADES

local fields = {
  complaint_id = S.string{ required = true, max_len = 64 },
  customer_id = S.string{ max_len = 64, personal = true,
    doc = "the customer, optional: recorded so that history can count this customer's complaints" },
  category = S.enum{ required = true, table.unpack(CATEGORIES) },
  customer_grade = S.enum{ required = true, table.unpack(GRADES) },
  cause = S.enum{ required = true, doc = "who caused the problem",
    "carrier", "customer", "third_party", "force_majeure" },
  charged_fen = S.fen{ requires = { "due_fen" }, doc = "amount billed (billing disputes)" },
  due_fen = S.fen{ requires = { "charged_fen" }, doc = "amount actually due" },
  sp_unconfirmed_fen = S.fen{ default = 0, doc = "charges for value-added services never confirmed" },
  fraud_established = S.boolean{ default = false, requires = { "fee_fen" } },
  fee_fen = S.fen{ doc = "fee paid for the service the fraud concerned" },
  repair_overdue_hours = S.integer{ min = 0, max = 100000, default = 0 },
  fault_hours = S.integer{ min = 0, max = 100000, doc = "length of the whole fault period" },
  install_late = S.boolean{ default = false, requires = { "install_fee_fen", "install_overdue_days" } },
  install_fee_fen = S.fen{},
  install_overdue_days = S.integer{ min = 0, max = 10000 },
  monthly_rental_fen = S.fen{ default = 0 },
  speed_percent = S.integer{ min = 0, max = 1000, requires = { "monthly_rental_fen" },
    doc = "measured speed as a percentage of the contracted speed" },
  goodwill_fen = S.fen{ default = 0, doc = "goodwill payment the handler proposes" },
  claimed_fen = S.fen{ doc = "what the customer asks for" },
}

local params = {
  -- Ceiling on the discretionary (`capped`: goodwill) components, per
  -- customer grade.  Never applied to what a rule or a promise gives.
  cap_fen = { retail = 40000, local_c = 60000, local_b = 80000, local_a = 100000,
              province = 200000, group = 300000 },
  -- Highest offer each level may approve, per grade; above `city`: province.
  approval_limits = {
    retail   = { frontline = 5000, team_lead = 20000, district = 100000, city = 500000 },
    local_c  = { frontline = 10000, team_lead = 50000, district = 200000, city = 1000000 },
    local_b  = { frontline = 10000, team_lead = 50000, district = 200000, city = 1000000 },
    local_a  = { frontline = 10000, team_lead = 50000, district = 200000, city = 1000000 },
    province = { frontline = 0, team_lead = 100000, district = 500000, city = 2000000 },
    group    = { frontline = 0, team_lead = 100000, district = 500000, city = 2000000 },
  },
}

-- Which way each result field is tighter (lib/rules.lua, "tighter"): a
-- larger offer.  Its components, the cap on goodwill, the approval level
-- (which follows the offer) and the claim flag are not compared.
local tighter = {
  offer_fen = "larger",
  components = "neutral",
  cap_fen = "neutral",
  approval_level = "neutral",
  claim_beyond_basis = "neutral",
}

-- Facts the rules use besides the input: f.overcharge (charged - due, at
-- least 0) and f.exempt (a delay cause outside the carrier), set by
-- evaluate before the components run.

local tables = {
  -- Causes that exempt the carrier from delay compensation.
  { name = "exemption", hit = "first", rules = {
    { id = "comp.exempt.customer",
      basis = "carrier practice: no delay compensation when the customer's own cause "
        .. "delayed the repair or installation",
      when = function(f) return f.cause == "customer" end },
    { id = "comp.exempt.third_party",
      basis = "carrier practice: no delay compensation when a third party (property "
        .. "management, municipal works) caused the delay",
      when = function(f) return f.cause == "third_party" end },
    { id = "comp.exempt.force_majeure",
      basis = "carrier practice: no delay compensation for force majeure",
      when = function(f) return f.cause == "force_majeure" end },
  } },

  -- Every amount the facts support.  amount(f, r) returns integer fen.
  -- data: type (the component's name in the result), amount (a function
  -- of the facts and the rule), capped (discretionary), and the numbers
  -- the rules' amount functions and conditions read.
  { name = "components", hit = "collect",
    data = { "type", "amount", "capped", "multiplier", "min_fen", "per_day_fen", "max_fen",
             "month_days", "percent_per_day", "amount_fen", "below_percent" },
    rules = {
    { id = "comp.billing.double_refund", type = "double_refund", multiplier = 2,
      basis = "carrier practice (published commitment, 双倍返还): overcharging caused by the "
        .. "carrier is refunded double, (charged - due) x 2",
      when = function(f) return f.cause == "carrier" and f.overcharge > 0 and not f.fraud_established end,
      amount = function(f, r) return f.overcharge * r.multiplier end,
      limits = { multiplier = { at_least = 2 } } },
    { id = "comp.billing.refund", type = "overcharge_refund",
      basis = "Civil Code art. 985 (unjust enrichment): an amount charged but not due is "
        .. "returned; used when the carrier did not cause it, or when fraud damages apply instead "
        .. "of the double refund",
      when = function(f) return f.overcharge > 0 and (f.cause ~= "carrier" or f.fraud_established) end,
      amount = function(f) return f.overcharge end,
      limits = {} },
    { id = "comp.sp.void_refund", type = "sp_refund",
      basis = "rule: a value-added subscription the customer never confirmed is void and may "
        .. "not be charged: full refund",
      when = function(f) return f.sp_unconfirmed_fen > 0 end,
      amount = function(f) return f.sp_unconfirmed_fen end,
      limits = {} },
    { id = "comp.fraud.cpl55", type = "fraud_damages", multiplier = 3, min_fen = 50000,
      basis = "Consumer Rights Protection Law art. 55: fraud, increased compensation of 3x the "
        .. "fee, at least 500 yuan, paid on top of the refund of the overcharge "
        .. "(comp.billing.refund): the law adds it to the loss, it does not replace it; the "
        .. "double refund is not paid as well, as it would make good the same loss twice",
      when = function(f) return f.fraud_established end,
      amount = function(f, r) return M.max(f.fee_fen * r.multiplier, r.min_fen) end,
      limits = { multiplier = { at_least = 3 }, min_fen = { at_least = 50000 } } },
    { id = "comp.repair.late", type = "late_repair",
      per_day_fen = 1000, max_fen = 10000,
      basis = "carrier practice (published, configurable): late repair 10 yuan per overdue day, "
        .. "a started day counts whole, at most 100 yuan",
      when = function(f) return not f.exempt and f.repair_overdue_hours > 0 end,
      amount = function(f, r)
        return M.min(M.ceil_div(f.repair_overdue_hours, 24) * r.per_day_fen, r.max_fen)
      end },
    { id = "comp.repair.rental_waiver", type = "rental_waiver", month_days = 30,
      basis = "Telecom Regulations: repair deadline missed: the monthly rental for the whole "
        .. "fault period is waived (pro rata per started day, a month counted as 30 days; a "
        .. "fault longer than a month waives more than one month's rental)",
      when = function(f) return not f.exempt and f.repair_overdue_hours > 0 and f.monthly_rental_fen > 0 end,
      amount = function(f, r)
        return M.mul_div(f.monthly_rental_fen, M.ceil_div(f.fault_hours, 24), r.month_days)
      end,
      limits = { month_days = { at_most = 30 } } },
    { id = "comp.install.penalty", type = "install_penalty", percent_per_day = 1,
      basis = "rule (Telecom Regulations): late installation for the operator's reason, a "
        .. "penalty of 1% of the installation fee per day",
      when = function(f)
        return not f.exempt and f.install_late and f.install_overdue_days > 0 and f.install_fee_fen > 0
      end,
      amount = function(f, r)
        return M.percent(f.install_fee_fen * f.install_overdue_days, r.percent_per_day)
      end,
      limits = { percent_per_day = { at_least = 1 } } },
    { id = "comp.install.late", type = "late_install", amount_fen = 2000,
      basis = "carrier practice (published, configurable): late installation 20 yuan, once",
      when = function(f) return not f.exempt and f.install_late end,
      amount = function(_, r) return r.amount_fen end },
    { id = "comp.speed.credit", type = "speed_credit", below_percent = 90,
      basis = "carrier practice (published, configurable): speed below 90% of the contract "
        .. "earns a credit on that month's rental in proportion to the shortfall",
      when = function(f, r)
        return not f.exempt and f.speed_percent ~= nil and f.speed_percent < r.below_percent
          and f.monthly_rental_fen > 0
      end,
      amount = function(f) return M.percent(f.monthly_rental_fen, 100 - f.speed_percent) end },
    { id = "comp.goodwill", type = "goodwill", capped = true, max_fen = 30000,
      basis = "carrier practice: goodwill payments are small and bounded (a reported case: "
        .. "300 yuan); at most 300 yuan",
      when = function(f) return f.goodwill_fen > 0 end,
      amount = function(f, r) return M.min(f.goodwill_fen, r.max_fen) end },
  } },

  -- The grade's cap on the discretionary components.  Facts: capped, cap.
  { name = "cap", hit = "first", facts = { "capped", "cap" }, rules = {
    { id = "comp.cap.grade",
      basis = "carrier practice (configurable per grade, params.cap_fen): discretionary "
        .. "amounts (goodwill) are capped per customer grade; what a rule, a law or a "
        .. "published promise gives is owed in full and never capped",
      when = function(c) return c.capped > c.cap end },
  } },

  -- Who signs the offer.  Facts: offer, limits (params.approval_limits[grade]).
  { name = "approval", hit = "first", data = { "level" }, facts = { "offer", "limits" },
    rules = {
    { id = "comp.approval.frontline", level = "frontline",
      basis = "carrier practice (configurable, params.approval_limits): a front-line handler "
        .. "approves offers up to the grade's frontline limit",
      when = function(a) return a.offer <= a.limits.frontline end },
    { id = "comp.approval.team_lead", level = "team_lead",
      basis = "carrier practice (configurable): a team lead approves up to the grade's "
        .. "team_lead limit",
      when = function(a) return a.offer <= a.limits.team_lead end },
    { id = "comp.approval.district", level = "district",
      basis = "carrier practice (configurable): the district branch approves up to the grade's "
        .. "district limit",
      when = function(a) return a.offer <= a.limits.district end },
    { id = "comp.approval.city", level = "city",
      basis = "carrier practice (configurable): the city branch approves up to the grade's "
        .. "city limit",
      when = function(a) return a.offer <= a.limits.city end },
    { id = "comp.approval.province", level = "province",
      basis = "carrier practice (configurable): offers above the city limit go to the province" },
  } },

  -- A claim beyond the offer.  Facts: offer, claimed.
  { name = "claim", hit = "first", facts = { "offer", "claimed" }, rules = {
    { id = "comp.claim.beyond_basis",
      basis = "practice (有根有据): pay only what a policy or a law gives a basis for; a demand "
        .. "beyond it is not granted, the substantive problem is solved",
      when = function(c) return c.claimed ~= nil and c.claimed > c.offer end },
  } },
}

-- The component types whose amounts are discretionary: the only ones the
-- grade's cap (params.cap_fen) may cut.
local DISCRETIONARY = { goodwill = true }

local function check_rule(_, table_name, r)
  if table_name == "components" then
    if type(r.type) ~= "string" then return "a component rule needs a type" end
    if type(r.amount) ~= "function" then return "a component rule needs an amount function" end
    if r.capped and not DISCRETIONARY[r.type] then
      return "only discretionary amounts (goodwill) may be capped by params.cap_fen; what a "
        .. "rule or a published promise gives is owed in full (a promise's own published "
        .. "limit belongs in the rule, cited in its basis)"
    end
  elseif table_name == "approval" and type(r.level) ~= "string" then
    return "an approval rule needs a level"
  end
  return nil
end

local function evaluate(P, f, _ctx, tr)
  local p = P.params
  local overdue, rental = f.repair_overdue_hours, f.monthly_rental_fen
  if overdue > 0 and rental > 0 then
    local fault = f.fault_hours
    if fault == nil then
      S.fail("input.fault_hours", "required when repair_overdue_hours and monthly_rental_fen "
        .. "are given: expected the length of the fault period in hours")
    elseif fault < overdue then
      S.fail("input.fault_hours", "expected at least repair_overdue_hours ("
        .. overdue .. "), got " .. fault)
    end
  end
  -- charged_fen = 0 needs no due_fen (lib/schema.lua: `requires` binds
  -- only a field set to something): no overcharge then.
  local charged, due = f.charged_fen, f.due_fen
  f.overcharge = charged and due and charged > due and charged - due or 0
  f.exempt = R.run(P, "exemption", f, tr) ~= nil

  local components = {}          -- written as [] when nothing is offered
  local offer, capped = 0, 0
  local fired = R.run(P, "components", f, tr)
  for i = 1, #fired do
    local r = fired[i]
    local amount = r.amount(f, r)
    if mtype(amount) ~= "integer" then
      error("rule " .. r.id .. " computed a non-integer amount", 0)
    end
    components[i] = { type = r.type, amount_fen = amount, rule = r.id }
    offer = offer + amount
    if r.capped then capped = capped + amount end
  end

  local grade = f.customer_grade
  local cap = p.cap_fen[grade]
  local cut = R.run(P, "cap", { capped = capped, cap = cap }, tr)
  if cut then
    components[#components + 1] = { type = "cap_adjustment", amount_fen = cap - capped, rule = cut.id }
    offer = offer + cap - capped
  end

  local approval = R.decide(P, "approval", { offer = offer, limits = p.approval_limits[grade] }, tr)
  local beyond = R.run(P, "claim", { offer = offer, claimed = f.claimed_fen }, tr) ~= nil

  return {
    offer_fen = offer,
    components = components,
    cap_fen = cap,
    approval_level = approval.level,
    claim_beyond_basis = beyond,
  }
end

-- What the decision decides, for replay's impact report (R.OUTCOMES):
-- the offer and who must approve it.  The components, the goodwill cap
-- and the claim flag explain or echo it.
local outcomes = {
  offer_fen = "money",
  approval_level = "level",
}

return R.policy{
  kind = "compensation",
  outcomes = outcomes,
  fields = fields,
  facts = { "overcharge", "exempt" },   -- what evaluate adds to the input (above)
  tighter = tighter,
  params = params,
  tables = tables,
  evaluate = evaluate,
  check_rule = check_rule,
}
