# The capture engine on nohz_full CPU 1 (see lab/tests/watch.rs).
# isol runs on CPU 0 (it pins itself away from the watched CPU).
#
# isol loads its programs while the victims are stopped (SIGSTOP): under
# single-threaded TCG a vCPU spinning in user space keeps the emulator for
# its whole round-robin slice, and every synchronous cross-CPU call the load
# makes (text patching as tracepoints attach, kernel TLB flushes) waits for
# that slice to end. Loading took ~160 s with a victim spinning on CPU 1 and
# under 3 s with CPU 1 idle. Once isol says it is attached, the victims go on
# (SIGCONT), so the captures see them exactly as before.

# 1. Idle CPU 1: nothing of isol's own may land there.
section idle isol watch --cpus 1 -D 3 --events

# 2. A victim on CPU 1 with TLB-flush IPIs from its sibling thread on CPU 0:
#    exact durations from context tracking.
noisegen --cpu 1 --hk 0 --tlb --period-us 20000 --duration 600 >/tmp/ng1.out &
NG=$!
wait_for /tmp/ng1.out tid=
freeze $NG
isol watch --cpus 1 -D 3 --events >/tmp/tlb.json 2>/tmp/tlb.err &
W=$!
wait_for /tmp/tlb.err watching
kill -CONT $NG
wait $W
rc=$?
# The victim ends first: while it spins, the guest's CPU 0 crawls.
kill $NG
wait $NG
section tlb sh -c "cat /tmp/tlb.json; exit $rc"
sed 's/^/[stderr] /' /tmp/tlb.err

# 3. Strict: TLB-flush IPIs reach the victim continuously; registered for
#    IPIs (--break-on ipi), it must be killed by the first one with no
#    further loop iteration. The victim runs SCHED_FIFO without RT
#    throttling, as latency-critical loops do: a SCHED_OTHER task on a
#    nohz_full CPU of this kernel gets a 1 Hz reschedule IPI from the
#    deadline (fair) server's timer (isol names it: dl_task_timer on CPU 0),
#    and residual ticks are timer-class, not IPIs. The victim and its
#    generator resume together once it is armed: the flushes flow from the
#    victim's first instant, as they did when it was registered running.
#    On a tuned box: other IPIs (khugepaged's) would rightly come first.
tune_box 1
echo -1 >/proc/sys/kernel/sched_rt_runtime_us
noisegen --cpu 1 --hk 0 --tlb --period-us 200 --fifo 10 --counter /tmp/ctr --duration 600 >/tmp/ng2.out &
NG=$!
wait_for /tmp/ng2.out tid=
set -- $(sed 's/tid=//;s/counter=//' /tmp/ng2.out)
TID=$1 ADDR=$2
freeze $NG
isol watch --cpus 1 -D 8 --events --strict "$TID" --break-on ipi --progress-addr "$ADDR" >/tmp/strict.json 2>/tmp/strict.err &
W=$!
wait_for /tmp/strict.err armed
kill -CONT $NG
wait $W
# Not killed by the end of the watch: say so, and end it with SIGTERM.
kill -0 $NG 2>/dev/null && echo "victim still alive after the watch" && kill $NG
wait $NG
echo "victim_status=$?"
section strict cat /tmp/strict.json
# The counter as the victim left it (little-endian u64).
section counter od -A n -t u8 -N 8 /tmp/ctr

# 4. Why the tick runs: a victim with a CPU-time timer (ITIMER_PROF) keeps
#    the tick on nohz_full CPU 1 (dependency posix_timer); isol watch's
#    summary says so, from timer:tick_stop.
noisegen --cpu 1 --cputimer --duration 600 >/tmp/ng4.out &
NG=$!
wait_for /tmp/ng4.out tid=
freeze $NG
isol watch --cpus 1 -D 3 --json >/tmp/tick.json 2>/tmp/tick.err &
W=$!
wait_for /tmp/tick.err watching
kill -CONT $NG
wait $W
rc=$?
kill $NG
wait $NG
section tick sh -c "cat /tmp/tick.json; exit $rc"
