//! The calling thread's status page: its watcher (isold, or an in-process
//! one) hands over a read-only descriptor of the page the capture writes at
//! the thread's kernel entries; mapped once, it is read with plain loads,
//! so an isolated loop can watch its own isolation without a system call
//! or a signal (the task isolation series' "pure memory" status).

use crate::error::{Error, Result};
use isol_abi::{raw, Class, Kind, PageState};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{fence, AtomicU32, Ordering};
use std::sync::Arc;

pub type RawPage = raw::isol_page;

/// A mapped status page. Reading it never enters the kernel.
pub struct StatusPage {
    base: *const RawPage,
    len: usize,
    _fd: Arc<OwnedFd>,
}

// SAFETY: a read-only shared mapping, read with atomic/volatile loads.
unsafe impl Send for StatusPage {}
unsafe impl Sync for StatusPage {}

impl Drop for StatusPage {
    fn drop(&mut self) {
        // SAFETY: our mapping, unmapped once.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}

impl StatusPage {
    pub(crate) fn map(fd: Arc<OwnedFd>) -> Result<StatusPage> {
        let len = std::mem::size_of::<RawPage>().next_multiple_of(crate::arch::PAGE);
        // SAFETY: mapping a descriptor we hold; checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(Error::os("mapping the status page"));
        }
        Ok(StatusPage {
            base: p as *const RawPage,
            len,
            _fd: fd,
        })
    }

    /// A consistent copy of the page: the capture makes `seq` odd while
    /// it writes, so a copy taken between two equal even values is whole.
    pub fn read(&self) -> RawPage {
        // SAFETY: `base` is a live mapping of a RawPage; seq is its first
        // field, 4-byte aligned.
        let seq = unsafe { &*(self.base as *const AtomicU32) };
        loop {
            let s1 = seq.load(Ordering::Acquire);
            if s1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            // SAFETY: as above; a torn copy is detected and retried.
            let copy = unsafe { std::ptr::read_volatile(self.base) };
            fence(Ordering::Acquire);
            if seq.load(Ordering::Relaxed) == s1 {
                return copy;
            }
        }
    }

    /// The page, named (no allocation beyond the returned value's: call
    /// [`StatusPage::read`] from a loop that must not allocate).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::from(&self.read())
    }
}

/// A status page, in words.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Snapshot {
    pub state: &'static str,
    pub tid: u32,
    pub breaks: u32,
    /// CLOCK_MONOTONIC ns of the thread's last kernel entry seen, 0 if none.
    pub last_entry_ns: u64,
    /// CLOCK_MONOTONIC ns of the last break, 0 if none.
    pub break_ns: u64,
    pub break_cpu: u32,
    /// CLOCK_MONOTONIC ns when isolation began (the arming syscall of the
    /// activation): an IPI queued before it is not a break.
    pub active_ns: u64,
    /// IPIs queued before the activation and handled after it: counted,
    /// never breaks.
    pub pre_activation: u32,
    /// The last break's chain as `class: kind` (functions and symbols are
    /// named by [`crate::last_break`], which asks the watcher).
    pub chain: Vec<String>,
    /// The IPI's sender: CPU, pid and comm, when the capture saw it.
    pub sender: Option<(u32, u32, String)>,
}

/// `class: kind` of a raw cause, from static names.
pub fn cause_words(c: &raw::cause) -> (&'static str, &'static str) {
    (
        Class::from_raw(c.class).name(),
        Kind::from_raw(c.kind).name(),
    )
}

impl From<&RawPage> for Snapshot {
    fn from(p: &RawPage) -> Snapshot {
        let n = (p.nchain as usize).min(p.chain.len());
        Snapshot {
            state: PageState::from_raw(p.state as u8).name(),
            tid: p.tid,
            breaks: p.breaks,
            last_entry_ns: p.last_entry_ns,
            break_ns: p.break_ns,
            break_cpu: p.break_cpu,
            active_ns: p.active_ns,
            pre_activation: p.pre_activation,
            chain: p.chain[..n]
                .iter()
                .map(|c| {
                    let (class, kind) = cause_words(c);
                    format!("{class}: {kind}")
                })
                .collect(),
            sender: (p.sender.valid != 0).then(|| {
                let comm = p
                    .sender
                    .comm
                    .iter()
                    .take_while(|b| **b != 0)
                    .map(|b| *b as char)
                    .collect();
                (p.sender.cpu, p.sender.pid, comm)
            }),
        }
    }
}
