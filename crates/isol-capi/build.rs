//! Builds libisol the way a C library is expected to look, as cargo-c
//! would (cargo-c itself is not used: `cargo install cargo-c` compiles all
//! of cargo, 18 minutes of CPU here, too slow for CI on two cores):
//!
//! - libisol.so gets the soname libisol.so.SOVERSION, so programs record
//!   that name and a future incompatible ABI can be installed beside it;
//! - isol.h is generated with cbindgen into target/<profile>/include/;
//! - target/<profile>/pkgconfig/isol.pc is the installed pkg-config file
//!   (prefix and libdir from ISOL_CAPI_PREFIX, ISOL_CAPI_LIBDIR, default
//!   /usr/local and PREFIX/lib), isol-uninstalled.pc points into this
//!   build tree; pkg-config prefers the latter when PKG_CONFIG_PATH names
//!   the directory, which is what the tests do.
//!
//! The Debian packages (packaging/debian/rules) install libisol.so as
//! libisol.so.VERSION with the soname and libisol.so linking to it.

use std::path::{Path, PathBuf};

/// Bump when the C ABI changes incompatibly (and rename the Debian package
/// libisolN in packaging/debian/control).
const SOVERSION: &str = "0";

fn main() {
    let crate_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out.
    let profile_dir = out.ancestors().nth(3).unwrap().to_path_buf();
    let version = std::env::var("CARGO_PKG_VERSION").unwrap();

    let soname = format!("libisol.so.{SOVERSION}");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
    // The samples test links against the build tree and needs the name.
    println!("cargo:rustc-env=ISOL_SONAME={soname}");

    let cfg = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).unwrap();
    let header = profile_dir.join("include/isol.h");
    std::fs::create_dir_all(header.parent().unwrap()).unwrap();
    cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(cfg)
        .generate()
        .expect("generating isol.h")
        .write_to_file(&header);

    // What a static link needs besides libisol.a: Rust's std (as
    // `rustc --print native-static-libs` lists it) and, with the
    // in-process watcher, libbpf's libelf and zlib.
    let mut private = String::new();
    if std::env::var_os("CARGO_FEATURE_CAPTURE").is_some() {
        private.push_str("-lelf -lz ");
    }
    private.push_str("-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc");

    let prefix = env_or("ISOL_CAPI_PREFIX", "/usr/local");
    let libdir = env_or("ISOL_CAPI_LIBDIR", &format!("{prefix}/lib"));
    let libdir = libdir.replacen(&prefix, "${prefix}", 1);
    let pc_dir = profile_dir.join("pkgconfig");
    std::fs::create_dir_all(&pc_dir).unwrap();
    write_pc(
        &pc_dir.join("isol.pc"),
        &prefix,
        &libdir,
        "${prefix}/include",
        &version,
        &private,
    );
    write_pc(
        &pc_dir.join("isol-uninstalled.pc"),
        &profile_dir.display().to_string(),
        "${prefix}",
        "${prefix}/include",
        &version,
        &private,
    );
    println!("cargo:rerun-if-changed=src/lib.rs");
    println!("cargo:rerun-if-changed=cbindgen.toml");
}

fn env_or(name: &str, default: &str) -> String {
    println!("cargo:rerun-if-env-changed={name}");
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn write_pc(
    path: &Path,
    prefix: &str,
    libdir: &str,
    includedir: &str,
    version: &str,
    private: &str,
) {
    std::fs::write(
        path,
        format!(
            "prefix={prefix}\nlibdir={libdir}\nincludedir={includedir}\n\n\
             Name: isol\nDescription: task isolation for latency-critical programs\n\
             Version: {version}\nCflags: -I${{includedir}}\nLibs: -L${{libdir}} -lisol\n\
             Libs.private: {private}\n"
        ),
    )
    .unwrap();
}
