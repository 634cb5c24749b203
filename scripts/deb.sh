#!/usr/bin/env bash
# Build the Debian packages isol, libisol0 and libisol-dev (debhelper,
# packaging/debian) into target/debian/, or $CARGO_TARGET_DIR/debian:
#   bash scripts/deb.sh && apt install ./target/debian/*.deb
# Each run starts from a fresh copy of packaging/debian (no stale
# debian/tmp); cargo's own caching keeps rebuilds quick.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
# The build dependencies named in packaging/debian/control, installed as
# for any Debian source (cargo comes from rustup, see the control file).
if ! dpkg-checkbuilddeps packaging/debian/control 2>/dev/null; then
  echo "deb: installing the build dependencies" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get build-dep -y -qq ./packaging >/dev/null
fi
command -v cargo >/dev/null || { echo "deb: cargo not found: install Rust stable (rustup)" >&2; exit 1; }
src=$PWD
target=$(realpath -m "${CARGO_TARGET_DIR:-target}")
build=$target/deb-build
rm -rf "$build" "$target"/debian/{isol,libisol0,libisol-dev}_*.deb
mkdir -p "$build" "$target/debian"
cp -r packaging/debian "$build/"
cd "$build"
# cargo builds the packages in a directory of its own: debhelper's
# environment (CFLAGS, SOURCE_DATE_EPOCH) is not a plain `cargo build
# --release`'s, and sharing target/release with scripts/run.sh would
# rebuild libbpf and all of isol each time one follows the other.
export ISOL_SRC=$src CARGO_TARGET_DIR=$target/deb-cargo ISOL_DEB_OUT=$target/debian
# What dpkg-buildpackage -b would run, minus the .changes/.buildinfo it
# writes into the parent directory; Rules-Requires-Root: no, so no fakeroot.
debian/rules build
debian/rules binary
ls "$target"/debian/*.deb
