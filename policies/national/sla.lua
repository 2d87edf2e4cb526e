-- national/sla.lua - which service tier a complaint gets, its deadlines,
-- and where each milestone stands at the decision time.
--
-- Deadlines come from three tables: `tier` (the carrier's handling
-- commitments by customer grade), `statutory` (limits every complaint has by
-- rule) and `repair` (fault categories only).  If two rules set the same
-- milestone, the earlier deadline wins, so no rule can loosen another.
-- The rules that encode a published rule (the MIIT 15 days, the repair
-- hours) carry its limit (`limits`, lib/rules.lua): a region may tighten
-- them (Guangdong's 24 h urban repair) but one that loosens them fails to
-- load.
-- `status` then rates each milestone at ctx.at.  Working days follow
-- lib/calendar.lua: start day not counted, a day off moves the deadline to
-- the next working day, and a day deadline ends 23:59:59 of its day.
--
-- Times: received_at (and ctx.at, done) may be written in any offset; days
-- are the calendar's civil days in China (the utc_offset of calendar/*.lua,
-- +08:00), so the same instant in any offset gets the same deadlines.  Every
-- time in the result is written in the calendar's offset (+08:00).
--
-- A year with no calendar file, where the region's calendar does not fall
-- back to weekends only (GD): no deadline in it is guessed, and nothing
-- that does not depend on it is refused.  A calendar-day deadline (the 15
-- days) that ends in it is written as its own day, the earliest it can end
-- (a day off can only move it later); a working-day deadline that counts
-- through it is null, since none of its days can be counted.  Both are
-- listed in the result's `provisional`, and so is a status or the next
-- deadline that would differ for some end that year's days can give (then
-- null; or, for the only deadline still open, next_deadline.at, its time);
-- a status the same for every such end is given.

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

local TOP_GRADES, LOCAL_ENTERPRISE = D.TOP_GRADES, D.LOCAL_ENTERPRISE
local CATEGORIES, GRADES = D.CATEGORIES, D.GRADES
local CHANNELS = { "hotline", "online", "email", "sms", "social", "storefront",
  "account_manager", "monitoring" }

-- Milestones in output order (also the tie-break for next_deadline).
local MILESTONES = D.MILESTONES

local done_fields = {}
for _, m in ipairs(MILESTONES) do
  done_fields[m] = S.time{ doc = "when the " .. m .. " milestone was completed" }
end

local fields = {
  complaint_id = S.string{ required = true, max_len = 64, doc = "the carrier's complaint number" },
  customer_id = S.string{ max_len = 64, personal = true,
    doc = "the customer, optional: recorded so that history can count this customer's complaints" },
  category = S.enum{ required = true, table.unpack(CATEGORIES) },
  channel = S.enum{ required = true, doc = "where the complaint arrived; recorded, no national rule uses it",
    table.unpack(CHANNELS) },
  customer_grade = S.enum{ required = true, table.unpack(GRADES) },
  received_at = S.time{ required = true, doc = "when the complaint was received (or the fault "
    .. "detected); any offset: days are counted in China's civil time (the calendar's "
    .. "utc_offset, +08:00), and the result's times are written in +08:00" },
  area = S.enum{ "urban", "rural", default = "urban", doc = "where the faulty line is" },
  done = S.object{ default = {}, fields = done_fields, doc = "completion time per milestone" },
}

-- What a deadline in a year with no calendar file does is the region's
-- calendar setting (lib/calendar.lua, calendar/settings.lua), the same for
-- every kind: not a param here.
local params = {
  milestones = MILESTONES,
}

-- Which way each result field is tighter (lib/rules.lua, "tighter"): the
-- deadlines earlier (a missing one is looser than any), updates more
-- often; the tier's name, the statuses and the next open deadline follow
-- from them and the decision time (an earlier deadline already breached
-- leaves a later one next), so they are not compared.
local tighter = {
  tier = "neutral",
  ["deadlines.*"] = "earlier",
  ["status.*"] = "neutral",
  ["next_deadline.name"] = "neutral",
  ["next_deadline.at"] = "neutral",
  updates_every_minutes = "smaller",
  -- outputs that may still move once a missing calendar year is loaded
  provisional = "neutral",
}

local tables = {
  -- Handling commitments by customer grade: the first rule that matches
  -- gives the tier and its deadlines.
  { name = "tier", hit = "first", data = { "tier", "updates_every_minutes", "due" },
    rules = {
    { id = "sla.tier.enterprise_top",
      basis = "carrier practice (top enterprise grades, configurable): 24x7 service; first "
        .. "feedback within 30 min, updates every 60 min after the first hour, written report "
        .. "within 1 working day; acceptance 2, investigation 5, solution 7 working days",
      when = function(f) return TOP_GRADES[f.customer_grade] end,
      tier = "enterprise_top", updates_every_minutes = 60,
      due = { acceptance = { working_days = 2 }, first_feedback = { minutes = 30 },
              investigation = { working_days = 5 }, solution = { working_days = 7 },
              written_report = { working_days = 1 } } },
    { id = "sla.tier.enterprise",
      basis = "carrier practice (enterprise grades local A/B/C, configurable): first feedback "
        .. "within 24 h; acceptance 2, investigation 5, solution 7 working days",
      when = function(f) return LOCAL_ENTERPRISE[f.customer_grade] end,
      tier = "enterprise",
      due = { acceptance = { working_days = 2 }, first_feedback = { hours = 24 },
              investigation = { working_days = 5 }, solution = { working_days = 7 } } },
    { id = "sla.tier.standard",
      basis = "carrier practice (published commitments, configurable): acceptance reply within "
        .. "2 working days, investigation 5, solution 7 working days, first feedback within 72 h",
      tier = "standard",
      due = { acceptance = { working_days = 2 }, first_feedback = { hours = 72 },
              investigation = { working_days = 5 }, solution = { working_days = 7 } } },
  } },

  -- Limits every complaint has by rule.
  { name = "statutory", hit = "collect", data = { "due" },
    rules = {
    { id = "sla.operator_reply.miit35",
      basis = "MIIT order no. 35 (2016), telecom user appeal rules: the operator replies to a "
        .. "complaint within 15 days; after that the customer may appeal",
      due = { operator_reply = D.MIIT35_REPLY },
      limits = { ["due.operator_reply"] = { at_most = D.MIIT35_REPLY } } },
  } },

  -- Fault repair limits, for fault categories only.  Every rule that
  -- matches counts (collect; the earliest deadline wins), so a rule a
  -- region adds can tighten a published repair limit, never hide it.
  { name = "repair", hit = "collect", data = { "due" },
    rules = {
    { id = "sla.repair.mobile",
      basis = "3G mobile service specification: mobile fault repair within 24 h on average, "
        .. "48 h at most",
      when = function(f) return f.category == "network" end,
      due = { repair = { hours = 48 } },
      limits = { ["due.repair"] = { at_most = { hours = 48 } } } },
    { id = "sla.repair.rural",
      basis = "Telecom Regulations: fault repair within 72 h in rural areas (monthly rental "
        .. "for the fault period waived when missed)",
      when = function(f) return f.category == "broadband_fault" and f.area == "rural" end,
      due = { repair = { hours = 72 } },
      limits = { ["due.repair"] = { at_most = { hours = 72 } } } },
    { id = "sla.repair.urban",
      basis = "Telecom Regulations: fault repair within 48 h in towns (monthly rental for the "
        .. "fault period waived when missed)",
      when = function(f) return f.category == "broadband_fault" and f.area == "urban" end,
      due = { repair = { hours = 48 } },
      limits = { ["due.repair"] = { at_most = { hours = 48 } } } },
  } },

  -- Where one milestone stands at the decision time.  Facts: start, due,
  -- done (instants; done may be nil) and at.
  { name = "status", hit = "first", data = { "status", "percent" },
    facts = { "start", "due", "done", "at" },
    rules = {
    { id = "sla.status.met",
      basis = "counting rule: a milestone completed by its deadline (24:00 of a deadline "
        .. "day) is met",
      when = function(m) return m.done ~= nil and m.done <= m.due end,
      status = "met" },
    { id = "sla.status.done_late",
      basis = "counting rule: a milestone completed after its deadline was breached",
      when = function(m) return m.done ~= nil end,
      status = "breached" },
    { id = "sla.status.breached",
      basis = "counting rule: an open milestone past its deadline is breached",
      when = function(m) return m.at > m.due end,
      status = "breached" },
    { id = "sla.status.at_risk",
      basis = "carrier practice (configurable): an open milestone with 75% of its time used "
        .. "is at risk",
      percent = 75,
      when = function(m, r) return 100 * (m.at - m.start) >= r.percent * (m.due - m.start) end,
      status = "at_risk" },
    { id = "sla.status.pending",
      basis = "counting rule: an open milestone within its time is pending",
      status = "pending" },
  } },
}

-- Load-time check of rule data (run on every rule again after a region's
-- change).  A rule with deadlines also gets them listed in milestone
-- order, for evaluate: P.due_order[r] = { m1, spec1, m2, spec2, ... }.
local function check_rule(P, _table_name, r)
  if r.due == nil then return nil end
  local milestones = P.params.milestones
  local known = R.set(milestones)
  for m, spec in pairs(r.due) do
    if not known[m] then return R.unknown("milestone", m, known) end
    local why = C.spec_error(spec)
    if why then return why end
  end
  local order = {}
  for _, m in ipairs(milestones) do
    if r.due[m] then
      order[#order + 1] = m
      order[#order + 1] = r.due[m]
    end
  end
  P.due_order = P.due_order or {}
  P.due_order[r] = order
  return nil
end

-- Set each milestone's deadline to the earlier of rule r's (order =
-- P.due_order[r]) and the one already there.  A deadline is kept as
-- C.earlier answers it: due[m] the instant (the earliest it can be),
-- year[m] the year with no calendar it still depends on (nil: exact),
-- own[m] whether the instant is its own day; cap[m] is the earliest exact
-- deadline any rule gives m, which a provisional one can never pass.
local function apply(order, d, clk, rc)
  local t, due, year, own, cap = rc.t, d.due, d.year, d.own, d.cap
  for i = 1, #order, 2 do
    local m = order[i]
    local v, y, o = earliest(clk, t, order[i + 1])
    if y == nil and (cap[m] == nil or v < cap[m]) then cap[m] = v end
    due[m], year[m], own[m] = earlier(due[m], year[m], own[m], v, y, o)
  end
end

-- A deadline later than any a calendar gives, for a provisional one with
-- no exact cap: the status it would have if that year's days all were off.
local FAR = 1 << 52

-- The status of milestone m (facts: m_facts, its due set here) when its
-- deadline is provisional: decided on scratch traces at the earliest end
-- and at the latest (cap, else FAR); the status rules are monotone in the
-- deadline, so the same answer at both is the answer for every end
-- between, and it is decided again on the real trace.  nil when they
-- differ.
local function provisional_status(P, m_facts, lo, hi, tr)
  m_facts.due = lo
  local a = R.decide(P, "status", m_facts, { list = {}, seen = {} }).status
  m_facts.due = hi
  local b = R.decide(P, "status", m_facts, { list = {}, seen = {} }).status
  if a ~= b then return nil end
  m_facts.due = lo
  return R.decide(P, "status", m_facts, tr).status
end

local function evaluate(P, f, ctx, tr)
  local at = R.at(ctx)
  local rc = f.received_at
  local clk = clock_for(ctx.region, "input.received_at")

  -- Deadlines: the earliest any fired rule sets for each milestone, as
  -- instants (written as text below; see apply).
  local due_order = P.due_order
  local d = { due = {}, year = {}, own = {}, cap = {} }
  local tier = R.decide(P, "tier", f, tr)
  apply(due_order[tier], d, clk, rc)
  local statutory = R.run(P, "statutory", f, tr)
  for i = 1, #statutory do apply(due_order[statutory[i]], d, clk, rc) end
  local repair = R.run(P, "repair", f, tr)
  for i = 1, #repair do apply(due_order[repair[i]], d, clk, rc) end

  -- Status per milestone, and the next open deadline: the earliest one
  -- pending or at risk, or unknown and open (it may be pending); certain
  -- only when that one's deadline and status are.  The status facts are one
  -- table, refilled for each milestone.  Outputs that depend on a missing
  -- year are listed in `provisional`, in result order: deadlines and
  -- statuses in milestone order, then next_deadline.
  local milestones, deadlines, status = P.params.milestones, {}, {}
  local provisional, unknown_status = {}, nil
  local next_name, next_due, next_sure, next_known, candidates = nil, nil, nil, nil, 0
  local off, done_at = C.offset(clk), f.done
  local due, year, own, cap = d.due, d.year, d.own, d.cap
  local m_facts = { start = rc.t, due = 0, done = nil, at = at }
  for i = 1, #milestones do
    local m = milestones[i]
    local t = due[m]
    if t then
      local done = done_at[m]
      m_facts.done = done and done.t
      local y, s = year[m]
      if y == nil then
        deadlines[m] = format(t, off)
        m_facts.due = t
        s = R.decide(P, "status", m_facts, tr).status
        status[m] = s
      else
        C.depends(clk, y)
        deadlines[m] = own[m] and format(t, off) or NULL
        provisional[#provisional + 1] = "deadlines." .. m
        s = provisional_status(P, m_facts, t, cap[m] or FAR, tr)
        if s == nil then
          status[m] = NULL
          unknown_status = unknown_status or {}
          unknown_status[#unknown_status + 1] = "status." .. m
        else
          status[m] = s
        end
      end
      if s == "pending" or s == "at_risk" or (s == nil and done == nil) then
        candidates = candidates + 1
        if next_due == nil or t < next_due then
          next_name, next_due, next_sure, next_known = m, t, y == nil, s ~= nil
        end
      end
    end
  end
  if unknown_status then
    for i = 1, #unknown_status do provisional[#provisional + 1] = unknown_status[i] end
  end
  -- The next deadline: certain when its deadline and status are; when it
  -- is the only one open, only its time may be provisional; else which one
  -- comes next depends on the missing year.
  local next_deadline = NULL
  if next_name then
    if next_sure then
      next_deadline = { name = next_name, at = deadlines[next_name] }
    elseif next_known and candidates == 1 then
      next_deadline = { name = next_name, at = deadlines[next_name] }
      provisional[#provisional + 1] = "next_deadline.at"
    else
      provisional[#provisional + 1] = "next_deadline"
    end
  end
  C.report(clk, tr)

  return {
    tier = tier.tier,
    deadlines = deadlines,
    status = status,
    next_deadline = next_deadline,
    updates_every_minutes = tier.updates_every_minutes,
    provisional = provisional,
  }
end

-- What the decision decides, for replay's impact report (R.OUTCOMES).
-- The provisional list only says which deadlines may still move.
local outcomes = {
  tier = "value",
  deadlines = "deadline",
  status = "value",
  ["next_deadline.at"] = "deadline",
  updates_every_minutes = "value",
}

return R.policy{
  kind = "sla",
  outcomes = outcomes,
  fields = fields,
  tighter = tighter,
  params = params,
  tables = tables,
  evaluate = evaluate,
  check_rule = check_rule,
}
