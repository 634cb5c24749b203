//! What the running kernel and this process can do, as far as isol cares:
//! privileges, tracefs, BTF, BPF, NO_HZ_FULL, context tracking, osnoise,
//! and which of the tracepoints the capture engine uses exist.

use crate::tracefs::{self, Tracefs};
use crate::{Missing, Root};
use serde::Serialize;
use std::collections::BTreeMap;

/// Tracepoints isol's capture engine attaches to, with what each tells,
/// on every architecture; [`crate::arch::TRACEPOINTS`] has the others.
pub const TRACEPOINTS: &[(&str, &str)] = &[
    (
        "context_tracking:user_enter",
        "exact kernel->user boundary on nohz_full CPUs",
    ),
    (
        "context_tracking:user_exit",
        "exact user->kernel boundary on nohz_full CPUs",
    ),
    ("irq:irq_handler_entry", "device IRQ handlers"),
    ("irq:irq_handler_exit", "device IRQ handlers"),
    ("irq:softirq_entry", "softirqs by vector"),
    ("irq:softirq_exit", "softirqs by vector"),
    (
        "ipi:ipi_send_cpu",
        "IPI sender: CPU, callsite, callback (6.4+)",
    ),
    ("ipi:ipi_send_cpumask", "IPI sender to a mask (6.4+)"),
    (
        "csd:csd_queue_cpu",
        "smp_call_function queueing, per target (6.4+)",
    ),
    (
        "csd:csd_function_entry",
        "function an IPI runs on the target (6.4+)",
    ),
    (
        "csd:csd_function_exit",
        "function an IPI runs on the target (6.4+)",
    ),
    ("timer:timer_expire_entry", "timer callbacks"),
    ("timer:hrtimer_expire_entry", "hrtimer callbacks"),
    ("timer:tick_stop", "why the tick could not stop"),
    ("workqueue:workqueue_execute_start", "workqueue items run"),
    ("sched:sched_switch", "preemption by another task"),
    ("sched:sched_wakeup", "who woke the task that preempted"),
    ("nmi:nmi_handler", "NMI handlers"),
    (
        "raw_syscalls:sys_enter",
        "the task's own syscalls (only on request)",
    ),
];

/// Kernel config options isol reports when the config is readable.
const CONFIG: &[&str] = &[
    "NO_HZ_FULL",
    "CONTEXT_TRACKING_USER",
    "CPU_ISOLATION",
    "RCU_NOCB_CPU",
    "PREEMPT_RT",
    "DEBUG_INFO_BTF",
    "BPF_SYSCALL",
    "OSNOISE_TRACER",
    "TIMERLAT_TRACER",
    "HZ",
    "VIRT_CPU_ACCOUNTING_GEN",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BpfState {
    Available,
    NotPermitted,
    Unsupported,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    pub cap_sys_admin: bool,
    pub cap_bpf: bool,
    pub cap_perfmon: bool,
    pub cap_sys_nice: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Features {
    pub euid: u32,
    pub root: bool,
    pub capabilities: Capabilities,
    pub tracefs: Tracefs,
    pub btf: bool,
    pub bpf: BpfState,
    /// Kernel built with CONFIG_NO_HZ_FULL (its sysfs file exists only then).
    pub nohz_full_support: bool,
    /// context_tracking tracepoints exist (`None`: tracefs unusable, unknown).
    pub context_tracking: Option<bool>,
    pub osnoise: Option<bool>,
    pub timerlat: Option<bool>,
    /// Each of [`TRACEPOINTS`] and the architecture's: present or not. Empty when tracefs is unusable.
    pub tracepoints: BTreeMap<String, bool>,
    /// Selected options from /proc/config.gz or /boot/config-RELEASE.
    pub config: BTreeMap<String, String>,
}

fn cap_eff(root: &Root) -> u64 {
    let status = std::fs::read_to_string(root.proc("self/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0)
}

/// Create and close a one-entry array map: the cheapest proof that bpf(2)
/// works for this process.
fn probe_bpf() -> BpfState {
    #[repr(C)]
    struct MapCreate {
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
    }
    const BPF_MAP_CREATE: libc::c_long = 0;
    const BPF_MAP_TYPE_ARRAY: u32 = 2;
    let attr = MapCreate {
        map_type: BPF_MAP_TYPE_ARRAY,
        key_size: 4,
        value_size: 4,
        max_entries: 1,
    };
    // SAFETY: bpf(2) reads `size` bytes from a valid, initialised struct.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_CREATE,
            &attr as *const MapCreate,
            std::mem::size_of::<MapCreate>() as libc::c_uint,
        )
    };
    if fd >= 0 {
        // SAFETY: fd was just returned to us and is owned here.
        unsafe { libc::close(fd as i32) };
        return BpfState::Available;
    }
    match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::ENOSYS) => BpfState::Unsupported,
        _ => BpfState::NotPermitted,
    }
}

fn kernel_config(root: &Root, release: &str) -> BTreeMap<String, String> {
    use std::io::Read;
    let text = std::fs::File::open(root.proc("config.gz"))
        .ok()
        .and_then(|f| {
            let mut s = String::new();
            flate2::read::GzDecoder::new(f)
                .read_to_string(&mut s)
                .ok()?;
            Some(s)
        })
        .or_else(|| std::fs::read_to_string(root.path(&format!("/boot/config-{release}"))).ok())
        .unwrap_or_default();
    let mut out = BTreeMap::new();
    for l in text.lines() {
        if let Some((k, v)) = l.strip_prefix("CONFIG_").and_then(|l| l.split_once('=')) {
            if CONFIG.contains(&k) {
                out.insert(k.to_string(), v.trim_matches('"').to_string());
            }
        }
    }
    out
}

impl Features {
    pub fn probe(root: &Root, release: &str) -> Features {
        let caps = cap_eff(root);
        let bit = |n: u32| caps & (1u64 << n) != 0;
        let capabilities = Capabilities {
            cap_sys_admin: bit(21),
            cap_sys_nice: bit(23),
            cap_perfmon: bit(38),
            cap_bpf: bit(39),
        };
        let euid = nix::unistd::geteuid().as_raw();
        let tracefs = Tracefs::probe(root, capabilities.cap_sys_admin);
        let mut tracepoints = BTreeMap::new();
        let (mut ct, mut osnoise, mut timerlat) = (None, None, None);
        if let Some(tp) = tracefs.path() {
            for (ev, _) in TRACEPOINTS.iter().chain(crate::arch::TRACEPOINTS) {
                tracepoints.insert(ev.to_string(), tracefs::has_event(tp, ev));
            }
            ct = Some(
                tracepoints["context_tracking:user_enter"]
                    && tracepoints["context_tracking:user_exit"],
            );
            let tr = tracefs::tracers(tp);
            // available_tracers is readable only by root; an empty list
            // from a non-root reader means unknown, not absent.
            if !tr.is_empty() {
                osnoise = Some(tr.iter().any(|t| t == "osnoise"));
                timerlat = Some(tr.iter().any(|t| t == "timerlat"));
            }
        }
        Features {
            euid,
            root: euid == 0,
            capabilities,
            tracefs,
            btf: root.sys("kernel/btf/vmlinux").exists(),
            bpf: if root.is_live() {
                probe_bpf()
            } else {
                BpfState::Unsupported
            },
            nohz_full_support: root.sys("devices/system/cpu/nohz_full").exists(),
            context_tracking: ct,
            osnoise,
            timerlat,
            tracepoints,
            config: kernel_config(root, release),
        }
    }

    /// What the BPF capture engine (watch, noise, census, strict mode)
    /// needs and this machine or process lacks.
    pub fn missing_for_capture(&self) -> Vec<Missing> {
        let mut m = Vec::new();
        let caps = self.capabilities.cap_bpf && self.capabilities.cap_perfmon;
        if !self.root && !caps {
            m.push(Missing {
                what: "root",
                why: format!(
                    "running as uid {} without CAP_BPF and CAP_PERFMON: loading the capture programs needs them",
                    self.euid
                ),
                fix: "run as root (sudo isol ...), or grant CAP_BPF,CAP_PERFMON,CAP_SYS_ADMIN, or use the isol daemon".into(),
            });
        }
        if let Some(t) = self.tracefs.missing() {
            // Root can mount it on demand; that is not a blocker.
            if !matches!(self.tracefs, Tracefs::Mountable) {
                m.push(t);
            }
        }
        if !self.btf {
            m.push(Missing {
                what: "btf",
                why: "this kernel has no BTF (/sys/kernel/btf/vmlinux): CO-RE BPF programs cannot load".into(),
                fix: "boot a kernel built with CONFIG_DEBUG_INFO_BTF=y (Debian's kernels have it)".into(),
            });
        }
        match self.bpf {
            BpfState::Available => {}
            BpfState::Unsupported => m.push(Missing {
                what: "bpf",
                why: "this kernel has no bpf(2) system call (CONFIG_BPF_SYSCALL is not set)".into(),
                fix: "boot a kernel built with CONFIG_BPF_SYSCALL=y".into(),
            }),
            // Not root is reported above. Root without the capabilities
            // (a container's default) is told apart from a policy.
            BpfState::NotPermitted
                if self.root
                    && !self.capabilities.cap_sys_admin
                    && !(self.capabilities.cap_bpf && self.capabilities.cap_perfmon) =>
            {
                m.push(Missing {
                    what: "capabilities",
                    why: "running as uid 0 but without CAP_BPF, CAP_PERFMON or CAP_SYS_ADMIN (a container or a dropped bounding set): bpf(2) is refused".into(),
                    fix: "grant CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN (docker: --cap-add BPF --cap-add PERFMON --cap-add SYS_ADMIN), or run isol on the host".into(),
                })
            }
            BpfState::NotPermitted if self.root => m.push(Missing {
                what: "bpf",
                why: "bpf(2) is refused even to root (lockdown or an LSM policy)".into(),
                fix: "check /sys/kernel/security/lockdown and the LSM policy".into(),
            }),
            BpfState::NotPermitted => {}
        }
        m
    }

    /// What stands between this machine and full nohz_full isolation.
    pub fn missing_for_isolation(&self) -> Vec<Missing> {
        let mut m = Vec::new();
        if !self.nohz_full_support {
            m.push(Missing {
                what: "nohz_full",
                why: "this kernel has no NO_HZ_FULL (CONFIG_NO_HZ_FULL is not set): the tick cannot stop on a busy CPU and nohz_full= is ignored".into(),
                fix: "boot a kernel built with CONFIG_NO_HZ_FULL=y (e.g. Debian's linux-image-cloud-amd64 or -rt-amd64) with nohz_full=<cpus>".into(),
            });
        }
        if self.context_tracking == Some(false) {
            m.push(Missing {
                what: "context_tracking",
                why: "no context_tracking:user_enter/user_exit tracepoints: exact user/kernel boundaries are unavailable; isol derives them from handler entry/exit".into(),
                fix: "boot a kernel with CONFIG_CONTEXT_TRACKING_USER (implied by NO_HZ_FULL)".into(),
            });
        }
        m
    }
}
