#!/usr/bin/env bash
# isol census vs the IPI deferral series' method, same load, same duration, one run
# The IPI deferral series' method:
#   trace-cmd record -e ipi_send_cpumask -f "cpumask & CPUS{ISO}" \
#     -e ipi_send_cpu -f "cpu & CPUS{ISO}" -e csd_queue_cpu -f "cpu & CPUS{ISO}" -T -- LOAD
#   trace-cmd report | grep callback | awk '{ print $NF }' | sort | uniq -c
# The load is isol census's built-in load (`isol census --load-only`) for
# both, with its victim spinning on the isolated CPU. Reported:
#  - wall time from start to the table, and the post-processing after the load;
#  - loop overhead: the victim's loop iterations per second on the isolated
#    CPU and the load's operations, against the same load untraced;
#  - getpid ns/call on the housekeeping and isolated CPUs with each tracer
#    armed (no load): what every syscall pays.
# Usage: bench/census-vs-trace-cmd.sh [ISOLATED_CPU] [HOUSEKEEPING_CPU]  (root)
# BENCH_DURATION (s, default 60), BENCH_CALLS (getpid calls, default 2000000).
set -euo pipefail
cd "$(dirname "$0")/.."
ISO=${1:-1}; HK=${2:-0}
D=${BENCH_DURATION:-60}
N=${BENCH_CALLS:-2000000}
OUT=target/bench/census; mkdir -p "$OUT"
cargo build --release -q -p isol-cli
ISOL=$PWD/target/release/isol
cc -O2 -o "$OUT/getpid" bench/getpid.c
mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing
command -v trace-cmd >/dev/null || { echo "trace-cmd missing: apt-get install trace-cmd" >&2; exit 1; }
# Kernels that deny the function-tracer files (EPERM) make trace-cmd die
# even for event-only recording: use the shim there, and say so.
TC=(trace-cmd)
if ! trace-cmd record -q -e ipi:ipi_send_cpu -o "$OUT/probe.dat" true >/dev/null 2>&1; then
  cc -shared -fPIC -O2 -o "$OUT/shim.so" bench/trace-cmd-shim.c -ldl
  TC=(env LD_PRELOAD="$PWD/$OUT/shim.so" trace-cmd)
  SHIM=" (through bench/trace-cmd-shim.c: this kernel denies the function-tracer files)"
fi
rm -f "$OUT"/probe.dat*
SEED_EVENTS=(-e ipi:ipi_send_cpumask -f "cpumask & CPUS{$ISO}" -e ipi:ipi_send_cpu -f "cpu & CPUS{$ISO}"
  -e csd:csd_queue_cpu -f "cpu & CPUS{$ISO}" -T)
LOAD=("$ISOL" census --load-only --cpus "$ISO" -D "$D" --json)
now() { date +%s.%N; }
field() { python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$@"; }

# 1. The load alone.
taskset -c "$HK" "${LOAD[@]}" > "$OUT/base.json"

# 2. The IPI deferral series' method.
t0=$(now)
taskset -c "$HK" "${TC[@]}" record -q "${SEED_EVENTS[@]}" -o "$OUT/trace.dat" -- "${LOAD[@]}" > "$OUT/seed-load.json"
t1=$(now)
trace-cmd report -i "$OUT/trace.dat" > "$OUT/report.txt"
grep callback "$OUT/report.txt" | awk '{ print $NF }' | sort | uniq -c | sort -rn > "$OUT/seed-table.txt"
t2=$(now)

# 3. isol census, same load and duration.
t3=$(now)
taskset -c "$HK" "$ISOL" census --cpus "$ISO" -D "$D" -o "$OUT/census.json" > "$OUT/census.txt"
t4=$(now)
"$ISOL" census --import "$OUT/trace.dat" --cpus "$ISO" -o "$OUT/imported.json" > "$OUT/imported.txt"

# 4. getpid with each tracer armed and no load.
getpid_row() { # label, then a command started in the background (or none)
  local label=$1; shift; local pid=""
  if [ "$1" != none ]; then "$@" >/dev/null 2>&1 & pid=$!; sleep 3; fi
  local h i
  h=$("$OUT/getpid" "$HK" "$N"); i=$("$OUT/getpid" "$ISO" "$N")
  if [ -n "$pid" ]; then kill -INT "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  printf '%s\t%s\t%s\n' "$label" "$h" "$i"
}
{
  getpid_row "nothing" none
  getpid_row "trace-cmd record (the series' events, -T)" taskset -c "$HK" "${TC[@]}" record -q "${SEED_EVENTS[@]}" -o "$OUT/idle.dat"
  getpid_row "isol census capture (--load none --no-victim)" taskset -c "$HK" "$ISOL" census --cpus "$ISO" --load none --no-victim -D 60 --json
} > "$OUT/getpid.tsv"
rm -f "$OUT"/idle.dat*

echo "## isol census vs the IPI deferral series' trace-cmd method ($(uname -r), $(nproc) CPUs, isolated CPU $ISO, load on CPU $HK, $D s, $(date -u +%F))"
echo
echo "trace-cmd $(trace-cmd --version 2>/dev/null | awk 'NF{print $3; exit}')${SHIM:-}"
echo
echo "| | the series' method (trace-cmd record + report + awk) | isol census |"
echo "|---|---|---|"
python3 - "$OUT" "$t0" "$t1" "$t2" "$t3" "$t4" "$D" <<'PY'
import json, os, sys
out, t0, t1, t2, t3, t4, d = sys.argv[1], *map(float, sys.argv[2:])
base = json.load(open(f"{out}/base.json")); seed = json.load(open(f"{out}/seed-load.json")); cen = json.load(open(f"{out}/census.json"))
def loops(r): return r["load"]["victims"][0]["loops"] / r["duration_s"] if r["duration_s"] else float(r["load"]["victims"][0]["loops"]) / d
def ops(r): return sum(c["ops"] for c in r["load"]["classes"])
bl, bo = loops(base), ops(base)
seed_ipis = sum(int(l.split()[0]) for l in open(f"{out}/seed-table.txt") if l.strip())
size = os.path.getsize(f"{out}/trace.dat")
print(f"| wall time, start to table | {t2-t0:.1f} s | {t4-t3:.1f} s |")
print(f"| outside the load window (report+awk after it; BPF load+attach before it, drain after it) | {t2-t1:.1f} s | {(t4-t3)-cen['duration_s']:.1f} s |")
print(f"| IPIs counted | {seed_ipis} (ipi_send events) | {cen['ipis']} (received, {len(cen['callbacks'])} callbacks) |")
print(f"| sender stacks | in {size/1e6:.1f} MB trace.dat, by hand | {len(cen['senders'])} distinct, counted |")
print(f"| victim loop rate vs untraced load ({bl/1e6:.1f} M/s) | {loops(seed)/bl*100:.2f} % | {loops(cen)/bl*100:.2f} % |")
print(f"| load operations vs untraced ({bo}) | {ops(seed)/bo*100:.1f} % | {ops(cen)/bo*100:.1f} % |")
PY
echo
echo "getpid ns/call with the tracer armed, no load (best of 5 x $N calls):"
echo
echo "| setup | housekeeping CPU $HK | ratio | isolated CPU $ISO | ratio |"
echo "|---|---|---|---|---|"
awk -F'\t' 'NR==1{bh=$2; bi=$3} {printf "| %s | %.1f | %.2f | %.1f | %.2f |\n", $1, $2, $2/bh, $3, $3/bi}' "$OUT/getpid.tsv"
echo
echo "The series' table (trace-cmd report | grep callback | awk | sort | uniq -c):"
echo
echo '```'
cat "$OUT/seed-table.txt"
echo '```'
echo
echo "isol census's table by callback:"
echo
echo '```'
sed -n '/^IPIs by callback/,/^$/p' "$OUT/census.txt"
echo '```'
echo
echo "The same trace.dat imported (isol census --import):"
echo
echo '```'
sed -n '/^IPIs by callback/,/^$/p' "$OUT/imported.txt"
echo '```'
