#!/usr/bin/env bash
# The main job on this machine: set up, build, and report how well this
# machine isolates CPUs and what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release -p isol-cli
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
$SUDO ./target/release/isol info "$@"
