#!/usr/bin/env bash
# Isolation forest: Vigil's against scikit-learn's on the same windows of the seed-baseline
# data (same n_estimators = 100, max_samples = 256), in one run; prints both JSON lines and
# the speed ratio and ROC AUC difference.
#
#   DATA=../shared/bench/seed-baseline/results/data PYTHON=/path/to/seed-venv/bin/python \
#     bench/isolation_forest.sh
# DATA holds metrics.csv and incidents.csv from the seed-baseline's make_data.py; PYTHON is a
# Python with numpy and scikit-learn (the seed-baseline's .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${DATA:?set DATA to the folder with metrics.csv and incidents.csv}"
: "${PYTHON:?set PYTHON to a Python with numpy and scikit-learn}"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cargo build --release --quiet --example if_bench
vigil=$(target/release/examples/if_bench --input "$DATA/metrics.csv" --incidents "$DATA/incidents.csv" --out "$out")
sklearn=$("$PYTHON" bench/isolation_forest.py "$out")
echo "$vigil"
echo "$sklearn"
"$PYTHON" - "$vigil" "$sklearn" <<'PY'
import json, sys
v, s = json.loads(sys.argv[1]), json.loads(sys.argv[2])
tv, ts = v["fit_secs"] + v["score_secs"], s["fit_secs"] + s["score_secs"]
print(f"fit+score: vigil {tv:.3f} s, scikit-learn {ts:.3f} s, speed-up {ts / tv:.1f}x")
print(f"ROC AUC: vigil {v['roc_auc']:.4f}, scikit-learn {s['roc_auc']:.4f}, difference {v['roc_auc'] - s['roc_auc']:+.4f}")
PY
