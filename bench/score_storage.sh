#!/usr/bin/env bash
# Score-table growth under a scoring load: `vigil serve` on the embedded default with the
# seed-baseline's trained data, wrk posting the seed-baseline's request bodies to /v1/score at
# 64 connections, once with every score stored (scoring.every_score = true, the behaviour
# before the policy) and once with the default policy (one score per asset, grid step and
# alert state). Prints requests, score rows and bytes of the scores (every day partition
# and score_alerting, with indexes and TOAST), per request and per minute of load.
#
#   SEED=/path/to/seed-baseline-copy bench/score_storage.sh
# SEED: as for bench/http.sh. Needs wrk and psql.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-20}
CONNS=${CONNS:-64}
PORT=${PORT:-18091}
command -v psql >/dev/null || { echo "psql not found: apt-get install -y postgresql-client" >&2; exit 1; }
. bench/serving.sh
serving_setup storage
for every in true false; do
  export VIGIL_SCORING__EVERY_SCORE=$every
  serving_start "$work/data-$every" "$PORT" "$work/serve-$every.log"
  wrk -t1 -c"$CONNS" -d"${DURATION}s" -s "$work/post.lua" "http://127.0.0.1:$PORT/v1/score" -- "$SEED/results/models/sample_requests.jsonl" > "$work/wrk-$every.txt"
  sleep 2 # the writer flushes
  requests=$(sed -n 's/^RESULT //p' "$work/wrk-$every.txt" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])')
  read -r rows bytes < <(score_table "$work/data-$every")
  python3 - "$every" "$requests" "$rows" "$bytes" "$DURATION" <<'PY'
import sys
every, requests, rows, size, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
print(f"every_score={every}: {requests} requests, {rows} score rows, {size / 1e6:.1f} MB; "
      f"{size / requests:.1f} bytes per request, {size / secs * 60 / 1e6:.1f} MB per minute")
PY
  kill "$server"; wait "$server" 2>/dev/null || true; server=""
done
