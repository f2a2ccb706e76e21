#!/usr/bin/env bash
# Scoring on ingest's capacity (#27): a fleet streamed live into `vigil serve` at a multiple
# of real time (`vigil simulate --live`, by default 40 assets at 20x: a simulated minute every
# 3 s), with a model trained on the same simulator's history. Counts the grid points that
# received samples during the stream and those scored on ingest, and prints the share left
# unscored, the skipped counter, and the server's CPU time per scored window.
#
#   bench/on_ingest.sh                      # ASSETS=40 MINUTE_MS=3000 HOURS=1 (3 min)
#
# BASE_URL is a PostgreSQL server where a scratch database may be created (default
# postgres://postgres@127.0.0.1:5432).
set -euo pipefail
cd "$(dirname "$0")/.."
BASE_URL=${BASE_URL:-postgres://postgres@127.0.0.1:5432}
ASSETS=${ASSETS:-40}
MINUTE_MS=${MINUTE_MS:-3000}
HOURS=${HOURS:-1}
cargo build --release --quiet --bin vigil
vigil=$PWD/target/release/vigil
work=$(mktemp -d)
db=vigil_on_ingest_$$
server=
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null || true
    psql -q "$BASE_URL/postgres" -c "drop database if exists $db" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
psql -q "$BASE_URL/postgres" -c "create database $db" >/dev/null
export DATABASE_URL=$BASE_URL/$db VIGIL_TRAINING__SCHEDULE=""
now=$(date +%s)
from=$(( (now / 60 - HOURS * 60 - 5) * 60 ))
"$vigil" simulate --assets "$ASSETS" --days 7 --end "$(( from - 60 ))" >&2
"$vigil" train >/dev/null
port=$(free_port)
"$vigil" serve --listen "127.0.0.1:$port" > "$work/serve.log" 2>&1 &
server=$!
until curl -fs "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.5; done
cpu_ticks() { awk '{print $14 + $15}' "/proc/$server/stat"; }
ticks_before=$(cpu_ticks)
"$vigil" simulate --live "http://127.0.0.1:$port" --assets "$ASSETS" --from "$from" \
    --live-hours "$HOURS" --minute-ms "$MINUTE_MS" --receiver "127.0.0.1:$(free_port)" \
    --wait-secs 5 > "$work/live.txt"
sleep 5
ticks=$(( $(cpu_ticks) - ticks_before ))
skipped=$(curl -fs "http://127.0.0.1:$port/metrics" \
    | awk '/^vigil_scoring_on_ingest_skipped_total /{print $2}')
read -r points scored < <(psql -At "$DATABASE_URL" -F ' ' -c "
    with received as (
        select distinct asset_id, date_trunc('minute', ts) as point from sample
        where ts >= to_timestamp($from)),
    scored as (
        select distinct asset_id, window_end from score where window_end >= to_timestamp($from)
        union
        select distinct asset_id, window_end from score_alerting
        where window_end >= to_timestamp($from))
    select (select count(*) from received),
        (select count(*) from received r join scored s
            on s.asset_id = r.asset_id and s.window_end = r.point)")
python3 - "$ASSETS" "$MINUTE_MS" "$points" "$scored" "${skipped:-0}" "$ticks" "$(getconf CLK_TCK)" <<'EOF'
import json, sys
assets, minute_ms, points, scored, skipped, ticks, hz = sys.argv[1:]
points, scored, ticks = int(points), int(scored), int(ticks)
print(json.dumps({
    "assets": int(assets), "speed": round(60000 / int(minute_ms), 1),
    "grid_points_received": points, "scored": scored,
    "unscored_share": round(1 - scored / max(points, 1), 4),
    "skipped_counter": float(skipped),
    "server_cpu_ms_per_scored_window": round(1000 * ticks / int(hz) / max(scored, 1), 2),
}))
EOF
