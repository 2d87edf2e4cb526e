-- redis_compensation.lua - the national compensation rule for an
-- overbilling case, written as a Redis Lua script: the peer `make bench`
-- compares verdictd with (scripts/bench loads it with SCRIPT LOAD and
-- drives it with redis-benchmark and EVALSHA).
--
--   EVALSHA sha 0 CHARGED_FEN DUE_FEN CAUSE CUSTOMER_GRADE CLAIMED_FEN
--   EVALSHA sha 0 12800 8800 carrier retail 50000
--     -> {"result":{"offer_fen":8000,"approval_level":"team_lead",...},
--         "trace":[{"rule":"comp.billing.double_refund","basis":"..."},...]}
--
-- The same rules, limits and bases as policies/national/compensation.lua
-- for the facts a billing case has: a carrier-caused overcharge is refunded
-- double, (charged - due) x 2, any other overcharge once; the offer needs
-- the approval level whose limit for the customer's grade covers it; a
-- claim beyond the offer is flagged.  Inputs are checked as the policy's
-- schema checks them, and the reply is JSON (Redis's bundled cjson), so the
-- work per call is comparable: validate, decide, trace, encode.
--
--   EVALSHA sha 1 STREAM 12800 8800 carrier retail 50000
--
-- With one key, the script also records the decision, as verdictd's
-- history does: the inputs and the reply are appended to the stream STREAM
-- (XADD, trimmed to about 100,000 entries so that memory stays bounded over
-- a long run).  That write is what a Redis with `appendonly yes` puts in its
-- append-only file; a script that writes nothing leaves nothing to fsync.

local function fen(i, name)
  local v = tonumber(ARGV[i])
  if v == nil or v < 0 or v ~= math.floor(v) then
    return nil, "bad_input: " .. name .. " expects an integer number of fen"
  end
  return v
end

local charged, err = fen(1, "charged_fen")
if not charged then return redis.error_reply(err) end
local due
due, err = fen(2, "due_fen")
if not due then return redis.error_reply(err) end
local cause = ARGV[3] or "carrier"
local grade = ARGV[4] or "retail"
local claimed = nil
if ARGV[5] then
  claimed, err = fen(5, "claimed_fen")
  if not claimed then return redis.error_reply(err) end
end

local CAUSES = { carrier = true, customer = true, third_party = true, force_majeure = true }
if not CAUSES[cause] then return redis.error_reply("bad_input: unknown cause") end

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
local limits = LIMITS[grade]
if not limits then return redis.error_reply("bad_input: unknown customer_grade") end

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

local trace, components = {}, {}
local offer = 0
local overcharge = charged > due and charged - due or 0

if cause == "carrier" and overcharge > 0 then
  local amount = overcharge * 2
  components[#components + 1] = { type = "double_refund", amount_fen = amount,
    rule = "comp.billing.double_refund" }
  trace[#trace + 1] = { rule = "comp.billing.double_refund",
    basis = "carrier practice (published commitment, 双倍返还): overcharging caused by the "
      .. "carrier is refunded double, (charged - due) x 2" }
  offer = offer + amount
elseif overcharge > 0 then
  components[#components + 1] = { type = "overcharge_refund", amount_fen = overcharge,
    rule = "comp.billing.refund" }
  trace[#trace + 1] = { rule = "comp.billing.refund",
    basis = "Civil Code art. 985 (unjust enrichment): an amount charged but not due is "
      .. "returned; used when the carrier did not cause it, or when fraud damages apply instead "
      .. "of the double refund" }
  offer = offer + overcharge
end

local approval = APPROVAL[#APPROVAL]
for _, r in ipairs(APPROVAL) do
  local limit = limits[r.level]
  if limit == nil or offer <= limit then approval = r; break end
end
trace[#trace + 1] = { rule = approval.id, basis = approval.basis }

local beyond = claimed ~= nil and claimed > offer
if beyond then
  trace[#trace + 1] = { rule = "comp.claim.beyond_basis",
    basis = "practice (有根有据): pay only what a policy or a law gives a basis for; a demand "
      .. "beyond it is not granted, the substantive problem is solved" }
end

local reply = cjson.encode({
  result = { offer_fen = offer, components = components, cap_fen = CAP[grade],
             approval_level = approval.level, claim_beyond_basis = beyond },
  trace = trace,
})
if KEYS[1] then
  redis.call("XADD", KEYS[1], "MAXLEN", "~", "100000", "*",
             "charged_fen", ARGV[1], "due_fen", ARGV[2], "cause", cause,
             "customer_grade", grade, "claimed_fen", ARGV[5] or "", "decision", reply)
end
return reply
