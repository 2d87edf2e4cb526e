-- national/escalation.lua - which level must own a complaint now, who is
-- told, which warnings are raised, whether it is an incident, and when to
-- look at it again.
--
-- The handler who owns the complaint keeps it (首问负责); each warning sign
-- in `warnings` may demand a minimum owning level, notify parties, raise a
-- warning code or mark an incident.  The level is the highest demanded
-- (never below the current one), and every level between the current one
-- and it is notified, since reports go up one level at a time (逐级上报).
-- `review` then sets the next review time from the decision time.
--
-- Times may be written in any offset: the reply window is counted on the
-- calendar's civil days (lib/calendar.lua, +08:00) and next_review_at is
-- written in the calendar's offset, so the same instants in any offset
-- give the same answer.
--
-- A reply window that ends in a year with no calendar file, where the
-- region's calendar does not fall back to weekends only (GD), ends on its
-- own day at the earliest, later if that day is off.  The decision is made
-- when no rule's answer depends on where it ends: the window has not begun
-- to close even at its earliest end (more than the longest `within_hours`
-- of the warnings before it), or the input's sla_status gives an
-- operator_reply status that settles the window's warnings instead (met,
-- at_risk, breached); the trace says `calendar.provisional`.  Otherwise it
-- is bad_input on input.received_at, naming the year.  Nothing in the
-- result is provisional: next_review_at counts hours.

local R = require("lib.rules")
local S = require("lib.schema")
local T = require("lib.time")
local C = require("lib.calendar")
local D = require("lib.domain")

C.load() -- every calendar, once, when the policy loads

-- Read once, here: inside a decision every global access goes through the
-- sandbox's environment proxies.
local pairs = pairs
local format, earliest, clock_for, HOUR = T.format, C.due_earliest, C.clock_for, T.HOUR

local CATEGORIES, GRADES, LEVELS = D.CATEGORIES, D.GRADES, D.LEVELS
local RANK = {}
for i, l in ipairs(LEVELS) do RANK[l] = i end
local TOP_GRADES = D.TOP_GRADES
-- MIIT order no. 35: the operator's reply window (esc.sla.reply_window_passed).
local REPLY_WINDOW = D.MIIT35_REPLY
-- The counts of the customer's history, by input field: the window its name
-- states (days before the decision time) and the ctx.history question that
-- counts it when the input omits it (recorded with the decision as a fact,
-- and answered from that record on replay).  A complaint counts once, from
-- the first decision that qualifies it: repeat_30d, the customer's other
-- complaints first decided in the window (complaints lodged again);
-- over_head_30d, complaints that reached the regulator (an appeal decision
-- by the customer); refunds_90d, complaints offered compensation above zero.
local COUNTED = {
  { field = "repeat_30d", days = 30, query = "repeat_complaints" },
  { field = "over_head_30d", days = 30, query = "over_head_complaints" },
  { field = "refunds_90d", days = 90, query = "refunded_complaints" },
}

-- input.sla_status: the sla decision's `status`, whose keys are the
-- milestones (an unknown one is refused, not ignored) and whose values are
-- the statuses its status rules give.
local status_fields = {}
for _, m in ipairs(D.MILESTONES) do
  status_fields[m] = S.enum{ "met", "pending", "at_risk", "breached",
    doc = "the " .. m .. " milestone's status" }
end

local fields = {
  complaint_id = S.string{ required = true, max_len = 64 },
  customer_id = S.string{ required = true, max_len = 64, personal = true },
  category = S.enum{ required = true, table.unpack(CATEGORIES) },
  customer_grade = S.enum{ required = true, table.unpack(GRADES) },
  received_at = S.time{ required = true, doc = "when the complaint was received; any "
    .. "offset: the 15-day reply window is counted in China's civil days (the calendar's "
    .. "utc_offset, +08:00), and next_review_at is written in +08:00" },
  handled_by = S.enum{ required = true, doc = "level that owns the complaint now", table.unpack(LEVELS) },
  sla_status = S.object{ default = {}, fields = status_fields,
    doc = "the sla decision's status object: a status per milestone" },
  signals = S.set{ default = {},
    of = S.enum{ "regulator", "media", "lawsuit", "consumer_association" } },
  repeat_30d = S.integer{ min = 0, max = 100000,
    doc = "the customer's other complaints in the last 30 days; when absent, counted from "
      .. "the daemon's history (ctx.history.repeat_complaints), else 0" },
  over_head_30d = S.integer{ min = 0, max = 100000,
    doc = "the customer's complaints that went over the carrier's head to the regulator (an "
      .. "appeal) in the last 30 days; when absent, counted from the daemon's history "
      .. "(ctx.history.over_head_complaints), else 0" },
  refunds_90d = S.integer{ min = 0, max = 100000,
    doc = "the customer's complaints given a refund or compensation above zero in the last 90 "
      .. "days; when absent, counted from the daemon's history "
      .. "(ctx.history.refunded_complaints), else 0" },
  similar_recent = S.integer{ min = 0, max = 10000000,
    doc = "distinct customers with a same-category complaint in the same region within "
      .. "params.similar_window_hours; when absent, the daemon's history is asked "
      .. "(ctx.history.similar_customers), else 0" },
}

-- Which way each result field is tighter (lib/rules.lua, "tighter"): a
-- higher owning level, more parties told and warnings raised, an incident
-- rather than none, an earlier review, a longer window for similar
-- complaints (more of them count).
local tighter = {
  level = { higher = LEVELS },
  notify = "superset",
  warnings = "superset",
  incident = "true",
  next_review_at = "earlier",
  similar_window_hours = "larger",
}

local params = {
  -- The window callers count similar_recent over (hours before the decision).
  similar_window_hours = 24,
}

-- Which status values occur in input.sla_status (one pass per decision;
-- none when it was not given: then it is the field's default, an empty map,
-- and the answer is a shared empty set).
local NO_STATUS, NONE_SEEN = fields.sla_status.default, {}
local function statuses(sla_status)
  if sla_status == NO_STATUS then return NONE_SEEN end
  local seen = {}
  for _, s in pairs(sla_status) do seen[s] = true end
  return seen
end

-- Facts besides the input, set by evaluate: f.at (the decision time),
-- f.reply_due (the end of the 15-day operator reply window, counted from
-- received_at; in a year with no calendar, its earliest end, and then
-- only where the decision does not depend on it, see evaluate),
-- f.reply_window_passed (f.at is after it; nil when that is not known
-- and the sla_status's operator_reply settles the window), f.status_seen
-- (set of the status values in sla_status); for `review` also f.incident,
-- f.level_rank, f.signalled and f.warned (set of the warnings raised).
-- Without an operator_reply status in the input, the reply window's
-- warnings (passed, about to pass) come from the complaint's own times.
local tables = {
  -- Always: the owner keeps the complaint.
  { name = "owner", hit = "first", rules = {
    { id = "esc.owner.first_contact",
      basis = "practice: first-contact responsibility (首问负责): the first handler owns the "
        .. "complaint until it is closed; what it cannot solve is reported up one level at a "
        .. "time (逐级上报)" },
  } },

  -- Warning signs.  Each may carry: level (minimum owner), warning (code),
  -- notify (parties besides the levels), incident (true).
  { name = "warnings", hit = "collect",
    data = { "level", "warning", "notify", "incident", "min", "within_hours", "refunds",
             "repeats" },
    rules = {
    { id = "esc.signal.regulator", level = "city", warning = "regulator", notify = { "compliance" },
      basis = "practice: the customer mentions the regulator (communications administration, "
        .. "MIIT appeal centre 12300): a branch whose complaint becomes an appeal is reported "
        .. "and loses points; act early",
      when = function(f) return f.signals.regulator end },
    { id = "esc.signal.media", level = "city", warning = "media", notify = { "public_relations" },
      basis = "practice: media exposure is a risk signal beyond the external appeal path",
      when = function(f) return f.signals.media end },
    { id = "esc.signal.lawsuit", level = "city", warning = "lawsuit", notify = { "legal" },
      basis = "practice: a threatened lawsuit is the last step of the external path; keep "
        .. "evidence",
      when = function(f) return f.signals.lawsuit end },
    { id = "esc.signal.consumer_association", level = "district",
      warning = "consumer_association",
      basis = "practice: the consumer association (消协) is a step up the customer's external "
        .. "path",
      when = function(f) return f.signals.consumer_association end },
    { id = "esc.sla.reply_overdue", level = "district", warning = "reply_overdue",
      basis = "MIIT order no. 35 (2016): with no reply within 15 days the customer may appeal "
        .. "to the regulator",
      when = function(f) return f.sla_status.operator_reply == "breached" end },
    { id = "esc.sla.reply_window_passed", level = "district", warning = "reply_window_passed",
      basis = "MIIT order no. 35 (2016): 15 days since the complaint and no reply status "
        .. "known; the customer may appeal",
      when = function(f) return f.sla_status.operator_reply == nil and f.reply_window_passed end },
    { id = "esc.sla.reply_window_closing", warning = "reply_window_closing",
      notify = { "team_lead" }, within_hours = 24,
      basis = "MIIT order no. 35 (2016) and practice: no reply status known and the 15-day "
        .. "reply window, counted from the complaint's own times, closes within 24 hours, "
        .. "before a daily review would look again: a deadline about to pass is a warning "
        .. "sign; tell the team lead",
      when = function(f, r)
        return f.sla_status.operator_reply == nil and not f.reply_window_passed
          and f.reply_due - f.at <= r.within_hours * HOUR
      end },
    { id = "esc.sla.breached", level = "team_lead", warning = "sla_breached",
      basis = "practice: a passed deadline is a warning sign; the team lead takes over",
      when = function(f) return f.status_seen.breached end },
    { id = "esc.sla.at_risk", warning = "sla_at_risk", notify = { "team_lead" },
      basis = "practice: a deadline about to pass is a warning sign; tell the team lead",
      when = function(f) return f.status_seen.at_risk end },
    { id = "esc.repeat.customer", level = "team_lead", warning = "repeat_complaints", min = 2,
      basis = "practice: the same customer complaining repeatedly (2 or more earlier "
        .. "complaints in 30 days) is a warning sign",
      when = function(f, r) return f.repeat_30d >= r.min end },
    { id = "esc.repeat.over_head", level = "district", warning = "over_head_complaints", min = 1,
      basis = "practice: complaints over the handler's head in the last 30 days are a warning "
        .. "sign",
      when = function(f, r) return f.over_head_30d >= r.min end },
    { id = "esc.repeat.refunds", warning = "frequent_refunds", notify = { "team_lead" }, min = 3,
      basis = "practice: 3 or more refunds to the customer in 90 days are a warning sign",
      when = function(f, r) return f.refunds_90d >= r.min end },
    { id = "esc.pattern.within_basis", warning = "pay_within_basis", refunds = 3, repeats = 2,
      basis = "practice (投诉专业户): frequent refunds and repeat complaints together: solve the "
        .. "substantive problem within policy, keep evidence, pay nothing beyond the basis",
      when = function(f, r) return f.refunds_90d >= r.refunds and f.repeat_30d >= r.repeats end },
    { id = "esc.grade.top", level = "district", warning = "top_grade_customer",
      notify = { "account_manager" },
      basis = "practice: top-grade enterprise customers (group, province) get 24x7 service; "
        .. "their complaints are owned above the front line with the account manager",
      when = function(f) return TOP_GRADES[f.customer_grade] end },
    { id = "esc.incident.systemic", level = "city", warning = "systemic_fault", incident = true,
      notify = { "network_operations" }, min = 5,
      basis = "practice: complaints about the same problem, in the same region and time window, "
        .. "from different people are a systemic fault, escalated as an incident (5 or more "
        .. "customers within the window)",
      when = function(f, r) return f.similar_recent >= r.min end },
    { id = "esc.incident.major", level = "province", warning = "major_incident", incident = true,
      notify = { "province_duty_manager" }, min = 50,
      basis = "practice: a systemic fault affecting 50 or more customers within the window is "
        .. "reported to the province",
      when = function(f, r) return f.similar_recent >= r.min end },
  } },

  -- When to look again, counted from the decision time.
  { name = "review", hit = "first", data = { "hours" },
    rules = {
    { id = "esc.review.incident", hours = 1,
      basis = "practice: an incident is reviewed every hour",
      when = function(f) return f.incident end },
    { id = "esc.review.top_grade", hours = 1,
      basis = "carrier practice (top enterprise grade): hourly updates after the first hour",
      when = function(f) return TOP_GRADES[f.customer_grade] end },
    { id = "esc.review.high_risk", hours = 4,
      basis = "practice: an external signal or a city-level owner: review every 4 hours",
      when = function(f) return f.signalled or f.level_rank >= RANK.city end },
    { id = "esc.review.deadline", hours = 4,
      basis = "practice: a deadline breached or at risk: review every 4 hours",
      when = function(f)
        return f.status_seen.breached or f.status_seen.at_risk or f.warned.reply_window_closing
          or (f.reply_window_passed and f.sla_status.operator_reply ~= "met")
      end },
    { id = "esc.review.daily", hours = 24,
      basis = "practice: otherwise review daily" },
  } },
}

local function check_rule(_, table_name, r)
  if r.level ~= nil and not RANK[r.level] then return "unknown level " .. tostring(r.level) end
  if table_name == "review" and math.type(r.hours) ~= "integer" then
    return "a review rule needs integer hours"
  end
  return nil
end

local function evaluate(P, f, ctx, tr)
  local at = R.at(ctx)
  -- Counts the input omits are asked of the decision history (each answer
  -- is recorded with the decision as a fact, and answered from that record
  -- on replay); given ones are never asked.  No history (verdict test, or
  -- a daemon without its database): 0.
  local history = ctx.history
  if f.similar_recent == nil then
    f.similar_recent = history and history.similar_customers(ctx.region, f.category,
      P.params.similar_window_hours) or 0
  end
  for i = 1, #COUNTED do
    local c = COUNTED[i]
    if f[c.field] == nil then
      f[c.field] = history and history[c.query](f.customer_id, f.complaint_id, c.days) or 0
    end
  end
  local rc = f.received_at
  local clk = clock_for(ctx.region, "input.received_at")
  f.at = at
  local reply_due, year = earliest(clk, rc.t, REPLY_WINDOW)
  f.reply_due = reply_due
  f.reply_window_passed = at > reply_due
  if year then
    -- The window ends at reply_due or later.  Before reply_due less the
    -- longest within_hours any warning looks ahead, it is neither passed
    -- nor closing for every such end.  Else an operator_reply status of
    -- met, at_risk or breached is what the warnings read instead of the
    -- window (and at_risk or breached already sets a 4-hour review).
    local ahead = 0
    local rules = R.get(P, "warnings").rules
    for i = 1, #rules do
      local h = rules[i].within_hours
      if h and h > ahead then ahead = h end
    end
    local reply = f.sla_status.operator_reply
    if reply_due - at > ahead * HOUR then
      f.reply_window_passed = false
    elseif reply == "met" or reply == "at_risk" or reply == "breached" then
      if at > reply_due then f.reply_window_passed = nil end
    else
      C.refuse(clk, year, "the 15-day reply window ends " .. format(reply_due, C.offset(clk))
        .. " at the earliest, later if that day is off, and with no operator_reply status "
        .. "(met, at_risk or breached) the warnings at " .. format(at, C.offset(clk))
        .. " depend on where it ends")
    end
    C.depends(clk, year)
  end
  f.status_seen = statuses(f.sla_status)
  C.report(clk, tr)

  R.run(P, "owner", f, tr)
  local start = RANK[f.handled_by]
  local rank = start
  local warnings, warned = {}, {}
  local incident = false
  local fired = R.run(P, "warnings", f, tr)
  for i = 1, #fired do
    local r = fired[i]
    local level = r.level and RANK[r.level]
    if level and level > rank then rank = level end
    if r.warning then
      warnings[#warnings + 1] = r.warning
      warned[r.warning] = true
    end
    if r.incident then incident = true end
  end

  -- Notify every level above the current owner up to the new one, then
  -- the other parties the rules named, in firing order, each once.  (An
  -- empty list is written as [].)
  local notify, n = {}, 0
  for i = start + 1, rank do
    n = n + 1
    notify[n] = LEVELS[i]
  end
  for i = 1, #fired do
    local parties = fired[i].notify
    if parties then
      for j = 1, #parties do
        local who, known = parties[j], false
        for k = 1, n do
          if notify[k] == who then known = true; break end
        end
        if not known then
          n = n + 1
          notify[n] = who
        end
      end
    end
  end

  f.incident, f.level_rank, f.warned = incident, rank, warned
  local signals = f.signals
  f.signalled = signals.regulator or signals.media or signals.lawsuit
    or signals.consumer_association or false
  local review = R.decide(P, "review", f, tr)

  return {
    level = LEVELS[rank],
    notify = notify,
    warnings = warnings,
    incident = incident,
    next_review_at = format(at + review.hours * HOUR, C.offset(clk)),
    similar_window_hours = P.params.similar_window_hours,
  }
end

-- What the decision decides, for replay's impact report (R.OUTCOMES).
-- similar_window_hours echoes a parameter.
local outcomes = {
  level = "level",
  notify = "value",
  warnings = "value",
  incident = "value",
  next_review_at = "deadline",
}

return R.policy{
  kind = "escalation",
  outcomes = outcomes,
  fields = fields,
  -- what evaluate adds to the input before the tables run (above)
  facts = { "at", "reply_due", "reply_window_passed", "status_seen", "incident", "level_rank",
            "warned", "signalled" },
  tighter = tighter,
  params = params,
  tables = tables,
  evaluate = evaluate,
  check_rule = check_rule,
}
