//! The client side of the watcher: isold over its unix socket, or an
//! in-process watcher thread for programs that may load BPF themselves.
//!
//! Calls never block the isolated CPU in the kernel: the caller spins on a
//! non-blocking read (a blocked task would let the CPU go idle, and an
//! idle CPU's stopped tick proves nothing about the running task's).

use crate::error::{Error, Result};
use crate::protocol::{socket_path, Request, Response};
use std::io::{ErrorKind, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

pub enum Watcher {
    Daemon(UnixStream),
    #[cfg(feature = "capture")]
    InProcess(crate::inprocess::Handle),
}

impl Watcher {
    /// isold if it runs; otherwise, with `in_process`, a watcher thread
    /// in this process (needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN).
    pub fn connect(in_process: bool) -> Result<Watcher> {
        let path = socket_path();
        let daemon_err = match UnixStream::connect(&path) {
            Ok(s) => return Ok(Watcher::Daemon(s)),
            Err(e) => format!("isold is not reachable at {} ({e})", path.display()),
        };
        // ISOL_INPROCESS_WATCHER=0: never load BPF into this process.
        let in_process =
            in_process && std::env::var_os("ISOL_INPROCESS_WATCHER").is_none_or(|v| v != "0");
        #[cfg(feature = "capture")]
        if in_process {
            return crate::inprocess::Handle::start()
                .map(Watcher::InProcess)
                .map_err(|e| Error::NoWatcher(format!("{daemon_err}; in-process watcher: {e}")));
        }
        let _ = in_process;
        Err(Error::NoWatcher(format!(
            "{daemon_err}; start isold (isol serve) or run with CAP_BPF"
        )))
    }

    pub fn describe(&self) -> String {
        match self {
            Watcher::Daemon(_) => format!("isold at {}", socket_path().display()),
            #[cfg(feature = "capture")]
            Watcher::InProcess(_) => "in-process watcher".into(),
        }
    }

    pub fn call(&mut self, req: &Request) -> Result<Response> {
        let resp = match self {
            Watcher::Daemon(s) => call_socket(s, req)?,
            #[cfg(feature = "capture")]
            Watcher::InProcess(h) => h.call(req)?,
        };
        if let Response::Error { message } = resp {
            return Err(Error::Refused(message));
        }
        Ok(resp)
    }
}

fn io(what: &str) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::Os {
        what: what.to_string(),
        source: e,
    }
}

fn call_socket(s: &mut UnixStream, req: &Request) -> Result<Response> {
    let mut line = serde_json::to_vec(req).expect("request serializes");
    line.push(b'\n');
    s.set_nonblocking(false).map_err(io("isold socket"))?;
    s.write_all(&line).map_err(io("writing to isold"))?;
    s.set_nonblocking(true).map_err(io("isold socket"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut passed = None;
    loop {
        match recv_with_fd(s, &mut chunk) {
            Ok((0, _)) => return Err(Error::Other("isold closed the connection".into())),
            Ok((n, fd)) => {
                passed = passed.or(fd);
                buf.extend_from_slice(&chunk[..n]);
                if buf.ends_with(b"\n") {
                    break;
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::hint::spin_loop(),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(io("reading from isold")(e)),
        }
    }
    let mut resp: Response =
        serde_json::from_slice(&buf).map_err(|e| Error::Other(format!("isold's answer: {e}")))?;
    if let (Response::StatusPage { fd, .. }, Some(p)) = (&mut resp, passed) {
        fd.0 = Some(std::sync::Arc::new(p));
    }
    Ok(resp)
}

/// read(), and a descriptor if one came with the bytes (SCM_RIGHTS). By
/// hand on libc: this crate is linked into libisol, which keeps its
/// dependencies few.
fn recv_with_fd(s: &UnixStream, buf: &mut [u8]) -> std::io::Result<(usize, Option<OwnedFd>)> {
    // Room for one descriptor's control message, aligned for cmsghdr.
    let mut space = [0u64; 8];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; every pointer below outlives the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = space.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = std::mem::size_of_val(&space) as _;
    // SAFETY: a valid socket and a msghdr describing live buffers.
    let n = unsafe { libc::recvmsg(s.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut fd = None;
    // SAFETY: the CMSG macros walk the control buffer the kernel filled.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let raw = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::c_int);
                fd = Some(OwnedFd::from_raw_fd(raw));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n as usize, fd))
}
