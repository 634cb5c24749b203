#!/usr/bin/env bash
# The fuzz harnesses (proptest, stable Rust) far beyond what CI runs: every
# parser of hostile input isol has. Usage:
#   bash scripts/fuzz-long.sh [CASES]        each harness once with CASES
#                                            cases (default 200000), in turn
#   bash scripts/fuzz-long.sh --minutes M    every harness at once, each
#                                            for M minutes of wall time
#                                            (rounds of fresh random cases,
#                                            at nice 19), then its case count
# Prints each harness's cases and wall time; figures go to bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUST_BACKTRACE=0
# crate | cargo target selector | test filter
HARNESSES=(
  "isol-daemon|--lib|socket::tests::request_lines_and_decoding_hold_on_any_input"
  "isol-daemon|--lib|socket::tests::json_shaped_requests_decode_or_are_refused_without_panic"
  "isol-daemon|--lib|config::tests::any_config_text_is_refused_or_valid"
  "isol-census|--test fuzz|"
  "isol-system|--test fuzz|"
  "isol-system|--lib|irq::tests::any_interrupts_text_parses_without_panic"
  "isol-capi|--lib|fuzz::"
  "isol-cpulist|--lib|"
  "isol-task|--lib|fuzz::"
)

if [ "${1:-}" != "--minutes" ]; then
  CASES=${1:-200000}
  export PROPTEST_CASES=$CASES
  for h in "${HARNESSES[@]}"; do
    IFS='|' read -r crate sel filter <<<"$h"
    t0=$SECONDS
    # shellcheck disable=SC2086
    cargo test --release -q -p "$crate" $sel -- --test-threads=1 $filter >/tmp/fuzz-long.$$ 2>&1 \
      || { cat /tmp/fuzz-long.$$; echo "fuzz: $h FAILED" >&2; exit 1; }
    printf '%-90s %10s cases  %5ss\n' "$h" "$CASES" $((SECONDS - t0))
  done
  rm -f /tmp/fuzz-long.$$
  exit 0
fi

MINUTES=${2:?usage: fuzz-long.sh --minutes M}
ROUND=${ROUND_CASES:-20000} # cases per round; a round's seed is fresh
out=$(mktemp -d)
# The test binaries, built once: rounds run them directly (no cargo lock).
bin_of() { # crate, selector
  # shellcheck disable=SC2086
  cargo test --release -q -p "$1" $2 --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["executable"])' | tail -n 1
}
pids=()
i=0
for h in "${HARNESSES[@]}"; do
  IFS='|' read -r crate sel filter <<<"$h"
  bin=$(bin_of "$crate" "$sel")
  [ -x "$bin" ] || { echo "fuzz: no test binary for $h" >&2; exit 1; }
  (
    end=$((SECONDS + MINUTES * 60)) rounds=0 t0=$SECONDS
    while [ $SECONDS -lt $end ]; do
      # shellcheck disable=SC2086
      if ! PROPTEST_CASES=$ROUND nice -n 19 "$bin" --test-threads=1 $filter >"$out/$i.last" 2>&1; then
        cp "$out/$i.last" "$out/$i.failed"
        break
      fi
      rounds=$((rounds + 1))
    done
    echo "$h|$((rounds * ROUND))|$((SECONDS - t0))" >"$out/$i.result"
  ) &
  pids+=($!)
  i=$((i + 1))
done
wait "${pids[@]}"
status=0
for f in "$out"/*.result; do
  IFS='|' read -r crate sel filter cases secs <"$f"
  printf '%-14s %-12s %-75s %12s cases  %6ss\n' "$crate" "$sel" "${filter:-(all)}" "$cases" "$secs"
done
for f in "$out"/*.failed; do
  [ -e "$f" ] || continue
  echo "--- FAILED: $f" >&2
  cat "$f" >&2
  status=1
done
rm -rf "$out"
exit $status
