//! The task isolation API's unix socket. Each connection gets a thread
//! (on isold's housekeeping CPUs); requests that need the capture engine
//! go to the main loop, which owns it. The caller's uid comes from the
//! socket's peer credentials, never from the request.

use anyhow::{Context, Result};
use isol_task::policy::Policy;
use isol_task::protocol::{Request, Response};
use isol_task::tick::TickSeen;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// What connection threads ask the main loop.
pub enum Msg {
    Request {
        uid: u32,
        req: Request,
        reply: Sender<Response>,
    },
    TickSeen {
        cpu: u32,
        reply: Sender<Option<TickSeen>>,
    },
}

pub fn listen(path: &Path, policy: Arc<RwLock<Policy>>, to_main: Sender<Msg>) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // A stale socket from a previous run: only remove a socket.
    if let Ok(m) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if m.file_type().is_socket() {
            let _ = std::fs::remove_file(path);
        }
    }
    let l = UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    // Everyone may connect; what they may do is decided per request.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    std::thread::Builder::new()
        .name("isold-api".into())
        .spawn(move || {
            for s in l.incoming().flatten() {
                let policy = policy.clone();
                let to_main = to_main.clone();
                let _ = std::thread::Builder::new()
                    .name("isold-conn".into())
                    .spawn(move || connection(s, policy, to_main));
            }
        })?;
    Ok(())
}

fn peer_uid(s: &UnixStream) -> Option<u32> {
    nix::sys::socket::getsockopt(s, nix::sys::socket::sockopt::PeerCredentials)
        .ok()
        .map(|c| c.uid())
}

fn connection(s: UnixStream, policy: Arc<RwLock<Policy>>, to_main: Sender<Msg>) {
    let Some(uid) = peer_uid(&s) else { return };
    let Ok(mut w) = s.try_clone() else { return };
    for line in BufReader::new(s).lines() {
        let Ok(line) = line else { return };
        if line.trim().is_empty() {
            continue;
        }
        let resp = match serde_json::from_str::<Request>(&line) {
            Err(e) => Response::Error {
                message: format!("bad request: {e}"),
            },
            Ok(Request::WaitTick {
                cpu,
                tid,
                timeout_ms,
                timers,
            }) => wait_tick(
                &policy.read().unwrap(),
                uid,
                (cpu, tid, timeout_ms, timers),
                &to_main,
            ),
            Ok(req) => {
                let (tx, rx) = mpsc::channel();
                if to_main
                    .send(Msg::Request {
                        uid,
                        req,
                        reply: tx,
                    })
                    .is_err()
                {
                    return;
                }
                match rx.recv() {
                    Ok(r) => r,
                    Err(_) => return,
                }
            }
        };
        let mut out = serde_json::to_vec(&resp).expect("response serializes");
        out.push(b'\n');
        if w.write_all(&out).is_err() {
            return;
        }
    }
}

fn wait_tick(
    policy: &Policy,
    uid: u32,
    (cpu, tid, timeout_ms, timers): (u32, u32, u64, bool),
    to_main: &Sender<Msg>,
) -> Response {
    // Same rules as registering: own task, allowed CPU, pinned there.
    match policy.check_register(uid, tid, false) {
        Ok(c) if c == cpu => {}
        Ok(c) => {
            return Response::Error {
                message: format!("task {tid} is pinned to CPU {c}, not {cpu}"),
            }
        }
        Err(message) => return Response::Error { message },
    }
    let timeout = Duration::from_millis(timeout_ms.min(60_000));
    let seen = || {
        let (tx, rx) = mpsc::channel();
        to_main.send(Msg::TickSeen { cpu, reply: tx }).ok()?;
        rx.recv().ok().flatten()
    };
    Response::Tick(isol_task::tick::wait_with(cpu, tid, timeout, timers, &seen))
}
