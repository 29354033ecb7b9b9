#!/usr/bin/env bash
# Two kstone builds against each other on write workloads, in alternating
# pairs (which one runs first alternates too), medians and per-pair ratios
# of `kstone bench` write ops/s. For engine changes on this shared machine,
# where one run of each is within the noise.
#
#   scripts/bench-ab.sh BEFORE_BIN AFTER_BIN [PAIRS]        (default 6 pairs)
#
# KSTONE_AB_CASES overrides the cases: ";"-separated "WORKLOAD NUM VALUE_BYTES".
set -euo pipefail
A=$(realpath "$1")
B=$(realpath "$2")
PAIRS=${3:-6}
CASES=${KSTONE_AB_CASES:-"batch 1000000 100;fillrandom 1000000 100;batch 200000 1024;fillrandom 200000 1024;fillseq 200000 1024"}
W=$(mktemp -d "${TMPDIR:-/tmp}/kstone-bench-ab.XXXXXX")
trap 'rm -rf "$W"' EXIT
run() { # BIN WORKLOAD NUM VALUE
  rm -rf "$W/db"
  mkdir "$W/db"
  "$1" bench --num "$3" --value-size "$4" --durability buffered --workload "$2" --dir "$W/db" --json 2>/dev/null |
    python3 -c 'import json,sys; print(int(json.load(sys.stdin)[0]["write_ops_per_sec"]))'
}
IFS=';' read -r -a cases <<<"$CASES"
for pair in $(seq 1 "$PAIRS"); do
  for c in "${cases[@]}"; do
    read -r wl num val <<<"$c"
    if [ $((pair % 2)) = 0 ]; then
      a=$(run "$A" "$wl" "$num" "$val"); b=$(run "$B" "$wl" "$num" "$val")
    else
      b=$(run "$B" "$wl" "$num" "$val"); a=$(run "$A" "$wl" "$num" "$val")
    fi
    echo "$wl $num $val $a $b" >>"$W/results"
    echo "pair $pair: $wl $num x $val B: before $a after $b" >&2
  done
done
python3 - "$W/results" <<'PY'
import sys, statistics, collections
rows = collections.OrderedDict()
for line in open(sys.argv[1]):
    wl, num, val, a, b = line.split()
    rows.setdefault(f"{wl} {num} x {val} B", ([], []))
    rows[f"{wl} {num} x {val} B"][0].append(int(a))
    rows[f"{wl} {num} x {val} B"][1].append(int(b))
print(f"{'case':28s} {'before (median)':>16s} {'after (median)':>15s} {'ratio':>6s}  per pair")
for k, (a, b) in rows.items():
    ma, mb = statistics.median(a), statistics.median(b)
    pairs = " ".join(f"{y / x:.2f}" for x, y in zip(a, b))
    print(f"{k:28s} {ma:16,.0f} {mb:15,.0f} {mb / ma:6.2f}  {pairs}")
PY
