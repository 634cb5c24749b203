# VM exits of a vCPU thread on isolated CPU 1 (see lab/tests/vmexit.rs).
# The guest CPU is QEMU's `-cpu max`: it has svm and npt, so the guest
# kernel's own KVM runs a nested guest (kvmguest's tiny real-mode one).
#
# isol starts before the kvm module loads, with CPU 1 idle (a vCPU spinning
# under TCG stretches isol's load to minutes; see lab/README.md): it must
# say that KVM is not there, then attach to kvm's tracepoints once it is.

grep -qw svm /proc/cpuinfo || fail "no svm in /proc/cpuinfo: nested KVM impossible"
[ -e /dev/kvm ] && fail "/dev/kvm before the kvm modules were loaded"

# VMEXIT_PART=strict: strict mode on the vCPU thread, doctor and the
# halt polling audit item (lab/tests/vmexit.rs, strict_*); the capture
# part otherwise.
if [ "$VMEXIT_PART" = strict ]; then
	section doctor_nokvm isol doctor --json
	for m in $(cat /lab/kvm/order); do
		insmod /lab/kvm/$m.ko || fail "insmod $m"
	done
	[ -c /dev/kvm ] || fail "no /dev/kvm after loading $(cat /lab/kvm/order)"
	section doctor_kvm isol doctor --json

	# The vCPU thread is registered before its guest first runs (--run),
	# and isol starts with CPU 1 idle. --phased: the guest's hlt and out
	# exits first, then the housekeeping thread's TLB flushes (IPIs to
	# CPU 1, the VMM's mm) while the guest spins.
	# 1. Counting (--signal 0): every break must be a host-caused exit.
	# 2. SIGKILL: the guest-caused exits pass, the first host-caused one
	#    kills the VMM.
	for run in count kill; do
		sig=KILL
		[ $run = count ] && sig=0
		rm -f /tmp/ks.run
		kvmguest --cpu 1 --hk 0 --hlt 10 --out 10 --flushes 20 --period-us 5000 --timeout 400 \
			--phased --run /tmp/ks.run >/tmp/ks-$run.out 2>/tmp/ks-$run.err &
		K=$!
		wait_for /tmp/ks-$run.out vcpu_tid=
		T=$(sed -n 's/.*vcpu_tid=\([0-9]*\).*/\1/p' /tmp/ks-$run.out)
		isol watch --cpus 1 --strict $T --break-on vmexit --signal $sig -D 900 --events \
			>/tmp/sw-$run.json 2>/tmp/sw-$run.err &
		W=$!
		wait_for /tmp/sw-$run.err "strict mode armed"
		touch /tmp/ks.run
		wait $K
		echo "kvmguest_${run}_status=$?"
		cat /tmp/ks-$run.err
		kill -INT $W
		wait $W
		rc=$?
		section strict_${run}_guest cat /tmp/ks-$run.out
		section strict_${run}_watch sh -c "cat /tmp/sw-$run.json; exit $rc"
		section strict_${run}_err cat /tmp/sw-$run.err
	done

	# kvm.halt_poll_ns: Debian's KVM polls (200000 ns); apply turns it
	# off, revert puts it back.
	section audit isol audit --cpus 1 --json
	section apply isol apply --cpus 1 --json
	section halt_after_apply cat /sys/module/kvm/parameters/halt_poll_ns
	section audit_after isol audit --cpus 1 --json
	section revert isol revert --json
	section halt_after_revert cat /sys/module/kvm/parameters/halt_poll_ns
	exit 0
fi

isol watch --cpus 1 -D 900 --events >/tmp/vm.json 2>/tmp/vm.err &
W=$!
wait_for /tmp/vm.err watching
wait_for /tmp/vm.err "VM exits:"

for m in $(cat /lab/kvm/order); do
	insmod /lab/kvm/$m.ko || fail "insmod $m"
done
[ -c /dev/kvm ] || fail "no /dev/kvm after loading $(cat /lab/kvm/order)"
# isol notices the modules within its polling period (once a second).
wait_for /tmp/vm.err "exit reasons named"

# 20 hlt and 20 out exits asked of the guest, and 40 TLB-flush IPIs from
# the VMM's own housekeeping thread on CPU 0 while the guest spins.
# The VM is kept (--hold) after that, for the audit of KVM's host threads.
kvmguest --cpu 1 --hk 0 --hlt 20 --out 20 --flushes 40 --period-us 5000 --timeout 400 \
	--hold /tmp/kg.release >/tmp/kg.out 2>/tmp/kg.err &
K=$!
wait_for /tmp/kg.out '"ok"'
section audit isol audit --cpus 1 --json
touch /tmp/kg.release
wait $K
echo "kvmguest_status=$?"
cat /tmp/kg.err
kill -INT $W
wait $W
rc=$?
section guest cat /tmp/kg.out
section watch sh -c "cat /tmp/vm.json; exit $rc"
section watch_err cat /tmp/vm.err

# The same, watched by process: isol follows the VMM (its vCPU thread
# among its threads) wherever it runs. The VMM waits (--go) until isol
# is attached, with CPU 1 idle meanwhile.
kvmguest --cpu 1 --hk 0 --hlt 10 --out 10 --flushes 20 --period-us 5000 --timeout 400 \
	--go /tmp/kg2.go >/tmp/kg2.out 2>/tmp/kg2.err &
K=$!
isol watch --pid $K -D 900 --events >/tmp/vm2.json 2>/tmp/vm2.err &
W=$!
wait_for /tmp/vm2.err "exit reasons named"
touch /tmp/kg2.go
wait $K
echo "kvmguest2_status=$?"
cat /tmp/kg2.err
kill -INT $W
wait $W
rc=$?
section guest2 cat /tmp/kg2.out
section watch_pid sh -c "cat /tmp/vm2.json; exit $rc"
section watch_pid_err cat /tmp/vm2.err

# isold exports the exits: series of class="vmexit" by reason. It starts
# with CPU 1 idle and the kvm module already there.
start_isold 1
D=$ISOLD
kvmguest --cpu 1 --hk 0 --hlt 5 --out 5 --flushes 10 --period-us 5000 --timeout 400 >/tmp/kg3.out 2>&1
echo "kvmguest3_status=$?"
# Wait (up to 60 s) for the interval that holds all 5 HLT and 6 IOIO exits.
i=0
until wget -q -O /tmp/m1 http://127.0.0.1:9977/metrics 2>/dev/null &&
	grep -q 'class="vmexit",kind="vm_exit",detail="HLT"} \([5-9]\|[1-9][0-9]\)' /tmp/m1 &&
	grep -q 'class="vmexit",kind="vm_exit",detail="IOIO"} \([6-9]\|[1-9][0-9]\)' /tmp/m1; do
	i=$((i + 1))
	[ $i -lt 600 ] && sleep 0.1 || break
done
section guest3 cat /tmp/kg3.out
section metrics cat /tmp/m1
kill $D
wait $D
echo "isold_status=$?"
