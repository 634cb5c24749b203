//! Known interference at known times (`isol noise --inject`), to prove
//! attribution: each injection is a CLOCK_MONOTONIC window [before, after]
//! inside which its kernel entry ran on the measured CPU, and the report
//! counts the injections whose gap names that entry (the recall).
//!
//! The IPI kinds are sent from a housekeeping thread of isol's own process
//! by synchronous kernel calls (they return once every target handled the
//! IPI), so the window brackets the handler. `timer` and `fault` happen on
//! the sampler thread itself (see [`crate::sampler`]).

use anyhow::{bail, Context as _, Result};
use serde::Serialize;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// mmap/touch/munmap in isol's mm: a TLB-flush IPI to the sampler.
    Tlb,
    /// membarrier(PRIVATE_EXPEDITED): ipi_mb on CPUs running isol.
    Membarrier,
    /// A per-CPU perf event opened on the measured CPU: perf installs and
    /// removes it there with a cross-CPU call.
    Perf,
    /// An XDP program attached to and detached from lo: the BPF
    /// dispatcher's jump is patched (text_poke_bp, do_sync_core on every CPU).
    Jit,
    /// A POSIX timer of the sampler thread, armed on its CPU.
    Timer,
    /// The sampler reads a fresh page: its own page fault.
    Fault,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Tlb,
        Kind::Membarrier,
        Kind::Perf,
        Kind::Jit,
        Kind::Timer,
        Kind::Fault,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Tlb => "tlb",
            Kind::Membarrier => "membarrier",
            Kind::Perf => "perf",
            Kind::Jit => "jit",
            Kind::Timer => "timer",
            Kind::Fault => "fault",
        }
    }

    /// The kernel function a gap must name (any of them: 5.10 calls the
    /// TLB callback flush_tlb_func_remote); `fault` names a kind instead.
    pub fn expected(self) -> &'static [&'static str] {
        match self {
            Kind::Tlb => &["flush_tlb_func", "flush_tlb_func_remote"],
            Kind::Membarrier => &["ipi_mb"],
            Kind::Perf => &["remote_function"],
            Kind::Jit => &["do_sync_core"],
            Kind::Timer => &["posix_timer_fn"],
            Kind::Fault => &["page_fault"],
        }
    }

    /// Sent from the housekeeping thread (else: on the sampler thread).
    pub fn remote(self) -> bool {
        !matches!(self, Kind::Timer | Kind::Fault)
    }

    /// The list of `--inject`: names, comma-separated, or `all`.
    pub fn parse_list(s: &str) -> Result<Vec<Kind>, String> {
        let mut v = Vec::new();
        for w in s.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            if w == "all" {
                v.extend(Kind::ALL);
                continue;
            }
            let k = Kind::ALL
                .into_iter()
                .find(|k| k.name() == w)
                .ok_or_else(|| {
                    format!("unknown kind {w:?} (tlb, membarrier, perf, jit, timer, fault, all)")
                })?;
            v.push(k);
        }
        v.sort();
        v.dedup();
        if v.is_empty() {
            return Err("no kind to inject".into());
        }
        Ok(v)
    }
}

/// One injected event: its effect ran on `cpu` within [before_ns, after_ns].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Injection {
    pub kind: Kind,
    pub cpu: u32,
    pub before_ns: u64,
    pub after_ns: u64,
}

/// What `--inject` asks for.
#[derive(Debug, Clone)]
pub struct Plan {
    pub kinds: Vec<Kind>,
    /// One injection of each kind this often.
    pub every_ns: u64,
}

fn errno<T>(what: &str) -> Result<T> {
    Err(std::io::Error::last_os_error()).with_context(|| what.to_string())
}

fn bpf(cmd: i64, attr: &mut [u64; 16]) -> i64 {
    // SAFETY: attr is a zeroed, 8-aligned 128-byte bpf_attr.
    unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), 128usize) }
}

/// The IPI-sending side of one kind, set up once.
enum Sender {
    Tlb,
    Membarrier,
    Perf,
    /// The XDP program and lo's ifindex.
    Jit(OwnedFd, u32),
}

const MEMBARRIER_CMD_PRIVATE_EXPEDITED: i64 = 1 << 3;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: i64 = 1 << 4;

impl Sender {
    fn new(k: Kind) -> Result<Sender> {
        Ok(match k {
            Kind::Tlb => Sender::Tlb,
            Kind::Perf => Sender::Perf,
            Kind::Membarrier => {
                // SAFETY: plain syscall.
                if unsafe {
                    libc::syscall(
                        libc::SYS_membarrier,
                        MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
                        0,
                        0,
                    )
                } != 0
                {
                    return errno("membarrier(REGISTER_PRIVATE_EXPEDITED)");
                }
                Sender::Membarrier
            }
            Kind::Jit => {
                // r0 = XDP_PASS; exit
                let insns: [u64; 2] = [0xb7 | (2u64 << 32), 0x95];
                let mut a = [0u64; 16];
                // prog_type XDP (6), insn_cnt, insns, license; attach type
                // BPF_XDP (37) at byte 68.
                a[0] = 6 | (2u64 << 32);
                a[1] = insns.as_ptr() as u64;
                a[2] = c"GPL".as_ptr() as u64;
                a[8] = 37u64 << 32;
                let fd = bpf(5, &mut a); // BPF_PROG_LOAD
                if fd < 0 {
                    return errno("loading an XDP program");
                }
                // SAFETY: a new fd we own.
                let prog = unsafe { OwnedFd::from_raw_fd(fd as i32) };
                // SAFETY: a NUL-terminated name.
                let lo = unsafe { libc::if_nametoindex(c"lo".as_ptr()) };
                if lo == 0 {
                    return errno("no loopback interface");
                }
                Sender::Jit(prog, lo)
            }
            Kind::Timer | Kind::Fault => bail!("{} is not sent from outside", k.name()),
        })
    }

    /// Do it once; returns when the targets have handled it.
    fn send(&self, cpu: u32) -> Result<()> {
        match self {
            Sender::Tlb => {
                // SAFETY: a private anonymous page, written, then unmapped:
                // the unmap flushes it from every CPU running this mm.
                unsafe {
                    let p = libc::mmap(
                        std::ptr::null_mut(),
                        4096,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                        -1,
                        0,
                    );
                    if p == libc::MAP_FAILED {
                        return errno("mmap");
                    }
                    std::ptr::write_volatile(p as *mut u8, 1);
                    libc::munmap(p, 4096);
                }
            }
            Sender::Membarrier => {
                // SAFETY: plain syscall.
                if unsafe {
                    libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0)
                } != 0
                {
                    return errno("membarrier(PRIVATE_EXPEDITED)");
                }
            }
            Sender::Perf => {
                // perf_event_attr (VER0, 64 bytes): PERF_TYPE_SOFTWARE,
                // PERF_COUNT_SW_DUMMY, enabled: installed at open.
                let mut a = [0u64; 16];
                a[0] = 1 | (64u64 << 32);
                a[1] = 9;
                // SAFETY: a valid attr; pid -1 with a CPU: a per-CPU event.
                let fd = unsafe {
                    libc::syscall(
                        libc::SYS_perf_event_open,
                        a.as_ptr(),
                        -1i32,
                        cpu as i32,
                        -1i32,
                        0u64,
                    )
                };
                if fd < 0 {
                    return errno("perf_event_open");
                }
                // SAFETY: a new fd we own; closing removes the event.
                drop(unsafe { OwnedFd::from_raw_fd(fd as i32) });
            }
            Sender::Jit(prog, lo) => {
                use std::os::fd::AsRawFd;
                let mut a = [0u64; 16];
                // link_create: prog_fd, ifindex, BPF_XDP, XDP_FLAGS_SKB_MODE
                a[0] = prog.as_raw_fd() as u64 | ((*lo as u64) << 32);
                a[1] = 37 | (2u64 << 32);
                let fd = bpf(28, &mut a); // BPF_LINK_CREATE
                if fd < 0 {
                    return errno("attaching XDP to lo");
                }
                // SAFETY: a new fd we own; closing it detaches (patched again).
                drop(unsafe { OwnedFd::from_raw_fd(fd as i32) });
            }
        }
        Ok(())
    }
}

/// Sends the remote kinds of `plan` round-robin, one every
/// `every_ns / kinds`, until `stop`; each send's window is recorded for
/// every measured CPU it reaches. A kind that cannot be set up or sent is
/// dropped with a note (the report then says so instead of guessing).
pub fn run_remote(plan: &Plan, cpus: &[u32], stop: &AtomicBool) -> (Vec<Injection>, Vec<String>) {
    let mut notes = Vec::new();
    let mut senders: Vec<(Kind, Sender)> = Vec::new();
    for &k in plan.kinds.iter().filter(|k| k.remote()) {
        match Sender::new(k) {
            Ok(s) => senders.push((k, s)),
            Err(e) => notes.push(format!("inject {}: {e:#}; not injected", k.name())),
        }
    }
    let mut out = Vec::new();
    if senders.is_empty() {
        return (out, notes);
    }
    let step = Duration::from_nanos((plan.every_ns / senders.len() as u64).max(100_000));
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) && !senders.is_empty() {
        let idx = i % senders.len();
        let (k, s) = &senders[idx];
        // Per target for perf (one event per CPU), once for the others.
        let rounds: Vec<Vec<u32>> = match s {
            Sender::Perf => cpus.iter().map(|&c| vec![c]).collect(),
            _ => vec![cpus.to_vec()],
        };
        let mut failed = None;
        for targets in rounds {
            let before = isol_system::clock::monotonic_ns();
            if let Err(e) = s.send(targets[0]) {
                failed = Some(e);
                break;
            }
            let after = isol_system::clock::monotonic_ns();
            out.extend(targets.iter().map(|&cpu| Injection {
                kind: *k,
                cpu,
                before_ns: before,
                after_ns: after,
            }));
        }
        if let Some(e) = failed {
            notes.push(format!("inject {}: {e:#}; stopped injecting it", k.name()));
            out.retain(|j| j.kind != *k);
            senders.remove(idx);
            continue;
        }
        i += 1;
        std::thread::sleep(step);
    }
    (out, notes)
}

/// Whether a named kernel entry is what `kind` should produce: its
/// function (the cause's detail or one in its chain), for a timer also
/// the sender's stack (on a CPU whose timers are moved to a housekeeping
/// CPU, the timer fires there and the sampler gets the signal's IPI).
pub fn names(kind: Kind, r: &isol_capture::record::Record) -> bool {
    let want = kind.expected();
    if kind == Kind::Fault {
        return r.cause.kind.name() == "page_fault"
            || r.chain.iter().any(|c| c.kind.name() == "page_fault");
    }
    let is = |d: &str| want.contains(&d);
    is(&r.cause.detail)
        || r.chain.iter().any(|c| is(&c.detail))
        || (kind == Kind::Timer
            && [&r.sender, &r.other_sender].into_iter().flatten().any(|s| {
                s.stack
                    .iter()
                    .any(|f| want.iter().any(|w| f.split('+').next() == Some(w)))
            }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_and_dedup() {
        assert_eq!(
            Kind::parse_list("perf,tlb,perf").unwrap(),
            vec![Kind::Tlb, Kind::Perf]
        );
        assert_eq!(Kind::parse_list("all").unwrap().len(), 6);
        assert!(Kind::parse_list("tlb,bogus").is_err());
        assert!(Kind::parse_list("").is_err());
    }
}
