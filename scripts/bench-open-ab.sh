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
measure() { # a|b
  if [ "$1" = a ]; then open_secs "$A"; else open_secs "$B"; fi
}
# shellcheck source=lib/pairs.sh
. "$(dirname "$0")/lib/pairs.sh"
pairs "$PAIRS" before after "open_secs after fillwal $NUM x $VAL B, $KEYS keys"
