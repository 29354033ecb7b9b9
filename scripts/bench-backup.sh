#!/usr/bin/env bash
# Backup and restore throughput of kstone next to `cp -a` and `tar czf` of the
# same database directory, in one run on one machine.
#
#   scripts/bench-backup.sh [ITEMS] [VALUE_BYTES]     (default: 1000000 × 1000 ≈ 1 GiB)
#
# KSTONE_BIN=path/to/kstone measures that binary instead of building this
# checkout's (to compare two builds in one session: run it once per binary).
# KSTONE_REPO_FORMAT=1 measures a format-1 repository (default: 2).
#
# Everything happens under a fresh temporary directory that is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
ITEMS=${1:-1000000}
VALUE=${2:-1000}
if [ -n "${KSTONE_BIN:-}" ]; then
  K=$(realpath "$KSTONE_BIN")
else
  cargo build --release -q -p kstone-cli
  K=$PWD/target/release/kstone
fi
W=$(mktemp -d "${TMPDIR:-/tmp}/kstone-bench-backup.XXXXXX")
trap 'rm -rf "$W"' EXIT

echo "creating a database of $ITEMS items × $VALUE bytes ..."
"$K" bench --num "$ITEMS" --value-size "$VALUE" --durability buffered --dir "$W" >/dev/null
DB="$W/bench-buffered.keystone"
# A database that has run a while has a compacted base per stripe; a fresh
# load's overlapping flushed tables are all rewritten by their first merge.
"$K" compact "$DB" >/dev/null
BYTES=$(du -sb "$DB" | cut -f1)
sync

secs() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc; }
row() { printf "%-28s %8.2f s %10.1f MiB/s\n" "$1" "$2" "$(echo "$BYTES / 1048576 / $2" | bc -l)"; }

echo "database: $(echo "$BYTES / 1048576" | bc) MiB in $(find "$DB" -type f | wc -l) files"
T_CP=$(secs cp -a "$DB" "$W/copy"); sync
T_TAR=$(secs tar czf "$W/copy.tar.gz" -C "$DB" .); sync
"$K" backup init --repo "$W/repo" --format "${KSTONE_REPO_FORMAT:-2}" >/dev/null
T_FULL=$(secs "$K" backup create "$DB" --repo "$W/repo" --type full); sync
# change 1% of the items, then an incremental backup
"$K" bench --num $((ITEMS / 100)) --value-size "$VALUE" --durability buffered --dir "$W/small" >/dev/null
"$K" export "$W/small/bench-buffered.keystone" -o "$W/changes.jsonl" 2>/dev/null
"$K" import "$DB" "$W/changes.jsonl" >/dev/null
T_INC=$(secs "$K" backup create "$DB" --repo "$W/repo" --type incremental); sync
# the same change once more, then a full compaction rewrites every table
"$K" import "$DB" "$W/changes.jsonl" >/dev/null
"$K" compact "$DB" >/dev/null
T_INC2=$(secs "$K" backup create "$DB" --repo "$W/repo" --type incremental); sync
T_RESTORE=$(secs "$K" restore --repo "$W/repo" --target "$W/restored.keystone" --yes); sync

echo
printf "%-28s %10s %16s\n" "operation" "time" "throughput"
row "cp -a" "$T_CP"
row "tar czf" "$T_TAR"
row "kstone backup (full)" "$T_FULL"
row "kstone backup (incremental)" "$T_INC"
row "kstone backup (after compact)" "$T_INC2"
row "kstone restore (verified)" "$T_RESTORE"
echo
"$K" backup list --repo "$W/repo"
echo "tar.gz size: $(du -b "$W/copy.tar.gz" | cut -f1) bytes"
STORED=$("$K" backup list --repo "$W/repo" --json | python3 -c 'import json,sys; print(" ".join(str(b["bytes_stored"]) for b in json.load(sys.stdin)))')
read -r S_FULL S_INC S_INC2 <<<"$STORED"
OBJS=$(find "$W/repo" -type f | wc -l)
REPO_BYTES=$(du -sb "$W/repo" | cut -f1)
printf "stored: full %d B, incremental after 1%% change %d B (%.1f%%), after 1%% change + full compaction %d B (%.1f%%)\n" \
  "$S_FULL" "$S_INC" "$(echo "100 * $S_INC / $S_FULL" | bc -l)" "$S_INC2" "$(echo "100 * $S_INC2 / $S_FULL" | bc -l)"
printf "repository: %d objects, %.1f objects per GiB stored\n" "$OBJS" "$(echo "$OBJS * 1073741824 / $REPO_BYTES" | bc -l)"
printf "ratios: full backup is %.2fx the speed of tar czf and %.2fx of cp -a; restore %.2fx of cp -a\n" \
  "$(echo "$T_TAR / $T_FULL" | bc -l)" "$(echo "$T_CP / $T_FULL" | bc -l)" "$(echo "$T_CP / $T_RESTORE" | bc -l)"
