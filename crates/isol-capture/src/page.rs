//! Status pages: what a registered thread can learn of its isolation with
//! plain loads. Each page is a one-element BPF array of its own, created
//! mmapable (a task handed its descriptor can map that page and no other
//! task's), put in the capture's `pages` slot the thread's registration
//! names; the capture's programs write it at the thread's kernel entries.
//! Once initialized the map is frozen: no system call can change it, and
//! the kernel refuses a writable mapping of it, so the task, given the
//! descriptor over isold's socket, can only map it read-only. (A
//! descriptor opened read-only cannot be mapped at all: the kernel drops
//! MAP_SHARED from read-only files, which BPF maps require.) The task
//! needs no bpf() call, which unprivileged users may not make.

use anyhow::{Context, Result};
use isol_abi::raw;
use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

pub type RawPage = raw::isol_page;
pub const MAX_PAGES: u32 = raw::MAX_PAGES;

/// One thread's page, owned by its watcher; dropping it frees the map once
/// the task's descriptor and mapping are gone too.
pub struct StatusPage {
    map: MapHandle,
    /// Index in the capture's `pages` (strict_cfg.page is this plus one).
    pub slot: u32,
}

impl std::fmt::Debug for StatusPage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusPage")
            .field("slot", &self.slot)
            .finish()
    }
}

impl StatusPage {
    pub(crate) fn create(slot: u32, tid: u32, pending: bool) -> Result<StatusPage> {
        let opts = libbpf_rs::libbpf_sys::bpf_map_create_opts {
            sz: std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_map_create_opts>() as _,
            map_flags: libbpf_rs::libbpf_sys::BPF_F_MMAPABLE,
            ..Default::default()
        };
        let map = MapHandle::create(
            MapType::Array,
            Some("isol_page"),
            4,
            std::mem::size_of::<RawPage>() as u32,
            1,
            &opts,
        )
        .context("creating a status page (an mmapable BPF array: kernel 5.5 or later)")?;
        let mut first: RawPage = isol_abi::bytemuck::Zeroable::zeroed();
        first.tid = tid;
        first.state = if pending {
            raw::PAGE_PENDING
        } else {
            raw::PAGE_ACTIVE
        };
        map.update(
            &0u32.to_ne_bytes(),
            isol_abi::bytemuck::bytes_of(&first),
            MapFlags::ANY,
        )
        .context("initializing the status page")?;
        // SAFETY: plain syscall wrapper on a descriptor we own.
        let r = unsafe { libbpf_rs::libbpf_sys::bpf_map_freeze(map.as_fd().as_raw_fd()) };
        if r < 0 {
            return Err(std::io::Error::from_raw_os_error(-r))
                .context("freezing the status page (kernel 5.2 or later)");
        }
        Ok(StatusPage { map, slot })
    }

    /// The page's descriptor as the `pages` map stores it.
    pub(crate) fn fd_bytes(&self) -> [u8; 4] {
        self.map.as_fd().as_raw_fd().to_ne_bytes()
    }

    /// A descriptor of the page for the task: `mmap(NULL, 4096, PROT_READ,
    /// MAP_SHARED, fd, 0)` maps it (read-only: the map is frozen).
    pub fn task_fd(&self) -> Result<OwnedFd> {
        self.map
            .as_fd()
            .try_clone_to_owned()
            .context("duplicating the status page's descriptor")
    }
}
