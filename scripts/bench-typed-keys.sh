#!/usr/bin/env bash
# What typed keys cost: `kstone bench` (buffered, one writer) of
#   base  — a build from before typed keys (KSTONE_BASE), byte keys,
#   bytes — this build, byte keys (every write now checks the key schema),
#   typed — this build, S partition keys and N sort keys (keys built as an
#           application builds them; queries through a range within N),
# run in alternating rounds; prints medians and ratios against base.
#
#   KSTONE_BASE=/path/to/old/kstone scripts/bench-typed-keys.sh [NUM] [ROUNDS]
#       (default 1000000 items, 3 rounds)
#
# KSTONE_BIN=path runs another build as "this build".
set -euo pipefail
cd "$(dirname "$0")/.."
NUM=${1:-1000000}
ROUNDS=${2:-3}
if [ -z "${KSTONE_BASE:-}" ]; then
  echo "set KSTONE_BASE to a kstone built before typed keys (e.g. commit 0cc686c)" >&2
  exit 2
fi
if [ -z "${KSTONE_BIN:-}" ]; then cargo build --release -q -p kstone-cli; fi
K=${KSTONE_BIN:-$PWD/target/release/kstone}
W=$(mktemp -d "${TMPDIR:-/tmp}/kstone-bench-typed.XXXXXX")
trap 'rm -rf "$W"' EXIT
run() { # NAME BIN [ARGS...]
  local name=$1 bin=$2; shift 2
  rm -rf "$W/db"
  "$bin" bench --num "$NUM" --durability buffered --dir "$W/db" --json "$@" \
    | python3 -c 'import json,sys; r=json.load(sys.stdin)[0]; print(sys.argv[1], r["write_ops_per_sec"], r["read_ops_per_sec"], r["readmissing_ops_per_sec"], r["query_items_per_sec"], r["scan_items_per_sec"])' "$name" >> "$W/results"
}
for r in $(seq 1 "$ROUNDS"); do
  run base "$KSTONE_BASE"
  run bytes "$K"
  run typed "$K" --keys typed
  echo "round $r done" >&2
done
python3 - "$W/results" <<'PY'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    name, *vals = line.split()
    rows.setdefault(name, []).append([float(v) for v in vals])
cols = ["fill/s", "read/s", "readmissing/s", "query items/s", "scan items/s"]
med = {n: [statistics.median(v[i] for v in rs) for i in range(len(cols))] for n, rs in rows.items()}
print(f"{'median of ' + str(len(rows['base'])):<12}" + "".join(f"{c:>16}" for c in cols))
for n in ["base", "bytes", "typed"]:
    print(f"{n:<12}" + "".join(f"{v:>16,.0f}" for v in med[n]))
for n in ["bytes", "typed"]:
    print(f"{n + '/base':<12}" + "".join(f"{a / b:>16.2f}" for a, b in zip(med[n], med["base"])))
PY
