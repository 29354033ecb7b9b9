#!/usr/bin/env bash
# Operators beside a live application, measured:
#  1. how long an application's open (+ one write + close: `kstone put`) takes
#     while a full backup of its closed database runs, against the same with
#     nothing running (the backup takes LOCK only to pin its snapshot);
#  2. tables per stripe, disk use and open time after a workload of
#     short-lived writer processes (N imports into a database), before and
#     after `kstone compact`.
#
#   scripts/bench-live.sh [ITEMS] [VALUE_BYTES] [IMPORTS]
#       (default: 1000000 × 1000 ≈ 1 GiB for the backup; 25 imports of 25,000
#        items into a 500,000-item database for the workload)
#
# KSTONE_BIN=path runs another build of `kstone` (e.g. an earlier commit's) instead.
# Everything happens under a fresh temporary directory removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
ITEMS=${1:-1000000}
VALUE=${2:-1000}
IMPORTS=${3:-25}
if [ -z "${KSTONE_BIN:-}" ]; then cargo build --release -q -p kstone-cli; fi
K=${KSTONE_BIN:-$PWD/target/release/kstone}
W=$(mktemp -d "${TMPDIR:-/tmp}/kstone-bench-live.XXXXXX")
trap 'rm -rf "$W"' EXIT
ms() { local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1 || return 1; e=$(date +%s%N); echo $(((e - s) / 1000000)); }
stats() { sort -n | awk '{a[NR]=$1} END {if (NR==0) {print "n=0"; exit} p=int(NR*0.9+0.5); if (p<1) p=1; printf "n=%d median=%d ms p90=%d ms max=%d ms\n", NR, a[int((NR+1)/2)], a[p], a[NR]}'; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "== 1. an application opening during a full backup of its closed database"
"$K" bench --num "$ITEMS" --value-size "$VALUE" --durability buffered --dir "$W" >/dev/null
DB="$W/bench-buffered.keystone"
"$K" flush "$DB" >/dev/null
echo "database: $(du -sm "$DB" | cut -f1) MiB"
sync
: >"$W/idle.ms"
for i in $(seq 1 15); do ms "$K" put "$DB" "app-idle-$i" '{"i": 1}' >>"$W/idle.ms"; sleep 0.1; done
ALONE=$(ms "$K" backup create "$DB" --repo "$W/repo0" --type full)
rm -rf "$W/repo0"
"$K" backup create "$DB" --repo "$W/repo" --type full --json >"$W/backup.json" 2>"$W/backup.err" &
BPID=$!
BSTART=$(date +%s%N)
: >"$W/during.ms"
: >"$W/lock.ms"
FAILED=0
i=0
while kill -0 "$BPID" 2>/dev/null; do
  i=$((i + 1))
  # How long the application waits for LOCK alone (flock(1) takes the same
  # flock the database does), then a whole application run.
  if t=$(ms flock -w 30 "$DB/LOCK" true); then
    kill -0 "$BPID" 2>/dev/null && echo "$t" >>"$W/lock.ms"
  fi
  if t=$(ms "$K" put "$DB" "app-during-$i" '{"i": 2}'); then
    # only count runs that began and ended while the backup ran
    kill -0 "$BPID" 2>/dev/null && echo "$t" >>"$W/during.ms"
  else
    FAILED=$((FAILED + 1))
  fi
  sleep 0.05
done
wait "$BPID"
BMS=$((($(date +%s%N) - BSTART) / 1000000))
IDLE=$(stats <"$W/idle.ms")
DURING=$(stats <"$W/during.ms")
echo "backup alone took ${ALONE} ms"
echo "backup beside the application took ${BMS} ms; snapshot lsn $(grep -o '"snapshot_lsn": *[0-9]*' "$W/backup.json" | grep -o '[0-9]*$')"
echo "app open+put+close, nothing running:   $IDLE"
echo "app open+put+close, during the backup: $DURING; refused: $FAILED"
echo "app's wait for LOCK, during the backup: $(stats <"$W/lock.ms")"
if [ -s "$W/during.ms" ]; then
  printf "ratio (median during / median idle): %.2fx\n" \
    "$(echo "$(median <"$W/during.ms") / $(median <"$W/idle.ms")" | bc -l)"
else
  echo "ratio: n/a (no open got in during the backup)"
fi
rm -rf "$DB" "$W/repo"

echo
echo "== 2. $IMPORTS short-lived importers into a 500,000-item database"
"$K" bench --num 500000 --value-size 100 --durability buffered --dir "$W/imp" >/dev/null
DB="$W/imp/bench-buffered.keystone"
"$K" flush "$DB" >/dev/null
PAD=$(head -c 100 /dev/zero | tr '\0' x)
for r in $(seq 1 "$IMPORTS"); do
  seq 1 25000 | awk -v r="$r" -v pad="$PAD" '{printf "{\"item\":{\"v\":{\"S\":\"%s\"}},\"pk\":{\"S\":\"imp-%d-%d\"}}\n", pad, r, $1}' >"$W/imp.jsonl"
  "$K" import "$DB" "$W/imp.jsonl" >/dev/null
done
show() {
  # Counted from the directory, so any build's database can be measured.
  find "$DB/sst" -name '*.sst' -printf '%f\n' | cut -c1-3 | sort | uniq -c |
    awk '{n++; t+=$1; if ($1>m) m=$1} END {printf "sst files %d, tables per stripe max %d mean %.1f\n", t, m, t/n}'
  echo "disk: $(du -sm "$DB" | cut -f1) MiB"
  : >"$W/open.ms"
  for i in $(seq 1 9); do ms "$K" put "$DB" "probe" '{"i": 3}' >>"$W/open.ms"; done
  echo "open+put+close: $(stats <"$W/open.ms")"
}
echo "-- after the imports"
show
"$K" compact "$DB" >/dev/null
echo "-- after kstone compact"
show
