#!/usr/bin/env bash
# isol noise vs oslat (rt-tests) on the same CPU for the same duration, one
# after the other in one run: loop period (average loop delta) and gaps
# above the threshold (oslat: histogram counts at or above it; isol: gaps).
# Usage: bench/noise-vs-oslat.sh [CPU] [SECONDS] [THRESHOLD_US]. As root.
set -euo pipefail
cd "$(dirname "$0")/.."
CPU=${1:-1} D=${2:-10} T=${3:-5}
cargo build -q --release -p isol-cli
ISOL=./target/release/isol
OUT=$(mktemp -d)
taskset -c 0 oslat -c "$CPU" -D "$D" -m 0 >"$OUT/oslat.txt" 2>&1 || true
taskset -c 0 $ISOL noise -c "$CPU" -D "$D" -T "$T" --json >"$OUT/isol.json"
python3 - "$OUT" "$T" "$CPU" "$D" <<'PY'
import json, re, sys
out, t, cpu, d = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
o = open(f"{out}/oslat.txt").read()
hist = {int(b): int(c) for b, c in re.findall(r"^\s+(\d+) \(us\):\s+(\d+)", o, re.M)}
# oslat bucket "N (us)" holds deltas rounding up to N us: above T us is N > T.
o_gaps = sum(c for b, c in hist.items() if b > t)
o_loops = sum(hist.values())
o_dur = float(re.search(r"Duration:\s+([\d.]+)", o).group(1))
o_avg = o_dur * 1e9 / max(o_loops, 1)  # oslat prints its average in whole-ish us
o_max = int(re.search(r"Maximum:\s+(\d+)", o).group(1)) * 1000
r = json.load(open(f"{out}/isol.json"))["per_cpu"][0]
print(f"CPU {cpu}, {d} s, threshold {t} us")
print(f"| tool | loops | avg loop period | max | gaps > {t} us | attributed | hw |")
print("|---|---|---|---|---|---|---|")
print(f"| oslat | {o_loops} | {o_avg:.1f} ns (duration/loops) | {o_max} ns | {o_gaps} | - | - |")
hw = sum(c['count'] for c in r['causes'] if c['class'] == 'hw')
print(f"| isol noise | {r['loops']} | {r['avg_ns']:.1f} ns | {r['max_ns']} ns | {r['gaps']} | {r['attributed_pct']:.1f}% | {hw} gaps |")
print()
print("isol causes (count, total):")
for c in r["causes"][:8]:
    print(f"- {c['class']} {c['kind']} {c['detail']}: {c['count']}, {c['total_ns']/1e3:.1f} us")
PY
