//! Generates isol.h (cbindgen) and an uninstalled isol.pc next to the
//! library in the target directory: target/<profile>/include/isol.h and
//! target/<profile>/pkgconfig/isol.pc. scripts/install-capi.sh installs them.

use std::path::PathBuf;

fn main() {
    let crate_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out.
    let profile_dir = out.ancestors().nth(3).unwrap().to_path_buf();
    let cfg = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).unwrap();
    let header = profile_dir.join("include/isol.h");
    std::fs::create_dir_all(header.parent().unwrap()).unwrap();
    cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(cfg)
        .generate()
        .expect("generating isol.h")
        .write_to_file(&header);
    let pc = profile_dir.join("pkgconfig/isol.pc");
    std::fs::create_dir_all(pc.parent().unwrap()).unwrap();
    std::fs::write(
        &pc,
        format!(
            "prefix={}\nincludedir=${{prefix}}/include\nlibdir=${{prefix}}\n\n\
             Name: isol\nDescription: task isolation for latency-critical programs\n\
             Version: {}\nCflags: -I${{includedir}}\nLibs: -L${{libdir}} -lisol\n\
             Libs.private: -lpthread -ldl -lm -lrt\n",
            profile_dir.display(),
            std::env::var("CARGO_PKG_VERSION").unwrap()
        ),
    )
    .unwrap();
    println!("cargo:rerun-if-changed=src/lib.rs");
    println!("cargo:rerun-if-changed=cbindgen.toml");
}
