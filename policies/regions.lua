-- regions.lua - every region code this bundle accepts.
--
-- The 31 mainland provinces by their two-letter codes, and the cities that
-- ship a policy of their own or that back-office systems send.  A code in
-- this list with no directory under regions/ is decided by its parent's
-- files (GD-GZ by regions/GD, else national), kind by kind.
return {
  -- North
  "BJ", "TJ", "HE", "SX", "NM",
  -- North-east
  "LN", "JL", "HL",
  -- East
  "SH", "JS", "ZJ", "AH", "FJ", "JX", "SD",
  -- Centre and south
  "HA", "HB", "HN", "GD", "GX", "HI",
  -- South-west
  "CQ", "SC", "GZ", "YN", "XZ",
  -- North-west
  "SN", "GS", "QH", "NX", "XJ",
  -- Cities
  "GD-SZ", "GD-GZ",
}
