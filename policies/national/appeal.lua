-- national/appeal.lua - the responsibility outcome of an appeal to the
-- regulator (申诉责任认定), its grounds, and the appeal body's time limits.
--
-- Precedence, as `outcome` orders it:
--   1. withdrawn / not accepted: any procedural bar (`admissibility`) ends
--      the case before responsibility is looked at;
--   2. enterprise liable for the handling itself (shirking, late reply,
--      incomplete materials, handling found improper): that rules out
--      "properly handled";
--   3. properly handled: the carrier was at fault on the substance, but had
--      handled it within policy and the customer appealed only over a demand
--      without basis;
--   4. enterprise liable for a fault on the substance;
--   5. user's cause: the customer misunderstood or misoperated, and no
--      carrier fault was found (a carrier fault such as a contract omission
--      outweighs a misunderstanding it may have caused);
--   6. nothing found against either side: properly handled.
-- `grounds` lists the ids of the finding rules the outcome rests on.
--
-- The appeal bars (`window`, `appeal.withdrawn.out_of_time`) and the appeal
-- body's time limits carry their published limits (`limits`,
-- lib/rules.lua): a region may give the customer longer (a later bar) or
-- the appeal body less time, and one that does the opposite, or changes
-- when a bar applies, fails to load.
--
-- Times may be written in any offset: the bars' months and the appeal
-- body's days are counted on the calendar's civil days (lib/calendar.lua,
-- +08:00), and every time in the result is written in +08:00.
--
-- A year with no calendar file, where the region's calendar does not fall
-- back to weekends only (GD): a bar ending in it ends on its own day at the
-- earliest, and only a day off can move it later.  An appeal filed by then
-- is in time whatever that year's notice says, so it is decided, and
-- appeal_window_ends (the earliest end) is listed in the result's
-- `provisional`; one filed later is bad_input on input.event_at, naming
-- the year, since whether it is out of time depends on it.  The appeal
-- body's deadlines that end in such a year are provisional too: 30 days'
-- own day, or null for a count of working days through it.

local R = require("lib.rules")
local S = require("lib.schema")
local T = require("lib.time")
local C = require("lib.calendar")
local D = require("lib.domain")

C.load() -- every calendar, once, when the policy loads

-- Read once, here: inside a decision every global access goes through the
-- sandbox's environment proxies.
local NULL = verdict.null
local format, earliest, earlier, clock_for = T.format, C.due_earliest, C.earlier, C.clock_for

local CATEGORIES = D.CATEGORIES
local BILLING = R.set{ "billing", "sp_subscription" }

local fields = {
  complaint_id = S.string{ required = true, max_len = 64 },
  customer_id = S.string{ max_len = 64, personal = true,
    doc = "the customer, optional: recorded so that history can count this customer's complaints" },
  category = S.enum{ required = true, table.unpack(CATEGORIES) },
  event_at = S.time{ required = true, doc = "when the disputed event happened; any offset: "
    .. "the appeal bars' months are counted in China's civil days (the calendar's utc_offset, "
    .. "+08:00), and the result's times are written in +08:00" },
  appealed_at = S.time{ required = true, doc = "when the appeal was filed (any offset)" },
  complained_first = S.boolean{ required = true, doc = "the customer complained to the carrier first" },
  carrier_replied_in_time = S.boolean{ default = true },
  accepted_elsewhere = S.enum{ "court", "arbitration", "consumer_org", "appeal_body",
    doc = "a body that already accepted or handled the matter" },
  settled_and_executed = S.boolean{ default = false },
  appellant_is_party = S.boolean{ default = true },
  findings = S.set{ default = {}, of = S.enum{
    "marketing_violation", "below_standard", "management_negligence", "work_error",
    "shirking", "late_reply", "incomplete_materials", "contract_omission",
    "unagreed_charge", "user_misunderstanding", "user_operation_error" } },
  handled_within_policy = S.boolean{ doc = "absent: not established either way" },
  demand_has_basis = S.boolean{ doc = "absent: not established either way" },
  materials_complete_at = S.time{ doc = "when the appeal body had complete materials" },
}

-- Which way each result field is tighter (lib/rules.lua, "tighter"): the
-- customer's right to appeal ends later, the appeal body's deadlines are
-- earlier, and a case counts against the enterprise rather than not.  The
-- outcome and its grounds are not ordered.
local tighter = {
  outcome = "neutral",
  grounds = "neutral",
  counts_against_enterprise = "true",
  appeal_window_ends = "later",
  acceptance_decision_by = "earlier",
  answer_due_by = "earlier",
  -- outputs that may still move once a missing calendar year is loaded
  provisional = "neutral",
}

-- A year with no calendar file: the region's calendar setting decides
-- (lib/calendar.lua), as for sla and escalation.
local params = {}

-- A finding rule: fires when the finding is in input.findings.
local function finding(id, name, class, basis)
  return { id = id, class = class, basis = basis,
    when = function(f) return f.findings[name] end }
end

-- Facts besides the input, set by evaluate: f.window_ends (instant);
-- for `outcome`, counts per class (f.n.procedural, f.n.handling, ...).
local tables = {
  -- How long after the event an appeal may be filed.  Every rule that
  -- matches counts and the latest end wins (collect), so a rule a region
  -- adds can lengthen a published bar, never shorten it.
  { name = "window", hit = "collect", data = { "due" },
    rules = {
    { id = "appeal.window.billing", due = { months = 5 },
      basis = "MIIT appeal rules: a billing dispute is appealable for 5 months after the event "
        .. "(call detail and billing records are kept at least 5 months)",
      when = function(f) return BILLING[f.category] end,
      limits = { due = { at_least = { months = 5 } } } },
    { id = "appeal.window.other", due = { months = 24 },
      basis = "MIIT appeal rules: other disputes are appealable for 2 years after the event",
      when = function(f) return not BILLING[f.category] end,
      limits = { due = { at_least = { months = 24 } } } },
  } },

  -- Procedural bars: any one means withdrawn / not accepted.
  { name = "admissibility", hit = "collect", data = { "class" },
    rules = {
    { id = "appeal.withdrawn.handled_elsewhere", class = "procedural",
      basis = "MIIT appeal rules: not accepted when a court, arbitration body, consumer "
        .. "organisation or the appeal body already accepted or handled the matter",
      when = function(f) return f.accepted_elsewhere ~= nil end },
    { id = "appeal.withdrawn.settled", class = "procedural",
      basis = "MIIT appeal rules: the parties settled and the settlement was carried out",
      when = function(f) return f.settled_and_executed end },
    { id = "appeal.withdrawn.not_party", class = "procedural",
      basis = "MIIT appeal rules: the appellant has no direct interest or impersonates the "
        .. "customer",
      when = function(f) return not f.appellant_is_party end },
    { id = "appeal.withdrawn.out_of_time", class = "procedural",
      basis = "MIIT appeal rules: the appeal is past its time limit (5 months for billing, "
        .. "2 years for other disputes)",
      when = function(f) return f.appealed_at.t > f.window_ends end,
      limits = {} },
    { id = "appeal.withdrawn.no_prior_complaint", class = "procedural",
      basis = "MIIT order no. 35 (2016): the customer must complain to the carrier first",
      when = function(f) return not f.complained_first end },
  } },

  -- What the appeal body found.  class: handling (a fault in handling the
  -- complaint), substantive (a fault in the service itself), mitigation,
  -- user.
  { name = "findings", hit = "collect", data = { "class" },
    rules = {
    finding("appeal.finding.shirking", "shirking", "handling",
      "MIIT appeal rules: shirking or stalling the complaint (推诿、拖延) is enterprise liability"),
    { id = "appeal.finding.late_reply", class = "handling",
      basis = "MIIT order no. 35 (2016): a reply later than 15 days is enterprise liability",
      when = function(f) return f.findings.late_reply or not f.carrier_replied_in_time end },
    finding("appeal.finding.incomplete_materials", "incomplete_materials", "handling",
      "MIIT appeal rules: not giving the appeal body true and complete materials is "
        .. "enterprise liability"),
    { id = "appeal.finding.improper_handling", class = "handling",
      basis = "MIIT appeal rules: handling not done properly is enterprise liability",
      when = function(f) return f.handled_within_policy == false end },
    finding("appeal.finding.marketing_violation", "marketing_violation", "substantive",
      "MIIT appeal rules: marketing that broke the rules is a carrier fault"),
    finding("appeal.finding.below_standard", "below_standard", "substantive",
      "MIIT appeal rules: service below the published standard is a carrier fault"),
    finding("appeal.finding.management_negligence", "management_negligence", "substantive",
      "MIIT appeal rules: management negligence is a carrier fault"),
    finding("appeal.finding.work_error", "work_error", "substantive",
      "MIIT appeal rules: a work error that hurt the customer is a carrier fault"),
    finding("appeal.finding.contract_omission", "contract_omission", "substantive",
      "contract rules: an agreement that left out the service, its limits, charges or dates, "
        .. "or a signed form not kept, is a carrier fault"),
    finding("appeal.finding.unagreed_charge", "unagreed_charge", "substantive",
      "contract rules: charges added or changed without the customer's agreement are a "
        .. "carrier fault"),
    { id = "appeal.finding.handled_within_policy", class = "mitigation",
      basis = "MIIT appeal rules (先期处理得当): before the appeal the carrier had handled the "
        .. "matter properly and within policy",
      when = function(f) return f.handled_within_policy == true end },
    { id = "appeal.finding.demand_without_basis", class = "mitigation",
      basis = "MIIT appeal rules (先期处理得当): the customer appealed only because a demand with "
        .. "no policy or legal basis was refused",
      when = function(f) return f.demand_has_basis == false end },
    finding("appeal.finding.user_misunderstanding", "user_misunderstanding", "user",
      "MIIT appeal rules (用户原因): the customer misunderstood the published policy"),
    finding("appeal.finding.user_operation_error", "user_operation_error", "user",
      "MIIT appeal rules (用户原因): the customer operated the service wrongly"),
  } },

  -- The outcome, in order of precedence.  Facts: n (fired finding rules per
  -- class).  grounds: the classes whose rule ids are the outcome's grounds.
  { name = "outcome", hit = "first", data = { "outcome", "grounds", "counts" },
    facts = { "n", "within", "no_basis" },
    rules = {
    { id = "appeal.outcome.withdrawn", outcome = "withdrawn", grounds = { "procedural" },
      basis = "MIIT appeal rules: a procedural bar ends the case as withdrawn / not accepted "
        .. "before responsibility is decided",
      when = function(o) return o.n.procedural > 0 end },
    { id = "appeal.outcome.liable_handling", outcome = "enterprise_liable", counts = true,
      grounds = { "handling", "substantive" },
      basis = "MIIT appeal rules: a fault in handling the complaint is enterprise liability "
        .. "and rules out 'properly handled before the appeal'",
      when = function(o) return o.n.handling > 0 end },
    { id = "appeal.outcome.properly_handled", outcome = "properly_handled",
      grounds = { "substantive", "mitigation" },
      basis = "MIIT appeal rules (先期处理得当): the carrier bore some responsibility but had "
        .. "handled it properly within policy; a demand without basis was refused; not "
        .. "counted as enterprise liable",
      when = function(o) return o.n.substantive > 0 and o.within and o.no_basis end },
    { id = "appeal.outcome.liable", outcome = "enterprise_liable", counts = true,
      grounds = { "substantive" },
      basis = "MIIT appeal rules: a fault of the carrier in the service is enterprise liability",
      when = function(o) return o.n.substantive > 0 end },
    { id = "appeal.outcome.user_cause", outcome = "user_cause", grounds = { "user" },
      basis = "MIIT appeal rules (用户原因): the customer's misunderstanding or wrong operation, "
        .. "no carrier fault found",
      when = function(o) return o.n.user > 0 end },
    { id = "appeal.outcome.no_fault", outcome = "properly_handled", grounds = { "mitigation" },
      basis = "MIIT appeal rules: no fault found on either side; not counted as enterprise "
        .. "liable" },
  } },

  -- The appeal body's own time limits.  from: the input time counted from.
  { name = "deadlines", hit = "collect", data = { "out", "from", "due" },
    rules = {
    { id = "appeal.deadline.acceptance", out = "acceptance_decision_by", from = "appealed_at",
      due = { working_days = 5 }, limits = { due = { at_most = { working_days = 5 } } },
      basis = "MIIT appeal rules: the appeal body decides within 5 working days whether to "
        .. "accept an appeal" },
    { id = "appeal.deadline.answer", out = "answer_due_by", from = "materials_complete_at",
      due = { days = 30 }, limits = { due = { at_most = { days = 30 } } },
      basis = "MIIT appeal rules: the appeal body answers the appellant within 30 days of "
        .. "complete materials",
      when = function(f) return f.materials_complete_at ~= nil and not f.withdrawn end },
  } },
}

local CLASSES = { "procedural", "handling", "substantive", "mitigation", "user" }
local CLASS_SET = R.set(CLASSES)

local function check_rule(_, table_name, r)
  if r.due then return C.spec_error(r.due) end
  if (table_name == "admissibility" or table_name == "findings") and not CLASS_SET[r.class] then
    return "class must be one of " .. table.concat(CLASSES, ", ")
  end
  if table_name == "outcome" then
    if type(r.outcome) ~= "string" then return "needs an outcome" end
    for _, c in ipairs(r.grounds or {}) do
      if not CLASS_SET[c] then return "unknown grounds class " .. tostring(c) end
    end
  end
  return nil
end

local function evaluate(P, f, ctx, tr)
  local ev = f.event_at
  if f.appealed_at.t < ev.t then
    S.fail("input.appealed_at", "expected a time not before event_at")
  end
  local clk = clock_for(ctx.region, "input.event_at")
  local off = C.offset(clk)
  local windows = R.run(P, "window", f, tr)
  if #windows == 0 then error("no rule in table window matched; every category needs a bar", 0) end
  -- The latest end any bar gives, as the earliest it can be: ends_year is
  -- the year with no calendar it still depends on (nil: exact), if any bar
  -- does, since that bar's end may move past every other.
  local ends, ends_year = earliest(clk, ev.t, windows[1].due)
  for i = 2, #windows do
    local e, y = earliest(clk, ev.t, windows[i].due)
    if e > ends then ends = e end
    ends_year = ends_year or y
  end
  -- Outputs that may still change once the missing year's calendar is
  -- loaded, in result order.
  local provisional = {}
  if ends_year then
    -- Filed by the earliest end: in time for every end that year's days
    -- can give.  Filed after it: out of time or not depends on them.
    if f.appealed_at.t > ends then
      C.refuse(clk, ends_year, "the appeal bar ends " .. format(ends, off) .. " at the "
        .. "earliest, later if that day is off, so whether the appeal filed "
        .. format(f.appealed_at.t, off) .. " is in time depends on that year's calendar")
    end
    C.depends(clk, ends_year)
    provisional[1] = "appeal_window_ends"
  end
  f.window_ends = ends

  -- Findings count only for an admissible appeal: fired rules, and how
  -- many of each class.
  local fired = R.run(P, "admissibility", f, tr)
  if #fired == 0 then fired = R.run(P, "findings", f, tr) end
  local n = {}
  for i = 1, #CLASSES do n[CLASSES[i]] = 0 end
  for i = 1, #fired do
    local c = fired[i].class
    n[c] = n[c] + 1
  end
  local o = R.decide(P, "outcome", { n = n, within = f.handled_within_policy == true,
    no_basis = f.demand_has_basis == false }, tr)

  -- Grounds: the ids of the fired rules of the outcome's classes, class by
  -- class in the order o.grounds names them, each class in firing order.
  local grounds, k = {}, 0
  local classes = o.grounds
  for j = 1, #classes do
    local c = classes[j]
    if n[c] > 0 then
      for i = 1, #fired do
        local r = fired[i]
        if r.class == c then
          k = k + 1
          grounds[k] = r.id
        end
      end
    end
  end
  if k == 0 then grounds[1] = o.id end

  f.withdrawn = o.outcome == "withdrawn"
  local result = {
    outcome = o.outcome,
    grounds = grounds,
    counts_against_enterprise = o.counts == true,
    appeal_window_ends = format(f.window_ends, off),
    acceptance_decision_by = NULL,
    answer_due_by = NULL,
    provisional = provisional,
  }
  -- Each output is the earliest deadline any fired rule gives it (outs, in
  -- the order the rules name them; due[out] = { t, year, own }, as
  -- C.earlier answers).  One that depends on a year with no calendar is
  -- provisional: its own day, the earliest it can end, or null where it is
  -- a count of working days through that year.
  local deadlines, outs, due = R.run(P, "deadlines", f, tr), {}, {}
  for i = 1, #deadlines do
    local r = deadlines[i]
    local d = due[r.out]
    if d == nil then
      d = {}
      due[r.out] = d
      outs[#outs + 1] = r.out
    end
    d[1], d[2], d[3] = earlier(d[1], d[2], d[3], earliest(clk, f[r.from].t, r.due))
  end
  for i = 1, #outs do
    local out = outs[i]
    local d = due[out]
    if d[2] then
      C.depends(clk, d[2])
      provisional[#provisional + 1] = out
      result[out] = d[3] and format(d[1], off) or NULL
    else
      result[out] = format(d[1], off)
    end
  end
  C.report(clk, tr)
  return result
end

-- What the decision decides, for replay's impact report (R.OUTCOMES).
local outcomes = {
  outcome = "value",
  grounds = "value",
  counts_against_enterprise = "value",
  appeal_window_ends = "deadline",
  acceptance_decision_by = "deadline",
  answer_due_by = "deadline",
}

return R.policy{
  kind = "appeal",
  outcomes = outcomes,
  fields = fields,
  facts = { "window_ends", "withdrawn" },   -- what evaluate adds to the input (above)
  tighter = tighter,
  params = params,
  tables = tables,
  evaluate = evaluate,
  check_rule = check_rule,
}
