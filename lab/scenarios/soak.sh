# isold under a continuous storm (lab/tests/soak.rs; the hour-long run in
# bench/RESULTS.md): TLB-flush and membarrier IPIs at CPU 1 from CPU 0 for
# SOAK_SAMPLES x SOAK_EVERY seconds; every SOAK_EVERY s one line: isold's
# RSS, the interruptions counted so far, the drops by reason, and whether
# the capture is up.
start_isold 1
D=$ISOLD
N=${SOAK_SAMPLES:-3}
E=${SOAK_EVERY:-10}
# Sampling stretches under TCG (each sample takes seconds): a generous
# duration, killed at the end anyway.
noisegen --cpu 1 --hk 0 --tlb --membarrier --duration $((N * E * 2 + 120)) >/dev/null &
NG=$!
sample() {
	wget -q -O /tmp/m http://127.0.0.1:9977/metrics || return
	rss=$(awk '/^VmRSS/ { print $2 }' /proc/$D/status)
	total=$(awk '/^isol_interruptions_total/ { s += $NF } END { printf "%d", s }' /tmp/m)
	drops=$(awk '/^isol_dropped_records_total/ { match($0, /reason="[a-z]*"/); printf "%s=%d ", substr($0, RSTART + 8, RLENGTH - 9), $NF }' /tmp/m)
	up=$(sed -n 's/^isol_up //p' /tmp/m)
	echo "t=$(cut -d' ' -f1 /proc/uptime) rss_kb=$rss interruptions=$total up=$up $drops"
}
{
	sample
	i=0
	while [ $i -lt "$N" ]; do
		sleep "$E"
		sample
		i=$((i + 1))
	done
} >/tmp/soak.out
section soak cat /tmp/soak.out
kill $NG
kill $D
wait $D
echo "isold_status=$?"
