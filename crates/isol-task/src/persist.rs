//! Persistent mode's check: did the task enter the kernel since its last
//! quiesce? The patched kernel quiesces on every return to user space; a
//! stock kernel gives user space no hook there, so the task checks once
//! per loop iteration and re-quiesces only when it made system calls.
//!
//! With the configuration's `entry_counter` (off by default, for the cost
//! below), the check is one load of a counter the kernel advances on the
//! task's own system calls, with no interruption: the head of a perf ring buffer
//! into which a per-thread `raw_syscalls:sys_exit` event writes an 8-byte
//! record at the end of each system call. Nobody reads the records; the
//! task moves the tail up to the head at each quiesce, so the buffer never
//! fills. The watermark is the whole buffer (4096 records), so the one
//! wakeup perf sends per buffer is an irq_work raised inside one of the
//! task's own system calls, never while it runs in user space.
//!
//! Opening the event needs CAP_PERFMON (or a kernel.perf_event_paranoid
//! of 1 or less) and tracefs for the event's id; enabling the tracepoint makes every
//! system call on the machine take the tracepoint path while it is open,
//! and switching it on (first counter) and off (last) patches kernel text:
//! an IPI to every CPU, other isolated ones included.
//! Where it cannot be opened, every check says "entered" and the task
//! re-quiesces each time (one madvise system call). A counter the
//! watcher keeps in a page shared with the task can replace it: `Source`
//! is where it plugs in.

use crate::arch::PAGE;
use perf_event_open_sys as sys;
use std::cell::RefCell;

const DATA_PAGES: usize = 8;
/// Offsets of data_head and data_tail in struct perf_event_mmap_page.
const DATA_HEAD: usize = 1024;
const DATA_TAIL: usize = 1032;

enum Source {
    /// Not armed (not persistent, or not active).
    Off,
    /// No counter could be opened: always re-quiesce.
    Always,
    Perf(Ring),
}

struct Ring {
    fd: std::os::fd::OwnedFd,
    base: *mut u8,
    len: usize,
    seen: u64,
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: base/len are our mapping.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
        let _ = &self.fd;
    }
}

impl Ring {
    #[inline]
    fn head(&self) -> u64 {
        // SAFETY: within the first page of our mapping; the kernel writes it.
        unsafe { std::ptr::read_volatile(self.base.add(DATA_HEAD) as *const u64) }
    }
    fn catch_up(&mut self) {
        self.seen = self.head();
        // SAFETY: the writable control page of our mapping.
        unsafe { std::ptr::write_volatile(self.base.add(DATA_TAIL) as *mut u64, self.seen) };
    }
}

thread_local! {
    static SOURCE: RefCell<Source> = const { RefCell::new(Source::Off) };
}

fn tracepoint_id(name: &str) -> Result<u64, String> {
    for root in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        if let Ok(s) = std::fs::read_to_string(format!("{root}/events/{name}/id")) {
            return s.trim().parse().map_err(|e| format!("{name} id: {e}"));
        }
    }
    Err(format!(
        "no tracefs with events/{name} (mount -t tracefs nodev /sys/kernel/tracing, as root)"
    ))
}

fn open_ring() -> Result<Ring, String> {
    let id = tracepoint_id("raw_syscalls/sys_exit")?;
    let mut attr = sys::bindings::perf_event_attr {
        type_: sys::bindings::PERF_TYPE_TRACEPOINT,
        size: std::mem::size_of::<sys::bindings::perf_event_attr>() as u32,
        config: id,
        ..Default::default()
    };
    attr.__bindgen_anon_1.sample_period = 1;
    attr.set_watermark(1);
    attr.__bindgen_anon_2.wakeup_watermark = (DATA_PAGES * PAGE) as u32;
    // SAFETY: a valid attr; this thread (pid 0), any CPU.
    let fd = unsafe {
        sys::perf_event_open(
            &mut attr,
            0,
            -1,
            -1,
            sys::bindings::PERF_FLAG_FD_CLOEXEC as libc::c_ulong,
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return Err(format!(
            "perf_event_open(raw_syscalls:sys_exit): {e} (needs CAP_PERFMON or kernel.perf_event_paranoid <= 1)"
        ));
    }
    // SAFETY: fd was just returned to us.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let len = (1 + DATA_PAGES) * PAGE;
    // SAFETY: mapping the event's ring buffer as perf_event_open(2) says.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(format!(
            "mmap of the perf ring: {}",
            std::io::Error::last_os_error()
        ));
    }
    let mut r = Ring {
        fd,
        base: base as *mut u8,
        len,
        seen: 0,
    };
    r.catch_up();
    Ok(r)
}

/// At activation in persistent mode without the counter: every check
/// re-quiesces.
pub fn arm_always() -> String {
    SOURCE.with(|s| *s.borrow_mut() = Source::Always);
    "none (entry_counter not configured): every check re-quiesces".into()
}

/// At activation in persistent mode: open the counter. Returns what the
/// check will use, for the activation report.
pub fn arm() -> String {
    let (src, what) = match open_ring() {
        Ok(r) => (
            Source::Perf(r),
            "perf ring head of this thread's raw_syscalls:sys_exit (one load per check)"
                .to_string(),
        ),
        Err(e) => (
            Source::Always,
            format!("none ({e}): every check re-quiesces"),
        ),
    };
    SOURCE.with(|s| *s.borrow_mut() = src);
    what
}

pub fn disarm() {
    SOURCE.with(|s| *s.borrow_mut() = Source::Off);
}

/// Whether this thread has a check armed (or the fallback).
pub fn armed() -> bool {
    SOURCE.with(|s| !matches!(&*s.borrow(), Source::Off))
}

/// In a child of fork: the parent's ring is not mapped here (perf maps it
/// VM_DONTCOPY) and its event counts the parent's thread: close the
/// descriptor, forget the mapping (no munmap of what this process does
/// not have). The child arms its own at its first check.
pub(crate) fn after_fork() {
    let _ = SOURCE.try_with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            if let Source::Perf(r) = std::mem::replace(&mut *s, Source::Off) {
                let r = std::mem::ManuallyDrop::new(r);
                // SAFETY: our descriptor; the OwnedFd is never dropped.
                unsafe { libc::close(std::os::fd::AsRawFd::as_raw_fd(&r.fd)) };
            }
        }
    });
}

/// Did this thread enter the kernel since the last [`seen`]?
#[inline]
pub fn entered() -> bool {
    SOURCE.with(|s| match &*s.borrow() {
        Source::Off => false,
        Source::Always => true,
        Source::Perf(r) => r.head() != r.seen,
    })
}

/// After a quiesce: what happened so far is dealt with.
pub fn seen() {
    SOURCE.with(|s| {
        if let Source::Perf(r) = &mut *s.borrow_mut() {
            r.catch_up();
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_ring_head_moves_with_system_calls_only() {
        // Root (CI) can open it; elsewhere the fallback is what applies.
        let Ok(mut r) = super::open_ring() else {
            assert!(
                !std::path::Path::new("/sys/kernel/tracing/events").exists()
                    || unsafe { libc::geteuid() } != 0
            );
            return;
        };
        r.catch_up();
        let mut x = 0u64;
        for i in 0..1000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert_eq!(r.head(), r.seen, "user-space work moved the head");
        unsafe { libc::getppid() };
        assert_ne!(r.head(), r.seen, "a system call did not move the head");
        r.catch_up();
        assert_eq!(r.head(), r.seen);
    }
}
