# isol lab scenario helpers, sourced before every scenario.

# section NAME CMD [ARGS...]: run CMD and frame its stdout with markers so the
# host can extract it (Outcome::section / json_section). CMD's stderr is
# printed after the closing marker, so it cannot corrupt a JSON section.
# Returns CMD's exit status.
section() {
	_lab_name=$1
	shift
	echo "@@ISOL-LAB-SECTION-BEGIN $_lab_name@@"
	"$@" 2>/tmp/.lab-section-err
	_lab_rc=$?
	printf '\n@@ISOL-LAB-SECTION-END %s rc=%d@@\n' "$_lab_name" "$_lab_rc"
	if [ -s /tmp/.lab-section-err ]; then
		sed 's/^/[stderr] /' /tmp/.lab-section-err
	fi
	rm -f /tmp/.lab-section-err
	return $_lab_rc
}

# fail MSG...: report and end the scenario with status 1.
fail() {
	echo "FAIL: $*"
	exit 1
}

# expect_eq WHAT ACTUAL EXPECTED: fail unless ACTUAL = EXPECTED.
expect_eq() {
	[ "$2" = "$3" ] || fail "$1: got '$2', expected '$3'"
	echo "ok: $1 = '$3'"
}

# expect_file_eq PATH EXPECTED: fail unless the file's content is EXPECTED.
expect_file_eq() {
	[ -e "$1" ] || fail "$1: missing"
	expect_eq "$1" "$(cat "$1")" "$2"
}

# wait_for FILE PATTERN: up to 120 s for PATTERN to appear in FILE.
wait_for() {
	i=0
	while ! grep -q "$2" "$1" 2>/dev/null; do
		i=$((i + 1))
		[ $i -lt 1200 ] || { cat "$1"; fail "no '$2' in $1"; }
		sleep 0.1
	done
}

# freeze PID: SIGSTOP it and wait (up to 20 s) until every thread has stopped.
freeze() {
	kill -STOP "$1"
	i=0
	while grep -L '^State:.*stopped' /proc/"$1"/task/*/status 2>/dev/null | grep -q .; do
		i=$((i + 1))
		[ $i -lt 2000 ] || fail "pid $1 did not stop"
		sleep 0.01
	done
}

# tune_box CPUS: the audit's runtime fixes for CPUS (IRQs, workqueues, THP,
# ...), as a tuned box has them. Strict sections need it: khugepaged's
# collapses send tlb_remove_table_smp_sync to every CPU, and strict mode
# rightly kills a victim for that IPI before the one the scenario provokes.
tune_box() {
	isol apply --cpus "$1" >/tmp/apply.out 2>&1 || { cat /tmp/apply.out; fail "isol apply"; }
}

# start_isold CPUS [LINE]: isold watching CPUS, collecting every second,
# on loopback (the initramfs brings no interface up), LINE added to its
# configuration; returns once /metrics says the capture is attached. Its
# pid in ISOLD, its log /tmp/isold.log.
start_isold() {
	ifconfig lo 127.0.0.1 up
	mkdir -p /etc/isol
	printf 'cpus = "%s"\ninterval_ms = 1000\n%s\n' "$1" "$2" >/etc/isol/isold.toml
	isol serve >/tmp/isold.log 2>&1 &
	ISOLD=$!
	i=0
	until wget -q -O /tmp/isold.metrics http://127.0.0.1:9977/metrics 2>/dev/null &&
		grep -q "^isol_up 1" /tmp/isold.metrics; do
		i=$((i + 1))
		[ $i -lt 1200 ] || { cat /tmp/isold.log; fail "isold did not come up"; }
		sleep 0.1
	done
}
