# Harness smoke test (busybox only): the kernel took the isolation parameters.
echo "kernel $(uname -r), $(nproc) CPUs"
section nohz_full cat /sys/devices/system/cpu/nohz_full
section isolated cat /sys/devices/system/cpu/isolated
section cmdline cat /proc/cmdline
# NO_HZ_FULL active: context tracking tracepoints exist.
section context_tracking ls /sys/kernel/tracing/events/context_tracking
expect_file_eq /sys/devices/system/cpu/nohz_full 1
# Mounts made by /init.
grep -q ' /sys/fs/bpf bpf ' /proc/mounts || fail "bpffs not mounted"
grep -q ' /sys/fs/cgroup cgroup2 ' /proc/mounts || fail "cgroup2 not mounted"
# An extra file put in by the test.
section extra cat /etc/lab-extra.txt
