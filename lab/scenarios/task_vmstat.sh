# The vmstat scenario of the task isolation prctl series on CPU 1 (see
# lab/tests/task_vmstat.rs): a task mlocks memory and loops; without the
# quiesce the vmstat shepherd sends vmstat_update to its CPU (the
# control), with it nothing comes for 30 s. The workqueue tracepoints,
# with the trace clock on CLOCK_MONOTONIC like the sample's timestamps,
# say which work was queued for and ran on CPU 1.
T=/sys/kernel/tracing
echo mono >$T/trace_clock || fail "trace_clock mono"
echo 8192 >$T/buffer_size_kb
echo 1 >$T/events/workqueue/workqueue_queue_work/enable
echo 1 >$T/events/workqueue/workqueue_execute_start/enable
section interval cat /proc/sys/vm/stat_interval

# run NAME ARGS...: the sample on CPU 1 (SCHED_OTHER: the work preempts
# it at once); section NAME holds its output and the vmstat/LRU work
# queued for CPU 1 or run there meanwhile.
run() {
	name=$1
	shift
	echo >$T/trace
	vmstat -c 1 "$@" >/tmp/$name.out 2>&1
	rc=$?
	# No work on CPU 1 at all (grep finds nothing) is a result, not a
	# failure of the scenario: the section's status stays 0.
	section $name sh -c "cat /tmp/$name.out; echo rc=$rc; grep -E 'function[= ]+(vmstat_update|lru_add_drain_per_cpu)' $T/trace | grep -E 'cpu=1 |\[001\]' || true"
}

# The control mlocks 1 MB: the shepherd may pass during the mlock itself
# (then its work runs inside the system call and parks), a short window.
run control -P -m 1 -t 6
# 30 s of nothing where a quiesce is needed; on 6.12 (none needed, the
# control shows it) the report is all that is asked.
if [ "$LAB_SERIES" = 6.12 ]; then
	run quiesce -q -t 2 -r
else
	run quiesce -q -t 30 -r
fi

if [ "$LAB_SERIES" = 6.1 ]; then
	# Persistent mode: mmap/mlock/munmap every 100 ms. A thread of the
	# sample on CPU 0 (-g 0) compacts memory twice a second, between two
	# churns: its lru_add_drain_all() drains every CPU whose batches hold
	# pages. The control also faults pages in from user space (what fills
	# the batches: the system calls drain them themselves) and never
	# re-quiesces.
	run persistent_control -q -l -n -u -g 0 -t 10
	run persistent -q -l -g 0 -t 20 -r
fi
