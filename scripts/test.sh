#!/usr/bin/env bash
# Everything CI runs: set-up, build, and every test, including the lab
# (Debian 5.10, 6.1 and 6.12 kernels booted in QEMU) and the root/tracefs/BPF tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
[ "$(id -u)" = 0 ] || { echo "test: the tests need root (BPF, tracefs, mount namespaces); run with sudo" >&2; exit 1; }
cargo build --workspace --all-targets
cargo test --workspace --no-fail-fast -- --test-threads=2
