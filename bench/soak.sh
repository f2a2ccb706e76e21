#!/usr/bin/env bash
# Soak and attacks against `vigil serve` on the embedded default, with the seed-baseline's
# trained data: (1) wrk posting /v1/score for DURATION seconds (the seed-baseline's bodies,
# each for ASSETS assets in turn: bench/fleet.lua) while the vigil process's RSS is sampled
# every 5 s; (2) HELD silent connections opened at once (the held-connection attack), then
# /readyz; (3) a remote-write bomb (32 MiB of empty series in ~1.5 MiB of snappy). Prints
# RSS over time, whether Vigil stayed ready, and the score table's growth per hour; (4)
# remote-write (examples/remote_write_load, retrying as Prometheus does) while the embedded
# PostgreSQL's postmaster is killed: samples acknowledged against samples stored.
#
#   SEED=/path/to/seed-baseline-copy bench/soak.sh
# SEED: as for bench/http.sh. Needs wrk, psql and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-120}
CONNS=${CONNS:-64}
HELD=${HELD:-3000}
ASSETS=${ASSETS:-1000}
PORT=${PORT:-18092}
. bench/serving.sh
serving_setup soak
serving_start "$work/data" "$PORT" "$work/serve.log"
rss() { awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$server/status"; }

echo "== 1. soak: POST /v1/score for ${DURATION}s at $CONNS connections for $ASSETS assets; vigil RSS (MB) every 5 s"
read -r rows0 bytes0 < <(score_table "$work/data")
wrk -t1 -c"$CONNS" -d"${DURATION}s" -s bench/fleet.lua "http://127.0.0.1:$PORT/v1/score" \
  -- "$SEED/results/models/sample_requests.jsonl" "$ASSETS" > "$work/wrk.txt" &
load=$!
samples=()
while kill -0 "$load" 2>/dev/null; do samples+=("$(rss)"); sleep 5; done
wait "$load"
echo "RSS: ${samples[*]}"
sed -n 's/^RESULT //p' "$work/wrk.txt"
python3 - "${samples[@]}" <<'PY'
import sys
rss = [float(x) for x in sys.argv[1:]]
warm = rss[len(rss) // 4:] or rss
print(f"after warm-up: min {min(warm):.0f} MB, max {max(warm):.0f} MB, spread {100 * (max(warm) - min(warm)) / min(warm):.0f}%")
PY
sleep 2 # the writer flushes
read -r rows1 bytes1 < <(score_table "$work/data")
python3 - "$rows0" "$bytes0" "$rows1" "$bytes1" "$DURATION" "$ASSETS" <<'PY'
import sys
r0, b0, r1, b1, secs, assets = (float(x) for x in sys.argv[1:])
rows, size = r1 - r0, b1 - b0
print(f"scores: {rows:.0f} rows, {size / 1e6:.1f} MB in {secs:.0f} s for {assets:.0f} assets: "
      f"{size / secs * 3600 / 1e6:.0f} MB per hour at this rate; the policy's bound is one row "
      f"per asset, 60 s grid step and alert state: {assets * 60:.0f} to {2 * assets * 60:.0f} rows an hour")
PY

echo "== 2. held-connection attack: $HELD silent connections"
python3 - "$PORT" "$HELD" <<'PY' &
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
held = []
for _ in range(n):
    try:
        held.append(socket.create_connection(("127.0.0.1", port), timeout=5))
    except OSError:
        break
print(f"opened {len(held)} connections", flush=True)
time.sleep(15)
PY
attack=$!
sleep 5
code=$(curl -s -o /dev/null -w '%{http_code}' -m 5 "127.0.0.1:$PORT/readyz" || true)
echo "readyz during the attack: $code; vigil RSS $(rss) MB"
wait "$attack" || true

echo "== 3. remote-write bomb: 32 MiB of empty series"
cargo run --quiet --release --example remote_write_bomb -- "$work/bomb.snappy"
if [ -s "$work/bomb.snappy" ]; then
  code=$(curl -s -o /dev/null -w '%{http_code}' -H 'content-type: application/x-protobuf' \
    -H 'content-encoding: snappy' --data-binary @"$work/bomb.snappy" "127.0.0.1:$PORT/api/v1/write")
  echo "bomb answered $code; vigil RSS $(rss) MB; readyz $(curl -s -o /dev/null -w '%{http_code}' "127.0.0.1:$PORT/readyz")"
fi

echo "== 4. remote-write while the embedded PostgreSQL is killed (kill -9 of its postmaster)"
cargo build --quiet --release --example remote_write_load
target/release/examples/remote_write_load "http://127.0.0.1:$PORT/api/v1/write" 40 1000 > "$work/rw.txt" &
load=$!
sleep 10
kill -9 "$(head -1 "$work/data/pg/postmaster.pid")"
echo "postmaster killed; vigil RSS $(rss) MB"
for _ in $(seq 60); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' -m 2 "127.0.0.1:$PORT/readyz")" = 200 ] && break
  sleep 1
done
echo "readyz again: $(curl -s -o /dev/null -w '%{http_code}' -m 2 "127.0.0.1:$PORT/readyz")"
wait "$load"
read -r _ acknowledged _ requests _ retried _ refused < "$work/rw.txt"
stored=$(psql -h "$work/data/pg" -p 5432 -U vigil -d vigil -Atc \
  "select count(*) from sample s join asset a using (asset_id) where a.name = 'rw-load'")
echo "remote-write: $requests requests ($retried resent after a 5xx or a lost connection, $refused refused); $acknowledged samples acknowledged, $stored stored; vigil RSS $(rss) MB"
