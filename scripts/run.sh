#!/usr/bin/env bash
# The main job on this machine: set up, build, and check how well this
# machine isolates CPUs: measure noise on the isolated CPUs (or one chosen
# CPU), name the cause of every gap, print a verdict and an HTML report.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release -p isol-cli
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
$SUDO ./target/release/isol check "$@"
