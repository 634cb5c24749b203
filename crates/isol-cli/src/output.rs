//! Shared output helpers: every command can print JSON.

use serde::Serialize;

pub fn json<T: Serialize>(v: &T) -> anyhow::Result<()> {
    let s = serde_json::to_string_pretty(v)?;
    println!("{s}");
    Ok(())
}

/// A CPU list for people: `-` instead of an empty string.
pub fn cpus(c: &isol_cpulist::CpuSet) -> String {
    if c.is_empty() {
        "-".into()
    } else {
        c.to_string()
    }
}

pub fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}
