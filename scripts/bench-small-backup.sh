#!/usr/bin/env bash
# Per-backup fixed cost: a full backup of a small (~30 MB) database next to
# `tar czf` + `sha256sum` of the same directory, each timed RUNS times (the
# median is reported), a full backup into a fresh local repository every
# run; then an incremental after a small change, also RUNS times.
#
#   scripts/bench-small-backup.sh [ITEMS] [VALUE_BYTES] [RUNS]   (default: 30000 × 1000, 5 runs)
#
# KSTONE_BIN=path/to/kstone measures that binary instead of building this
# checkout's (to compare two builds in one session: run it once per binary,
# alternating). Everything happens under a fresh temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
ITEMS=${1:-30000}
VALUE=${2:-1000}
RUNS=${3:-5}
if [ -n "${KSTONE_BIN:-}" ]; then
  K=$(realpath "$KSTONE_BIN")
else
  cargo build --release -q -p kstone-cli
  K=$PWD/target/release/kstone
fi
W=$(mktemp -d "${TMPDIR:-/tmp}/kstone-bench-small.XXXXXX")
trap 'rm -rf "$W"' EXIT

"$K" bench --num "$ITEMS" --value-size "$VALUE" --durability buffered --dir "$W" >/dev/null
DB="$W/bench-buffered.keystone"
"$K" flush "$DB" >/dev/null
# The small change for the incrementals: 1% of the items, left in the WAL.
"$K" bench --num $((ITEMS / 100)) --value-size "$VALUE" --durability buffered --dir "$W/small" >/dev/null
"$K" export "$W/small/bench-buffered.keystone" -o "$W/changes.jsonl" 2>/dev/null
BYTES=$(du -sb "$DB" | cut -f1)
sync

secs() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc; }
median() { printf "%s\n" "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
tar_sha() { tar czf "$W/copy.tar.gz" -C "$DB" . && sha256sum "$W/copy.tar.gz"; }

T_TAR=() T_FULL=() T_INC=()
for r in $(seq "$RUNS"); do
  rm -f "$W/copy.tar.gz"; sync
  T_TAR+=("$(secs tar_sha)")
  rm -rf "$W/repo"; sync
  T_FULL+=("$(secs "$K" backup create "$DB" --repo "$W/repo" --type full)")
done
# Incrementals: each after importing the same small change again (new
# writes in the WAL), on top of the last full backup.
for r in $(seq "$RUNS"); do
  "$K" import "$DB" "$W/changes.jsonl" >/dev/null; sync
  T_INC+=("$(secs "$K" backup create "$DB" --repo "$W/repo" --type incremental)")
done
TAR=$(median "${T_TAR[@]}")
FULL=$(median "${T_FULL[@]}")
INC=$(median "${T_INC[@]}")

echo "database: $(echo "$BYTES / 1048576" | bc) MiB in $(find "$DB" -type f | wc -l) files; binary $K"
printf "%-36s %8.3f s   (runs: %s)\n" "tar czf + sha256sum" "$TAR" "${T_TAR[*]}"
printf "%-36s %8.3f s   (runs: %s)\n" "kstone backup create --type full" "$FULL" "${T_FULL[*]}"
printf "%-36s %8.3f s   (runs: %s)\n" "kstone backup create (incremental)" "$INC" "${T_INC[*]}"
printf "ratio full / (tar+sha256sum): %.3f   incremental / (tar+sha256sum): %.3f\n" \
  "$(echo "$FULL / $TAR" | bc -l)" "$(echo "$INC / $TAR" | bc -l)"
