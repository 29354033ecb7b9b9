#!/usr/bin/env bash
# Two engines of the peer harness against each other on one workload, in
# alternating pairs (which one runs first alternates too): medians of ops/s
# and B/A. One row of the side-by-side table is one run of each engine,
# within the noise of this shared machine; pairs settle a row near 1.0×.
# Read workloads (readrandom, readmissing, scan) read a copy of one
# `fillrandom` database per engine, made once. Uses the harness as
# scripts/bench-peers.sh builds it (all engines).
#
#   scripts/bench-peers-vs.sh ENGINE_A ENGINE_B PAIRS WORKLOAD NUM VALUE_BYTES [random|padded]
#   e.g. scripts/bench-peers-vs.sh redb kstone 6 readrandom 1000000 100 random
set -euo pipefail
if [ $# -lt 6 ]; then
  sed -n '2,11p' "$0" >&2
  exit 2
fi
EA=$1 EB=$2 PAIRS=$3 WL=$4 NUM=$5 VAL=$6 KEYS=${7:-random}
BIN="${CARGO_TARGET_DIR:-$(dirname "$0")/../bench/peers/target}/release/kstone-peers"
[ -x "$BIN" ] || { echo "build the harness first: scripts/bench-peers.sh --help" >&2; exit 2; }
W=$(mktemp -d "${TMPDIR:-/tmp}/kstone-peers-vs.XXXXXX")
trap 'rm -rf "$W"' EXIT
child() { # ENGINE WORKLOAD DIR
  "$BIN" --child "$1" "$2" "$3" "$NUM" 33554432 "$KEYS" "$VAL"
}
case $WL in
  readrandom | readmissing | scan)
    for e in "$EA" "$EB"; do child "$e" fillrandom "$W/filled-$e" >/dev/null; done ;;
esac
run() { # ENGINE
  rm -rf "$W/run"
  if [ -d "$W/filled-$1" ]; then cp -a "$W/filled-$1" "$W/run"; fi
  child "$1" "$WL" "$W/run" | python3 -c 'import json,sys; print(int(json.load(sys.stdin)["ops_per_sec"]))'
}
measure() { # a|b
  if [ "$1" = a ]; then run "$EA"; else run "$EB"; fi
}
# shellcheck source=lib/pairs.sh
. "$(dirname "$0")/lib/pairs.sh"
pairs "$PAIRS" "$EA" "$EB" "$WL $NUM x $VAL B, $KEYS keys"
