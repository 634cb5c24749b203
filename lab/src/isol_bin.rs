//! The fully static `isol` binary that goes into the guest.
//!
//! Built with its own `CARGO_TARGET_DIR` (`target/lab-static`) so that a build
//! started from inside `cargo test` does not wait on the outer cargo's lock,
//! and with an explicit `--target` so `+crt-static` applies to `isol` only, not
//! to build scripts and proc macros.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// Cargo features of `isol-cli` for the static guest build. Change here when
/// isol-cli features change (`static` = vendored libbpf, libelf, zlib).
pub const STATIC_FEATURES: &[&str] = &["static"];

pub use crate::arch::TARGET;

/// Built once per process; later calls reuse the path.
static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Path to a static `isol`: `$ISOL_LAB_BIN` if set (checked to be static),
/// else a release build of `isol-cli` from `workspace`.
pub fn static_isol(workspace: &Path) -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("ISOL_LAB_BIN").filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        ensure_static(&bin).context("ISOL_LAB_BIN")?;
        return Ok(bin);
    }
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(bin) = built.as_ref() {
        return Ok(bin.clone());
    }
    let bin = build(workspace)?;
    *built = Some(bin.clone());
    Ok(bin)
}

/// `cargo build --release --target TARGET ARGS` with +crt-static, into
/// target/lab-static.
fn static_cargo(workspace: &Path, args: &[&str]) -> Command {
    // The cargo running us (tests, `cargo run`) tells its own path in $CARGO.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(workspace)
        .args(["build", "--release"])
        .args(args)
        .args(["--target", TARGET])
        .env("CARGO_TARGET_DIR", static_target_dir(workspace))
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        // Would take precedence over RUSTFLAGS if inherited.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET");
    cmd
}

fn static_target_dir(workspace: &Path) -> PathBuf {
    workspace.join("target/lab-static")
}

fn build(workspace: &Path) -> Result<PathBuf> {
    let target_dir = static_target_dir(workspace);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = static_cargo(
        workspace,
        &["-p", "isol-cli", "--bin", "isol", "--bin", "chisol"],
    );
    if !STATIC_FEATURES.is_empty() {
        cmd.arg("--features").arg(STATIC_FEATURES.join(","));
    }
    let out = cmd
        .output()
        .with_context(|| format!("running {} build", Path::new(&cargo).display()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!(
            "static build of isol failed (cargo build --release -p isol-cli --target {TARGET} \
             with +crt-static, features {STATIC_FEATURES:?}); set ISOL_LAB_BIN to use a \
             prebuilt static isol. cargo said:\n{}",
            crate::tail(&stderr, 40)
        );
    }
    let bin = target_dir.join(TARGET).join("release/isol");
    ensure_static(&bin).context("static build of isol")?;
    ensure_static(&bin.with_file_name("chisol")).context("static build of chisol")?;
    Ok(bin)
}

/// The static `chisol` built with `isol` (next to it).
pub fn static_chisol(workspace: &Path) -> Result<PathBuf> {
    let isol = static_isol(workspace)?;
    let c = isol.with_file_name("chisol");
    ensure_static(&c)
        .context("chisol next to the static isol (ISOL_LAB_BIN: put chisol beside it)")?;
    Ok(c)
}

/// Static libisol.a without the in-process watcher (no libbpf: guest
/// programs use isold) and its generated isol.h: (library, include dir).
pub fn static_libisol(workspace: &Path) -> Result<(PathBuf, PathBuf)> {
    static DONE: Mutex<Option<(PathBuf, PathBuf)>> = Mutex::new(None);
    let mut done = DONE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(d) = done.as_ref() {
        return Ok(d.clone());
    }
    let target_dir = static_target_dir(workspace);
    let out = static_cargo(workspace, &["-p", "isol-capi", "--no-default-features"])
        .output()
        .context("running cargo build -p isol-capi")?;
    if !out.status.success() {
        bail!(
            "static build of libisol failed:\n{}",
            crate::tail(&String::from_utf8_lossy(&out.stderr), 40)
        );
    }
    let dir = target_dir.join(TARGET).join("release");
    let r = (dir.join("libisol.a"), dir.join("include"));
    *done = Some(r.clone());
    Ok(r)
}

/// Fail unless `path` is an x86-64 ELF executable without a program
/// interpreter (PT_INTERP): the guest has no dynamic loader or libc.
pub fn ensure_static(path: &Path) -> Result<()> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    match has_interp(&data) {
        None => bail!("{}: not a 64-bit little-endian ELF file", path.display()),
        Some(true) => bail!(
            "{} is dynamically linked (has PT_INTERP); the guest needs a static binary \
             (RUSTFLAGS='-C target-feature=+crt-static', --target {TARGET}; or gcc -static)",
            path.display()
        ),
        Some(false) => Ok(()),
    }
}

/// Some(true) if the ELF has a PT_INTERP header, None if not a valid ELF64 LE.
fn has_interp(data: &[u8]) -> Option<bool> {
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 || data[5] != 1 {
        return None;
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(data.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(data.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(data.get(o..o + 8)?.try_into().ok()?));
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let phentsize = usize::from(u16_at(0x36)?);
    let phnum = usize::from(u16_at(0x38)?);
    const PT_INTERP: u32 = 3;
    for i in 0..phnum {
        if u32_at(phoff + i * phentsize)? == PT_INTERP {
            return Some(true);
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busybox_static_is_static_and_ls_is_not() {
        if Path::new("/bin/busybox").exists() {
            ensure_static(Path::new("/bin/busybox")).unwrap();
        }
        let err = ensure_static(Path::new("/bin/ls")).unwrap_err();
        assert!(err.to_string().contains("dynamically linked"), "{err}");
        assert!(ensure_static(Path::new("/etc/passwd")).is_err());
    }
}
