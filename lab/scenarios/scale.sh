# Scale (lab/tests/scale.rs): 8 CPUs, 1-6 isolated. A perf-event
# generator per isolated CPU (their victims sleep on housekeeping CPU 0:
# the isolated CPUs stay idle, where idle-CPU IPIs were once left unnamed)
# and a membarrier storm at one; isol watches 1-6. Per CPU, isol's vector
# counts bracket /proc/interrupts; every call-function IPI is named.
for c in 1 2 3 4 5 6; do
	noisegen --cpu $c --hk 0 --perf --sleep --period-us 5000 --duration 600 >/tmp/ng$c.out 2>&1 &
done
isol watch --cpus 1-6 -D 6 --events >/tmp/scale.json 2>/tmp/scale.err
rc=$?
section scale sh -c "cat /tmp/scale.json; exit $rc"
sed 's/^/[stderr] /' /tmp/scale.err
