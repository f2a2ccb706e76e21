#!/usr/bin/env bash
# Scoring over HTTP, back to back in one sitting: the seed-baseline service (its load.sh, one
# uvicorn worker with luminol, as the blog stack runs) and `vigil serve` on the same request
# bodies with the seed-baseline's post.lua (path changed to /v1/score), wrk at 64
# connections; also Vigil's /healthz. Prints requests/s, p99 and the ratios, and the vigil
# process's CPU time per request of each.
#
#   SEED=/path/to/seed-baseline-copy bench/http.sh
# SEED: a writable seed-baseline copy with .venv, results/data (make_data.py) and
# results/models (pipeline.py) in place. Needs wrk (apt-get install wrk).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
PORT=${PORT:-18090}
. bench/serving.sh
serving_setup http

echo "== seed-baseline service (1 worker, luminol on), $CONNS connections, ${DURATION}s"
( cd "$SEED" && WORKERS=1 LUMINOL_MODES=1 CONNS=$CONNS DURATION=$DURATION OUT="$work/seed" ./load.sh >/dev/null )
seed=$(tail -n 1 "$work/seed/summary.jsonl")
echo "$seed"

echo "== vigil: train on the same data, register, serve"
serving_start "$work/data" "$PORT" "$work/serve.log"
head -n 1 "$SEED/results/models/sample_requests.jsonl" | curl -sf -H 'content-type: application/json' --data-binary @- "127.0.0.1:$PORT/v1/score" >/dev/null
wrk -t1 -c"$CONNS" -d3s -s "$work/post.lua" "http://127.0.0.1:$PORT/v1/score" -- "$SEED/results/models/sample_requests.jsonl" >/dev/null
# CPU seconds (user + system) the vigil process has used: per request, it varies less than
# requests/s on a shared machine. The embedded PostgreSQL's own processes are not counted.
cpu() { awk '{print ($14 + $15) / '"$(getconf CLK_TCK)"'}' "/proc/$server/stat"; }
cpu0=$(cpu)
wrk -t1 -c"$CONNS" -d"${DURATION}s" -s "$work/post.lua" "http://127.0.0.1:$PORT/v1/score" -- "$SEED/results/models/sample_requests.jsonl" > "$work/score.txt"
cpu1=$(cpu)
wrk -t1 -c"$CONNS" -d"${DURATION}s" "http://127.0.0.1:$PORT/healthz" > "$work/health.txt"
cpu2=$(cpu)
vigil_score=$(sed -n 's/^RESULT //p' "$work/score.txt")
echo "$vigil_score"
health_rps=$(awk '/Requests\/sec/ {print $2}' "$work/health.txt")
health_requests=$(awk '/requests in/ {print $1}' "$work/health.txt")
echo "vigil /healthz: $health_rps requests/s"
python3 - "$seed" "$vigil_score" "$health_rps" "$health_requests" "$cpu0" "$cpu1" "$cpu2" <<'PY'
import json, sys
seed, vigil = json.loads(sys.argv[1]), json.loads(sys.argv[2])
health_rps, health_requests = float(sys.argv[3]), int(sys.argv[4])
cpu0, cpu1, cpu2 = map(float, sys.argv[5:8])
print(f"score requests/s: vigil {vigil['rps']:.0f} vs seed-baseline {seed['rps']:.1f} = {vigil['rps'] / seed['rps']:.0f}x")
print(f"p99: vigil {vigil['p99_ms']:.2f} ms vs seed-baseline {seed['p99_ms']:.1f} ms; non-2xx {vigil['non2xx']}, socket errors {vigil['socket_errors']}")
print(f"vigil score / healthz requests/s: {vigil['rps'] / health_rps:.2f}")
score_us = (cpu1 - cpu0) / vigil['requests'] * 1e6
health_us = (cpu2 - cpu1) / health_requests * 1e6
print(f"vigil CPU per request: score {score_us:.0f} us, healthz {health_us:.0f} us ({health_us / score_us:.2f})")
PY
