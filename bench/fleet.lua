-- wrk script: the seed-baseline's request bodies, each sent for a fleet of ASSETS assets
-- (its "asset" field rewritten to fleet-0 ... fleet-<ASSETS-1>, in turn), so that the score
-- table grows as it would for that fleet. bench/soak.sh uses it.
-- Usage: wrk ... -s bench/fleet.lua URL -- path/to/sample_requests.jsonl ASSETS
-- done() prints one line "RESULT {json}" as the seed-baseline's post.lua does.
local parts = {}
local n, i, k, assets = 0, 0, 0, 1000
local headers = { ["Content-Type"] = "application/json" }

function init(args)
  local path = args[1] or "results/models/sample_requests.jsonl"
  assets = tonumber(args[2] or "1000")
  for line in io.lines(path) do
    local a, b = line:find('"asset"%s*:%s*"[^"]*"')
    if a then
      n = n + 1
      parts[n] = { line:sub(1, a - 1) .. '"asset":"fleet-', '"' .. line:sub(b + 1) }
    end
  end
  if n == 0 then error("no request bodies with an asset in " .. path) end
end

function request()
  i = i % n + 1
  k = (k + 1) % assets
  return wrk.format("POST", nil, headers, parts[i][1] .. k .. parts[i][2])
end

function done(summary, latency, requests)
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    'RESULT {"requests":%d,"duration_s":%.3f,"rps":%.1f,"mean_ms":%.3f,"p50_ms":%.3f,"p90_ms":%.3f,' ..
    '"p99_ms":%.3f,"max_ms":%.3f,"non2xx":%d,"socket_errors":%d}\n',
    summary.requests, secs, summary.requests / secs, latency.mean / 1e3,
    latency:percentile(50) / 1e3, latency:percentile(90) / 1e3, latency:percentile(99) / 1e3,
    latency.max / 1e3, e.status, e.connect + e.read + e.write + e.timeout))
end
