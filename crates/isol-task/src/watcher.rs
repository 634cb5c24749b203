//! The client side of the watcher: isold over its unix socket, or an
//! in-process watcher thread for programs that may load BPF themselves.
//!
//! Calls never block the isolated CPU in the kernel: the caller spins on a
//! non-blocking read (a blocked task would let the CPU go idle, and an
//! idle CPU's stopped tick proves nothing about the running task's).

use crate::error::{Error, Result};
use crate::protocol::{socket_path, Request, Response};
use std::io::{ErrorKind, Read, Write};
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
    loop {
        match s.read(&mut chunk) {
            Ok(0) => return Err(Error::Other("isold closed the connection".into())),
            Ok(n) => {
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
    serde_json::from_slice(&buf).map_err(|e| Error::Other(format!("isold's answer: {e}")))
}
