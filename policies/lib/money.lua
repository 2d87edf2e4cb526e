-- lib/money.lua - amounts are integer fen (1 yuan = 100 fen), never floats.
--
-- Every helper takes and returns integers (math.type == "integer") and
-- raises a policy error if handed anything else, so a float can never reach
-- a result.  Fractions of a fen are rounded half up, once, where a rate
-- (percent, pro rata) is applied.

-- Read once, here: inside a decision every global access goes through the
-- sandbox's environment proxies.
local mtype, error, tostring = math.type, error, tostring

local M = {}

local function int(x, what)
  if mtype(x) ~= "integer" then
    error("money: " .. what .. " must be an integer number of fen, got " .. tostring(x), 3)
  end
  return x
end

-- n yuan in fen.
function M.yuan(n)
  return int(n, "yuan") * 100
end

-- amount * num / den, rounded half up to the fen (all >= 0, den > 0).
function M.mul_div(amount, num, den)
  int(amount, "amount"); int(num, "numerator"); int(den, "denominator")
  return (2 * amount * num + den) // (2 * den)
end

-- pct percent of amount, rounded half up.
function M.percent(amount, pct)
  int(amount, "amount"); int(pct, "numerator")
  return (2 * amount * pct + 100) // 200
end

-- ceil(a / b) for integers a >= 0, b > 0: "a started day counts whole".
function M.ceil_div(a, b)
  return -((-int(a, "dividend")) // int(b, "divisor"))
end

function M.min(a, b)
  int(a, "a"); int(b, "b")
  return a < b and a or b
end

function M.max(a, b)
  int(a, "a"); int(b, "b")
  return a > b and a or b
end

return M
