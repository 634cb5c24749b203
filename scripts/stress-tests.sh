#!/usr/bin/env bash
# Robustness check for the host tests: run them several times in a row,
# idle and under CPU load from other processes, and report each round.
# A test that passes only on a quiet machine fails here first.
#
#   bash scripts/stress-tests.sh [ROUNDS] [-- TEST FILTER ARGS...]
#
# ROUNDS (default 5) rounds idle, then ROUNDS rounds with a busy loop on
# every CPU (stress-ng if installed, else shell loops; niced so the tests
# still get the CPU they wait for, as on a loaded CI machine). The lab
# tests (crate isol-lab) are left out: their guest is emulated, the host
# load does not reach it. Needs root, like the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
shift || true
[ "${1:-}" = "--" ] && shift
filter=("$@")
[ "$(id -u)" = 0 ] || { echo "stress-tests: the tests need root" >&2; exit 1; }

cargo build --workspace --all-targets --quiet
log=$(mktemp -d /tmp/isol-stress.XXXXXX)
load_pids=()
stop_load() {
	for p in "${load_pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	load_pids=()
}
trap stop_load EXIT

start_load() {
	local n
	n=$(nproc)
	if command -v stress-ng >/dev/null; then
		nice -n 10 stress-ng --cpu "$n" --quiet &
		load_pids+=($!)
	else
		for _ in $(seq "$n"); do
			nice -n 10 sh -c 'while :; do :; done' &
			load_pids+=($!)
		done
	fi
}

fails=0
run_round() {
	local label=$1 i=$2 out="$log/$1-$2.log" t0 rc=0
	t0=$(date +%s)
	cargo test --workspace --exclude isol-lab --no-fail-fast -- --test-threads=2 "${filter[@]}" \
		>"$out" 2>&1 || rc=$?
	local failed
	failed=$(grep -E '^test .* FAILED$' "$out" | sed 's/^test //; s/ \.\.\. FAILED$//' | tr '\n' ' ')
	printf '%-5s round %d: %s in %ds%s\n' "$label" "$i" \
		"$([ $rc = 0 ] && echo pass || echo FAIL)" "$(($(date +%s) - t0))" \
		"${failed:+ (failed: $failed)}"
	[ $rc = 0 ] || fails=$((fails + 1))
}

for i in $(seq "$rounds"); do run_round idle "$i"; done
start_load
for i in $(seq "$rounds"); do run_round load "$i"; done
stop_load
echo "stress-tests: $fails failed round(s) of $((2 * rounds)); logs in $log"
[ $fails = 0 ]
