//! Compile src/bpf/capture.bpf.c with clang and generate its Rust skeleton.

use libbpf_cargo::SkeletonBuilder;
use std::path::PathBuf;

fn main() {
    let src = "src/bpf/capture.bpf.c";
    // The architecture's vmlinux.h and arch.h (pt_regs, vectors).
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap();
    let arch_dir = format!("src/bpf/arch/{arch}");
    assert!(
        std::path::Path::new(&arch_dir).is_dir(),
        "no {arch_dir}: the capture's BPF side knows x86_64 only (docs/arm64.md says what a port adds)"
    );
    let include_arch = format!("-I{arch_dir}");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap()).join("capture.skel.rs");
    SkeletonBuilder::new()
        .source(src)
        .clang_args([
            "-Isrc/bpf",
            include_arch.as_str(),
            "-I../isol-abi/src",
            "-Wall",
            "-Wno-unused-function",
        ])
        .build_and_generate(&out)
        .expect("building the BPF skeleton (needs clang; see scripts/setup.sh)");
    for f in ["src/bpf/capture.bpf.c", "../isol-abi/src/capture.h"] {
        println!("cargo:rerun-if-changed={f}");
    }
    println!("cargo:rerun-if-changed={arch_dir}");
}
