#!/usr/bin/env bash
# In-process scoring latency: trains a bundle on the seed-baseline data with
# `vigil train --input`, then times `Bundle::score` (features, isolation forest, calibrated
# failure model, diagnosis, time to failure, explanation) call by call over the
# seed-baseline's request bodies (8 metrics x 60 points); prints p50, p99 and max in
# microseconds against the issue's p99 budget of 20 us.
#
#   SEED=/path/to/seed-baseline-copy bench/score.sh
# SEED is a seed-baseline copy with results/data made by
# `make_data.py --assets 50 --days 14 --seed 42` (see its README).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${SEED:?set SEED to a seed-baseline copy with results/data}"
cargo build --release --quiet --bin vigil --example score_bench
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
target/release/vigil train --input "$SEED/results/data/metrics.csv" \
  --incidents "$SEED/results/data/incidents.csv" -o "$out/bundle.json" >/dev/null
result=$(target/release/examples/score_bench "$out/bundle.json" "$SEED/sample_requests.jsonl")
echo "$result"
python3 - "$result" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print(f"p99 {r['p99_us']:.1f} us against a budget of 20 us: {20 / r['p99_us']:.1f}x headroom")
PY
