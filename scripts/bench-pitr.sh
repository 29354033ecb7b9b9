#!/usr/bin/env bash
# Point-in-time restore replay rate: a small full backup, then ITEMS writes
# archived by `wal-archive`, then `kstone restore --to-latest`, which
# materializes the backup, replays every archived write and verifies the
# result. The rate is ITEMS / the restore's wall time (restore and
# verification included, as an operator waits for them).
#
#   scripts/bench-pitr.sh [ITEMS] [VALUE_BYTES]     (default: 1000000 × 100)
#
# KSTONE_BIN=path/to/kstone measures that binary instead of building this
# checkout's. Everything happens under a fresh temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
ITEMS=${1:-1000000}
VALUE=${2:-100}
if [ -n "${KSTONE_BIN:-}" ]; then
  K=$(realpath "$KSTONE_BIN")
else
  cargo build --release -q -p kstone-cli
  K=$PWD/target/release/kstone
fi
W=$(mktemp -d "${TMPDIR:-/tmp}/kstone-bench-pitr.XXXXXX")
trap 'rm -rf "$W"' EXIT

DB="$W/app.keystone"
REPO="$W/repo"
"$K" create "$DB" >/dev/null
"$K" wal-archive "$DB" --repo "$REPO" --once >/dev/null
"$K" put "$DB" base '{"v":"first"}' >/dev/null 2>&1
"$K" backup create "$DB" --repo "$REPO" --type full >/dev/null 2>&1
echo "writing $ITEMS items × $VALUE bytes (zero-padded ids) after the backup ..."
python3 - "$ITEMS" "$VALUE" >"$W/items.jsonl" <<'EOF'
import sys
n, size = int(sys.argv[1]), int(sys.argv[2])
v = ("x" * size)
out = sys.stdout
for i in range(n):
    out.write('{"pk":{"S":"user#%010d"},"item":{"v":{"S":"%s"}}}\n' % (i, v))
EOF
"$K" import "$DB" "$W/items.jsonl" >/dev/null
"$K" wal-archive "$DB" --repo "$REPO" --once >/dev/null
sync

s=$(date +%s.%N)
"$K" restore --repo "$REPO" --to-latest --target "$W/restored" -y >"$W/restore.out" 2>&1
e=$(date +%s.%N)
SECS=$(echo "$e - $s" | bc)
ITEMS_OUT=$("$K" stats "$W/restored" 2>/dev/null | grep -m1 -i "items" || true)
printf "PITR replay: %d writes in %.2f s = %.0f writes/s (restore + replay + verification)\n" \
  "$ITEMS" "$SECS" "$(echo "$ITEMS / $SECS" | bc -l)"
echo "restored database: $ITEMS_OUT"
tail -n 3 "$W/restore.out"
