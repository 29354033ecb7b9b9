#!/usr/bin/env bash
# Two builds of the peer harness's KeystoneDB column against each other on
# `open` after a crash: one `fillwal` directory (a large unflushed log, left
# by a process that exits without closing) is made once, then each pair
# opens a fresh copy of it with either build (`sync` before each open; which
# build goes first alternates). Prints the median `open_secs` of each and
# after/before (below 1 = the after build opens faster). Build the harness
# as for scripts/bench-peers-ab.sh.
#
#   scripts/bench-open-ab.sh BEFORE_BIN AFTER_BIN PAIRS NUM VALUE_BYTES [random|padded]
set -euo pipefail
if [ $# -lt 5 ]; then
  sed -n '2,10p' "$0" >&2
  exit 2
fi
A=$(realpath "$1")
B=$(realpath "$2")
PAIRS=$3 NUM=$4 VAL=$5 KEYS=${6:-random}
W=$(mktemp -d "${TMPDIR:-/tmp}/kstone-open-ab.XXXXXX")
trap 'rm -rf "$W"' EXIT
"$A" --child kstone fillwal "$W/src" "$NUM" 33554432 "$KEYS" "$VAL" >/dev/null
open_secs() { # BIN
  rm -rf "$W/run"
  cp -a "$W/src" "$W/run"
  sync
  "$1" --child kstone open "$W/run" "$NUM" 33554432 "$KEYS" "$VAL" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["open_secs"])'
}
for pair in $(seq 1 "$PAIRS"); do
  if [ $((pair % 2)) = 0 ]; then
    a=$(open_secs "$A"); b=$(open_secs "$B")
  else
    b=$(open_secs "$B"); a=$(open_secs "$A")
  fi
  echo "pair $pair: before $a after $b"
done | tee /dev/stderr | python3 -c '
import sys, statistics as st
a, b = [], []
for line in sys.stdin:
    w = line.split()
    a.append(float(w[3])); b.append(float(w[5]))
print(f"open after fillwal '"$NUM"' x '"$VAL"' B, '"$KEYS"' keys: before {st.median(a):.4f} s after {st.median(b):.4f} s after/before {st.median(b)/st.median(a):.2f}")'
