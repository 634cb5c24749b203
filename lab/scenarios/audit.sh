# isol audit / apply / revert on a guest booted with CPU 1 isolated
# (see lab/tests/audit.rs). Introduces four misconfigurations, checks that
# audit flags them, that apply fixes them, that revert restores every value
# byte for byte, and that apply SIGKILLed at each step in turn is always
# fully reverted.

# Every value isol may write, plus the pinned task's affinity, in one
# byte stream: equal streams mean byte-identical values.
snap() {
	for f in /proc/irq/*/smp_affinity_list /proc/irq/default_smp_affinity \
		/sys/devices/virtual/workqueue/cpumask* \
		/sys/devices/virtual/workqueue/*/cpumask \
		/proc/sys/kernel/timer_migration /proc/sys/kernel/watchdog_cpumask \
		/proc/sys/kernel/nmi_watchdog /proc/sys/kernel/numa_balancing \
		/proc/sys/vm/stat_interval \
		/sys/kernel/mm/transparent_hugepage/enabled /sys/kernel/mm/ksm/run \
		/sys/devices/system/cpu/cpu*/cpufreq/scaling_governor \
		/sys/devices/system/cpu/cpu*/cpuidle/state*/disable; do
		[ -e "$f" ] || continue
		echo "== $f"
		cat "$f"
	done
	echo "== pinned task $PINNED"
	grep Cpus_allowed_list /proc/$PINNED/status
}

# 1. Misconfigure.
irq=
for d in /proc/irq/[0-9]*; do
	n=${d#/proc/irq/}
	if echo 1 >$d/smp_affinity_list 2>/dev/null; then
		irq=$n
		break
	fi
done
[ -n "$irq" ] || fail "no IRQ accepts affinity 1"
echo "misconfig: IRQ $irq -> $(cat /proc/irq/$irq/smp_affinity_list)"
echo 3 >/sys/devices/virtual/workqueue/cpumask || fail "workqueue cpumask write"
echo "misconfig: workqueue cpumask $(cat /sys/devices/virtual/workqueue/cpumask)"
echo 1 >/proc/sys/kernel/timer_migration || fail "timer_migration write"
taskset -c 1 sleep 100000 &
PINNED=$!
sleep 0.2
echo "misconfig: pinned task $PINNED $(grep Cpus_allowed_list /proc/$PINNED/status)"
echo "IRQ=$irq PINNED=$PINNED"

snap >/tmp/before

# 2. audit -> apply -> audit -> apply again -> revert.
section audit1 isol audit --json
section apply1 isol apply --cpus 1 --json
section audit2 isol audit --json
section apply2 isol apply --cpus 1 --json
snap >/tmp/applied
section revert isol revert --json
snap >/tmp/after
if cmp -s /tmp/before /tmp/after; then
	echo "revert: byte-identical"
else
	echo "revert: DIFFERS"
	diff /tmp/before /tmp/after
	fail "revert did not restore every value"
fi
cmp -s /tmp/before /tmp/applied && fail "apply changed nothing"

# 3. Fault injection: apply killed after step N, then revert.
n=1
while [ $n -lt 400 ]; do
	ISOL_FAULT_AFTER=$n isol apply --cpus 1 >/dev/null 2>&1
	rc=$?
	if [ $rc -ne 137 ]; then
		echo "fault: apply completed (rc $rc) with ISOL_FAULT_AFTER=$n"
		isol revert >/dev/null 2>&1 || fail "revert after complete apply"
		break
	fi
	isol revert >/tmp/revert.out 2>&1 || {
		cat /tmp/revert.out
		fail "revert after kill at step $n"
	}
	snap >/tmp/after
	cmp -s /tmp/before /tmp/after || {
		diff /tmp/before /tmp/after
		fail "not restored after kill at step $n"
	}
	[ -e /var/lib/isol/journal.json ] && fail "journal left after revert (step $n)"
	n=$((n + 1))
done
echo "fault: killed at steps 1..$((n - 1)), every one restored byte for byte"
echo "FAULT_STEPS=$((n - 1))"
kill $PINNED
