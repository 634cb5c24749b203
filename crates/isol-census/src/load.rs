//! The built-in housekeeping load: reproduces, on purpose, each class of
//! interference the IPI deferral series found on isolated CPUs, plus ordinary pressure.
//! Every generator thread is pinned to the housekeeping CPUs; the only
//! threads on isolated CPUs are the census victims (spinning, labelled in
//! the report), which exist because some IPIs only reach a CPU running
//! (or lazily holding) the sender's mm.
//!
//! | class | mechanism | IPI the isolated CPU takes |
//! |---|---|---|
//! | `kernel-tlb` | create/close 8 MiB BPF array maps: vmalloc/vfree churn; once the lazily freed vmap area passes lazy_max_pages a kworker purges it with flush_tlb_kernel_range | `do_flush_tlb_all` / `do_kernel_range_flush` (on_each_cpu, every CPU) |
//! | `text-poke` | (a) attach/detach an XDP program on lo through a BPF link: the kernel re-JITs its XDP dispatcher and patches the jump to it; (b) perf open/close of an unused tracepoint: its static key flips | `do_sync_core` on every CPU (text_poke_bp), for both |
//! | `smp-call` | membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED): smp_call_function_many to the CPUs running this process (the victims) | `ipi_mb` |
//! | `nohz-kick` | arm/disarm a CLOCK_PROCESS_CPUTIME_ID timer: the POSIX_TIMER tick dependency kicks every nohz_full CPU running the process | `nohz_full_kick_func` (irq_work, only on nohz_full CPUs) |
//! | `user-tlb` | mmap/touch/mprotect/munmap in a sibling thread of the victims | `flush_tlb_func` |
//! | `pressure` | hackbench-like: socketpair message rounds, UDP over loopback | none by design: CPU, memory and network (NET_RX softirq) load on the housekeeping CPUs, as rteval's |

use crate::report::{ClassStats, Victim};
use anyhow::{bail, Context, Result};
use isol_cpulist::CpuSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Class {
    KernelTlb,
    TextPoke,
    SmpCall,
    NohzKick,
    UserTlb,
    Pressure,
}

impl Class {
    pub const ALL: [Class; 6] = [
        Class::KernelTlb,
        Class::TextPoke,
        Class::SmpCall,
        Class::NohzKick,
        Class::UserTlb,
        Class::Pressure,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Class::KernelTlb => "kernel-tlb",
            Class::TextPoke => "text-poke",
            Class::SmpCall => "smp-call",
            Class::NohzKick => "nohz-kick",
            Class::UserTlb => "user-tlb",
            Class::Pressure => "pressure",
        }
    }

    pub fn mechanism(self) -> &'static str {
        match self {
            Class::KernelTlb => "BPF array map create/close (vmalloc/vfree churn, lazy vmap purge)",
            Class::TextPoke => {
                "XDP attach/detach on lo (JIT'd dispatcher patched) + static key flips (perf tracepoint open/close)"
            }
            Class::SmpCall => "membarrier(PRIVATE_EXPEDITED) to the victims' CPUs",
            Class::NohzKick => "arm/disarm a process CPU-time timer (POSIX_TIMER tick dependency)",
            Class::UserTlb => "mmap/mprotect/munmap beside the victims (same mm)",
            Class::Pressure => "hackbench-like socketpair rounds and UDP over loopback",
        }
    }

    pub fn parse(s: &str) -> Result<Class> {
        Class::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .with_context(|| {
                let names: Vec<_> = Class::ALL.iter().map(|c| c.name()).collect();
                format!("unknown load class {s:?} (known: {})", names.join(", "))
            })
    }

    /// Whether the class needs a census victim sharing the load's mm.
    pub fn needs_victim(self) -> bool {
        matches!(self, Class::SmpCall | Class::NohzKick | Class::UserTlb)
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub isolated: CpuSet,
    pub housekeeping: CpuSet,
    pub classes: Vec<Class>,
    /// Generators to run (none: victims only, e.g. with a user command).
    pub generators: bool,
    /// Spin a census victim thread on each isolated CPU.
    pub victims: bool,
}

#[derive(Default)]
struct Stat {
    ops: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<String>,
}

impl Stat {
    fn ok(&self) {
        self.ops.fetch_add(1, Ordering::Relaxed);
    }
    fn err(&self, what: &str) {
        if self.errors.fetch_add(1, Ordering::Relaxed) == 0 {
            *self.first_error.lock().unwrap() =
                format!("{what}: {}", std::io::Error::last_os_error());
        }
    }
}

struct VictimSlot {
    cpu: u32,
    tid: u32,
    loops: Arc<AtomicU64>,
}

/// A running load. [`Load::stop_generators`] then [`Load::finish`].
pub struct Load {
    stop_gen: Arc<AtomicBool>,
    stop_victims: Arc<AtomicBool>,
    generators: Vec<JoinHandle<()>>,
    victim_threads: Vec<JoinHandle<()>>,
    victims: Vec<VictimSlot>,
    stats: Vec<(Class, Arc<Stat>)>,
}

fn pin_thread(cpus: &CpuSet) -> bool {
    isol_system::affinity::pin_current_thread(cpus).is_ok()
}

fn gettid() -> u32 {
    // SAFETY: no arguments, cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as u32 }
}

fn sleep_unless(stop: &AtomicBool, d: Duration) {
    if !stop.load(Ordering::Relaxed) {
        std::thread::sleep(d);
    }
}

impl Load {
    /// Start victims first (they must run before any IPI can reach
    /// them), then, if `generators`, the classes' generator threads.
    pub fn start(o: &Options) -> Result<Load> {
        if o.housekeeping.is_empty() {
            bail!("no housekeeping CPU to run the load on");
        }
        let mut load = Load {
            stop_gen: Arc::new(AtomicBool::new(false)),
            stop_victims: Arc::new(AtomicBool::new(false)),
            generators: Vec::new(),
            victim_threads: Vec::new(),
            victims: Vec::new(),
            stats: Vec::new(),
        };
        if o.victims {
            for cpu in o.isolated.iter() {
                let (tx, rx) = std::sync::mpsc::channel();
                let stop = load.stop_victims.clone();
                let loops = Arc::new(AtomicU64::new(0));
                let l = loops.clone();
                let h = std::thread::Builder::new()
                    .name("census-victim".into())
                    .spawn(move || {
                        let pinned = pin_thread(&CpuSet::single(cpu));
                        let _ = tx.send((pinned, gettid()));
                        // One atomic add per iteration; no kernel entry.
                        while !stop.load(Ordering::Relaxed) {
                            l.fetch_add(1, Ordering::Relaxed);
                        }
                    })?;
                let (pinned, tid) = rx.recv().context("census victim did not start")?;
                if !pinned {
                    bail!("cannot pin the census victim to CPU {cpu}");
                }
                load.victim_threads.push(h);
                load.victims.push(VictimSlot { cpu, tid, loops });
            }
        }
        if o.generators {
            load.start_generators(o)?;
        }
        Ok(load)
    }

    /// Start the classes' generator threads on the housekeeping CPUs.
    pub fn start_generators(&mut self, o: &Options) -> Result<()> {
        let load = self;
        {
            for &c in &o.classes {
                let st = Arc::new(Stat::default());
                load.stats.push((c, st.clone()));
                let hk = o.housekeeping.clone();
                let stop = load.stop_gen.clone();
                for (name, f) in generators(c) {
                    let st = st.clone();
                    let hk = hk.clone();
                    let stop = stop.clone();
                    let h = std::thread::Builder::new()
                        .name(name.into())
                        .spawn(move || {
                            pin_thread(&hk);
                            f(&stop, &st, &hk);
                        })?;
                    load.generators.push(h);
                }
            }
        }
        Ok(())
    }

    pub fn victims(&self) -> Vec<(u32, u32)> {
        self.victims.iter().map(|v| (v.cpu, v.tid)).collect()
    }

    /// Stop and join the generators (victims keep spinning).
    pub fn stop_generators(&mut self) {
        self.stop_gen.store(true, Ordering::Relaxed);
        for h in self.generators.drain(..) {
            let _ = h.join();
        }
    }

    /// Stop everything; the per-class statistics and the victims.
    pub fn finish(mut self) -> (Vec<ClassStats>, Vec<Victim>) {
        self.stop_generators();
        self.stop_victims.store(true, Ordering::Relaxed);
        for h in self.victim_threads.drain(..) {
            let _ = h.join();
        }
        let stats = self
            .stats
            .iter()
            .map(|(c, s)| ClassStats {
                class: c.name().into(),
                mechanism: c.mechanism().into(),
                ops: s.ops.load(Ordering::Relaxed),
                errors: s.errors.load(Ordering::Relaxed),
                error: s.first_error.lock().unwrap().clone(),
            })
            .collect();
        let victims = self
            .victims
            .iter()
            .map(|v| Victim {
                cpu: v.cpu,
                tid: v.tid,
                comm: "census-victim".into(),
                loops: v.loops.load(Ordering::Relaxed),
            })
            .collect();
        (stats, victims)
    }
}

type GenFn = fn(&AtomicBool, &Stat, &CpuSet);

fn generators(c: Class) -> Vec<(&'static str, GenFn)> {
    match c {
        Class::KernelTlb => vec![("census-ktlb", kernel_tlb)],
        Class::TextPoke => vec![("census-jit", xdp_dispatcher), ("census-skey", static_key)],
        Class::SmpCall => vec![("census-mb", membarrier)],
        Class::NohzKick => vec![("census-kick", nohz_kick)],
        Class::UserTlb => vec![("census-utlb", user_tlb)],
        Class::Pressure => vec![("census-hb", hackbench), ("census-udp", udp_loopback)],
    }
}

/// vmalloc/vfree churn: an 8 MiB BPF array map is vmalloc'ed at create
/// and vfree'd (from a kworker) after close.
fn kernel_tlb(stop: &AtomicBool, st: &Stat, _: &CpuSet) {
    use libbpf_rs::libbpf_sys as sys;
    while !stop.load(Ordering::Relaxed) {
        // 2048 x 4 KiB values: a lazy purge every lazy_max_pages/8 MiB maps.
        // SAFETY: a null name and options are allowed; the fd is ours.
        let fd = unsafe {
            sys::bpf_map_create(
                sys::BPF_MAP_TYPE_ARRAY,
                std::ptr::null(),
                4,
                4096,
                2048,
                std::ptr::null(),
            )
        };
        if fd < 0 {
            st.err("bpf(BPF_MAP_CREATE)");
            sleep_unless(stop, Duration::from_millis(100));
            continue;
        }
        // SAFETY: fd was just returned to us.
        unsafe { libc::close(fd) };
        st.ok();
        sleep_unless(stop, Duration::from_millis(4));
    }
}

/// BPF JIT text patching that happens every time: attaching or detaching
/// an XDP program regenerates the kernel's JIT'd XDP dispatcher and
/// patches the jump to it (text_poke_bp: do_sync_core on every CPU). A
/// classic socket filter would only patch text when the bpf_prog_pack
/// allocator takes or frees a pack, which depends on what else is loaded.
fn xdp_dispatcher(stop: &AtomicBool, st: &Stat, _: &CpuSet) {
    use libbpf_rs::libbpf_sys as sys;
    // r0 = XDP_PASS; exit
    let insns = [
        sys::bpf_insn {
            code: (sys::BPF_ALU64 | sys::BPF_MOV | sys::BPF_K) as u8,
            _bitfield_align_1: [],
            _bitfield_1: sys::bpf_insn::new_bitfield_1(0, 0),
            off: 0,
            imm: sys::XDP_PASS as i32,
        },
        sys::bpf_insn {
            code: (sys::BPF_JMP | sys::BPF_EXIT) as u8,
            _bitfield_align_1: [],
            _bitfield_1: sys::bpf_insn::new_bitfield_1(0, 0),
            off: 0,
            imm: 0,
        },
    ];
    let opts = sys::bpf_prog_load_opts {
        sz: std::mem::size_of::<sys::bpf_prog_load_opts>() as _,
        expected_attach_type: sys::BPF_XDP,
        ..Default::default()
    };
    // SAFETY: valid instructions, NUL-terminated strings, sized options.
    let prog = unsafe {
        sys::bpf_prog_load(
            sys::BPF_PROG_TYPE_XDP,
            c"census_xdp".as_ptr(),
            c"GPL".as_ptr(),
            insns.as_ptr(),
            insns.len() as _,
            &opts as *const _ as *mut _,
        )
    };
    // SAFETY: a NUL-terminated name.
    let lo = unsafe { libc::if_nametoindex(c"lo".as_ptr()) };
    if prog < 0 || lo == 0 {
        st.err("loading an XDP program for lo");
        return;
    }
    let link_opts = sys::bpf_link_create_opts {
        sz: std::mem::size_of::<sys::bpf_link_create_opts>() as _,
        flags: sys::XDP_FLAGS_SKB_MODE,
        ..Default::default()
    };
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: our program fd, a valid ifindex, sized options.
        let link = unsafe { sys::bpf_link_create(prog, lo as i32, sys::BPF_XDP, &link_opts) };
        if link < 0 {
            st.err("bpf(BPF_LINK_CREATE) XDP on lo");
            sleep_unless(stop, Duration::from_millis(500));
            continue;
        }
        // SAFETY: our link fd; closing it detaches (the dispatcher is patched again).
        unsafe { libc::close(link) };
        st.ok();
        sleep_unless(stop, Duration::from_millis(20));
    }
    // SAFETY: our program fd.
    unsafe { libc::close(prog) };
}

/// A tracepoint nothing else uses, by tracefs id.
fn quiet_tracepoint() -> Option<u64> {
    for dir in [
        "/sys/kernel/tracing/events",
        "/sys/kernel/debug/tracing/events",
    ] {
        for tp in [
            "task/task_rename",
            "oom/oom_score_adj_update",
            "sched/sched_kthread_stop_ret",
            "signal/signal_deliver",
        ] {
            if let Ok(s) = std::fs::read_to_string(format!("{dir}/{tp}/id")) {
                if let Ok(id) = s.trim().parse() {
                    return Some(id);
                }
            }
        }
    }
    None
}

/// Opening then closing a perf event on an unused tracepoint enables and
/// disables its static key: text_poke_bp, do_sync_core on every CPU.
fn static_key(stop: &AtomicBool, st: &Stat, hk: &CpuSet) {
    let Some(id) = quiet_tracepoint() else {
        st.err("no unused tracepoint found in tracefs");
        return;
    };
    let cpu = hk.first().unwrap_or(0) as i32;
    while !stop.load(Ordering::Relaxed) {
        // struct perf_event_attr: type u32, size u32, config u64, rest 0.
        let mut attr = [0u64; 16];
        attr[0] = 2 | (128u64 << 32); // PERF_TYPE_TRACEPOINT, size 128
        attr[1] = id;
        // SAFETY: attr is a zeroed perf_event_attr of the size it declares.
        let fd = unsafe { libc::syscall(libc::SYS_perf_event_open, attr.as_ptr(), -1, cpu, -1, 0) };
        if fd < 0 {
            st.err("perf_event_open(tracepoint)");
            sleep_unless(stop, Duration::from_millis(500));
            continue;
        }
        // SAFETY: our fd.
        unsafe { libc::close(fd as i32) };
        st.ok();
        sleep_unless(stop, Duration::from_millis(50));
    }
}

/// membarrier(PRIVATE_EXPEDITED): an IPI (ipi_mb) to every CPU running
/// a thread of this process — the census victims.
fn membarrier(stop: &AtomicBool, st: &Stat, _: &CpuSet) {
    const REGISTER_PRIVATE_EXPEDITED: i64 = 1 << 4;
    const PRIVATE_EXPEDITED: i64 = 1 << 3;
    // SAFETY: membarrier takes plain integers.
    if unsafe { libc::syscall(libc::SYS_membarrier, REGISTER_PRIVATE_EXPEDITED, 0, 0) } != 0 {
        st.err("membarrier(REGISTER_PRIVATE_EXPEDITED)");
        return;
    }
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: as above.
        if unsafe { libc::syscall(libc::SYS_membarrier, PRIVATE_EXPEDITED, 0, 0) } == 0 {
            st.ok();
        } else {
            st.err("membarrier(PRIVATE_EXPEDITED)");
        }
        sleep_unless(stop, Duration::from_millis(5));
    }
}

/// Arming a process CPU-time timer sets the POSIX_TIMER tick dependency
/// of the process: every nohz_full CPU running one of its threads is
/// kicked (irq_work nohz_full_kick_func). Disarmed, the dependency clears
/// at the victim's next tick, so the next arm kicks again.
fn nohz_kick(stop: &AtomicBool, st: &Stat, _: &CpuSet) {
    // SAFETY: a zeroed sigevent with a signal number, then plain timer calls on
    // the timer id the kernel returned.
    unsafe {
        // Not SIGEV_NONE: recent kernels (6.12) do not arm those at all,
        // so no tick dependency. SIGWINCH is ignored by default, and the
        // timer never expires anyway.
        let mut sev: libc::sigevent = std::mem::zeroed();
        sev.sigev_notify = libc::SIGEV_SIGNAL;
        sev.sigev_signo = libc::SIGWINCH;
        let mut t: libc::timer_t = std::mem::zeroed();
        if libc::timer_create(libc::CLOCK_PROCESS_CPUTIME_ID, &mut sev, &mut t) != 0 {
            st.err("timer_create(CLOCK_PROCESS_CPUTIME_ID)");
            return;
        }
        let arm = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: 3600,
                tv_nsec: 0,
            },
        };
        let disarm: libc::itimerspec = std::mem::zeroed();
        while !stop.load(Ordering::Relaxed) {
            if libc::timer_settime(t, 0, &arm, std::ptr::null_mut()) == 0 {
                st.ok();
            } else {
                st.err("timer_settime");
            }
            std::thread::sleep(Duration::from_millis(5));
            libc::timer_settime(t, 0, &disarm, std::ptr::null_mut());
            sleep_unless(stop, Duration::from_millis(15));
        }
        libc::timer_delete(t);
    }
}

/// mmap/touch/mprotect/munmap in this process: TLB shootdowns to the
/// CPUs running (or lazily holding) its mm.
fn user_tlb(stop: &AtomicBool, st: &Stat, _: &CpuSet) {
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: an anonymous private mapping we own and unmap.
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
                st.err("mmap");
            } else {
                *(p as *mut u8) = 1;
                libc::mprotect(p, 4096, libc::PROT_READ);
                libc::munmap(p, 4096);
                st.ok();
            }
        }
        sleep_unless(stop, Duration::from_millis(2));
    }
}

/// hackbench's unit: a sender and a receiver over a socketpair, 100-byte
/// messages in rounds.
fn hackbench(stop: &AtomicBool, st: &Stat, hk: &CpuSet) {
    let mut fds = [0i32; 2];
    // SAFETY: fds has room for the two descriptors.
    if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) } != 0 {
        st.err("socketpair");
        return;
    }
    let rx = fds[1];
    let hk2 = hk.clone();
    let reader = std::thread::Builder::new()
        .name("census-hb-rx".into())
        .spawn(move || {
            pin_thread(&hk2);
            let mut buf = [0u8; 100];
            // SAFETY: reading into our buffer from our socket.
            while unsafe { libc::read(rx, buf.as_mut_ptr() as *mut _, buf.len()) } > 0 {}
        });
    let msg = [0x5au8; 100];
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..100 {
            // SAFETY: writing our buffer to our socket.
            if unsafe { libc::write(fds[0], msg.as_ptr() as *const _, msg.len()) } < 0 {
                st.err("write");
            }
        }
        st.ok();
        // Leave room for the other generators on a small machine.
        sleep_unless(stop, Duration::from_micros(500));
    }
    // SAFETY: our descriptors; closing the writer ends the reader.
    unsafe {
        libc::close(fds[0]);
    }
    if let Ok(r) = reader {
        let _ = r.join();
    }
    // SAFETY: our descriptor.
    unsafe { libc::close(rx) };
}

/// UDP datagrams over loopback: NET_TX/NET_RX softirqs on housekeeping.
fn udp_loopback(stop: &AtomicBool, st: &Stat, _: &CpuSet) {
    let Ok(rx) = std::net::UdpSocket::bind("127.0.0.1:0") else {
        st.err("bind");
        return;
    };
    let Ok(tx) = std::net::UdpSocket::bind("127.0.0.1:0") else {
        st.err("bind");
        return;
    };
    let _ = rx.set_nonblocking(true);
    let to = rx.local_addr().unwrap();
    let mut buf = [0u8; 1500];
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..50 {
            if tx.send_to(&buf[..1200], to).is_err() {
                st.err("sendto");
            }
        }
        while rx.recv_from(&mut buf).is_ok() {}
        st.ok();
        sleep_unless(stop, Duration::from_millis(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_round_trip() {
        for c in Class::ALL {
            assert_eq!(Class::parse(c.name()).unwrap(), c);
        }
        assert!(Class::parse("nope").is_err());
    }
}
