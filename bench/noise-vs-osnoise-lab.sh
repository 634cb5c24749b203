#!/usr/bin/env bash
# isol noise vs the kernel's osnoise tracer, same CPU, same interval, in
# the lab (Debian 6.12 rt kernel under QEMU TCG, CPU 1 nohz_full): per-class
# counts side by side. The guest half is bench/noise-vs-osnoise.guest.sh.
# Usage: bench/noise-vs-osnoise-lab.sh [SECONDS]. Set ISOL_LAB_TCG=multi
# for multi-threaded TCG (the figures in RESULTS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
D=${1:-10}
OUT=$(mktemp -d)
# The lab's CLI has no --env: pass the duration through the script text.
{ echo "BENCH_SECONDS=$D"; cat bench/noise-vs-osnoise.guest.sh; } >"$OUT/guest.sh"
cargo run -q -p isol-lab -- --kernel rt --timeout 400 \
	--cmdline 'nohz_full=1 isolcpus=nohz,domain,managed_irq,1 rcu_nocbs=1 irqaffinity=0 tsc=reliable' \
	"$OUT/guest.sh" >"$OUT/out.txt" 2>&1 || { cat "$OUT/out.txt"; exit 1; }
python3 - "$OUT/out.txt" <<'PY'
import json, re, sys, collections
t = open(sys.argv[1]).read()
sec = dict(re.findall(r"@@ISOL-LAB-SECTION-BEGIN (\w+)@@\n(.*?)\n?@@ISOL-LAB-SECTION-END", t, re.S))
r = json.loads(sec["isol"])
c = r["per_cpu"][0]
g = c["worst"][0]
start = g["start_ns"] - round(g["at_s"] * 1e9)
end = start + round(r["duration_s"] * 1e9)
ev = collections.Counter()
ev_ns = collections.Counter()
for line in sec["trace"].splitlines():
    # The line's timestamp is the trace clock (mono, as isol) when the
    # event was written, at the end of the noise; the event's own "start"
    # is osnoise's sched_clock, so it is not used for the window.
    m = re.search(r" ([\d.]+): (\w+_noise|sample_threshold): (\S+?)(?::\d+)? start [\d.]+ duration (\d+) ns", line)
    if not m:
        continue
    stamp, event, source, dur = m.group(1), m.group(2), m.group(3), int(m.group(4))
    if not (start <= round(float(stamp) * 1e9) - dur < end):
        continue
    if event == "thread_noise":
        source = source.rsplit("-", 1)[0]  # comm-pid -> comm
    ev[(event, source)] += 1
    ev_ns[(event, source)] += dur
kern = re.search(r"on (\S+): status", t)
print(f"kernel {kern.group(1) if kern else '?'}, CPU {r['cpus']}, "
      f"{r['duration_s']:.2f} s, isol threshold {r['threshold_ns']/1000:g} us")
print(f"isol: {c['loops']} loops, {c['gaps']} gaps, {c['attributed']} attributed "
      f"({c['attributed_pct']:.2f} %), max {c['max_ns']} ns, hw {c['hw_ns']/1e6:.1f} ms")
print()
print("isol noise gaps by cause (class / kind / detail: count, total)")
for x in c["causes"]:
    print(f"  {x['class']} / {x['kind']} / {x['detail']}: {x['count']}, {x['total_ns']/1e6:.3f} ms")
print()
print("osnoise events in the same interval (event / source: count, total)")
for k, n in sorted(ev.items(), key=lambda kv: -kv[1]):
    print(f"  {k[0]} / {k[1]}: {n}, {ev_ns[k]/1e6:.3f} ms")
PY
echo "(raw output: $OUT/out.txt)"
