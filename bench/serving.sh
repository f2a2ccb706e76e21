# Shared by the benchmarks that run `vigil serve` on the seed-baseline's data (http.sh,
# score_storage.sh, soak.sh); source it after `cd` to the repository root.
#
# serving_setup NAME: checks SEED and wrk, builds the release binary, makes $work (removed on
#   exit, with the server), trains $work/bundle.json on the seed-baseline data and writes
#   $work/post.lua (the seed-baseline's wrk script, path /v1/score).
# serving_start DATA_DIR PORT LOG: registers the bundle in DATA_DIR's embedded cluster,
#   starts `vigil serve` on PORT (its pid in $server) and waits until it is ready.
# score_table DATA_DIR: prints "ROWS BYTES" of the scores in DATA_DIR's embedded cluster
#   (every day partition of `score` and `score_alerting`, with indexes and TOAST).

serving_setup() {
  : "${SEED:?set SEED to a writable seed-baseline copy with .venv, results/data and results/models}"
  command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 1; }
  cargo build --release --quiet --bin vigil
  work=$(mktemp -d "/tmp/vigil-$1-XXXX")
  chmod 755 "$work"
  server=""
  trap 'serving_cleanup' EXIT
  target/release/vigil train --input "$SEED/results/data/metrics.csv" \
    --incidents "$SEED/results/data/incidents.csv" -o "$work/bundle.json" >/dev/null
  sed 's#"/score"#"/v1/score"#' "$SEED/post.lua" > "$work/post.lua"
  unset DATABASE_URL
}

serving_cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; fi
  rm -rf "$work"
}

serving_start() {
  export VIGIL_DATA_DIR="$1" VIGIL_TRAINING__SCHEDULE=""
  target/release/vigil models register "$work/bundle.json" >/dev/null
  target/release/vigil serve --listen "127.0.0.1:$2" 2>"$3" &
  server=$!
  for _ in $(seq 100); do curl -sf "127.0.0.1:$2/readyz" >/dev/null && break; sleep 0.2; done
}

score_table() {
  psql -h "$1/pg" -p 5432 -U vigil -d vigil -Atc \
    "select (select count(*) from score) + (select count(*) from score_alerting), \
       (select coalesce(sum(pg_total_relation_size(inhrelid)), 0) from pg_inherits \
        where inhparent = 'score'::regclass) + pg_total_relation_size('score_alerting')" | tr '|' ' '
}
