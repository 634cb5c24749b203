#!/usr/bin/env bash
# Build and install libisol (the task isolation API for C/C++): libisol.so,
# libisol.a, isol.h and isol.pc under PREFIX (default /usr/local).
#   bash scripts/install-capi.sh [PREFIX]
#   cc app.c $(pkg-config --cflags --libs isol)
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${1:-/usr/local}
cargo build --release -p isol-capi
dir=target/release
libdir=$prefix/lib
install -d "$libdir/pkgconfig" "$prefix/include"
install -m 0755 "$dir/libisol.so" "$libdir/"
install -m 0644 "$dir/libisol.a" "$libdir/"
install -m 0644 "$dir/include/isol.h" "$prefix/include/"
sed -e "s|^prefix=.*|prefix=$prefix|" -e 's|^libdir=.*|libdir=${prefix}/lib|' \
	"$dir/pkgconfig/isol.pc" >"$libdir/pkgconfig/isol.pc"
command -v ldconfig >/dev/null && ldconfig || true
echo "installed libisol in $prefix (pkg-config: PKG_CONFIG_PATH=$libdir/pkgconfig)"
