# Alternating pairs for the scripts that compare two builds or two engines
# on this shared machine (bench-peers-ab.sh, bench-peers-vs.sh,
# bench-open-ab.sh), where one run of each is within the noise. Source it,
# define `measure a` / `measure b` (print one number), then:
#
#   pairs PAIRS LABEL_A LABEL_B WHAT
#
# runs both PAIRS times (which goes first alternates), prints each pair to
# stderr, then one line: the medians and B/A of the medians, and each pair's
# B/A.
pairs() {
  local n=$1 la=$2 lb=$3 what=$4 p a b
  for p in $(seq 1 "$n"); do
    if [ $((p % 2)) = 0 ]; then
      a=$(measure a); b=$(measure b)
    else
      b=$(measure b); a=$(measure a)
    fi
    echo "pair $p: $la $a $lb $b" >&2
    echo "$a $b"
  done | python3 -c '
import statistics, sys
la, lb, what = sys.argv[1:4]
rows = [tuple(map(float, l.split())) for l in sys.stdin]
a = statistics.median(r[0] for r in rows)
b = statistics.median(r[1] for r in rows)
f = lambda x: f"{x:,.0f}" if x >= 100 else f"{x:.4f}"
each = " ".join(f"{y / x:.2f}" for x, y in rows)
print(f"{what}: {la} {f(a)} {lb} {f(b)}, {lb}/{la} {b / a:.2f} (pairs {each})")' "$la" "$lb" "$what"
}
