#!/usr/bin/env bash
# Ingestion benchmark: the same samples into the same empty table by (a) psql \copy,
# (b) vigil import, (c) POST /v1/samples, (d) Prometheus remote-write; prints samples/s and
# the ratio to psql \copy. Uses DATABASE_URL if set, else a private PostgreSQL cluster.
#
#   bench/ingest.sh                       # 4M samples
#   bench/ingest.sh --samples 8000000 --concurrency 8 --rw-batch 2000
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin vigil --example ingest_bench
exec target/release/examples/ingest_bench --vigil target/release/vigil "$@"
