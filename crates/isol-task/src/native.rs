//! The native backend: the task isolation prctls, on kernels that carry
//! the task isolation patch.
//!
//! Every call takes a [`Proof`], and the only way to get one is
//! [`Proof::check`], which succeeds only where /proc/self/task_isolation
//! exists (a file only the patch creates). On a stock kernel the numbers
//! 63..67 mean other things (SME vector length, MDWE, KSM merging), so
//! nothing here can be reached there. `crates/isol-task-emu` imitates the
//! patch (seccomp user notification) to test this file on stock kernels.

use crate::abi::*;
use crate::config::Quiesce;
use crate::error::{Error, Result};

/// Evidence that the running kernel carries the task isolation patch.
#[derive(Debug, Clone, Copy)]
pub struct Proof(());

impl Proof {
    pub fn check() -> Option<Proof> {
        let text = std::fs::read_to_string(PROC_SELF_TASK_ISOLATION).ok()?;
        // The patch's file has three labelled lines; anything else is not it.
        parse_proc_state(&text).map(|_| Proof(()))
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
            what: format!("prctl({})", op_name(op)),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(r)
}

fn op_name(op: i32) -> &'static str {
    match op {
        PR_ISOL_FEAT_GET => "PR_ISOL_FEAT_GET",
        PR_ISOL_CFG_GET => "PR_ISOL_CFG_GET",
        PR_ISOL_CFG_SET => "PR_ISOL_CFG_SET",
        PR_ISOL_ACTIVATE_GET => "PR_ISOL_ACTIVATE_GET",
        PR_ISOL_ACTIVATE_SET => "PR_ISOL_ACTIVATE_SET",
        _ => "?",
    }
}

/// PR_ISOL_FEAT_GET: the supported features, and the supported quiesce
/// bits of ISOL_F_QUIESCE.
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

/// PR_ISOL_CFG_SET of ISOL_F_QUIESCE (QUIESCE_CONTROL).
pub fn set_quiesce(p: &Proof, quiesce: u64, oneshot: u64) -> Result<()> {
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
    Ok(())
}

/// PR_ISOL_CFG_SET of I_CFG_INHERIT.
pub fn set_inherit(p: &Proof, inherit: u8) -> Result<()> {
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

/// Pass `cfg`'s part of the kernel's ABI on: the quiesce and one-shot
/// masks and the inheritance. A quiesce bit the kernel does not support
/// (isol's own LRU drain and timer wait are stock-kernel steps) is
/// refused, naming it, rather than dropped.
pub fn configure_from(p: &Proof, cfg: &crate::Config) -> Result<()> {
    let (_, supported) = features(p)?;
    let unsupported = Quiesce::from_bits_truncate(cfg.quiesce.bits() & !supported);
    if !unsupported.is_empty() {
        return Err(Error::Config(format!(
            "this kernel's task isolation quiesces only {} ; {} is isol's stock-kernel step, not the kernel's: configure without it here",
            Quiesce::from_bits_truncate(supported).names().join(", "),
            unsupported.names().join(", ")
        )));
    }
    set_quiesce(p, cfg.quiesce.bits(), cfg.oneshot.bits())?;
    set_inherit(p, cfg.inherit.abi_mask())?;
    Ok(())
}

/// The kernel's per-task configuration (PR_ISOL_CFG_GET).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelConfig {
    /// Configured features (ISOL_F_QUIESCE).
    pub features: u64,
    pub quiesce_mask: u64,
    /// As the documentation defines it; the patch's code (v7..v12) leaves
    /// it 0 in CFG_GET's answer.
    pub oneshot_mask: u64,
    /// None: the task has no isolation state at all (CFG_GET of
    /// I_CFG_INHERIT fails with EINVAL then).
    pub inherit_mask: Option<u8>,
}

pub fn cfg_get(p: &Proof) -> Result<KernelConfig> {
    let mut out = KernelConfig::default();
    prctl(
        p,
        PR_ISOL_CFG_GET,
        I_CFG_FEAT,
        0,
        &mut out.features as *mut u64 as u64,
        0,
    )?;
    if out.features & ISOL_F_QUIESCE != 0 {
        let mut ctrl = TaskIsolQuiesceControl::default();
        prctl(
            p,
            PR_ISOL_CFG_GET,
            I_CFG_FEAT,
            ISOL_F_QUIESCE,
            QUIESCE_CONTROL,
            &mut ctrl as *mut _ as u64,
        )?;
        out.quiesce_mask = ctrl.quiesce_mask;
        out.oneshot_mask = ctrl.quiesce_oneshot_mask;
    }
    let mut inh = TaskIsolInheritControl::default();
    out.inherit_mask = match prctl(
        p,
        PR_ISOL_CFG_GET,
        I_CFG_INHERIT,
        &mut inh as *mut _ as u64,
        0,
        0,
    ) {
        Ok(_) => Some(inh.inherit_mask),
        Err(Error::Os { source, .. }) if source.raw_os_error() == Some(libc::EINVAL) => None,
        Err(e) => return Err(e),
    };
    Ok(out)
}

/// PR_ISOL_ACTIVATE_SET with `mask` (ISOL_F_QUIESCE or 0).
pub fn activate(p: &Proof, mask: u64) -> Result<()> {
    prctl(p, PR_ISOL_ACTIVATE_SET, &mask as *const u64 as u64, 0, 0, 0)?;
    Ok(())
}

/// PR_ISOL_ACTIVATE_GET; None when the task has no isolation state
/// (EINVAL).
pub fn active(p: &Proof) -> Result<Option<u64>> {
    let mut mask = 0u64;
    match prctl(
        p,
        PR_ISOL_ACTIVATE_GET,
        &mut mask as *mut u64 as u64,
        0,
        0,
        0,
    ) {
        Ok(_) => Ok(Some(mask)),
        Err(Error::Os { source, .. }) if source.raw_os_error() == Some(libc::EINVAL) => Ok(None),
        Err(e) => Err(e),
    }
}

/// /proc/PID/task_isolation as the patch writes it (the process's main
/// thread's state).
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

/// The three lines `Configured state: `, `Active state: ` and
/// `Quiescing: `, each a list of names followed by a space, or `none `.
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
    (seen == 3).then_some(s)
}

/// What the patch prints for these masks (fs/proc/base.c of the series).
pub fn format_proc_state(configured: u64, active: u64, quiesce: u64) -> String {
    fn line(hdr: &str, mask: u64, names: &[(u64, &str)]) -> String {
        let mut s = hdr.to_string();
        for (b, n) in names {
            if mask & b != 0 {
                s.push_str(n);
                s.push(' ');
            }
        }
        if mask == 0 {
            s.push_str("none ");
        }
        s.push('\n');
        s
    }
    let feats = [(ISOL_F_QUIESCE, "quiesce")];
    let q = [(ISOL_F_QUIESCE_VMSTATS, "vmstat_sync")];
    format!(
        "{}{}{}",
        line("Configured state: ", configured, &feats),
        line("Active state: ", active, &feats),
        line("Quiescing: ", quiesce, &q)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn parses_the_patch_proc_file() {
        let text = format_proc_state(ISOL_F_QUIESCE, 0, ISOL_F_QUIESCE_VMSTATS);
        assert_eq!(
            text,
            "Configured state: quiesce \nActive state: none \nQuiescing: vmstat_sync \n"
        );
        let s = parse_proc_state(&text).unwrap();
        assert_eq!(s.configured, "quiesce");
        assert_eq!(s.active, "none");
        assert_eq!(s.quiescing, "vmstat_sync");
        assert!(parse_proc_state("something else\n").is_none());
        assert!(parse_proc_state("Configured state: none \n").is_none());
    }
    #[test]
    fn no_proof_on_a_stock_kernel() {
        // This machine's kernel is stock: the gate must stay shut.
        if !std::path::Path::new(PROC_SELF_TASK_ISOLATION).exists() {
            assert!(Proof::check().is_none());
        }
    }
}
