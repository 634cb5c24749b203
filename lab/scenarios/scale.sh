# Scale (lab/tests/scale.rs): LAB_SMP CPUs, all but the first and the
# last isolated (nohz_full), watched by one `isol watch` through two
# phases, each started once isol is attached (go files) and over when its
# generators exit:
# 1. idle: a perf-event generator aimed at each isolated CPU while it
#    idles (the victims sleep on housekeeping CPU 0), where idle-CPU IPIs
#    were once left unnamed;
# 2. storm: a thread busy in user space on every isolated CPU, all in one
#    mm, while CPU 0 munmaps in a loop (TLB-flush IPIs to all of them) and
#    the last CPU floods membarrier(PRIVATE_EXPEDITED) (ipi_mb to all).
# Then SIGTERM ends the watch: its summary holds isol's vector counts
# beside /proc/interrupts read around its counting. /proc/interrupts
# around both phases (for the TLB line) and isol's BPF maps (fdinfo, while
# it runs) are sections too.
LAST=$((LAB_SMP - 1))
ISO=1-$((LAB_SMP - 2))
IDLE_S=${SCALE_IDLE_S:-3}
STORM_S=${SCALE_STORM_S:-5}

# bpf_maps PID: the fdinfo (type, sizes, memlock) of each BPF map PID holds.
bpf_maps() {
	for fd in /proc/$1/fd/*; do
		[ "$(readlink "$fd")" = anon_inode:bpf-map ] || continue
		echo map
		cat "/proc/$1/fdinfo/${fd##*/}"
	done
}

IDLE=
for c in $(seq 1 $((LAB_SMP - 2))); do
	noisegen --cpu $c --hk 0 --perf --sleep --period-us 5000 --duration $IDLE_S \
		--go /tmp/go.idle >/tmp/ng$c.out 2>&1 &
	IDLE="$IDLE $!"
done
# --pause: see testprogs/noisegen.c (under TCG a bare loop would make
# every IPI round wait for each spinner's turn of the emulator).
noisegen --cpu 1 --hk 0 --mb-hk $LAST --sleep --spin $ISO --pause \
	--ipi-storm --membarrier --period-us 0 --duration $STORM_S \
	--go /tmp/go.storm >/tmp/storm.out 2>&1 &
STORM=$!

# A 128 MiB ring (~420k records of 320 bytes): under TCG isol's reader,
# on the housekeeping CPUs beside the generators, drains a few thousand
# records a second while the 16-CPU storm makes up to ~26k (14 per
# munmap): the default 8 MiB dropped 560 of 51k records once, 32 MiB
# 4 206 of 129k on an idle host (counted, as ringbuf drops). The ring
# holds a whole run (its 128 MiB, ~70 MB of JSON in tmpfs and isol's
# heap fit the guest's 1 GiB).
isol watch --cpus $ISO --events --buffer-kb 131072 >/tmp/scale.json 2>/tmp/scale.err &
W=$!
wait_for /tmp/scale.err watching

section maps bpf_maps $W
section irq_before cat /proc/interrupts
T0=$(cut -d' ' -f1 /proc/uptime)
touch /tmp/go.idle
for p in $IDLE; do
	wait $p || { cat /tmp/ng*.out; fail "idle-phase noisegen $p failed"; }
done
T1=$(cut -d' ' -f1 /proc/uptime)
touch /tmp/go.storm
wait $STORM || { cat /tmp/storm.out; fail "storm noisegen failed"; }
T2=$(cut -d' ' -f1 /proc/uptime)
section irq_after cat /proc/interrupts
echo "phases: idle $T0..$T1 storm $T1..$T2 (guest uptime, s)"

# TERM, not INT: background jobs of a non-interactive shell ignore SIGINT.
kill -TERM $W
wait $W
rc=$?
section scale sh -c "cat /tmp/scale.json; exit $rc"
sed 's/^/[stderr] /' /tmp/scale.err
