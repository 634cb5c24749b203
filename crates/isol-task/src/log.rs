//! Logging from an isolated loop without entering the kernel (libtmc's
//! tmc_printf): each thread that calls [`init`] gets a lock-free
//! single-producer ring (rtrb); [`log`] formats into a stack buffer and
//! copies into the ring (no allocation, no system call, no lock); one
//! drain thread, on the housekeeping CPUs, writes the rings out every few
//! milliseconds to stderr, or to the file `ISOL_LOG_FILE` names. A full
//! ring drops the message and counts it; the drain thread says how many
//! (never silently).

use crate::error::{Error, Result};
use isol_cpulist::CpuSet;
use rtrb::{Consumer, Producer, RingBuffer};
use std::cell::RefCell;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

/// Longest message kept (header included); longer ones are cut.
pub const MAX_MESSAGE: usize = 512;
/// How often the drain thread looks at the rings.
const DRAIN_EVERY: Duration = Duration::from_millis(10);

struct Ring {
    cons: Consumer<u8>,
    dropped: Arc<AtomicU64>,
    reported: u64,
    tid: u32,
}

static RINGS: Mutex<Vec<Ring>> = Mutex::new(Vec::new());
static DRAIN: Once = Once::new();

struct Mine {
    prod: Producer<u8>,
    dropped: Arc<AtomicU64>,
    tid: u32,
}

thread_local! {
    static MINE: RefCell<Option<Mine>> = const { RefCell::new(None) };
}

/// Give the calling thread a ring of `bytes` (call before the isolated
/// loop: it allocates, and starts the drain thread once per process).
pub fn init(bytes: usize) -> Result<()> {
    let bytes = bytes.max(MAX_MESSAGE * 2);
    let (prod, cons) = RingBuffer::<u8>::new(bytes);
    let dropped = Arc::new(AtomicU64::new(0));
    let tid = crate::gettid();
    RINGS.lock().unwrap_or_else(|e| e.into_inner()).push(Ring {
        cons,
        dropped: dropped.clone(),
        reported: 0,
        tid,
    });
    MINE.with(|m| *m.borrow_mut() = Some(Mine { prod, dropped, tid }));
    let mut started = Ok(());
    DRAIN.call_once(|| started = start_drain());
    started
}

/// The drain thread runs where the caller does not: on the online CPUs
/// outside the caller's affinity (its isolated CPU), or anywhere if that
/// leaves none.
fn start_drain() -> Result<()> {
    let online: CpuSet = std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_default();
    let here = crate::stock::current_affinity().unwrap_or_default();
    let hk = online.difference(&here);
    std::thread::Builder::new()
        .name("isol-log".into())
        .spawn(move || {
            if !hk.is_empty() {
                let _ = isol_system::affinity::pin_current_thread(&hk);
            }
            let mut out = output();
            loop {
                std::thread::sleep(DRAIN_EVERY);
                drain(&mut *out);
            }
        })
        .map(|_| ())
        .map_err(|e| Error::Other(format!("starting the log drain thread: {e}")))
}

fn output() -> Box<dyn Write + Send> {
    if let Some(p) = std::env::var_os("ISOL_LOG_FILE") {
        if let Ok(f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
        {
            return Box::new(f);
        }
    }
    Box::new(std::io::stderr())
}

/// Write out what every ring holds, and any new drops.
fn drain(out: &mut dyn Write) {
    let mut rings = RINGS.lock().unwrap_or_else(|e| e.into_inner());
    for r in rings.iter_mut() {
        let n = r.cons.slots();
        if n > 0 {
            if let Ok(c) = r.cons.read_chunk(n) {
                let (a, b) = c.as_slices();
                let _ = out.write_all(a).and_then(|_| out.write_all(b));
                c.commit_all();
            }
        }
        let d = r.dropped.load(Ordering::Relaxed);
        if d != r.reported {
            let _ = writeln!(
                out,
                "isol_log: {} message(s) of thread {} dropped (its ring was full)",
                d - r.reported,
                r.tid
            );
            r.reported = d;
        }
    }
    // A thread that exited: its ring goes once emptied.
    rings.retain(|r| !(r.cons.is_abandoned() && r.cons.is_empty()));
    let _ = out.flush();
}

/// Write out everything logged so far, from the calling thread (it
/// enters the kernel: after the isolated part, e.g. before exiting).
pub fn flush() {
    let mut out = output();
    drain(&mut *out);
}

/// Whether the calling thread has a ring.
pub fn has_ring() -> bool {
    MINE.with(|m| m.borrow().is_some())
}

/// A `fmt::Write` over a stack buffer that cuts what does not fit.
struct Stack {
    buf: [u8; MAX_MESSAGE],
    len: usize,
}

impl std::fmt::Write for Stack {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let room = MAX_MESSAGE - 1 - self.len; // keep one byte for '\n'
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Log one message, formatted without allocating, prefixed with the
/// CLOCK_MONOTONIC time (read through the vDSO) and the thread's id.
/// False if the thread has no ring ([`init`]) or it was full (counted).
pub fn log(args: std::fmt::Arguments<'_>) -> bool {
    MINE.with(|m| {
        let mut m = m.borrow_mut();
        let Some(m) = m.as_mut() else {
            return false;
        };
        let mut s = Stack {
            buf: [0; MAX_MESSAGE],
            len: 0,
        };
        let ns = isol_system::clock::monotonic_ns();
        let _ = std::fmt::write(
            &mut s,
            format_args!(
                "[{}.{:06} {}] {}",
                ns / 1_000_000_000,
                ns % 1_000_000_000 / 1000,
                m.tid,
                args
            ),
        );
        s.buf[s.len] = b'\n';
        let msg = &s.buf[..=s.len];
        match m.prod.write_chunk_uninit(msg.len()) {
            Ok(c) => {
                c.fill_from_iter(msg.iter().copied());
                true
            }
            Err(_) => {
                m.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    })
}

/// `isol_task::log!("x = {}", x)`: [`log`] with format arguments.
#[macro_export]
macro_rules! log {
    ($($t:tt)*) => {
        $crate::log::log(format_args!($($t)*))
    };
}
