//! Compile src/bpf/capture.bpf.c with clang and generate its Rust skeleton.

use libbpf_cargo::SkeletonBuilder;
use std::path::PathBuf;

fn main() {
    let src = "src/bpf/capture.bpf.c";
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap()).join("capture.skel.rs");
    SkeletonBuilder::new()
        .source(src)
        .clang_args([
            "-Isrc/bpf",
            "-I../isol-abi/src",
            "-Wall",
            "-Wno-unused-function",
        ])
        .build_and_generate(&out)
        .expect("building the BPF skeleton (needs clang; see scripts/setup.sh)");
    for f in [
        "src/bpf/capture.bpf.c",
        "../isol-abi/src/capture.h",
        "src/bpf/vmlinux.h",
    ] {
        println!("cargo:rerun-if-changed={f}");
    }
}
