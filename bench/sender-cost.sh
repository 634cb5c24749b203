#!/usr/bin/env bash
# What naming IPI senders costs the housekeeping CPU that sends them
# (issue "cost and scale"): bench/storm.c's munmap+IPI ops/s on CPU H with
# its spinner on watched CPU V, under: nothing, `isol watch --cpus V`,
# bpftrace counting kernel stacks per csd_queue_cpu aimed at V, and
# trace-cmd recording csd_queue_cpu with stacks. Interleaved rounds; the
# median ops/s per setup and its ratio to nothing, and the median of its
# rounds' ratios to the "nothing" round of the same pass (paired).
# isol-all is `isol watch --all-stacks` (every sender's stack, as before
# stacks were sampled); isol-floor is isol attached but disarmed (see
# start()).
# Every setup gets SETTLE seconds (default 3) once it is attached before
# its round starts: isol says when it is ("watching"); bpftrace and
# trace-cmd do not, and get 3 s for that first: so that no setup's round
# pays for its own start (before, isol's began as soon as it said so,
# the others' 3 s after their start).
# Usage: bench/sender-cost.sh [V] [H] [ROUNDS] [SECONDS]   (root)
set -euo pipefail
cd "$(dirname "$0")/.."
V=${1:-1}; H=${2:-0}; ROUNDS=${3:-5}; SECS=${4:-3}; SETTLE=${SETTLE:-3}
OUT=target/bench; mkdir -p "$OUT"
cargo build --release -q -p isol-cli
ISOL=$PWD/target/release/isol
cc -O2 -pthread -o "$OUT/storm" bench/storm.c
TC=(trace-cmd)
if ! trace-cmd record -q -e ipi:ipi_send_cpu -o "$OUT/probe.dat" true >/dev/null 2>&1; then
  cc -shared -fPIC -O2 -o "$OUT/shim.so" bench/trace-cmd-shim.c -ldl
  TC=(env LD_PRELOAD="$PWD/$OUT/shim.so" trace-cmd)
fi
rm -f "$OUT"/probe.dat*

# Clear `armed` (the .bss's second u32, after strict_count) in the running
# capture, its other bytes kept.
disarm() {
  local id
  id=$(bpftool -j map show | python3 -c 'import json,sys; print([m["id"] for m in json.load(sys.stdin) if m.get("name","") == "capture_.bss"][-1])')
  bpftool -j map dump id "$id" | python3 -c '
import json, sys
m = json.load(sys.stdin)[0]
names = [list(f)[0] for f in m["formatted"]["value"][".bss"]]
assert names[:2] == ["strict_count", "armed"], names
b = [int(x, 16) for x in m["value"]]
b[4:8] = [0, 0, 0, 0]
print(" ".join(map(str, b)))' > "$OUT/bss"
  bpftool map update id "$id" key 0 0 0 0 value $(cat "$OUT/bss")
  bpftool -j map dump id "$id" | grep -q '"armed":0' || { echo "could not disarm isol" >&2; exit 1; }
}

BG=""
start() { # setup -> starts it in the background, waits until attached
  case "$1" in
    none) BG="" ;;
    isol)
      rm -f "$OUT/w.err" # a stale "watching" would start the round early
      taskset -c "$H" "$ISOL" watch --cpus "$V" -D 3600 --json >/dev/null 2>"$OUT/w.err" &
      BG=$!
      until grep -q watching "$OUT/w.err" 2>/dev/null; do sleep 0.1; done ;;
    isol-all)
      rm -f "$OUT/w.err"
      taskset -c "$H" "$ISOL" watch --cpus "$V" -D 3600 --json --all-stacks >/dev/null 2>"$OUT/w.err" &
      BG=$!
      until grep -q watching "$OUT/w.err" 2>/dev/null; do sleep 0.1; done ;;
    isol-floor)
      # isol attached, then disarmed: every program returns at its first
      # check. What is left is the kernel's cost of running ~11 BPF
      # programs per op (tracepoint, dispatch, return thunks), which no
      # program of isol's can lower; isol minus this is isol's own work.
      start isol
      disarm ;;
    bpftrace)
      taskset -c "$H" bpftrace -e "tracepoint:csd:csd_queue_cpu /args->cpu == $V/ { @[kstack] = count(); }" >/dev/null 2>"$OUT/b.err" &
      BG=$!
      sleep 3 ;;
    trace-cmd)
      taskset -c "$H" "${TC[@]}" record -q -e csd:csd_queue_cpu -f "cpu == $V" -T -o "$OUT/tc.dat" >/dev/null 2>&1 &
      BG=$!
      sleep 3 ;;
  esac
}
stop() { [ -n "$BG" ] && { kill -INT "$BG"; wait "$BG" 2>/dev/null || true; }; BG=""; rm -f "$OUT"/tc.dat*; }

declare -A R
# SETUPS (space-separated) runs a subset; "none" is always among them.
read -r -a SETUPS <<< "${SETUPS:-none isol isol-floor isol-all bpftrace trace-cmd}"
[[ " ${SETUPS[*]} " == *" none "* ]] || SETUPS=(none "${SETUPS[@]}")
for r in $(seq "$ROUNDS"); do
  for s in "${SETUPS[@]}"; do
    start "$s"
    sleep "$SETTLE"
    R[$s]+="$("$OUT/storm" "$V" "$H" "$SECS") "
    stop
  done
done
med() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# Each round of a setup over the "nothing" round of the same pass: the
# VM's speed drifts between passes (its vCPUs' placement on the host),
# which moves both alike.
paired() { paste -d' ' <(echo "$1" | tr ' ' '\n' | grep .) <(echo "${R[none]}" | tr ' ' '\n' | grep .) |
  awk '{printf "%.4f\n", $1 / $2}' | med; }
base=$(echo "${R[none]}" | med)
echo "| setup | munmap+IPI ops/s (median of $ROUNDS) | vs nothing | paired | rounds |"
echo "|---|---|---|---|---|"
for s in "${SETUPS[@]}"; do
  m=$(echo "${R[$s]}" | med)
  printf '| %s | %s | %.2f | %.3f | %s |\n' "$s" "$m" "$(echo "$m / $base" | bc -l)" "$(paired "${R[$s]}")" "${R[$s]}"
done
