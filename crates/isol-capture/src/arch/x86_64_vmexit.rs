//! VM exit reasons by name, for SVM (AMD) and VMX (Intel), and whose
//! doing each exit is: the guest's own instruction (HLT, I/O, MSR, CPUID,
//! a nested page fault), or the host taking the CPU back (an external
//! interrupt, an NMI): only the latter are the host's noise.

use serde::Serialize;

/// The hardware virtualization an exit reason belongs to (the kvm_exit
/// tracepoint's `isa`: enum isol_vm_isa of capture.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Isa {
    Vmx,
    Svm,
    Unknown,
}

impl Isa {
    pub fn from_raw(v: u64) -> Isa {
        match v {
            x if x == isol_abi::raw::VM_ISA_VMX as u64 => Isa::Vmx,
            x if x == isol_abi::raw::VM_ISA_SVM as u64 => Isa::Svm,
            _ => Isa::Unknown,
        }
    }
}

/// Who made the guest leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// The host took the CPU back: an interrupt or NMI for the host, or
    /// KVM's own request (an interrupt window to inject one).
    Host,
    /// The guest's own instruction or memory access.
    Guest,
    /// The reason alone does not say (VMX's EXCEPTION_NMI is both).
    Unknown,
}

/// The BPF side could not read the reason (no layout for this kernel).
pub const REASON_UNKNOWN: u32 = isol_abi::raw::VM_REASON_UNKNOWN;

/// One decoded exit reason.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct VmExit {
    pub isa: Isa,
    /// The raw exit code (SVM EXITCODE, VMX basic exit reason).
    pub code: u32,
    pub reason: String,
    pub origin: Origin,
}

impl VmExit {
    pub fn decode(isa: Isa, code: u32) -> VmExit {
        let (reason, origin) = match (isa, code) {
            (_, REASON_UNKNOWN) => ("unknown".to_string(), Origin::Unknown),
            (Isa::Svm, c) => svm(c),
            (Isa::Vmx, c) => vmx(c),
            (Isa::Unknown, c) => (format!("{c:#x}"), Origin::Unknown),
        };
        VmExit {
            isa,
            code,
            reason,
            origin,
        }
    }
}

/// arch/x86/include/uapi/asm/svm.h SVM_EXIT_*.
fn svm(c: u32) -> (String, Origin) {
    use Origin::*;
    let named = |n: &str, o| (n.to_string(), o);
    match c {
        0x00..=0x0f => (format!("READ_CR{}", c), Guest),
        0x10..=0x1f => (format!("WRITE_CR{}", c - 0x10), Guest),
        0x20..=0x2f => (format!("READ_DR{}", c - 0x20), Guest),
        0x30..=0x3f => (format!("WRITE_DR{}", c - 0x30), Guest),
        // A machine check is the hardware's, not the guest's.
        0x52 => named("EXCP_MC", Host),
        0x40..=0x5f => (format!("EXCP_{}", exception(c - 0x40)), Guest),
        0x60 => named("INTR", Host),
        0x61 => named("NMI", Host),
        0x62 => named("SMI", Host),
        0x63 => named("INIT", Host),
        // KVM asked for the window to inject an interrupt it holds.
        0x64 => named("VINTR", Host),
        0x65 => named("CR0_SEL_WRITE", Guest),
        0x66 => named("IDTR_READ", Guest),
        0x67 => named("GDTR_READ", Guest),
        0x68 => named("LDTR_READ", Guest),
        0x69 => named("TR_READ", Guest),
        0x6a => named("IDTR_WRITE", Guest),
        0x6b => named("GDTR_WRITE", Guest),
        0x6c => named("LDTR_WRITE", Guest),
        0x6d => named("TR_WRITE", Guest),
        0x6e => named("RDTSC", Guest),
        0x6f => named("RDPMC", Guest),
        0x70 => named("PUSHF", Guest),
        0x71 => named("POPF", Guest),
        0x72 => named("CPUID", Guest),
        0x73 => named("RSM", Guest),
        0x74 => named("IRET", Guest),
        0x75 => named("SWINT", Guest),
        0x76 => named("INVD", Guest),
        0x77 => named("PAUSE", Guest),
        0x78 => named("HLT", Guest),
        0x79 => named("INVLPG", Guest),
        0x7a => named("INVLPGA", Guest),
        0x7b => named("IOIO", Guest),
        0x7c => named("MSR", Guest),
        0x7d => named("TASK_SWITCH", Guest),
        0x7e => named("FERR_FREEZE", Guest),
        0x7f => named("SHUTDOWN", Guest),
        0x80 => named("VMRUN", Guest),
        0x81 => named("VMMCALL", Guest),
        0x82 => named("VMLOAD", Guest),
        0x83 => named("VMSAVE", Guest),
        0x84 => named("STGI", Guest),
        0x85 => named("CLGI", Guest),
        0x86 => named("SKINIT", Guest),
        0x87 => named("RDTSCP", Guest),
        0x88 => named("ICEBP", Guest),
        0x89 => named("WBINVD", Guest),
        0x8a => named("MONITOR", Guest),
        0x8b => named("MWAIT", Guest),
        0x8c => named("MWAIT_COND", Guest),
        0x8d => named("XSETBV", Guest),
        0x8e => named("RDPRU", Guest),
        0x8f => named("EFER_WRITE_TRAP", Guest),
        0x90..=0x9f => (format!("CR{}_WRITE_TRAP", c - 0x90), Guest),
        0xa0 => named("INVPCID", Guest),
        0x400 => named("NPF", Guest),
        0x401 => named("AVIC_INCOMPLETE_IPI", Guest),
        0x402 => named("AVIC_UNACCELERATED_ACCESS", Guest),
        0x403 => named("VMGEXIT", Guest),
        0xffff_ffff => named("ERR", Unknown),
        _ => (format!("{c:#x}"), Unknown),
    }
}

/// The x86 exception vectors' mnemonics (SVM's EXCP_BASE + vector).
fn exception(v: u32) -> String {
    const N: [&str; 32] = [
        "DE", "DB", "NMI", "BP", "OF", "BR", "UD", "NM", "DF", "9", "TS", "NP", "SS", "GP", "PF",
        "15", "MF", "AC", "MC", "XM", "VE", "CP", "22", "23", "24", "25", "26", "27", "HV", "VC",
        "SX", "31",
    ];
    N.get(v as usize).copied().unwrap_or("?").to_string()
}

/// arch/x86/include/uapi/asm/vmx.h EXIT_REASON_* (basic reasons).
fn vmx(c: u32) -> (String, Origin) {
    use Origin::*;
    let (n, o) = match c {
        0 => ("EXCEPTION_NMI", Unknown),
        1 => ("EXTERNAL_INTERRUPT", Host),
        2 => ("TRIPLE_FAULT", Guest),
        3 => ("INIT_SIGNAL", Host),
        4 => ("SIPI_SIGNAL", Host),
        // KVM asked for the window to inject an interrupt it holds.
        7 => ("INTERRUPT_WINDOW", Host),
        8 => ("NMI_WINDOW", Host),
        9 => ("TASK_SWITCH", Guest),
        10 => ("CPUID", Guest),
        12 => ("HLT", Guest),
        13 => ("INVD", Guest),
        14 => ("INVLPG", Guest),
        15 => ("RDPMC", Guest),
        16 => ("RDTSC", Guest),
        18 => ("VMCALL", Guest),
        19 => ("VMCLEAR", Guest),
        20 => ("VMLAUNCH", Guest),
        21 => ("VMPTRLD", Guest),
        22 => ("VMPTRST", Guest),
        23 => ("VMREAD", Guest),
        24 => ("VMRESUME", Guest),
        25 => ("VMWRITE", Guest),
        26 => ("VMOFF", Guest),
        27 => ("VMON", Guest),
        28 => ("CR_ACCESS", Guest),
        29 => ("DR_ACCESS", Guest),
        30 => ("IO_INSTRUCTION", Guest),
        31 => ("MSR_READ", Guest),
        32 => ("MSR_WRITE", Guest),
        33 => ("INVALID_STATE", Guest),
        34 => ("MSR_LOAD_FAIL", Guest),
        36 => ("MWAIT_INSTRUCTION", Guest),
        37 => ("MONITOR_TRAP_FLAG", Guest),
        39 => ("MONITOR_INSTRUCTION", Guest),
        40 => ("PAUSE_INSTRUCTION", Guest),
        41 => ("MCE_DURING_VMENTRY", Host),
        43 => ("TPR_BELOW_THRESHOLD", Guest),
        44 => ("APIC_ACCESS", Guest),
        45 => ("EOI_INDUCED", Guest),
        46 => ("GDTR_IDTR", Guest),
        47 => ("LDTR_TR", Guest),
        48 => ("EPT_VIOLATION", Guest),
        49 => ("EPT_MISCONFIG", Guest),
        50 => ("INVEPT", Guest),
        51 => ("RDTSCP", Guest),
        // KVM arms it for the guest's own timer deadline.
        52 => ("PREEMPTION_TIMER", Guest),
        53 => ("INVVPID", Guest),
        54 => ("WBINVD", Guest),
        55 => ("XSETBV", Guest),
        56 => ("APIC_WRITE", Guest),
        57 => ("RDRAND", Guest),
        58 => ("INVPCID", Guest),
        59 => ("VMFUNC", Guest),
        60 => ("ENCLS", Guest),
        61 => ("RDSEED", Guest),
        // The host's dirty-page logging buffer filled.
        62 => ("PML_FULL", Host),
        63 => ("XSAVES", Guest),
        64 => ("XRSTORS", Guest),
        67 => ("UMWAIT", Guest),
        68 => ("TPAUSE", Guest),
        74 => ("BUS_LOCK", Guest),
        75 => ("NOTIFY", Guest),
        _ => return (format!("{c}"), Unknown),
    };
    (n.to_string(), o)
}

/// include/uapi/linux/kvm.h KVM_EXIT_*: why KVM_RUN returned to the VMM.
pub fn userspace_exit_name(r: u32) -> String {
    let n = match r {
        0 => "UNKNOWN",
        1 => "EXCEPTION",
        2 => "IO",
        3 => "HYPERCALL",
        4 => "DEBUG",
        5 => "HLT",
        6 => "MMIO",
        7 => "IRQ_WINDOW_OPEN",
        8 => "SHUTDOWN",
        9 => "FAIL_ENTRY",
        10 => "INTR",
        11 => "SET_TPR",
        12 => "TPR_ACCESS",
        17 => "NMI",
        18 => "INTERNAL_ERROR",
        24 => "SYSTEM_EVENT",
        29 => "X86_RDMSR",
        30 => "X86_WRMSR",
        _ => return format!("KVM_EXIT {r}"),
    };
    format!("KVM_EXIT_{n}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svm_reasons_and_origins() {
        let d = |c| VmExit::decode(Isa::Svm, c);
        assert_eq!(
            (d(0x60).reason.as_str(), d(0x60).origin),
            ("INTR", Origin::Host)
        );
        assert_eq!(
            (d(0x61).reason.as_str(), d(0x61).origin),
            ("NMI", Origin::Host)
        );
        for (c, n) in [
            (0x78, "HLT"),
            (0x7b, "IOIO"),
            (0x7c, "MSR"),
            (0x72, "CPUID"),
            (0x400, "NPF"),
        ] {
            assert_eq!(
                (d(c).reason.as_str(), d(c).origin),
                (n, Origin::Guest),
                "{c:#x}"
            );
        }
        assert_eq!(d(0x4e).reason, "EXCP_PF");
        assert_eq!(d(0x52).origin, Origin::Host);
        assert_eq!(d(0x13).reason, "WRITE_CR3");
        assert_eq!(d(0x1234).reason, "0x1234");
    }

    #[test]
    fn vmx_reasons_and_origins() {
        let d = |c| VmExit::decode(Isa::Vmx, c);
        assert_eq!(
            (d(1).reason.as_str(), d(1).origin),
            ("EXTERNAL_INTERRUPT", Origin::Host)
        );
        for (c, n) in [
            (12, "HLT"),
            (30, "IO_INSTRUCTION"),
            (32, "MSR_WRITE"),
            (48, "EPT_VIOLATION"),
            (10, "CPUID"),
        ] {
            assert_eq!(
                (d(c).reason.as_str(), d(c).origin),
                (n, Origin::Guest),
                "{c}"
            );
        }
        assert_eq!(d(0).origin, Origin::Unknown);
    }

    #[test]
    fn unknown_reason_and_isa() {
        assert_eq!(VmExit::decode(Isa::Svm, REASON_UNKNOWN).reason, "unknown");
        assert_eq!(VmExit::decode(Isa::Unknown, 7).origin, Origin::Unknown);
        assert_eq!(Isa::from_raw(2), Isa::Svm);
        assert_eq!(Isa::from_raw(1), Isa::Vmx);
        assert_eq!(userspace_exit_name(2), "KVM_EXIT_IO");
        assert_eq!(userspace_exit_name(5), "KVM_EXIT_HLT");
    }
}
