#!/usr/bin/env bash
# Two builds of the peer harness's KeystoneDB column against each other, in
# alternating pairs (which one runs first alternates too): medians of
# ops/s of `kstone-peers --child kstone WORKLOAD`, for engine changes on this
# shared machine, where one run of each is within the noise. Build each
# harness with `cd bench/peers && cargo build --release --no-default-features`
# (KeystoneDB alone, no peers compiled) and copy the binary aside. Read
# workloads (readrandom, readmissing, scan) read a copy of one `fillrandom`
# database, made once by the BEFORE build.
#
#   scripts/bench-peers-ab.sh BEFORE_BIN AFTER_BIN PAIRS WORKLOAD NUM VALUE_BYTES [random|padded]
set -euo pipefail
if [ $# -lt 6 ]; then
  sed -n '2,11p' "$0" >&2
  exit 2
fi
A=$(realpath "$1")
B=$(realpath "$2")
PAIRS=$3 WL=$4 NUM=$5 VAL=$6 KEYS=${7:-random}
W=$(mktemp -d "${TMPDIR:-/tmp}/kstone-peers-ab.XXXXXX")
trap 'rm -rf "$W"' EXIT
case $WL in
  readrandom | readmissing | scan)
    "$A" --child kstone fillrandom "$W/filled" "$NUM" 33554432 "$KEYS" "$VAL" >/dev/null ;;
esac
run() { # BIN N
  if [ -d "$W/filled" ]; then rm -rf "$W/db$2"; cp -a "$W/filled" "$W/db$2"; fi
  "$1" --child kstone "$WL" "$W/db$2" "$NUM" 33554432 "$KEYS" "$VAL" |
    python3 -c 'import json,sys; print(int(json.load(sys.stdin)["ops_per_sec"]))'
  rm -rf "$W/db$2"
}
measure() { # a|b
  if [ "$1" = a ]; then run "$A" "a$RANDOM"; else run "$B" "b$RANDOM"; fi
}
# shellcheck source=lib/pairs.sh
. "$(dirname "$0")/lib/pairs.sh"
pairs "$PAIRS" before after "$WL $NUM x $VAL B, $KEYS keys"
