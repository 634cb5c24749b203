# isold on quiet CPU 1 (see lab/tests/serve.rs): a TLB-flush generator's
# IPIs must show in /metrics, with their function.
# The initramfs brings no interface up; isold listens on loopback.
start_isold 1
D=$ISOLD
noisegen --cpu 1 --hk 0 --tlb --duration 600 >/dev/null &
NG=$!
# Wait for the series (collected every interval) rather than a fixed time.
i=0
until wget -q -O /tmp/m1 http://127.0.0.1:9977/metrics 2>/dev/null &&
	grep -q '^isol_interruptions_total{cpu="1",class="ipi".*detail="flush_tlb_func' /tmp/m1; do
	i=$((i + 1))
	[ $i -lt 600 ] && sleep 0.1 || break
done
section metrics cat /tmp/m1
kill $NG
kill $D
wait $D
echo "isold_status=$?"
