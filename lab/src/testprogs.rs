//! The repo's C test programs (testprogs/NAME.c), built static once so they
//! run both on the host and in the busybox guest.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The repository root (the lab crate's parent).
fn workspace() -> Result<PathBuf> {
    Ok(Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("lab crate has no parent")?
        .to_owned())
}

/// Path of the static binary for `testprogs/NAME.c`, rebuilt when the
/// source is newer. Safe to call from parallel tests and processes.
pub fn testprog(name: &str) -> Result<PathBuf> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let ws = workspace()?;
    let src = ws.join(format!("testprogs/{name}.c"));
    if !src.exists() {
        bail!("no test program {}", src.display());
    }
    let dir = ws.join("target/testprogs");
    std::fs::create_dir_all(&dir)?;
    let out = dir.join(name);
    let mtime = |p: &Path| p.metadata().and_then(|m| m.modified()).ok();
    if out.exists() && mtime(&out) >= mtime(&src) {
        return Ok(out);
    }
    // Unique temporary name, then rename: other processes may race.
    let tmp = dir.join(format!("{name}.{}", std::process::id()));
    let st = Command::new("cc")
        .args(["-O2", "-Wall", "-pthread", "-static", "-o"])
        .arg(&tmp)
        .arg(&src)
        .status()
        .context("running cc (apt-get install gcc)")?;
    if !st.success() {
        bail!("building {} failed", src.display());
    }
    std::fs::rename(&tmp, &out)?;
    Ok(out)
}

/// A libisol sample (crates/isol-capi/examples/NAME.c) linked statically
/// with libisol.a, for the guest.
pub fn capi_sample(name: &str) -> Result<PathBuf> {
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let ws = workspace()?;
    let src = ws.join(format!("crates/isol-capi/examples/{name}.c"));
    if !src.exists() {
        bail!("no sample {}", src.display());
    }
    let (lib, include) = crate::isol_bin::static_libisol(&ws)?;
    let dir = ws.join("target/testprogs");
    std::fs::create_dir_all(&dir)?;
    let out = dir.join(format!("capi-{name}"));
    let tmp = dir.join(format!("capi-{name}.{}", std::process::id()));
    let st = Command::new("cc")
        .args(["-O2", "-Wall", "-Werror", "-pthread", "-static", "-I"])
        .arg(&include)
        .arg("-o")
        .arg(&tmp)
        .arg(&src)
        .arg(&lib)
        .args(["-ldl", "-lm", "-lrt"])
        .status()
        .context("running cc (apt-get install gcc)")?;
    if !st.success() {
        bail!("building {} against libisol.a failed", src.display());
    }
    std::fs::rename(&tmp, &out)?;
    Ok(out)
}
