//! The task isolation API's unix socket. Each connection gets a thread
//! (on isold's housekeeping CPUs); requests that need the capture engine
//! go to the main loop, which owns it. The caller's uid comes from the
//! socket's peer credentials, never from the request.
//!
//! Any local user may connect, so everything a client can make isold hold
//! is bounded (config `[limits]`): request length, connections in all and
//! per uid, idle time. An over-limit client gets an error line and is
//! closed; the others go on being served.

use crate::config::Limits;
use anyhow::{Context, Result};
use isol_task::policy::Policy;
use isol_task::protocol::{Request, Response};
use isol_task::tick::TickSeen;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, RwLock};
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

/// Open connections, in all and per uid; a slot is given back when its
/// [`Slot`] drops, whatever ends the connection (even a panic).
#[derive(Default)]
struct Slots {
    by_uid: Mutex<HashMap<u32, usize>>,
}

struct Slot {
    slots: Arc<Slots>,
    uid: u32,
}

impl Slots {
    /// A slot for `uid`, or why not.
    fn take(self: &Arc<Self>, uid: u32, limits: &Limits) -> Result<Slot, String> {
        let mut m = self.by_uid.lock().unwrap_or_else(|p| p.into_inner());
        let total: usize = m.values().sum();
        if total >= limits.connections {
            return Err(format!(
                "isold is serving its limit of {} connections; try again later",
                limits.connections
            ));
        }
        let mine = m.entry(uid).or_default();
        if *mine >= limits.connections_per_user {
            return Err(format!(
                "uid {uid} already holds {} connections to isold (limits.connections_per_user)",
                *mine
            ));
        }
        *mine += 1;
        Ok(Slot {
            slots: self.clone(),
            uid,
        })
    }

    fn open(&self) -> usize {
        let m = self.by_uid.lock().unwrap_or_else(|p| p.into_inner());
        m.values().sum()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut m = self.slots.by_uid.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.uid);
            }
        }
    }
}

/// What the socket shares with the main loop.
pub struct Shared {
    pub policy: Arc<RwLock<Policy>>,
    /// Re-read for each new connection (SIGHUP may change them).
    pub limits: Arc<RwLock<Limits>>,
    pub to_main: Sender<Msg>,
}

/// A connection thread's stack: it parses one bounded JSON line at a time
/// (serde_json stops nesting at 128 levels), so the default 2 MiB is waste
/// multiplied by `limits.connections`.
const CONN_STACK: usize = 256 * 1024;

pub fn listen(path: &Path, shared: Shared) -> Result<()> {
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
    let slots = Arc::new(Slots::default());
    std::thread::Builder::new()
        .name("isold-api".into())
        .spawn(move || loop {
            let s = match l.accept() {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of descriptors or memory: wait for some to be
                    // given back instead of spinning on the error.
                    eprintln!("isold: accepting on the API socket: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            let limits = shared
                .limits
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let Some(uid) = peer_uid(&s) else { continue };
            let slot = match slots.take(uid, &limits) {
                Ok(slot) => slot,
                Err(message) => {
                    refuse(s, message);
                    continue;
                }
            };
            let policy = shared.policy.clone();
            let to_main = shared.to_main.clone();
            let spawned = std::thread::Builder::new()
                .name("isold-conn".into())
                .stack_size(CONN_STACK)
                .spawn(move || {
                    let _slot = slot;
                    connection(s, uid, &limits, policy, to_main)
                });
            if let Err(e) = spawned {
                eprintln!(
                    "isold: no thread for a connection ({} open): {e}",
                    slots.open()
                );
            }
        })?;
    Ok(())
}

/// Tell an over-limit client why, without ever waiting on it.
fn refuse(mut s: UnixStream, message: String) {
    let _ = s.set_nonblocking(true);
    let _ = s.write_all(&reply_line(&Response::Error { message }));
}

fn reply_line(resp: &Response) -> Vec<u8> {
    let mut out = serde_json::to_vec(resp).expect("response serializes");
    out.push(b'\n');
    out
}

fn peer_uid(s: &UnixStream) -> Option<u32> {
    nix::sys::socket::getsockopt(s, nix::sys::socket::sockopt::PeerCredentials)
        .ok()
        .map(|c| c.uid())
}

/// One request line, read with a bound.
#[derive(Debug, PartialEq)]
pub enum Line {
    Request(Vec<u8>),
    /// Longer than the limit: refused unread (what was read is dropped).
    TooLong,
    /// The peer closed, timed out or failed.
    End,
}

/// Read up to a newline, keeping at most `limit` bytes: an endless line
/// costs isold `limit` bytes, not the line. (`BufRead::lines` would
/// buffer all of it.)
pub fn read_line(r: &mut impl BufRead, limit: usize, buf: &mut Vec<u8>) -> Line {
    buf.clear();
    loop {
        let chunk = match r.fill_buf() {
            Ok([]) => return Line::End,
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return Line::End,
        };
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        if buf.len() + take > limit {
            return Line::TooLong;
        }
        buf.extend_from_slice(&chunk[..take]);
        r.consume(if done { take + 1 } else { take });
        if done {
            return Line::Request(std::mem::take(buf));
        }
    }
}

/// The request in a line, or the error to answer with.
pub fn decode(line: &[u8]) -> Result<Option<Request>, String> {
    let text = std::str::from_utf8(line).map_err(|e| format!("bad request: {e}"))?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str::<Request>(text)
        .map(Some)
        .map_err(|e| format!("bad request: {e}"))
}

fn connection(
    s: UnixStream,
    uid: u32,
    limits: &Limits,
    policy: Arc<RwLock<Policy>>,
    to_main: Sender<Msg>,
) {
    let idle = Duration::from_secs(limits.idle_timeout_s);
    // A client that stops reading its replies must not hold the thread.
    if s.set_read_timeout(Some(idle)).is_err() || s.set_write_timeout(Some(idle)).is_err() {
        return;
    }
    let Ok(mut w) = s.try_clone() else { return };
    let mut r = BufReader::with_capacity(8 * 1024, s);
    let mut buf = Vec::new();
    loop {
        let line = match read_line(&mut r, limits.request_bytes, &mut buf) {
            Line::Request(l) => l,
            Line::TooLong => {
                let _ = w.write_all(&reply_line(&Response::Error {
                    message: format!(
                        "request longer than {} bytes (limits.request_bytes); closing",
                        limits.request_bytes
                    ),
                }));
                return;
            }
            Line::End => return,
        };
        let resp = match decode(&line) {
            Err(message) => Response::Error { message },
            Ok(None) => continue,
            Ok(Some(Request::WaitTick {
                cpu,
                tid,
                timeout_ms,
                timers,
            })) => wait_tick(
                &policy.read().unwrap_or_else(|p| p.into_inner()),
                uid,
                (cpu, tid, timeout_ms, timers),
                &to_main,
            ),
            Ok(Some(req)) => {
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
        if send_reply(&mut w, &resp).is_err() {
            return;
        }
    }
}

/// The reply line; a status page's descriptor goes with its first byte
/// (SCM_RIGHTS), so the client receives it with the line.
fn send_reply(w: &mut UnixStream, resp: &Response) -> std::io::Result<()> {
    let line = reply_line(resp);
    let Response::StatusPage {
        fd: isol_task::protocol::Passed(Some(fd)),
        ..
    } = resp
    else {
        return w.write_all(&line);
    };
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    use std::os::fd::AsRawFd;
    let fds = [fd.as_raw_fd()];
    let iov = [std::io::IoSlice::new(&line[..1])];
    sendmsg::<()>(
        w.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(std::io::Error::from)?;
    w.write_all(&line[1..])
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Read;

    /// A reader that hands out its bytes a few at a time, as a socket does.
    struct Trickle<R>(R, usize);
    impl<R: Read> Read for Trickle<R> {
        fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
            let n = b.len().min(self.1);
            self.0.read(&mut b[..n])
        }
    }

    fn lines(input: &[u8], limit: usize, step: usize) -> Vec<Line> {
        let mut r = BufReader::with_capacity(16, Trickle(input, step));
        let mut buf = Vec::new();
        let mut out = Vec::new();
        loop {
            let l = read_line(&mut r, limit, &mut buf);
            let end = l != Line::TooLong && l != Line::End;
            out.push(l);
            if !end {
                return out;
            }
        }
    }

    #[test]
    fn an_endless_line_is_refused_after_the_limit_without_being_kept() {
        // 64 MiB of 'x' and no newline, from an endless reader: read_line
        // must stop at the limit, holding no more than it.
        let mut r = BufReader::new(std::io::repeat(b'x'));
        let mut buf = Vec::new();
        assert_eq!(read_line(&mut r, 4096, &mut buf), Line::TooLong);
        assert!(buf.capacity() <= 2 * 4096 + 8192, "{}", buf.capacity());
    }

    #[test]
    fn lines_split_as_sent_whatever_the_chunking() {
        let got = lines(b"{\"op\":\"status\",\"pid\":null}\n\nabc\n", 100, 3);
        assert_eq!(
            got,
            vec![
                Line::Request(b"{\"op\":\"status\",\"pid\":null}".to_vec()),
                Line::Request(vec![]),
                Line::Request(b"abc".to_vec()),
                Line::End
            ]
        );
        assert_eq!(
            decode(b"{\"op\":\"status\",\"pid\":null}"),
            Ok(Some(Request::Status { pid: None }))
        );
        assert_eq!(decode(b"  "), Ok(None));
        assert!(decode(b"\xff\xfe").unwrap_err().contains("bad request"));
        assert!(decode(b"{\"op\":\"register\",\"id\":1}")
            .unwrap_err()
            .contains("bad request"));
    }

    #[test]
    fn connection_slots_are_bounded_in_all_and_per_uid_and_given_back() {
        let limits = Limits {
            connections: 3,
            connections_per_user: 2,
            ..Limits::default()
        };
        let s = Arc::new(Slots::default());
        let a1 = s.take(1000, &limits).unwrap();
        let _a2 = s.take(1000, &limits).unwrap();
        let e = s.take(1000, &limits).err().unwrap();
        assert!(
            e.contains("uid 1000") && e.contains("connections_per_user"),
            "{e}"
        );
        let _b = s.take(0, &limits).unwrap();
        let e = s.take(0, &limits).err().unwrap();
        assert!(e.contains("limit of 3"), "{e}");
        drop(a1);
        assert_eq!(s.open(), 2);
        let _a3 = s.take(1000, &limits).unwrap();
        // A panicking connection gives its slot back too.
        let slot = s.take(7, &Limits::default()).unwrap();
        let _ = std::thread::spawn(move || {
            let _slot = slot;
            panic!("a connection thread dies");
        })
        .join();
        assert_eq!(s.open(), 3);
    }

    proptest! {
        // The socket's request decoding, fed what a hostile client may
        // send: read_line never keeps more than the limit, never loses or
        // invents a line within it, and decode never panics.
        // PROPTEST_CASES raises the count for a long run.
        #[test]
        fn request_lines_and_decoding_hold_on_any_input(
            input in proptest::collection::vec(
                prop_oneof![any::<u8>(), Just(b'\n'), Just(b'{'), Just(b'"')], 0..2048),
            limit in 1usize..300,
            step in 1usize..64,
        ) {
            let got = lines(&input, limit, step);
            let mut want = Vec::new();
            let mut rest: &[u8] = &input;
            loop {
                match rest.iter().position(|&b| b == b'\n') {
                    Some(i) if i <= limit => {
                        want.push(Line::Request(rest[..i].to_vec()));
                        rest = &rest[i + 1..];
                    }
                    Some(_) => { want.push(Line::TooLong); break; }
                    None if rest.len() > limit => { want.push(Line::TooLong); break; }
                    None => { want.push(Line::End); break; }
                }
            }
            prop_assert_eq!(&got, &want);
            for l in &got {
                if let Line::Request(b) = l {
                    let _ = decode(b);
                }
            }
        }

        #[test]
        fn json_shaped_requests_decode_or_are_refused_without_panic(
            s in r#"\{"op":"(register|unregister|wait_tick|status|x)"(,"(id|pid|cpu|tid|process|mode|signal|classes|inherit|quiesce|pending|timeout_ms|timers)":(-?[0-9]{1,20}|"[^"]{0,10}"|true|null|\[\]|\{\}|\["[a-z]{0,8}"\])){0,8}\}"#,
        ) {
            let _ = decode(s.as_bytes());
        }
    }
}
