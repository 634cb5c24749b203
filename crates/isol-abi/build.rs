//! Generate the Rust side of the BPF boundary from src/capture.h with
//! bindgen: every struct, enum and constant the BPF programs share with
//! Rust is written once, in the header. The structs derive bytemuck's Pod,
//! so a padding hole or a field the Rust side reads wrongly fails the
//! build, not a run.

use std::path::PathBuf;

#[derive(Debug)]
struct Pod;

impl bindgen::callbacks::ParseCallbacks for Pod {
    fn add_derives(&self, info: &bindgen::callbacks::DeriveInfo<'_>) -> Vec<String> {
        match info.kind {
            bindgen::callbacks::TypeKind::Struct => {
                vec!["bytemuck::Pod".into(), "bytemuck::Zeroable".into()]
            }
            _ => vec![],
        }
    }
}

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap()).join("capture.rs");
    bindgen::Builder::default()
        // The header uses the kernel's fixed-width names (vmlinux.h gives
        // them to the BPF side).
        .header_contents(
            "types.h",
            "typedef unsigned char __u8; typedef unsigned short __u16; \
             typedef unsigned int __u32; typedef int __s32; \
             typedef unsigned long long __u64; typedef long long __s64;",
        )
        .header("src/capture.h")
        .allowlist_file(".*capture\\.h")
        .default_enum_style(bindgen::EnumVariation::Consts)
        .prepend_enum_name(false)
        .derive_default(true)
        .derive_debug(true)
        .layout_tests(true)
        .parse_callbacks(Box::new(Pod))
        .generate()
        .expect("generating the Rust side of capture.h (bindgen needs libclang: apt-get install libclang-dev)")
        .write_to_file(&out)
        .expect("writing capture.rs");
    println!("cargo:rerun-if-changed=src/capture.h");
}
