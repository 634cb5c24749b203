#!/usr/bin/env bash
# Lag of `--on-threshold`: from the end of the interruption that reached
# the threshold (its record's CLOCK_MONOTONIC stamps, start + duration: the
# first moment anyone can know how long it was) to the action running:
#  - signal: a process blocked in sigwaitinfo receiving SIGUSR1;
#  - shell:  the command's first instruction (bench/on-threshold-rx.c
#            prints CLOCK_MONOTONIC), /bin/sh start-up included;
#  - isol's own figure: each action's lag_ns in the --json summary.
# 1. Stop mode (rtla's default), RUNS runs per reader period (--drain-ms,
#    which bounds the lag: the reader drains the BPF ring on that period
#    from a housekeeping CPU and acts on what it finds): noisegen floods CPU
#    W with TLB-flush IPIs and `isol watch --cpus W --threshold-us 1` stops
#    at the first crossing after its actions (signal, then shell). The first
#    crossing comes within ms of the attach, so these lags sit near the end
#    of the first period.
# 2. Steady state: `continue`, a queued real-time signal per crossing, for
#    BENCH_SECONDS per period, with a 10 ms timer in a victim on CPU W (plus the
#    tick): every crossing's lag, whatever its phase against the drains.
# The receiver runs on the housekeeping CPU H, as isol and its actions do.
# Then rtla's --on-threshold, where this machine can run it (an rtla with
# actions, and the timerlat tracer in the kernel); otherwise the reason.
# Usage: bench/on-threshold-lag.sh [RUNS] [W] [DRAIN_MS...]   (root)
#        BENCH_SECONDS (default 5) and H (default 0) from the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-20}; W=${2:-1}; shift $(( $# > 2 ? 2 : $# )) || true
DRAINS=("${@:-50 10 1}"); DRAINS=(${DRAINS[*]})
SECONDS_EACH=${BENCH_SECONDS:-5}; H=${H:-0}
OUT=target/bench/on-threshold; rm -rf "$OUT"; mkdir -p "$OUT"
cargo build --release -q -p isol-cli
ISOL=$PWD/target/release/isol
cc -O2 -Wall -o "$OUT/rx" bench/on-threshold-rx.c
cc -O2 -pthread -static -o "$OUT/noisegen" testprogs/noisegen.c
mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing

# Waits (deadline 10 s) for a file to hold a line.
wait_line() { for _ in $(seq 1000); do [ -s "$1" ] && return 0; sleep 0.01; done; echo "bench: nothing in $1" >&2; exit 1; }

"$OUT/noisegen" --cpu "$W" --tlb --duration 3600 >/dev/null &
NG=$!
trap 'kill $NG 2>/dev/null || true' EXIT
for d in "${DRAINS[@]}"; do
  for i in $(seq "$RUNS"); do
    r="$OUT/d$d.$i"
    taskset -c "$H" "$OUT/rx" --wait >"$r.sig" &
    RX=$!
    wait_line "$r.sig"
    "$ISOL" watch --cpus "$W" -D 60 --json --drain-ms "$d" --threshold-us 1 \
      --on-threshold "signal,num=USR1,pid=$RX" \
      --on-threshold "shell,command=$PWD/$OUT/rx >> $PWD/$r.shell" >"$r.json" 2>/dev/null
    kill -TERM "$RX"; wait "$RX" || true
  done
done
kill $NG; wait $NG 2>/dev/null || true

RT=$("$OUT/rx" --rtmin)
"$OUT/noisegen" --cpu "$W" --timer --duration 3600 >/dev/null &
NG=$!
for d in "${DRAINS[@]}"; do
  r="$OUT/c$d"
  taskset -c "$H" "$OUT/rx" --wait >"$r.sig" &
  RX=$!
  wait_line "$r.sig"
  "$ISOL" watch --cpus "$W" -D "$SECONDS_EACH" --json --drain-ms "$d" --threshold-us 1 \
    --on-threshold "signal,num=$RT,pid=$RX" --on-threshold continue >"$r.json" 2>/dev/null
  # Let the last queued signals arrive (deadline 5 s).
  n=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["on_threshold"]["hits"]))' "$r.json")
  for _ in $(seq 500); do [ "$(($(wc -l <"$r.sig") - 1))" -ge "$n" ] && break; sleep 0.01; done
  kill -TERM "$RX"; wait "$RX" || true
done

python3 - "$OUT" "$RUNS" "${DRAINS[@]}" <<'PY'
import json, sys, statistics
out, runs, drains = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def q(v, p):
    v = sorted(v); return v[min(len(v) - 1, int(p * len(v)))]
def row(name, v):
    v = [x / 1e6 for x in v]
    print(f"| {name} | {len(v)} | {min(v):.2f} | {statistics.median(v):.2f} | {q(v, .9):.2f} | {max(v):.2f} |")
print("| isol watch, --drain-ms | runs | min ms | median ms | p90 ms | max ms |")
print("|---|---|---|---|---|---|")
for d in drains:
    sig, sh, own = [], [], []
    for i in range(1, runs + 1):
        b = f"{out}/d{d}.{i}"
        s = json.load(open(b + ".json"))
        h = s["on_threshold"]["hits"][0]
        end = h["event"]["start_ns"] + h["event"]["duration_ns"]
        lines = open(b + ".sig").read().split()[1:]   # after "ready"
        sig.append(int(lines[0]) - end)
        sh.append(int(open(b + ".shell").read().split()[0]) - end)
        own.append(h["actions"][0]["lag_ns"])
    row(f"{d}: isol starts the first action (lag_ns)", own)
    row(f"{d}: signal received (sigwaitinfo)", sig)
    row(f"{d}: shell command running", sh)
print()
print("| isol watch, continue, --drain-ms | crossings | min ms | median ms | p90 ms | max ms |")
print("|---|---|---|---|---|---|")
for d in drains:
    s = json.load(open(f"{out}/c{d}.json"))
    hits = [h for h in s["on_threshold"]["hits"] if h["actions"][0]["ok"]]
    got = [int(x) for x in open(f"{out}/c{d}.sig").read().split()[1:]]
    assert len(got) == len(hits), f"{len(got)} signals received for {len(hits)} sent"
    lag = [g - (h["event"]["start_ns"] + h["event"]["duration_ns"]) for g, h in zip(got, hits)]
    row(f"{d}: signal received", lag)
    row(f"{d}: isol starts the action (lag_ns)", [h["actions"][0]["lag_ns"] for h in hits])
PY

echo
if ! command -v rtla >/dev/null; then
  apt-get install -y -q rtla >/dev/null 2>&1 || true
fi
if ! command -v rtla >/dev/null; then
  echo "rtla: not measured: not installable here"
elif ! rtla timerlat top --help 2>&1 | grep -q -- --on-threshold; then
  echo "rtla: not measured: $(rtla --help 2>&1 | grep -m1 version) has no --on-threshold (actions came in later kernels' rtla)"
elif ! grep -qw timerlat /sys/kernel/tracing/available_tracers; then
  echo "rtla: not measured: this kernel has no timerlat tracer (available: $(cat /sys/kernel/tracing/available_tracers))"
else
  echo "rtla: this machine could run rtla's --on-threshold, but this script does not measure it yet"
fi
