#!/usr/bin/env bash
# KeystoneDB side by side with the current releases of RocksDB (defaults and
# with a bloom filter), fjall, redb and sled: the same
# db_bench-style workloads, each in a fresh process, one run, one table of
# ratios. The peers live in bench/peers (its own Cargo workspace), so the
# default build and `.ci/run` never compile RocksDB; the first build here takes
# about 15 minutes on 2 cores (RocksDB is C++) and needs libclang (bindgen):
#   apt-get install -y libclang-dev
#
#   scripts/bench-peers.sh [kstone-peers options]    e.g. --num 1000000 --json out.json
#
# See docs/benchmarks.md for what each workload does and how to read the table.
set -euo pipefail
cd "$(dirname "$0")/../bench/peers"
cargo build --release -q
# CARGO_TARGET_DIR (e.g. one kept between checkouts) is honoured.
exec "${CARGO_TARGET_DIR:-target}/release/kstone-peers" "$@"
