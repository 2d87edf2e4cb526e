-- regions/BJ/compensation.lua - Beijing: a different delay compensation
-- schedule (late repair and late installation amounts), and room for more
-- goodwill, bounded by a higher retail cap.  Refunds and amounts set by law
-- are the national ones; the delay promises are owed in full, whatever the
-- cap (the cap bounds goodwill only).
--
-- The amounts are an example branch schedule: replace them with the
-- branch's published commitments.
local R = require("lib.rules")

return R.extend(parent(), {
  params = { cap_fen = { retail = 50000 } },
  replace = {
    ["comp.repair.late"] = {
      id = "bj.comp.repair.late",
      basis = "Beijing branch schedule (published, configurable): late repair 20 yuan per "
        .. "overdue day, a started day counts whole, at most 200 yuan",
      per_day_fen = 2000, max_fen = 20000,
    },
    ["comp.install.late"] = {
      id = "bj.comp.install.late",
      basis = "Beijing branch schedule (published, configurable): late installation 50 yuan, "
        .. "once",
      amount_fen = 5000,
    },
    ["comp.goodwill"] = {
      id = "bj.comp.goodwill",
      basis = "Beijing branch practice (configurable): goodwill payments at most 800 yuan, "
        .. "within the grade's cap (params.cap_fen)",
      max_fen = 80000,
    },
  },
})
