#!/usr/bin/env bash
# What naming IPI senders costs the housekeeping CPU that sends them
# (issue "cost and scale"): a housekeeping workload's ops/s on CPU H, with
# a spinner of its process on watched CPU V, under: nothing,
# `isol watch --cpus V`, isold watching V, bpftrace counting kernel stacks
# per csd_queue_cpu aimed at V, and trace-cmd recording csd_queue_cpu with
# stacks. Interleaved rounds; the median ops/s per setup and its ratio to
# nothing, and the median of its rounds' ratios to the "nothing" round of
# the same pass (paired).
# isol-all is `isol watch --all-stacks` (every sender's stack, as before
# stacks were sampled); isol-floor is isol attached but disarmed (see
# start()).
# WORKLOADS (space-separated; default "storm"):
#   storm      bench/storm.c: mmap, touch, munmap one page; every munmap is
#              a TLB-flush IPI to V (the IPI-heavy case)
#   hackbench  rt-tests' hackbench, 2 groups of 10+10 processes over pipes,
#              all on H: scheduling and wake-ups, no IPI to V; its loops
#              are sized once so that a run takes about SECONDS
#   pagecache  bench/storm.c's pagecache mode: writes 64 KiB of a 64 MiB
#              file, maps 256 KiB of it, reads a byte per page, unmaps:
#              page cache, minor faults, writeback, one IPI to V per op
# Every setup gets SETTLE seconds (default 3) once it is attached before
# its round starts: isol and isold say when they are ("watching");
# bpftrace and trace-cmd do not, and get 3 s for that first: so that no
# setup's round pays for its own start (before, isol's began as soon as it
# said so, the others' 3 s after their start).
# Usage: [WORKLOADS=...] [SETUPS=...] bench/sender-cost.sh [V] [H] [ROUNDS] [SECONDS]   (root)
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

# Waits until the tool started as $BG says PATTERN in FILE; fails if it
# exited first (its round would otherwise measure nothing).
attached() {
  until grep -q "$2" "$1" 2>/dev/null; do
    kill -0 "$BG" 2>/dev/null || { echo "bench: the tool exited at start:" >&2; cat "$1" >&2; exit 1; }
    sleep 0.1
  done
}

BG=""
start() { # setup -> starts it in the background, waits until attached
  case "$1" in
    none) BG="" ;;
    isol)
      rm -f "$OUT/w.err" # a stale "watching" would start the round early
      taskset -c "$H" "$ISOL" watch --cpus "$V" -D 3600 --json >/dev/null 2>"$OUT/w.err" &
      BG=$!
      attached "$OUT/w.err" watching ;;
    isol-all)
      rm -f "$OUT/w.err"
      taskset -c "$H" "$ISOL" watch --cpus "$V" -D 3600 --json --all-stacks >/dev/null 2>"$OUT/w.err" &
      BG=$!
      attached "$OUT/w.err" watching ;;
    isold)
      # isold as packaged runs it, its metrics on loopback and its API
      # socket under target/.
      rm -f "$OUT/d.err"
      printf 'cpus = "%s"\nlisten = "127.0.0.1:19979"\nsocket = "%s"\n' "$V" "$PWD/$OUT/isold.sock" > "$OUT/isold.toml"
      taskset -c "$H" "$ISOL" serve --config "$OUT/isold.toml" >/dev/null 2>"$OUT/d.err" &
      BG=$!
      attached "$OUT/d.err" "watching CPUs" ;;
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

# Hackbench's loops for about SECS seconds, from one calibration run.
hb_time() { taskset -c "$H" hackbench -p -g 2 -f 10 -l "$1" | awk '/^Time:/ { print $2 }'; }
HB_LOOPS=""
work() { # workload -> its ops/s on H
  case "$1" in
    storm) "$OUT/storm" "$V" "$H" "$SECS" ;;
    pagecache) "$OUT/storm" "$V" "$H" "$SECS" pagecache "$OUT/pagecache.dat" ;;
    hackbench)
      if [ -z "$HB_LOOPS" ]; then
        HB_LOOPS=$(echo "scale=0; 500 * $SECS / $(hb_time 500) / 1" | bc)
        [ "$HB_LOOPS" -ge 10 ] || HB_LOOPS=10
      fi
      # 2 groups x 10 senders x 10 receivers x loops messages
      echo "scale=0; 200 * $HB_LOOPS / $(hb_time "$HB_LOOPS")" | bc ;;
    *) echo "bench: unknown workload '$1' (storm, hackbench, pagecache)" >&2; exit 2 ;;
  esac
}
unit() {
  case "$1" in
    storm) echo "munmap+IPI ops/s" ;;
    hackbench) echo "hackbench messages/s" ;;
    pagecache) echo "64 KiB write + 256 KiB map/read ops/s" ;;
  esac
}
trap 'stop; rm -f "$OUT/pagecache.dat"' EXIT

read -r -a WORKLOADS <<< "${WORKLOADS:-storm}"
# SETUPS (space-separated) runs a subset; "none" is always among them.
read -r -a SETUPS <<< "${SETUPS:-none isol isold isol-floor isol-all bpftrace trace-cmd}"
[[ " ${SETUPS[*]} " == *" none "* ]] || SETUPS=(none "${SETUPS[@]}")
echo "# $(uname -r), $(nproc) CPUs, watched CPU $V, housekeeping CPU $H, $ROUNDS rounds of ${SECS} s, $(date -u '+%F %H:%M UTC')"
med() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A R
# Each round of a setup over the "nothing" round of the same pass: the
# VM's speed drifts between passes (its vCPUs' placement on the host),
# which moves both alike.
paired() { paste -d' ' <(echo "$1" | tr ' ' '\n' | grep .) <(echo "${R[none]}" | tr ' ' '\n' | grep .) |
  awk '{printf "%.4f\n", $1 / $2}' | med; }
for w in "${WORKLOADS[@]}"; do
  R=()
  for r in $(seq "$ROUNDS"); do
    for s in "${SETUPS[@]}"; do
      start "$s"
      sleep "$SETTLE"
      x=$(work "$w")
      stop
      R[$s]+="$x "
      echo "bench: $w round $r/$ROUNDS $s: $x" >&2
    done
  done
  base=$(echo "${R[none]}" | med)
  echo
  echo "## $w"
  echo
  echo "| setup | $(unit "$w") (median of $ROUNDS) | vs nothing | paired | rounds |"
  echo "|---|---|---|---|---|"
  for s in "${SETUPS[@]}"; do
    m=$(echo "${R[$s]}" | med)
    printf '| %s | %s | %.2f | %.3f | %s |\n' "$s" "$m" "$(echo "$m / $base" | bc -l)" "$(paired "${R[$s]}")" "${R[$s]}"
  done
done
