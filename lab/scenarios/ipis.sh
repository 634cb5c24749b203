# IPIs on the quiet CPU 1 of every kernel of the matrix (lab/tests/ipis.rs):
# a victim spins there while its sibling threads on CPU 0 send it
# TLB-flush IPIs (munmap/mprotect), ipi_mb (membarrier) and
# remote_function (perf_event_open on CPU 1); isol names each IPI's
# function and sender and counts every vector as /proc/interrupts does.
# A remote wake-up of a reader on the idle CPU 1 is named with its waker.
# Then strict mode: the first TLB-flush IPI kills a registered victim.
#
# Victims are stopped while isol loads (see watch.sh: a vCPU spinning in
# user space under single-threaded TCG makes every cross-CPU call of the
# load wait for its time slice). wait_for and freeze: lab/guest/lib.sh.

section doctor isol doctor --json

noisegen --cpu 1 --hk 0 --tlb --membarrier --perf --period-us 20000 --duration 600 >/tmp/ng1.out &
NG=$!
wait_for /tmp/ng1.out tid=
freeze $NG
isol watch --cpus 1 -D 4 --events >/tmp/ipis.json 2>/tmp/ipis.err &
W=$!
wait_for /tmp/ipis.err watching
kill -CONT $NG
wait $W
rc=$?
kill $NG
wait $NG
section ipis sh -c "cat /tmp/ipis.json; exit $rc"
sed 's/^/[stderr] /' /tmp/ipis.err

# A remote wake-up: a reader blocked on a pipe on CPU 1, idle otherwise,
# woken by a writer on CPU 0 every 20 ms (noisegen --wake).
noisegen --cpu 1 --hk 0 --wake --sleep --period-us 20000 --go /tmp/go.wake --duration 600 >/tmp/ngw.out &
NG=$!
wait_for /tmp/ngw.out tid=
isol watch --cpus 1 -D 2 --events >/tmp/wake.json 2>/tmp/wake.err &
W=$!
wait_for /tmp/wake.err watching
touch /tmp/go.wake
wait $W
kill $NG
wait $NG
section wake cat /tmp/wake.json

# Strict: SCHED_FIFO victim (no RT throttling), registered for IPIs only,
# on a tuned box (other IPIs, khugepaged's, would rightly come first).
tune_box 1
echo -1 >/proc/sys/kernel/sched_rt_runtime_us
noisegen --cpu 1 --hk 0 --tlb --period-us 200 --fifo 10 --counter /tmp/ctr --duration 600 >/tmp/ng2.out &
NG=$!
wait_for /tmp/ng2.out tid=
freeze $NG
set -- $(sed 's/tid=//;s/counter=//' /tmp/ng2.out)
TID=$1 ADDR=$2
isol watch --cpus 1 -D 8 --events --strict "$TID" --break-on ipi --progress-addr "$ADDR" >/tmp/strict.json 2>/tmp/strict.err &
W=$!
wait_for /tmp/strict.err armed
kill -CONT $NG
wait $W
kill -0 $NG 2>/dev/null && echo "victim still alive after the watch" && kill $NG
wait $NG
echo "victim_status=$?"
section strict cat /tmp/strict.json
section counter od -A n -t u8 -N 8 /tmp/ctr

# Strict again, the victim in its own system calls (reads of /dev/zero):
# where context tracking bounds them (nohz_full) the IPI lands inside the
# call's episode, after the call in its chain; the break names the IPI.
# Its TLB flushes wait for the go file and two more calls (noisegen.c).
noisegen --cpu 1 --hk 0 --tlb --period-us 200 --fifo 10 --syscall --go /tmp/go3 --counter /tmp/ctr3 --duration 600 >/tmp/ng3.out &
NG=$!
wait_for /tmp/ng3.out tid=
freeze $NG
set -- $(sed 's/tid=//;s/counter=//' /tmp/ng3.out)
TID=$1 ADDR=$2
isol watch --cpus 1 -D 8 --events --syscalls --strict "$TID" --break-on ipi --progress-addr "$ADDR" >/tmp/strict3.json 2>/tmp/strict3.err &
W=$!
wait_for /tmp/strict3.err armed
kill -CONT $NG
touch /tmp/go3
wait $W
kill -0 $NG 2>/dev/null && echo "syscall victim still alive after the watch" && kill $NG
wait $NG
echo "syscall_victim_status=$?"
section strict_syscall cat /tmp/strict3.json
section counter_syscall od -A n -t u8 -N 8 /tmp/ctr3
