#!/usr/bin/env bash
# Backup and restore throughput to a local directory and to an S3-compatible
# server on loopback (moto, installed into .venv-s3 like .ci/run does), each
# with and without age encryption, in one run on one machine.
#
#   scripts/bench-offsite.sh [ITEMS] [VALUE_BYTES]    (default: 200000 × 1000 ≈ 200 MiB)
#
# moto is a Python server that keeps objects in memory: the S3 numbers are
# what this loopback server sustains, not what a real object store would.
# So the run also measures the server's own ceiling with a plain client
# (curl, 4 at a time, as many 32 MiB objects as the database has bytes:
# kstone's pack size and default parallelism) and reports kstone against it.
set -euo pipefail
cd "$(dirname "$0")/.."
ITEMS=${1:-200000}
VALUE=${2:-1000}
cargo build --release -q -p kstone-cli
K=$PWD/target/release/kstone
W=$(mktemp -d "${TMPDIR:-/tmp}/kstone-bench-offsite.XXXXXX")
if [ ! -x .venv-s3/bin/moto_server ]; then
  python3 -m venv .venv-s3
  .venv-s3/bin/pip install -q 'moto[s3]==5.2.5' flask flask-cors
fi
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
.venv-s3/bin/moto_server -H 127.0.0.1 -p "$PORT" >"$W/moto.log" 2>&1 &
MOTO=$!
trap 'kill $MOTO 2>/dev/null; rm -rf "$W"' EXIT
until (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; do sleep 0.2; done
curl -s -X PUT "http://127.0.0.1:$PORT/bench" >/dev/null
export AWS_ENDPOINT_URL="http://127.0.0.1:$PORT" AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1

echo "creating a database of $ITEMS items × $VALUE bytes ..."
"$K" bench --num "$ITEMS" --value-size "$VALUE" --durability buffered --dir "$W" >/dev/null
DB="$W/bench-buffered.keystone"
"$K" flush "$DB" >/dev/null
BYTES=$(du -sb "$DB" | cut -f1)
echo "database: $(echo "$BYTES / 1048576" | bc) MiB in $(find "$DB" -type f | wc -l) files"
"$K" backup keygen -o "$W/ops.key" >"$W/ops.pub"

secs() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; exit 1; }; e=$(date +%s.%N); echo "$e - $s" | bc; }
mibs() { echo "$BYTES / 1048576 / $1" | bc -l; }

printf "\n%-34s %9s %12s %9s %12s\n" "repository" "backup" "MiB/s" "restore" "MiB/s"
declare -A B R
for where in local s3; do
  for enc in plain encrypted; do
    if [ "$where" = local ]; then REPO="$W/repo-$enc"; else REPO="s3://bench/repo-$enc"; fi
    if [ "$enc" = encrypted ]; then
      "$K" backup init --repo "$REPO" --recipient "$(cat "$W/ops.pub")" >/dev/null
    else
      "$K" backup init --repo "$REPO" >/dev/null
    fi
    sync
    TB=$(secs "$K" backup create "$DB" --repo "$REPO" --type full)
    TR=$(secs "$K" restore --repo "$REPO" --target "$W/r-$where-$enc" --yes --identity "$W/ops.key")
    B[$where-$enc]=$TB; R[$where-$enc]=$TR
    printf "%-34s %8.2fs %12.1f %8.2fs %12.1f\n" "$where $enc" "$TB" "$(mibs "$TB")" "$TR" "$(mibs "$TR")"
    rm -rf "$W/r-$where-$enc"
  done
done
echo
for where in local s3; do
  printf "%s: encryption costs backup %.2fx, restore %.2fx of the plain time\n" "$where" \
    "$(echo "${B[$where-encrypted]} / ${B[$where-plain]}" | bc -l)" \
    "$(echo "${R[$where-encrypted]} / ${R[$where-plain]}" | bc -l)"
done

# The server's ceiling: the same bytes as plain PUTs and GETs of 32 MiB objects.
head -c $((32 << 20)) /dev/urandom >"$W/obj"
N=$(( (BYTES + (32 << 20) - 1) / (32 << 20) ))
URL="http://127.0.0.1:$PORT/bench/ceiling"
sync
s=$(date +%s.%N)
SIGN=(--aws-sigv4 "aws:amz:us-east-1:s3" --user bench:bench)
seq 1 "$N" | xargs -P 4 -I{} curl -sf "${SIGN[@]}" -o /dev/null -T "$W/obj" "$URL/{}"
TPUT=$(echo "$(date +%s.%N) - $s" | bc)
s=$(date +%s.%N)
seq 1 "$N" | xargs -P 4 -I{} curl -sf "${SIGN[@]}" -o /dev/null "$URL/{}"
TGET=$(echo "$(date +%s.%N) - $s" | bc)
CEIL=$(( N * 32 ))
printf "\nS3 server ceiling (curl, %d × 32 MiB, 4 at a time): PUT %.1f MiB/s, GET %.1f MiB/s\n" "$N" \
  "$(echo "$CEIL / $TPUT" | bc -l)" "$(echo "$CEIL / $TGET" | bc -l)"
for enc in plain encrypted; do
  printf "s3 %s: backup at %.2fx of the PUT ceiling, restore at %.2fx of the GET ceiling\n" "$enc" \
    "$(echo "($BYTES / 1048576 / ${B[s3-$enc]}) / ($CEIL / $TPUT)" | bc -l)" \
    "$(echo "($BYTES / 1048576 / ${R[s3-$enc]}) / ($CEIL / $TGET)" | bc -l)"
done
