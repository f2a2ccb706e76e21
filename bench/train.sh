#!/usr/bin/env bash
# Offline training: the seed-baseline's pipeline.py (pandas + scikit-learn) against
# `vigil train --input` on the same files, back to back in one sitting; prints both totals,
# the speed ratio, peak memory and validation quality.
#
#   SEED=/path/to/seed-baseline-copy bench/train.sh
# SEED is a writable copy of ../shared/bench/seed-baseline with its .venv installed and
# results/data made by `make_data.py --assets 50 --days 14 --seed 42` (see its README).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${SEED:?set SEED to a writable seed-baseline copy with .venv and results/data}"
cargo build --release --quiet --bin vigil
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
( cd "$SEED" && /usr/bin/time -f '%M %e' -o "$out/baseline.time" \
    .venv/bin/python pipeline.py --data results/data --models "$out/models" > "$out/baseline.jsonl" )
/usr/bin/time -f '%M %e' -o "$out/vigil.time" target/release/vigil train \
    --input "$SEED/results/data/metrics.csv" --incidents "$SEED/results/data/incidents.csv" \
    -o "$out/bundle.json" > "$out/vigil.txt"
grep -E '"quality"|"summary"' "$out/baseline.jsonl"
grep -E '^(total|failure model|isolation forest|held-out|training \(sample\))' "$out/vigil.txt"
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
lines = [json.loads(l) for l in open(f"{out}/baseline.jsonl")]
base_total = next(l["total_seconds"] for l in lines if l.get("event") == "summary")
base_rss, base_wall = map(float, open(f"{out}/baseline.time").read().split())
vig_rss, vig_wall = map(float, open(f"{out}/vigil.time").read().split())
print(f"baseline pipeline.py: {base_total:.2f} s in its stages ({base_wall:.2f} s wall), peak RSS {base_rss / 1024:.0f} MB")
print(f"vigil train:          {vig_wall:.2f} s wall, peak RSS {vig_rss / 1024:.0f} MB")
print(f"speed-up (baseline stages / vigil wall): {base_total / vig_wall:.1f}x")
PY
