-- nginx_compensation.lua - the national compensation rule for an
-- overbilling case, as an OpenResty-style Lua module: the reference peer
-- `make bench` runs behind nginx (bench/nginx.conf decodes the JSON body
-- with cjson, calls decide(), and encodes the JSON reply).
--
-- The same rules, limits and bases as policies/national/compensation.lua
-- for the facts a billing case has, and as bench/redis_compensation.lua:
-- a carrier-caused overcharge is refunded double, (charged - due) x 2, any
-- other overcharge once; the offer needs the approval level whose limit for
-- the customer's grade covers it; a claim beyond the offer is flagged.
local M = {}

local CAUSES = { carrier = true, customer = true, third_party = true, force_majeure = true }

-- Highest offer each level may approve, per grade; above `city`: province.
local LIMITS = {
  retail   = { frontline = 5000, team_lead = 20000, district = 100000, city = 500000 },
  local_c  = { frontline = 10000, team_lead = 50000, district = 200000, city = 1000000 },
  local_b  = { frontline = 10000, team_lead = 50000, district = 200000, city = 1000000 },
  local_a  = { frontline = 10000, team_lead = 50000, district = 200000, city = 1000000 },
  province = { frontline = 0, team_lead = 100000, district = 500000, city = 2000000 },
  group    = { frontline = 0, team_lead = 100000, district = 500000, city = 2000000 },
}
local CAP = { retail = 40000, local_c = 60000, local_b = 80000, local_a = 100000,
              province = 200000, group = 300000 }

local APPROVAL = {
  { id = "comp.approval.frontline", level = "frontline",
    basis = "carrier practice (configurable, params.approval_limits): a front-line handler "
      .. "approves offers up to the grade's frontline limit" },
  { id = "comp.approval.team_lead", level = "team_lead",
    basis = "carrier practice (configurable): a team lead approves up to the grade's "
      .. "team_lead limit" },
  { id = "comp.approval.district", level = "district",
    basis = "carrier practice (configurable): the district branch approves up to the grade's "
      .. "district limit" },
  { id = "comp.approval.city", level = "city",
    basis = "carrier practice (configurable): the city branch approves up to the grade's "
      .. "city limit" },
  { id = "comp.approval.province", level = "province",
    basis = "carrier practice (configurable): offers above the city limit go to the province" },
}

local DOUBLE = { rule = "comp.billing.double_refund",
  basis = "carrier practice (published commitment, 双倍返还): overcharging caused by the "
    .. "carrier is refunded double, (charged - due) x 2" }
local REFUND = { rule = "comp.billing.refund",
  basis = "Civil Code art. 985 (unjust enrichment): an amount charged but not due is "
    .. "returned; used when the carrier did not cause it, or when fraud damages apply instead "
    .. "of the double refund" }
local BEYOND = { rule = "comp.claim.beyond_basis",
  basis = "practice (有根有据): pay only what a policy or a law gives a basis for; a demand "
    .. "beyond it is not granted, the substantive problem is solved" }

local function fen(input, name, required)
  local v = input[name]
  if v == nil and not required then return nil end
  if type(v) ~= "number" or v < 0 or v ~= math.floor(v) then
    return nil, { code = "bad_input", path = "input." .. name,
                  message = "expected an integer number of fen" }
  end
  return v
end

-- decide(input) -> result, trace  |  nil, error
function M.decide(input)
  local charged, due, claimed, err
  charged, err = fen(input, "charged_fen", true)
  if err then return nil, err end
  due, err = fen(input, "due_fen", true)
  if err then return nil, err end
  claimed, err = fen(input, "claimed_fen", false)
  if err then return nil, err end
  if not CAUSES[input.cause] then
    return nil, { code = "bad_input", path = "input.cause", message = "unknown cause" }
  end
  local limits = LIMITS[input.customer_grade]
  if not limits then
    return nil, { code = "bad_input", path = "input.customer_grade", message = "unknown grade" }
  end

  local trace, components, offer = {}, {}, 0
  local overcharge = charged > due and charged - due or 0
  if input.cause == "carrier" and overcharge > 0 then
    components[#components + 1] = { type = "double_refund", amount_fen = overcharge * 2,
                                    rule = DOUBLE.rule }
    trace[#trace + 1] = DOUBLE
    offer = offer + overcharge * 2
  elseif overcharge > 0 then
    components[#components + 1] = { type = "overcharge_refund", amount_fen = overcharge,
                                    rule = REFUND.rule }
    trace[#trace + 1] = REFUND
    offer = offer + overcharge
  end

  local approval = APPROVAL[#APPROVAL]
  for _, r in ipairs(APPROVAL) do
    local limit = limits[r.level]
    if limit == nil or offer <= limit then approval = r; break end
  end
  trace[#trace + 1] = { rule = approval.id, basis = approval.basis }

  local beyond = claimed ~= nil and claimed > offer
  if beyond then trace[#trace + 1] = BEYOND end

  return { offer_fen = offer, components = components, cap_fen = CAP[input.customer_grade],
           approval_level = approval.level, claim_beyond_basis = beyond }, trace
end

return M
