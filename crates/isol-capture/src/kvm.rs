//! KVM on this machine: whether its tracepoints are there (the kvm module
//! may load after isol starts), which hardware virtualization it drives,
//! and where the kvm_exit raw tracepoint finds the exit reason. Since 5.16
//! kvm_exit passes only the vCPU; the reason lives in the vendor module's
//! own vCPU struct, whose layout only that module's BTF tells.

use crate::vmexit::{Isa, Origin, VmExit};
use anyhow::{bail, Result};
use isol_abi::raw::kvm_layout as RawKvmLayout;
use libbpf_rs::libbpf_sys as sys;
use serde::Serialize;
use std::ffi::{CStr, CString};
use std::path::Path;

/// The tracepoints the VM exit programs attach to, in attach order (an
/// exit is only opened once its ends are in place).
pub const TRACEPOINTS: [&str; 3] = ["kvm_entry", "kvm_userspace_exit", "kvm_exit"];

/// The programs on them; kvm_exit has one per prototype.
pub const PROGRAMS: [&str; 4] = [
    "kvm_entry",
    "kvm_userspace_exit",
    "kvm_exit",
    "kvm_exit_old",
];

/// What isol captures of VM exits, as said in summaries and `isol doctor`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum VmStatus {
    /// No kvm module (yet): nothing to capture; isol attaches when it
    /// appears.
    NoKvm,
    /// VM exits of vCPU threads on the watched CPUs are captured.
    Attached { isa: Isa, reasons: bool },
    /// The kvm tracepoints are there but could not be used.
    Failed { error: String },
}

impl VmStatus {
    pub fn describe(&self) -> String {
        match self {
            VmStatus::NoKvm => "KVM is not loaded (no kvm:kvm_exit tracepoint): no VM exits to capture; isol attaches to them when the kvm module loads".into(),
            VmStatus::Attached { isa, reasons: true } => format!(
                "kvm:kvm_exit/kvm_entry/kvm_userspace_exit ({}), exit reasons named",
                serde_json::to_value(isa).ok().and_then(|v| v.as_str().map(str::to_uppercase)).unwrap_or_default()
            ),
            VmStatus::Attached { isa: Isa::Unknown, .. } => "kvm:kvm_exit/kvm_entry/kvm_userspace_exit attached, but neither kvm_amd nor kvm_intel is loaded: exit reasons not named".into(),
            VmStatus::Attached { reasons: false, .. } => "kvm:kvm_exit/kvm_entry/kvm_userspace_exit attached, but the vendor module has no BTF (CONFIG_DEBUG_INFO_BTF_MODULES): exit reasons not named".into(),
            VmStatus::Failed { error } => format!("kvm tracepoints present but not attached: {error}"),
        }
    }
}

/// The kvm module's tracepoints exist (it is loaded).
pub fn present(tracefs: &Path) -> bool {
    TRACEPOINTS
        .iter()
        .all(|tp| isol_system::tracefs::has_event(tracefs, &format!("kvm:{tp}")))
}

/// Module `name` is loaded and done initializing, or built in.
pub fn live(name: &str) -> bool {
    std::fs::read_to_string(Path::new("/sys/module").join(name).join("initstate"))
        .is_ok_and(|s| s.trim() == "live")
        || builtin(name)
}

/// `name` is built into the kernel: its /sys/module directory (there for
/// its parameters) has no `initstate`, and /proc/modules, which lists a
/// loadable module from its very start, does not name it (a module whose
/// sysfs directory is still being filled lacks `initstate` for a moment).
pub fn builtin(name: &str) -> bool {
    let dir = Path::new("/sys/module").join(name);
    if !dir.is_dir() || dir.join("initstate").exists() {
        return false;
    }
    match std::fs::read_to_string("/proc/modules") {
        Ok(list) => !list
            .lines()
            .any(|l| l.split_whitespace().next() == Some(name)),
        // No module support at all (CONFIG_MODULES=n): all built in.
        Err(_) => true,
    }
}

/// The vendor module loaded (kvm_amd or kvm_intel) and its ISA.
pub fn vendor() -> Option<(&'static str, Isa)> {
    [("kvm_amd", Isa::Svm), ("kvm_intel", Isa::Vmx)]
        .into_iter()
        .find(|(m, _)| live(m))
}

/// Where kvm_exit's reason is on this kernel, and the ISA; the layout's
/// offsets stay 0 (reason unknown) where BTF does not say.
pub fn layout(release: &str) -> (RawKvmLayout, Isa) {
    let mut l = RawKvmLayout {
        svm_host_reasons: host_reasons(Isa::Svm, SVM_HOST_BASE),
        vmx_host_reasons: host_reasons(Isa::Vmx, 0),
        ..Default::default()
    };
    let old_args = Btf::load("kvm")
        .ok()
        .and_then(|k| k.trace_args("kvm_exit"))
        .map_or_else(|| before_5_16(release), |n| n == 3);
    l.reason_in_arg0 = old_args as u32;
    let Some((module, isa)) = vendor() else {
        return (l, Isa::Unknown);
    };
    let Ok(btf) = Btf::load(module) else {
        return (l, isa);
    };
    match isa {
        Isa::Svm => l.svm_vmcb_off = btf.member_offset("vcpu_svm", "vmcb").unwrap_or(0),
        Isa::Vmx => l.vmx_reason_off = btf.member_offset("vcpu_vmx", "exit_reason").unwrap_or(0),
        Isa::Unknown => {}
    }
    (l, isa)
}

/// The first SVM exit code of kvm_layout.svm_host_reasons' window.
const SVM_HOST_BASE: u32 = 0x40;

/// Bit i: exit reason base + i is host-caused (vmexit.rs's origins), for
/// the BPF side's strict check.
fn host_reasons(isa: Isa, base: u32) -> u64 {
    (0..64u32)
        .filter(|i| VmExit::decode(isa, base + i).origin == Origin::Host)
        .fold(0, |m, i| m | 1 << i)
}

/// Whether `release` (uname -r) is older than 5.16, where kvm_exit lost
/// its reason argument.
fn before_5_16(release: &str) -> bool {
    let mut it = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    let (a, b) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    (a, b) < (5, 16)
}

/// A kernel module's BTF (split over vmlinux's), through libbpf.
struct Btf {
    base: *mut sys::btf,
    btf: *mut sys::btf,
}

impl Drop for Btf {
    fn drop(&mut self) {
        // SAFETY: both were returned by libbpf and are freed once.
        unsafe {
            sys::btf__free(self.btf);
            sys::btf__free(self.base);
        }
    }
}

impl Btf {
    fn load(module: &str) -> Result<Btf> {
        let name = CString::new(module)?;
        // SAFETY: plain libbpf calls; NULL is checked.
        unsafe {
            let base = sys::btf__load_vmlinux_btf();
            if base.is_null() {
                bail!("no vmlinux BTF");
            }
            let btf = sys::btf__load_module_btf(name.as_ptr(), base);
            if btf.is_null() {
                sys::btf__free(base);
                bail!("no BTF for module {module}");
            }
            Ok(Btf { base, btf })
        }
    }

    fn type_of(&self, name: &str, kind: u32) -> Option<*const sys::btf_type> {
        let c = CString::new(name).ok()?;
        // SAFETY: self.btf is valid; ids come from libbpf.
        unsafe {
            let id = sys::btf__find_by_name_kind(self.btf, c.as_ptr(), kind);
            if id <= 0 {
                return None;
            }
            let t = sys::btf__type_by_id(self.btf, id as u32);
            (!t.is_null()).then_some(t)
        }
    }

    /// Byte offset of a direct member of a struct.
    fn member_offset(&self, st: &str, member: &str) -> Option<u64> {
        let t = self.type_of(st, sys::BTF_KIND_STRUCT)?;
        // SAFETY: a struct's btf_type is followed by vlen btf_members.
        unsafe {
            let info = (*t).info;
            let vlen = (info & 0xffff) as usize;
            let kflag = info >> 31 != 0;
            let members = t.add(1) as *const sys::btf_member;
            for i in 0..vlen {
                let m = *members.add(i);
                let n = sys::btf__name_by_offset(self.btf, m.name_off);
                if !n.is_null() && CStr::from_ptr(n).to_bytes() == member.as_bytes() {
                    let bits = if kflag {
                        m.offset & 0xff_ffff
                    } else {
                        m.offset
                    };
                    return Some(bits as u64 / 8);
                }
            }
        }
        None
    }

    /// How many arguments tracepoint `tp` passes (btf_trace_TP's
    /// prototype, less its leading `void *__data`).
    fn trace_args(&self, tp: &str) -> Option<usize> {
        let t = self.type_of(&format!("btf_trace_{tp}"), sys::BTF_KIND_TYPEDEF)?;
        // SAFETY: typedef -> pointer -> func_proto, ids from libbpf.
        unsafe {
            let ptr = sys::btf__type_by_id(self.btf, (*t).__bindgen_anon_1.type_);
            if ptr.is_null() || ((*ptr).info >> 24) & 0x1f != sys::BTF_KIND_PTR {
                return None;
            }
            let proto = sys::btf__type_by_id(self.btf, (*ptr).__bindgen_anon_1.type_);
            if proto.is_null() || ((*proto).info >> 24) & 0x1f != sys::BTF_KIND_FUNC_PROTO {
                return None;
            }
            Some((((*proto).info & 0xffff) as usize).saturating_sub(1))
        }
    }
}

/// How kvm is there.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KvmState {
    Absent,
    /// A loadable module not done initializing.
    Loading,
    Module,
    Builtin,
}

/// Whether VM exits can be captured here, from what the machine shows
/// (and, where a capture was loaded, what it attached): `isol doctor`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct VmSupport {
    pub kvm: KvmState,
    /// kvm:kvm_exit, kvm:kvm_entry and kvm:kvm_userspace_exit in tracefs.
    pub tracepoints: bool,
    /// The vendor module whose exit reasons isol decodes, if loaded.
    pub vendor: Option<&'static str>,
    pub isa: Isa,
    /// Exit reasons are named (hence their origin, host or guest).
    pub reasons: bool,
    /// What the capture loaded alongside made of it (None: not loaded).
    pub capture: Option<VmStatus>,
    /// VM exits of vCPU threads are captured.
    pub available: bool,
    /// The source and what the user gets, or why not.
    pub how: String,
}

/// What [`VmSupport`] says for this machine; `attached` is the status of
/// a capture loaded here, if any.
/// `tracefs`: its mount point, None where it is not usable.
pub fn support(tracefs: Option<&Path>, release: &str, attached: Option<&VmStatus>) -> VmSupport {
    let dir = Path::new("/sys/module/kvm");
    let kvm = if builtin("kvm") {
        KvmState::Builtin
    } else if live("kvm") {
        KvmState::Module
    } else if dir.join("initstate").exists() {
        KvmState::Loading
    } else {
        KvmState::Absent
    };
    let tracepoints = tracefs.is_some_and(present);
    let (vendor, isa) = vendor().map_or((None, Isa::Unknown), |(m, i)| (Some(m), i));
    let reasons = matches!(kvm, KvmState::Module | KvmState::Builtin) && {
        let (l, i) = layout(release);
        names_reasons(&l, i)
    };
    let mut s = support_of(kvm, tracepoints, vendor, isa, reasons, attached);
    if tracefs.is_none() && kvm != KvmState::Absent {
        s.how = "tracefs is not usable here (see above): whether the kvm:kvm_exit tracepoints are there cannot be told".into();
    }
    s
}

fn support_of(
    kvm: KvmState,
    tracepoints: bool,
    vendor: Option<&'static str>,
    isa: Isa,
    reasons: bool,
    attached: Option<&VmStatus>,
) -> VmSupport {
    const TPS: &str = "kvm:kvm_exit/kvm_entry/kvm_userspace_exit";
    let gets = "each VM exit of a vCPU thread on a watched CPU is a `vmexit` interruption with its reason, its origin (host or guest) and what the host ran meanwhile; a host-caused one breaks a strict task registered with --break-on vmexit";
    let unnamed = "VM exits are captured with their duration and the host's chain, but not their reason (so no host/guest origin, and no strict vmexit break)";
    let source = match kvm {
        KvmState::Builtin => "kvm built in",
        _ => "kvm module",
    };
    let (available, how) = match (kvm, tracepoints, attached) {
        (KvmState::Absent, false, _) => (
            false,
            "KVM is not loaded (no kvm module, no kvm:kvm_exit tracepoint): no VM exits to capture; isol attaches to them when the kvm module loads".to_string(),
        ),
        (KvmState::Loading, _, _) => (
            false,
            "the kvm module is still initializing: isol attaches to its tracepoints once it is live".to_string(),
        ),
        (_, false, _) => (
            false,
            format!("{source} is there, but tracefs has no {TPS}: VM exits cannot be captured"),
        ),
        (_, _, Some(VmStatus::Failed { error })) => (
            false,
            format!("{TPS} present but not attached: {error}"),
        ),
        (_, _, Some(VmStatus::NoKvm)) => (
            false,
            format!("{TPS} present but the capture did not attach to them"),
        ),
        _ if reasons => (
            true,
            format!(
                "{TPS} ({source}), {} exit reasons decoded ({}): {gets}",
                match isa {
                    Isa::Svm => "SVM",
                    Isa::Vmx => "VMX",
                    Isa::Unknown => "?",
                },
                vendor.unwrap_or("?")
            ),
        ),
        _ => (
            true,
            match vendor {
                None => format!(
                    "{TPS} ({source}), but neither kvm_amd nor kvm_intel is loaded: {unnamed}"
                ),
                Some(m) => format!(
                    "{TPS} ({source}), but {m} has no BTF (CONFIG_DEBUG_INFO_BTF_MODULES): {unnamed}"
                ),
            },
        ),
    };
    VmSupport {
        kvm,
        tracepoints,
        vendor,
        isa,
        reasons,
        capture: attached.cloned(),
        available,
        how,
    }
}

/// Check that `layout` can name exit reasons on this kernel.
pub fn names_reasons(l: &RawKvmLayout, isa: Isa) -> bool {
    match isa {
        Isa::Svm => l.reason_in_arg0 != 0 || l.svm_vmcb_off != 0,
        Isa::Vmx => l.reason_in_arg0 != 0 || l.vmx_reason_off != 0,
        Isa::Unknown => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_order() {
        assert!(before_5_16("5.10.0-30-cloud-amd64"));
        assert!(!before_5_16("5.16.0"));
        assert!(!before_5_16("6.12.57+deb12-cloud-amd64"));
    }

    #[test]
    fn offsets_name_reasons() {
        let mut l = RawKvmLayout::default();
        assert!(!names_reasons(&l, Isa::Svm));
        l.svm_vmcb_off = 0x1a80;
        assert!(names_reasons(&l, Isa::Svm));
        assert!(!names_reasons(&l, Isa::Vmx));
        l.reason_in_arg0 = 1;
        assert!(names_reasons(&l, Isa::Vmx));
        assert!(!names_reasons(&l, Isa::Unknown));
    }

    #[test]
    fn host_reason_windows_hold_every_host_caused_exit() {
        let svm = host_reasons(Isa::Svm, SVM_HOST_BASE);
        let vmx = host_reasons(Isa::Vmx, 0);
        let bit = |m: u64, i: u32| m >> i & 1 == 1;
        assert!(bit(svm, 0x60 - SVM_HOST_BASE) && bit(svm, 0x61 - SVM_HOST_BASE)); // INTR, NMI
        assert!(!bit(svm, 0x78 - SVM_HOST_BASE) && !bit(svm, 0x7b - SVM_HOST_BASE)); // HLT, IOIO
        assert!(bit(vmx, 1) && !bit(vmx, 12) && !bit(vmx, 30)); // EXTERNAL_INTERRUPT; HLT, IO
        assert!(!bit(vmx, 0), "EXCEPTION_NMI is not known to be the host's");
        // No host-caused reason lies outside the 64 codes the BPF side sees.
        for c in (0..0x2000).chain([0xffff_fffe, 0xffff_ffff]) {
            if VmExit::decode(Isa::Svm, c).origin == Origin::Host {
                assert!(
                    (SVM_HOST_BASE..SVM_HOST_BASE + 64).contains(&c),
                    "SVM {c:#x}"
                );
            }
            if VmExit::decode(Isa::Vmx, c).origin == Origin::Host {
                assert!(c < 64, "VMX {c}");
            }
        }
    }

    #[test]
    fn support_says_the_source_and_what_it_gives() {
        let s = support_of(KvmState::Absent, false, None, Isa::Unknown, false, None);
        assert!(!s.available);
        assert!(s.how.starts_with("KVM is not loaded"), "{}", s.how);
        let s = support_of(
            KvmState::Module,
            true,
            Some("kvm_amd"),
            Isa::Svm,
            true,
            None,
        );
        assert!(s.available);
        assert!(
            s.how
                .contains("(kvm module), SVM exit reasons decoded (kvm_amd)"),
            "{}",
            s.how
        );
        assert!(s.how.contains("--break-on vmexit"), "{}", s.how);
        let s = support_of(KvmState::Builtin, true, None, Isa::Unknown, false, None);
        assert!(s.available);
        assert!(
            s.how
                .contains("(kvm built in), but neither kvm_amd nor kvm_intel"),
            "{}",
            s.how
        );
        assert!(s.how.contains("not their reason"), "{}", s.how);
        let s = support_of(
            KvmState::Module,
            true,
            Some("kvm_intel"),
            Isa::Vmx,
            false,
            None,
        );
        assert!(s.how.contains("kvm_intel has no BTF"), "{}", s.how);
        let failed = VmStatus::Failed {
            error: "kvm:kvm_exit: ENOENT".into(),
        };
        let s = support_of(KvmState::Module, true, None, Isa::Svm, true, Some(&failed));
        assert!(!s.available);
        assert!(
            s.how.contains("not attached: kvm:kvm_exit: ENOENT"),
            "{}",
            s.how
        );
        let s = support_of(KvmState::Builtin, false, None, Isa::Unknown, false, None);
        assert!(!s.available);
        assert!(s.how.contains("tracefs has no"), "{}", s.how);
    }

    #[test]
    fn absent_module_btf_is_an_error() {
        assert!(Btf::load("no_such_module_isol").is_err());
    }
}
