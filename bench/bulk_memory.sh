#!/usr/bin/env bash
# Worst-case memory of bulk requests: `vigil serve` on a fresh embedded default, then, for
# each body shape below, COPIES (default max_bulk_requests + 2) posted at once while the
# process's RSS is sampled every 100 ms. Prints, per shape, the answers and the peak RSS
# above the idle process, and that peak divided by the bulk turns (http.max_bulk_requests)
# used: the worst case of one bulk request.
#
#   bench/bulk_memory.sh            # needs python3, curl
#
# Shapes, each at most http.body_limit_bytes (64 MiB):
#   rows        1.4M row items {"asset","metric","ts","value"}: parsed, then 413 (over 1M)
#   zeros       32M timestamps `0,`: refused by the parse budget at 3M elements (413)
#   max_batch   1M samples as 1,000 series of 1,000: a legitimate batch, stored (200)
#   score       /v1/score/batch, 1,000 windows of 64 MiB of `0,` in all (422 or 200)
#   bomb        remote-write, 32 MiB of empty series in ~1.5 MiB of snappy (413)
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-18093}
TURNS=${TURNS:-4}
COPIES=${COPIES:-$((TURNS + 2))}
cargo build --release --quiet --bin vigil --example remote_write_bomb
work=$(mktemp -d /tmp/vigil-bulk-XXXX)
chmod 755 "$work"
server=""
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
unset DATABASE_URL
export VIGIL_DATA_DIR="$work/data" VIGIL_TRAINING__SCHEDULE="" VIGIL_HTTP__MAX_BULK_REQUESTS="$TURNS" \
  VIGIL_HTTP__REQUEST_TIMEOUT_SECS=120 VIGIL_HTTP__BULK_WAIT_SECS=120
start() {
  target/release/vigil serve --listen "127.0.0.1:$PORT" 2>>"$work/serve.log" &
  server=$!
  for _ in $(seq 300); do curl -sf "127.0.0.1:$PORT/readyz" >/dev/null && return; sleep 0.2; done
  echo "vigil did not become ready: $(tail -5 "$work/serve.log")" >&2; exit 1
}
stop() { kill "$server"; wait "$server" 2>/dev/null || true; server=""; }
rss() { awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$server/status"; }

python3 - "$work" <<'PY'
import json, os, sys
work = sys.argv[1]
limit = 64 * 1024 * 1024 - 1024
def write(name, parts):
    with open(os.path.join(work, name), "w") as f:
        f.write(parts)
row = '{"asset":"a","metric":"m","ts":1700000000,"value":0},'
n = (limit - 20) // len(row)
write("rows.json", '{"rows":[' + (row * n)[:-1] + "]}")
zeros = (limit - 80) // 2
write("zeros.json", '{"series":[{"asset":"a","metric":"m","timestamps":[' + ("0," * zeros)[:-1] + '],"values":[]}]}')
t0 = 1_700_000_000
series = []
for s in range(1000):
    ts = ",".join(str(t0 + 60 * i) for i in range(1000))
    vals = ",".join(f"{(i * 7 + s) % 100 / 10}" for i in range(1000))
    series.append(f'{{"asset":"asset-{s % 50}","metric":"m{s // 50}","timestamps":[{ts}],"values":[{vals}]}}')
write("max_batch.json", '{"series":[' + ",".join(series) + "]}")
per = (limit - 1000 * 60) // 1000 // 2
window = '{"asset":"a","window":{"cpu":[' + ("0," * per)[:-1] + "]}}"
write("score.json", '{"windows":[' + ",".join([window] * 1000) + "]}")
PY
target/release/examples/remote_write_bomb "$work/bomb.snappy" 2>/dev/null

post() { # shape path file content-type [encoding]
  local extra=()
  [ -n "${5:-}" ] && extra=(-H "content-encoding: $5")
  pids=()
  for i in $(seq "$COPIES"); do
    curl -sS -o /dev/null -w '%{http_code}\n' -m 300 -H 'Expect:' -H "content-type: $4" "${extra[@]}" \
      --data-binary @"$work/$3" "127.0.0.1:$PORT$2" > "$work/code.$i" 2>>"$work/curl.log" &
    pids+=($!)
  done
}
running() { for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && return 0; done; return 1; }
echo "$COPIES copies of each shape at once, $TURNS bulk turns; a fresh vigil process per shape"
printf '%-10s %8s %-22s %10s %16s %18s\n' shape body answers "idle RSS" "peak RSS - idle" "per bulk request"
for shape in "rows /v1/samples rows.json application/json" \
  "zeros /v1/samples zeros.json application/json" \
  "max_batch /v1/samples max_batch.json application/json" \
  "score /v1/score/batch score.json application/json" \
  "bomb /api/v1/write bomb.snappy application/x-protobuf snappy"; do
  set -- $shape
  start
  idle=$(rss)
  post "$@"
  peak=$idle
  while running; do
    r=$(rss); [ "$r" -gt "$peak" ] && peak=$r
    sleep 0.1
  done
  answers=$(sort "$work"/code.* | uniq -c | awk '{printf "%s x%s ", $2, $1}')
  size=$(du -m "$work/$3" | cut -f1)
  used=$((peak - idle))
  ready=$(curl -s -o /dev/null -w '%{http_code}' "127.0.0.1:$PORT/readyz")
  printf '%-10s %6s MB %-22s %7s MB %13s MB %15s MB   readyz %s\n' "$1" "$size" "$answers" "$idle" "$used" "$((used / TURNS))" "$ready"
  rm -f "$work"/code.*
  stop
done
[ -s "$work/curl.log" ] && { echo "client errors:"; sort "$work/curl.log" | uniq -c; }
