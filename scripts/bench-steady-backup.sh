#!/usr/bin/env bash
# Steady state of a format-2 repository (issue #23): a database updated in
# rounds of 5% of its items, its engine compacting in the background as it
# does in production, an incremental backup after each round. Reports the
# total stored against (first full + the compressed size of the changed
# items), the issue's target being at most 1.5x.
#
#   scripts/bench-steady-backup.sh [ITEMS] [VALUE_BYTES] [ROUNDS]   (default 100000 1000 30)
#
# KSTONE_BIN=path/to/kstone measures that binary instead of building this
# checkout's. Everything happens under a temporary directory, removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
ITEMS=${1:-100000}
VALUE=${2:-1000}
ROUNDS=${3:-30}
if [ -n "${KSTONE_BIN:-}" ]; then
  K=$(realpath "$KSTONE_BIN")
else
  cargo build --release -q -p kstone-cli
  K=$PWD/target/release/kstone
fi
W=$(mktemp -d "${TMPDIR:-/tmp}/kstone-bench-steady.XXXXXX")
trap 'rm -rf "$W"' EXIT
DB="$W/app.keystone"
"$K" create "$DB" >/dev/null
# Items `user#<id>` with VALUE bytes of random base64-ish text (incompressible
# beyond its alphabet, as application data that is already compact).
gen() { # FIRST COUNT STEP SEED -> JSON lines of items FIRST, FIRST+STEP, ...
  python3 - "$@" <<'PY'
import sys, random, base64, json
first, count, step, seed = map(int, sys.argv[1:5])
value = int(sys.argv[5])
r = random.Random(seed)
out = sys.stdout
for n in range(count):
    i = (first + n * step) % int(sys.argv[6])
    v = base64.b64encode(r.randbytes(value * 3 // 4)).decode()[:value]
    out.write(json.dumps({"pk": {"S": f"user#{i:010d}"}, "item": {"v": {"S": v}}}) + "\n")
PY
}
gen 0 "$ITEMS" 1 0 "$VALUE" "$ITEMS" > "$W/load.jsonl"
"$K" import "$DB" "$W/load.jsonl" >/dev/null
"$K" compact "$DB" >/dev/null
"$K" backup init --repo "$W/repo" >/dev/null
FULL=$("$K" backup create "$DB" --repo "$W/repo" --type full --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes_stored"])')
CHANGED=$((ITEMS / 20))
TOTAL_INC=0
CHANGED_Z=0
for round in $(seq 1 "$ROUNDS"); do
  # 5% of the items, a different stride each round so changes spread.
  gen "$((round * 7919))" "$CHANGED" 20 "$round" "$VALUE" "$ITEMS" > "$W/round.jsonl"
  # Compressed size of the changed items' values (zlib -6, as a stand-in
  # for what any compressor would make of them).
  Z=$(python3 -c "import zlib,json,sys; print(len(zlib.compress(b''.join(json.loads(l)['item']['v']['S'].encode() for l in open(sys.argv[1])), 6)))" "$W/round.jsonl")
  CHANGED_Z=$((CHANGED_Z + Z))
  "$K" import "$DB" "$W/round.jsonl" >/dev/null
  S=$("$K" backup create "$DB" --repo "$W/repo" --type incremental --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes_stored"])')
  TOTAL_INC=$((TOTAL_INC + S))
  printf "round %2d: incremental stored %10d bytes (changed items, compressed: %d)\n" "$round" "$S" "$Z"
done
TOTAL=$((FULL + TOTAL_INC))
BOUND=$((FULL + CHANGED_Z))
echo "database: $ITEMS items x $VALUE B; $ROUNDS rounds of $CHANGED updates"
echo "full backup stored:           $FULL bytes"
echo "all incrementals stored:      $TOTAL_INC bytes"
echo "changed items, compressed:    $CHANGED_Z bytes"
printf "total stored %d = %.2fx (first full + compressed changed items = %d); target <= 1.5x\n" \
  "$TOTAL" "$(echo "$TOTAL / $BOUND" | bc -l)" "$BOUND"
echo "repository: $(du -sb "$W/repo" | cut -f1) bytes on disk, $(find "$W/repo" -type f | wc -l) objects"
