#!/usr/bin/env bash
# Cost of watching, measured side by side in one run (issue 3's benchmark):
#  1. getpid ns/call on the watched CPU and on an unwatched CPU with
#     nothing attached, `isol watch`, isold, `isol watch --syscalls`, and
#     `trace-cmd record` of the same tracepoints (with and without
#     raw_syscalls:sys_enter); ratios against nothing.
#  2. ns per invocation of each isol BPF program (kernel.bpf_stats_enabled)
#     while noisegen interrupts the watched CPU with TLB-flush IPIs: what
#     each interruption of the protected CPU pays.
# Usage: bench/watch-overhead.sh [WATCHED_CPU] [UNWATCHED_CPU]   (root)
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-1}; U=${2:-0}
N=${BENCH_CALLS:-2000000}
OUT=target/bench; mkdir -p "$OUT"
cargo build --release -q -p isol-cli
ISOL=target/release/isol
cc -O2 -o "$OUT/getpid" bench/getpid.c
cc -O2 -pthread -static -o "$OUT/noisegen" testprogs/noisegen.c
mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing
command -v trace-cmd >/dev/null || { echo "trace-cmd missing: apt-get install trace-cmd" >&2; exit 1; }
# Kernels that deny the function-tracer files (EPERM) make trace-cmd 3.1
# die even for event-only recording: use the census bench's shim there.
TC=(trace-cmd)
if ! trace-cmd record -q -e ipi:ipi_send_cpu -o "$OUT/probe.dat" true >/dev/null 2>&1; then
  cc -shared -fPIC -O2 -o "$OUT/shim.so" bench/trace-cmd-shim.c -ldl
  TC=(env LD_PRELOAD="$PWD/$OUT/shim.so" trace-cmd)
  echo "note: trace-cmd runs through bench/trace-cmd-shim.c (this kernel denies the function-tracer files)" >&2
fi
rm -f "$OUT"/probe.dat*

# The tracepoints isol attaches by default (those this kernel has).
EVENTS=()
for e in irq/irq_handler_entry irq/irq_handler_exit irq/softirq_entry irq/softirq_exit \
  irq_vectors/local_timer_entry irq_vectors/local_timer_exit irq_vectors/call_function_entry \
  irq_vectors/call_function_exit irq_vectors/call_function_single_entry irq_vectors/call_function_single_exit \
  irq_vectors/reschedule_entry irq_vectors/reschedule_exit irq_vectors/irq_work_entry irq_vectors/irq_work_exit \
  csd/csd_queue_cpu ipi/ipi_send_cpu csd/csd_function_entry timer/timer_expire_entry timer/hrtimer_expire_entry \
  workqueue/workqueue_execute_start tlb/tlb_flush exceptions/page_fault_user nmi/nmi_handler sched/sched_switch \
  context_tracking/user_exit context_tracking/user_enter; do
  [ -d /sys/kernel/tracing/events/$e ] && EVENTS+=(-e "${e/\//:}")
done
MASK=$(printf '%x' $((1 << W)))

measure() { # label, then a command started in the background (or "none")
  local label=$1; shift
  local pid=""
  if [ "$1" != none ]; then
    "$@" >/dev/null 2>&1 &
    pid=$!
    sleep 2 # attach
    # A tool that died at start would make its row a second "nothing".
    kill -0 "$pid" 2>/dev/null || { echo "bench: '$label' exited at start" >&2; exit 1; }
  fi
  local w u
  w=$("$OUT/getpid" "$W" "$N"); u=$("$OUT/getpid" "$U" "$N")
  if [ -n "$pid" ]; then kill -INT "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  printf '%s\t%s\t%s\n' "$label" "$w" "$u"
}

{
  measure "nothing" none
  measure "isol watch" "$ISOL" watch --cpus "$W" --json
  measure "trace-cmd record (same events)" "${TC[@]}" record -M "$MASK" "${EVENTS[@]}" -o "$OUT/trace.dat"
  printf 'cpus = "%s"\nlisten = "127.0.0.1:19979"\n' "$W" > "$OUT/isold.toml"
  measure "isold (isol serve)" "$ISOL" serve --config "$OUT/isold.toml"
  measure "isol watch --syscalls" "$ISOL" watch --cpus "$W" --syscalls --json
  measure "trace-cmd record (+sys_enter)" "${TC[@]}" record -M "$MASK" "${EVENTS[@]}" -e raw_syscalls:sys_enter -o "$OUT/trace.dat"
} > "$OUT/getpid.tsv"
rm -f "$OUT"/trace.dat*

echo "## getpid ns/call ($(uname -r), $(nproc) CPUs, watched CPU $W, unwatched CPU $U, best of 5 x $N calls)"
echo
echo "| setup | watched CPU | ratio | unwatched CPU | ratio |"
echo "|---|---|---|---|---|"
awk -F'\t' 'NR==1{bw=$2; bu=$3} {printf "| %s | %.1f | %.2f | %.1f | %.2f |\n", $1, $2, $2/bw, $3, $3/bu}' "$OUT/getpid.tsv"

# Per-program cost under interruption load.
sysctl -q kernel.bpf_stats_enabled=1
"$OUT/noisegen" --cpu "$W" --hk "$U" --tlb --timer --duration 8 >/dev/null &
NG=$!
"$ISOL" watch --cpus "$W" --json >/dev/null &
IP=$!
sleep 5
bpftool prog show --json > "$OUT/progs.json"
kill -INT "$IP"; wait "$IP" || true
kill "$NG" 2>/dev/null || true; wait "$NG" 2>/dev/null || true
sysctl -q kernel.bpf_stats_enabled=0
echo
echo "## isol BPF programs: ns per invocation (noisegen --tlb --timer on CPU $W, 5 s)"
echo
echo "| program | runs on | invocations | ns/invocation |"
echo "|---|---|---|---|"
python3 - "$OUT/progs.json" <<'PY'
import json, sys
progs = json.load(open(sys.argv[1]))
ours = {"irq_entry","irq_exit","softirq_entry","softirq_exit","local_timer_entry","local_timer_exit",
        "call_function_entry","call_function_exit","call_function_single_entry","call_function_single_exit",
        "reschedule_entry","reschedule_exit","irq_work_entry","irq_work_exit","csd_queue_cpu","ipi_send_cpu",
        "csd_function_entry","timer_expire_entry","hrtimer_expire_entry","workqueue_execute_start",
        "tlb_flush","page_fault_user","nmi_handler","sched_switch","user_exit","user_enter","sys_enter"}
sender_side = {"csd_queue_cpu", "ipi_send_cpu"}
# Only the programs of the isol started above: bpftool here does not show
# owner pids, so per name take the most recently loaded (highest id).
latest = {}
for p in progs:
    if p.get("name") in ours and p["id"] > latest.get(p["name"], {"id": -1})["id"]:
        latest[p["name"]] = p
rows = [p for p in latest.values() if p.get("run_cnt")]
for p in sorted(rows, key=lambda p: -p["run_cnt"]):
    side = "sender (housekeeping CPU)" if p["name"] in sender_side else "watched CPU"
    print(f"| {p['name']} | {side} | {p['run_cnt']} | {p['run_time_ns']/p['run_cnt']:.0f} |")
PY
