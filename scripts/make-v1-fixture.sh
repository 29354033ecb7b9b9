#!/usr/bin/env bash
# Build the repository-format-1 fixtures of crates/kstone-cli/tests/repo_v1.rs
# with a kstone binary from before format 2 (commit fb1079e):
#   scripts/make-v1-fixture.sh /path/to/old/kstone
# Writes crates/kstone-cli/tests/fixtures/repo-v1/{plain,encrypted,identity.txt,expected-*.jsonl}.
set -euo pipefail
K=${1:?usage: make-v1-fixture.sh KSTONE_BINARY}
OUT=$(cd "$(dirname "$0")/.." && pwd)/crates/kstone-cli/tests/fixtures/repo-v1
rm -rf "$OUT"; mkdir -p "$OUT"
W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
DB=$W/shop.keystone
"$K" create "$DB" >/dev/null
"$K" backup keygen --output "$OUT/identity.txt" >/dev/null
RCPT=$(grep -o 'age1[0-9a-z]*' "$OUT/identity.txt" | head -1)
"$K" backup init --repo "$OUT/plain" >/dev/null
"$K" backup init --repo "$OUT/encrypted" --recipient "$RCPT" >/dev/null
put() { "$K" put "$DB" "$@" >/dev/null; }
for i in $(seq 1 40); do put "user#$(printf %04d $i)" "{\"n\":$i,\"name\":\"user $i\"}"; done
for i in $(seq 1 10); do put "order#$i" --sk "2026-11-0$((i % 9 + 1))" "{\"total\":$((i * 7))}"; done
"$K" flush "$DB" >/dev/null
for r in plain encrypted; do
  "$K" wal-archive "$DB" --repo "$OUT/$r" --once >/dev/null
  "$K" backup create "$DB" --repo "$OUT/$r" --type full >/dev/null
done
"$K" scan "$DB" > "$OUT/expected-full.jsonl"
for i in $(seq 41 60); do put "user#$(printf %04d $i)" "{\"n\":$i}"; done
"$K" delete "$DB" "user#0003" >/dev/null
"$K" compact "$DB" >/dev/null
for r in plain encrypted; do
  "$K" wal-archive "$DB" --repo "$OUT/$r" --once >/dev/null
  "$K" backup create "$DB" --repo "$OUT/$r" --type incremental >/dev/null
done
"$K" scan "$DB" > "$OUT/expected-incremental.jsonl"
# Writes only the archive holds: reached by PITR.
for i in $(seq 61 70); do put "user#$(printf %04d $i)" "{\"n\":$i,\"late\":true}"; done
"$K" stats "$DB" | grep -i lsn > "$OUT/last-lsn.txt" || true
for r in plain encrypted; do
  "$K" wal-archive "$DB" --repo "$OUT/$r" --once >/dev/null
done
"$K" scan "$DB" > "$OUT/expected-archived.jsonl"
# Locks and in-progress markers are runtime state, not part of a fixture.
find "$OUT" -path '*/locks/*' -delete
echo "fixture written to $OUT"; du -sh "$OUT"
