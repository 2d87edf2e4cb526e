-- wrk_post.lua - wrk script for the HTTP rows of `make bench`: POSTs the
-- compensation request (bench/compensation.ndjson's line) to $WRK_PATH
-- (nginx + Lua's /decide, verdictd --http's /v1/decisions),
-- counts replies that are not 200 as errors, and prints latency
-- percentiles in one machine-readable line for scripts/bench.
wrk.method = "POST"
wrk.path = os.getenv("WRK_PATH") or "/decide"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"kind":"compensation","region":"national","at":"2026-11-23T10:00:00+08:00",'
  .. '"input":{"complaint_id":"C-2026-110002","category":"billing","customer_grade":"retail",'
  .. '"cause":"carrier","charged_fen":12800,"due_fen":8800,"claimed_fen":50000}}'

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format(
    "WRK_RESULT requests=%d seconds=%.3f rps=%.1f errors=%d p50_us=%d p99_us=%d p999_us=%d max_us=%d\n",
    summary.requests, secs, summary.requests / secs, errors,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max))
end
