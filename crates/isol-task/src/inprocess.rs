//! The in-process watcher: a thread on a housekeeping CPU that owns the
//! capture engine for a program allowed to load BPF itself. It serves
//! the same requests as isold, trusting its own process.

use crate::error::{Error, Result};
use crate::policy::Policy;
use crate::protocol::{Request, Response};
use crate::service::{tick_seen, Service};
use crate::stock::read_set;
use isol_capture::{Capture, Options};
use isol_cpulist::CpuSet;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::time::Duration;

type Call = (Request, Sender<Response>);

pub struct Handle {
    tx: Sender<Call>,
}

impl Handle {
    pub fn start() -> Result<Handle> {
        // Watch every CPU the kernel isolates and the one we run on.
        let mut cpus = read_set("/sys/devices/system/cpu/nohz_full");
        cpus = cpus.union(&read_set("/sys/devices/system/cpu/isolated"));
        // SAFETY: plain libc call.
        let here = unsafe { libc::sched_getcpu() };
        if here >= 0 {
            cpus.insert(here as u32);
        }
        let online = read_set("/sys/devices/system/cpu/online");
        let housekeeping = online.difference(&cpus);
        if housekeeping.is_empty() {
            return Err(Error::Other(format!(
                "no housekeeping CPU left for the watcher thread (watched {cpus}, online {online})"
            )));
        }
        let (tx, rx) = mpsc::channel::<Call>();
        let (ready_tx, ready_rx) = mpsc::channel::<std::result::Result<(), String>>();
        std::thread::Builder::new()
            .name("isol-watcher".into())
            .spawn(move || {
                // Born on the caller's (isolated) CPU: leave it first.
                if let Err(e) = isol_system::affinity::pin_current_thread(&housekeeping) {
                    let _ = ready_tx.send(Err(e.to_string()));
                    return;
                }
                let cap = match Capture::start(Options {
                    cpus: cpus.clone(),
                    ..Default::default()
                }) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("{e:#}")));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                serve(cap, cpus, rx);
            })
            .map_err(|e| Error::Other(format!("starting the watcher thread: {e}")))?;
        // Loading takes a while; the caller is not isolated yet, it may block.
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Handle { tx }),
            Ok(Err(e)) => Err(Error::NoWatcher(e)),
            Err(_) => Err(Error::NoWatcher("the watcher thread died".into())),
        }
    }

    /// Spin (no blocking in the kernel) until the watcher answers.
    pub fn call(&self, req: &Request) -> Result<Response> {
        let (rtx, rrx) = mpsc::channel();
        self.tx
            .send((req.clone(), rtx))
            .map_err(|_| Error::Other("the watcher thread is gone".into()))?;
        loop {
            match rrx.try_recv() {
                Ok(r) => return Ok(r),
                Err(TryRecvError::Empty) => std::hint::spin_loop(),
                Err(TryRecvError::Disconnected) => {
                    return Err(Error::Other("the watcher thread is gone".into()))
                }
            }
        }
    }
}

fn serve(mut cap: Capture, cpus: CpuSet, rx: Receiver<Call>) {
    let policy = Policy {
        watched: cpus,
        trusted: true,
        ..Default::default()
    };
    let mut svc = Service::new();
    let mut published = std::time::Instant::now();
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok((req, reply)) => {
                let resp = match &req {
                    Request::WaitTick {
                        cpu,
                        tid,
                        timeout_ms,
                        timers,
                    } => Response::Tick(crate::tick::wait_with(
                        *cpu,
                        *tid,
                        Duration::from_millis(*timeout_ms),
                        *timers,
                        &|| tick_seen(&cap, *cpu),
                    )),
                    r => svc.handle(&cap, &policy, 0, r),
                };
                let _ = reply.send(resp);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        // Records are not kept here; draining keeps the ring from filling.
        let _ = cap.drain_raw();
        // The breaks counted here, for `isol status` (isold's are in its
        // own answer).
        if published.elapsed() >= Duration::from_secs(1) {
            published = std::time::Instant::now();
            for t in svc.status_all(&cap, &policy) {
                crate::registry::update_breaks(t.id, t.breaks, t.last_break);
            }
        }
    }
}
