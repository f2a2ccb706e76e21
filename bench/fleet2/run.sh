#!/usr/bin/env bash
# Vigil against the reference of #27 on the second fleet generator (bench/fleet2/generate.py),
# through the product path: `vigil import` of the training period's samples and incidents,
# asset classes set over the API, `vigil train` from the database, the test period's samples
# streamed in through `POST /v1/samples` in 5-minute batches at 1000x real time (scored on
# ingest), then every test window through `POST /v1/score/batch` (each dated, so each is
# compared with the asset's stored past); the reference (evaluate.py) is fitted on the same
# training period and scored on the same windows. Prints one JSON line per method (reference, vigil: the
# batch route, vigil_on_ingest: the scores stored on ingest, vigil_alerts: the alerts they
# opened) and seed.
#
#   PY=/path/to/python SEEDS="2 3" bench/fleet2/run.sh
# PY needs numpy, pandas and scikit-learn (the seed-baseline's .venv has them). Seed 1 is
# the one to tune on; report the others. BASE_URL is a PostgreSQL server where a scratch
# database may be created (default postgres://postgres@127.0.0.1:5432).
#
#   PY=... SOURCE=azure bench/fleet2/run.sh
# runs the same protocol on the Azure predictive-maintenance subset instead (bench/fleet2/
# azure.py; hourly grid, windows of 24 hours, a failure within a day; the last 27 of its 90
# days are the test period; nothing tuned on it).
#
#   PY=... BATCH_ONLY=1 VIGIL=/path/to/a/vigil SEEDS="1 4 5 6" bench/fleet2/run.sh
# BATCH_ONLY=1 imports the test period with `vigil import` instead of streaming it (so about
# 75 s a seed instead of 8 min): the batch route's figures are the same, nothing is scored on
# ingest and no alert is opened. VIGIL runs that binary instead of building this checkout's,
# so that two builds can be compared in one sitting.
#
#   PY=... BATCH_ONLY=1 TRAIN_SEEDS="0 1 2" SEEDS="1 4 5 6" bench/fleet2/run.sh
# TRAIN_SEEDS trains and scores each data seed once per training seed
# (`VIGIL_TRAINING__SEED`: the negatives drawn, the trees' row samples): that seed alone moves
# a seed's AUC by up to 0.06 and its AP by up to 0.03, as much as the changes being judged.
# Each line then carries `train_seed`, and a last line per method gives the mean and median
# over all runs (`"summary": true`). CLASSES=0 leaves the assets without a class, so that
# `vigil train` fits no per-class model. DUMP_SCORES=<dir> saves each run's batch-route
# probabilities of the test windows, with their labels, assets and whether the failure after
# them has a precursor, as <dir>/fleet-<seed>-<training seed>.npz, to study offline.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${PY:?set PY to a python with numpy, pandas and scikit-learn}"
SEEDS=${SEEDS:-"2 3"}
BASE_URL=${BASE_URL:-postgres://postgres@127.0.0.1:5432}
ASSETS=${ASSETS:-40}
DAYS=${DAYS:-10}
SOURCE=${SOURCE:-fleet2}
TRAIN_SEEDS=${TRAIN_SEEDS:-0}
export VIGIL_TRAINING__HISTORY_DAYS=120
TEST_DAYS=3 GRID=() STREAM=(--batch-minutes 5 --speed 1000)
if [ "$SOURCE" = azure ]; then
    SEEDS=azure TEST_DAYS=27
    GRID=(--step 3600 --window 24 --max-fill 2 --horizon 86400 --stride 1)
    STREAM=(--batch-minutes 60 --speed 50000)
    export VIGIL_TRAINING__STEP_SECS=3600 VIGIL_TRAINING__WINDOW=24 VIGIL_TRAINING__MAX_FILL=2 \
        VIGIL_TRAINING__HORIZON_SECS=86400 VIGIL_TRAINING__TTF_CAP_SECS=604800
fi
BATCH_ONLY=${BATCH_ONLY:-0}
if [ -z "${VIGIL:-}" ]; then
    cargo build --release --quiet --bin vigil
fi
vigil=${VIGIL:-$PWD/target/release/vigil}
work=$(mktemp -d)
server=
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for seed in $SEEDS; do
    data=$work/fleet-$seed
    db=vigil_fleet2_${seed}_$$
    if [ "$SOURCE" = azure ]; then
        "$PY" bench/fleet2/azure.py --src ../shared/datasets/azure_pdm/subset_20machines_90days --out "$data"
    else
        "$PY" bench/fleet2/generate.py --seed "$seed" --assets "$ASSETS" --days "$DAYS" --out "$data"
    fi
    "$PY" bench/fleet2/evaluate.py split --data "$data" --test-days "$TEST_DAYS" >&2
    for train_seed in $TRAIN_SEEDS; do
        export VIGIL_TRAINING__SEED=$train_seed
        dir=$work/dir-$seed-$train_seed
        psql -q "$BASE_URL/postgres" -c "create database $db" >/dev/null
        export DATABASE_URL=$BASE_URL/$db
        port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
        VIGIL_TRAINING__SCHEDULE="" "$vigil" serve --listen "127.0.0.1:$port" --data-dir "$dir" \
            > "$work/serve-$seed-$train_seed.log" 2>&1 &
        server=$!
        until curl -fs "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.5; done
        "$vigil" import --data-dir "$dir" "$data/train_metrics.csv" --incidents "$data/train_incidents.csv" >&2
        if [ "${CLASSES:-1}" = 1 ]; then
            tail -n +2 "$data/assets.csv" | while IFS=, read -r asset class; do
                curl -fs -X PUT -H 'content-type: application/json' -d "{\"class\": \"$class\"}" \
                    "http://127.0.0.1:$port/v1/assets/$asset" >/dev/null
            done
        fi
        "$vigil" train --data-dir "$dir" >&2
        if [ "$BATCH_ONLY" = 1 ]; then
            "$vigil" import --data-dir "$dir" "$data/test_metrics.csv" >&2
            INGESTED=()
        else
            # The test period arrives as collectors would send it (5-minute batches), scored on
            # ingest; those scores are kept apart before the batch scoring stores its own.
            "$PY" bench/fleet2/evaluate.py stream --data "$data" --url "http://127.0.0.1:$port" "${STREAM[@]}"
            psql -At -F, "$DATABASE_URL" -c "select a.name, extract(epoch from s.window_end)::bigint,
                s.probability, s.threshold from score s join asset a using (asset_id)
                where s.probability is not null" > "$work/ingest-$seed-$train_seed.csv"
            # The alerts those scores opened (after `scoring.fire_windows` in a row), dated by the
            # windows that opened and cleared them.
            psql -At -F, "$DATABASE_URL" -c "select a.name, extract(epoch from al.opened_at)::bigint,
                extract(epoch from al.cleared_at)::bigint
                from alert al join asset a on a.asset_id = al.asset_id" > "$work/alerts-$seed-$train_seed.csv"
            INGESTED=(--ingest-scores "$work/ingest-$seed-$train_seed.csv" --ingest-alerts "$work/alerts-$seed-$train_seed.csv")
        fi
        "$PY" bench/fleet2/evaluate.py score --data "$data" --url "http://127.0.0.1:$port" \
            --test-days "$TEST_DAYS" "${GRID[@]}" "${INGESTED[@]}" \
            | sed "s/^{/{\"seed\": \"$seed\", \"train_seed\": $train_seed, /" | tee -a "$work/results.jsonl"
        kill "$server"; wait "$server" 2>/dev/null || true; server=
        psql -q "$BASE_URL/postgres" -c "drop database $db" >/dev/null
    done
done
"$PY" - "$work/results.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
for method in ("reference", "vigil", "vigil_on_ingest"):
    runs = [r for r in rows if r.get("method") == method]
    if len(runs) < 2:
        continue
    out = {"summary": True, "method": method, "runs": len(runs)}
    for key in ("auc", "ap"):
        values = [r[key] for r in runs]
        out[f"{key}_mean"] = round(statistics.mean(values), 4)
        out[f"{key}_median"] = round(statistics.median(values), 4)
    print(json.dumps(out))
PY
