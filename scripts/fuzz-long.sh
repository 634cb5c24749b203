#!/usr/bin/env bash
# The fuzz harnesses (proptest, stable Rust) with many more cases than CI
# runs: every parser of hostile input isol has. Usage:
#   bash scripts/fuzz-long.sh [CASES]     (default 200000 per harness)
# Prints each harness's cases and wall time; figures go to bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
CASES=${1:-200000}
export PROPTEST_CASES=$CASES RUST_BACKTRACE=0
run() { # crate, cargo test selector...
  local t0=$SECONDS
  cargo test --release -q -p "$@" -- --test-threads=1 >/tmp/fuzz-long.$$ 2>&1 \
    || { cat /tmp/fuzz-long.$$; echo "fuzz: $* FAILED" >&2; exit 1; }
  printf '%-60s %8s cases  %5ss\n' "$*" "$CASES" $((SECONDS - t0))
}
run isol-daemon --lib socket::tests::request_lines_and_decoding_hold_on_any_input
run isol-daemon --lib socket::tests::json_shaped_requests_decode_or_are_refused_without_panic
run isol-daemon --lib config::tests::any_config_text_is_refused_or_valid
run isol-census --test fuzz
run isol-system --test fuzz
run isol-system --lib irq::tests::any_interrupts_text_parses_without_panic
run isol-capi --lib fuzz::
run isol-cpulist --lib
rm -f /tmp/fuzz-long.$$
