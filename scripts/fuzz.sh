#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer through cargo-fuzz) of every decoder:
# WAL, SST, MANIFEST, items/JSON, repository objects (config, manifests,
# wrapped key, archived WAL, sealed objects) and tar.gz import.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 20, all targets)
#
# Seeds come from real files made by kstone here (a database, a repository,
# an encrypted repository, an exported archive). A crash, panic, timeout or
# out-of-memory stops the run with libFuzzer's report and exit code; the input
# is saved under fuzz/artifacts/TARGET/.
#
# The toolchain here is stable: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its
# flags. No sanitizer (`--sanitizer none`): the project is safe Rust, and what
# is hunted is panics, unbounded allocation and hangs, which libFuzzer's own
# -rss_limit_mb / -timeout catch.
set -euo pipefail
trap 'echo "fuzz.sh: failed at line $LINENO" >&2' ERR
cd "$(dirname "$0")/.."
SECS=${1:-20}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(wal sst manifest items repository tar_import)
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --version 0.13.2
fi

cargo build -q -p kstone-cli
K=$PWD/target/debug/kstone
W=$(mktemp -d "${TMPDIR:-/tmp}/kstone-fuzz.XXXXXX")
trap 'rm -rf "$W"' EXIT
C=fuzz/corpus
mkdir -p "$C"/{wal,sst,manifest,items,repository,tar_import}

# Seeds: a small database with flushed and unflushed data…
"$K" create "$W/db.keystone" >/dev/null 2>&1
for i in $(seq 1 40); do
  "$K" put "$W/db.keystone" "user#$i" --sk "profile" "{\"name\": \"n$i\", \"age\": $i, \"tags\": [\"a\", 1.5, null]}" >/dev/null 2>&1
done
"$K" flush "$W/db.keystone" >/dev/null 2>&1
"$K" put "$W/db.keystone" "late" '{"x": true}' >/dev/null 2>&1
find "$W/db.keystone/wal" -name '*.wal' -size +0 | head -20 | xargs -r cp -t "$C/wal/"
find "$W/db.keystone/sst" -name '*.sst' | head -20 | xargs -r cp -t "$C/sst/"
cp "$W/db.keystone/MANIFEST" "$C/manifest/"
"$K" export "$W/db.keystone" -o "$W/export.jsonl" >/dev/null 2>&1
split -l 1 "$W/export.jsonl" "$C/items/line-"
# …its backups (plain and encrypted) and archived WAL…
"$K" backup create "$W/db.keystone" --repo "$W/repo" >/dev/null 2>&1
"$K" wal-archive "$W/db.keystone" --repo "$W/repo" --once >/dev/null 2>&1
"$K" backup keygen -o "$W/id.key" >"$W/id.pub" 2>/dev/null
"$K" backup init --repo "$W/enc" --recipient "$(cat "$W/id.pub")" >/dev/null 2>&1
"$K" backup create "$W/db.keystone" --repo "$W/enc" >/dev/null 2>&1
for r in repo enc; do
  n=0
  for f in "$W/$r/config" "$W/$r"/backups/*.manifest "$W/$r"/keys/* "$(find "$W/$r/wal" -name '*.walarc' 2>/dev/null | head -1)"; do
    [ -f "$f" ] && cp "$f" "$C/repository/$r-$((n++))"
  done
done
# …and an exported archive.
"$K" backup export --repo "$W/repo" -o "$W/b.tar.gz" >/dev/null 2>&1
cp "$W/b.tar.gz" "$C/tar_import/"

cd fuzz
cargo fuzz build --sanitizer none -O
for t in "${TARGETS[@]}"; do
  echo "== fuzz $t for ${SECS}s"
  cargo fuzz run --sanitizer none -O "$t" -- \
    -max_total_time="$SECS" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 \
    -max_len=262144 -print_final_stats=1 2>&1 \
    | grep -E "^(Done|stat::number_of_executed_units|INFO: seed corpus|==[0-9]+== ERROR|SUMMARY)|panicked|deadly signal|Test unit written" || true
  # grep hides libFuzzer's exit status; the saved artifact is the verdict.
  if compgen -G "artifacts/$t/*" >/dev/null; then
    echo "fuzz target $t failed: see fuzz/artifacts/$t/" >&2
    exit 1
  fi
done
