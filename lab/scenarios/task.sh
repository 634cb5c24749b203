# The task isolation API on nohz_full CPU 1 (see lab/tests/task.rs): the
# task isolation patch's three samples, linked statically with libisol, activate through
# isold; persistent, strict and one-shot behaviour, inheritance across
# fork, the tick-dependency report, and chisol on an unmodified program.
ifconfig lo 127.0.0.1 up
tune_box 1
mkdir -p /etc/isol
printf 'cpus = "1"\n' >/etc/isol/isold.toml
isol serve >/tmp/isold.log 2>&1 &
D=$!
i=0
until [ -S /run/isol/isold.sock ]; do
	i=$((i + 1))
	[ $i -lt 1200 ] || { cat /tmp/isold.log; fail "isold did not come up"; }
	sleep 0.1
done
# SCHED_FIFO (-f): on 6.12 a SCHED_OTHER task on a nohz_full CPU gets a
# 1 Hz reschedule IPI from the fair deadline server.

# Persistent: a syscall 1 s into a loop that runs until SIGUSR2 (prctl
# renaming the task, so its effect can be waited for); isold's view just
# after it, however long `isol status` takes on a starved emulator (CPU 1
# spinning makes CPU 0 slow under TCG: seconds per command).
userloop -c 1 -f 10 -t 2 -u -S -r >/tmp/persistent.out 2>&1 &
P=$!
i=0
until [ "$(cat /proc/$P/comm 2>/dev/null)" = userloop-sc ]; do
	i=$((i + 1))
	[ $i -lt 600 ] || { cat /tmp/persistent.out; fail "userloop -S made no syscall within 60 s"; }
	sleep 0.1
done
isol status --json >/tmp/pstatus.json 2>&1
kill -USR2 $P
section persistent_status cat /tmp/pstatus.json
wait $P
section persistent cat /tmp/persistent.out
# Strict, the task's own entries only, so that whatever else interrupts
# the CPU cannot come first: the syscall half way is the break.
section strict userloop -c 1 -f 10 -t 1 -s -o -S
# Strict, interruptions: a thread of the task on CPU 0 unmaps pages, so
# TLB-flush IPIs reach CPU 1; the break the task reads back is the whole
# interruption (chain, sender). Something else may come first on a
# quiet CPU too (rarely): up to three tries for the storm's IPI.
for t in 1 2 3; do
	userloop -c 1 -f 10 -t 5 -s -X >/tmp/tlbbreak.out 2>&1
	grep -q 'last="ipi: flush_tlb_func' /tmp/tlbbreak.out && break
done
section tlbbreak cat /tmp/tlbbreak.out
# Persistent, with the same storm: the loop reads its status page (plain
# loads) and sees the breaks arrive, with their chain and sender.
section pagewatch userloop -c 1 -f 10 -t 2 -X -W
# Logging from the isolated loop (no syscall there): the drain thread on
# CPU 0 writes it out.
ISOL_LOG_FILE=/tmp/loop.log userloop -c 1 -f 10 -t 2 -L -r >/tmp/logloop.out 2>&1
section logloop cat /tmp/logloop.out /tmp/loop.log
section computation computation -c 1 -f 10 -n 200000 -r
section oneshot oneshot -c 1 -f 10 -t 2 -e 3
section persistent_events oneshot -c 1 -f 10 -t 2 -e 3 -p
userloop -c 1 -f 10 -t 2 -u -F -r >/tmp/fork.out 2>&1 &
F=$!
i=0
until grep -q "child: pid=" /tmp/fork.out; do
	i=$((i + 1))
	[ $i -lt 300 ] || { cat /tmp/fork.out; fail "userloop -F did not fork"; }
	sleep 0.1
done
# The child is registered by the kernel-side fork hook: wait for isold to
# list it (the child loops until SIGUSR2), then keep that answer.
CHILD=$(sed -n 's/^child: pid=\([0-9]*\).*/\1/p' /tmp/fork.out)
i=0
until isol status --json >/tmp/forkstatus.json 2>&1 && grep -q "\"id\": *$CHILD[,}]" /tmp/forkstatus.json; do
	i=$((i + 1))
	if [ $i -ge 50 ]; then
		echo "child $CHILD never listed by isold; last answer:"
		cat /tmp/forkstatus.json
		echo "isold log:"
		cat /tmp/isold.log
		break
	fi
	sleep 0.1
done
kill -USR2 "$CHILD"
section forkstatus cat /tmp/forkstatus.json
wait $F
section fork cat /tmp/fork.out
section ptimer userloop -c 1 -f 10 -t 1 -P -r
# The timers quiesce: a timer of the task's due in 400 ms is waited out;
# one due in 100 s cannot be, and is named.
section timers_short userloop -c 1 -f 10 -t 1 -T 400 -r
section timers_long userloop -c 1 -f 10 -t 1 -T 100000 -r
# An unmodified program: busybox's shell counting, no libisol.
section chisol chisol --json -a -q vmstat_sync --cpu 1 -- sh -c 'i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done; echo counted $i'
kill $D
wait $D
echo "isold_status=$?"
section isold_log cat /tmp/isold.log
