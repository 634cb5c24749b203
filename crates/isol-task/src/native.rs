//! The native backend: the seed's PR_ISOL_* prctls, on kernels that carry
//! the task isolation patch.
//!
//! Every call takes a [`Proof`], and the only way to get one is
//! [`Proof::check`], which succeeds only where /proc/self/task_isolation
//! exists (a file only the patch creates). On a stock kernel the numbers
//! 63..67 mean other things (SME vector length, MDWE, KSM merging), so
//! nothing here can be reached there.

use crate::abi::*;
use crate::error::{Error, Result};

/// Evidence that the running kernel carries the task isolation patch.
#[derive(Debug, Clone, Copy)]
pub struct Proof(());

impl Proof {
    pub fn check() -> Option<Proof> {
        let text = std::fs::read_to_string(PROC_SELF_TASK_ISOLATION).ok()?;
        // The patch's file has three labelled lines; anything else is not it.
        let ok = text.contains("Configured state:") && text.contains("Active state:");
        ok.then_some(Proof(()))
    }
}

fn prctl(_p: &Proof, op: i32, a2: u64, a3: u64, a4: u64, a5: u64) -> Result<i32> {
    // SAFETY: the pointer arguments point to live, correctly sized ABI
    // structs (callers below); the kernel is proven to carry the patch.
    let r = unsafe {
        libc::prctl(
            op,
            a2 as libc::c_ulong,
            a3 as libc::c_ulong,
            a4 as libc::c_ulong,
            a5 as libc::c_ulong,
        )
    };
    if r < 0 {
        return Err(Error::Os {
            what: format!("prctl({op})"),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(r)
}

pub fn features(p: &Proof) -> Result<(u64, u64)> {
    let mut feat = 0u64;
    prctl(p, PR_ISOL_FEAT_GET, 0, &mut feat as *mut u64 as u64, 0, 0)?;
    let mut ext = TaskIsolQuiesceExtensions::default();
    if feat & ISOL_F_QUIESCE != 0 {
        prctl(
            p,
            PR_ISOL_FEAT_GET,
            ISOL_F_QUIESCE,
            &mut ext as *mut _ as u64,
            0,
            0,
        )?;
    }
    Ok((feat, ext.supported_quiesce_bits))
}

pub fn configure(p: &Proof, quiesce: u64, oneshot: u64, inherit: u8) -> Result<()> {
    let ctrl = TaskIsolQuiesceControl {
        quiesce_mask: quiesce,
        quiesce_oneshot_mask: oneshot,
        ..Default::default()
    };
    prctl(
        p,
        PR_ISOL_CFG_SET,
        I_CFG_FEAT,
        ISOL_F_QUIESCE,
        QUIESCE_CONTROL,
        &ctrl as *const _ as u64,
    )?;
    let inh = TaskIsolInheritControl {
        inherit_mask: inherit,
        ..Default::default()
    };
    prctl(
        p,
        PR_ISOL_CFG_SET,
        I_CFG_INHERIT,
        &inh as *const _ as u64,
        0,
        0,
    )?;
    Ok(())
}

/// The seed's part of `cfg`: its quiesce bits (vmstat only) and inheritance.
pub fn configure_from(p: &Proof, cfg: &crate::Config) -> Result<()> {
    configure(
        p,
        cfg.quiesce.bits() & ISOL_F_QUIESCE_VMSTATS,
        cfg.oneshot.bits() & ISOL_F_QUIESCE_VMSTATS,
        cfg.inherit.abi_mask(),
    )
}

pub fn activate(p: &Proof, on: bool) -> Result<()> {
    let mask: u64 = if on { ISOL_F_QUIESCE } else { 0 };
    prctl(p, PR_ISOL_ACTIVATE_SET, &mask as *const u64 as u64, 0, 0, 0)?;
    Ok(())
}

pub fn active(p: &Proof) -> Result<u64> {
    let mut mask = 0u64;
    prctl(
        p,
        PR_ISOL_ACTIVATE_GET,
        &mut mask as *mut u64 as u64,
        0,
        0,
        0,
    )?;
    Ok(mask)
}

/// /proc/PID/task_isolation as the patch writes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProcState {
    pub configured: String,
    pub active: String,
    pub quiescing: String,
}

pub fn proc_state(pid: u32) -> Option<ProcState> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task_isolation")).ok()?;
    parse_proc_state(&text)
}

pub fn parse_proc_state(text: &str) -> Option<ProcState> {
    let mut s = ProcState::default();
    let mut seen = 0;
    for line in text.lines() {
        let (k, v) = line.split_once(':')?;
        let v = v.trim().to_string();
        match k.trim() {
            "Configured state" => s.configured = v,
            "Active state" => s.active = v,
            "Quiescing" => s.quiescing = v,
            _ => continue,
        }
        seen += 1;
    }
    (seen >= 2).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn parses_the_patch_proc_file() {
        let s = parse_proc_state(
            "Configured state: quiesce \nActive state: none \nQuiescing: vmstat_sync \n",
        )
        .unwrap();
        assert_eq!(s.configured, "quiesce");
        assert_eq!(s.active, "none");
        assert_eq!(s.quiescing, "vmstat_sync");
        assert!(parse_proc_state("something else\n").is_none());
    }
    #[test]
    fn no_proof_on_a_stock_kernel() {
        // This machine's kernel is stock: the gate must stay shut.
        if !std::path::Path::new(PROC_SELF_TASK_ISOLATION).exists() {
            assert!(Proof::check().is_none());
        }
    }
}
