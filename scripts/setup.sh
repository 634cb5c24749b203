#!/usr/bin/env bash
# Install what a fresh Debian 12 machine lacks to build and test isol.
# Idempotent and quick when everything is present.
set -euo pipefail

PKGS=(
  # BPF build: clang compiles the programs, libbpf-sys builds vendored libbpf
  clang llvm libelf-dev zlib1g-dev pkg-config bpftool make gcc
  # bindgen generates the Rust side of the BPF boundary (crates/isol-abi)
  libclang-dev
  # fully static isol for the lab's initramfs (vendored libelf/zlib)
  autoconf automake autopoint flex bison gawk libtool gettext
  # the lab: Debian kernels booted under QEMU with a busybox initramfs
  # (xz-utils: 6.12's kernel modules are .ko.xz, unpacked for the guest)
  qemu-system-x86 busybox-static cpio xz-utils
  # used by tests (setpriv, unshare) and by the benchmarks' peers
  util-linux rt-tests trace-cmd bpftrace stress-ng
  # isold tests: a real Prometheus server scrapes it
  prometheus
  # the HTML report test renders it in a real headless browser
  chromium
  # Debian packages (scripts/deb.sh; packaging/debian/control names what
  # they build with); their test installs them in a Debian 12 chroot
  # (cached as .tar.zst) and runs lintian
  build-essential debhelper debootstrap lintian zstd
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v cargo >/dev/null || { echo "setup: cargo not found: install Rust stable (rustup)" >&2; exit 1; }
