//! KVM on this machine: whether its tracepoints are there (the kvm module
//! may load after isol starts), which hardware virtualization it drives,
//! and where the kvm_exit raw tracepoint finds the exit reason. Since 5.16
//! kvm_exit passes only the vCPU; the reason lives in the vendor module's
//! own vCPU struct, whose layout only that module's BTF tells.

use crate::vmexit::Isa;
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

/// Module `name` is loaded and done initializing.
pub fn live(name: &str) -> bool {
    std::fs::read_to_string(Path::new("/sys/module").join(name).join("initstate"))
        .is_ok_and(|s| s.trim() == "live")
}

/// The vendor module loaded (kvm_amd or kvm_intel) and its ISA.
fn vendor() -> Option<(&'static str, Isa)> {
    [("kvm_amd", Isa::Svm), ("kvm_intel", Isa::Vmx)]
        .into_iter()
        .find(|(m, _)| live(m))
}

/// Where kvm_exit's reason is on this kernel, and the ISA; the layout's
/// offsets stay 0 (reason unknown) where BTF does not say.
pub fn layout(release: &str) -> (RawKvmLayout, Isa) {
    let mut l = RawKvmLayout::default();
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
    fn absent_module_btf_is_an_error() {
        assert!(Btf::load("no_such_module_isol").is_err());
    }
}
