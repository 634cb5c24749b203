//! isold: watches the isolated CPUs continuously with the capture engine
//! and exports what it sees as Prometheus metrics on a loopback HTTP
//! endpoint. Runs on housekeeping CPUs only; reloads its config on SIGHUP.

pub mod config;
pub mod drift;
pub mod metrics;
pub mod socket;

use anyhow::Result;
use config::Config;
use isol_capture::{Capture, Options};
use isol_cpulist::CpuSet;
use isol_system::Root;
use isol_task::policy::Policy;
use isol_task::service::Service;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Seconds between drift checks (each reads every task's /proc entry).
const DRIFT_EVERY: Duration = Duration::from_secs(10);

pub struct ServeOptions {
    pub config: PathBuf,
    /// Overrides the config's `listen` (tests pick a free port).
    pub listen: Option<std::net::SocketAddr>,
    /// Stop after this long (tests); None = until SIGTERM/SIGINT.
    pub duration: Option<Duration>,
}

/// The CPUs a config watches (validated: online, a housekeeping CPU left)
/// and the housekeeping CPUs isold runs on.
fn watched(cfg: &Config) -> Result<(CpuSet, CpuSet)> {
    use isol_system::select::{select, WhenNoneIsolated};
    let s = select(
        &Root::default(),
        cfg.cpus.as_ref(),
        WhenNoneIsolated::Refuse,
    )
    .map_err(|e| match &cfg.cpus {
        None => anyhow::anyhow!("{e} (set cpus = \"LIST\" in the config)"),
        Some(c) => anyhow::anyhow!("cpus = \"{c}\": {e}"),
    })?;
    Ok((s.watched, s.housekeeping))
}

fn start_capture(cfg: &Config, cpus: &CpuSet) -> Result<Capture> {
    Capture::start(Options {
        cpus: cpus.clone(),
        ring_bytes: cfg.buffer_kb.saturating_mul(1024),
        strict_syscalls: cfg.strict_syscalls,
        ..Default::default()
    })
}

fn policy(cfg: &Config, cpus: &CpuSet) -> Result<Policy> {
    Ok(Policy {
        watched: cpus.clone(),
        users: cfg.user_cpus()?,
        trusted: false,
    })
}

/// Registrations begin and end in isold's log (the journal an operator
/// reads when a task says it lost its isolation).
fn log_request(uid: u32, req: &isol_task::protocol::Request, resp: &isol_task::protocol::Response) {
    use isol_task::protocol::{Request, Response};
    let what =
        |id: u32, process: bool| format!("{} {id}", if process { "process" } else { "task" });
    match (req, resp) {
        (Request::Register(r), Response::Registered { cpu }) => eprintln!(
            "isold: {} registered by uid {uid} on CPU {cpu} ({:?}, signal {}, breaks on {})",
            what(r.id, r.process),
            r.mode,
            r.signal,
            r.classes.join(",")
        ),
        (Request::Unregister { id, process }, Response::Done) => {
            eprintln!("isold: {} unregistered by uid {uid}", what(*id, *process))
        }
        (Request::Register(r), Response::Error { message }) => eprintln!(
            "isold: {} not registered for uid {uid}: {message}",
            what(r.id, r.process)
        ),
        _ => {}
    }
}

pub fn serve(opts: ServeOptions) -> Result<()> {
    // Signals first: a SIGHUP or SIGTERM while the capture loads (seconds
    // on a busy machine) must not kill isold by default action.
    let stop = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    for s in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(s, stop.clone())?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())?;
    let mut cfg = Config::load(&opts.config)?;
    if let Some(l) = opts.listen {
        cfg.listen = l;
    }
    let (mut cpus, hk) = watched(&cfg)?;
    // Everything isold does (HTTP, reading, /proc walks) stays there.
    isol_system::affinity::pin_current_thread(&hk).map_err(anyhow::Error::msg)?;
    let (mut m, registry) = metrics::Metrics::new(
        cfg.max_details,
        cfg.threshold_us.saturating_mul(1000),
        (cfg.retention_s > 0).then(|| Duration::from_secs(cfg.retention_s)),
    );
    // A scrape reads the registry only between two collections: a
    // collection updates several families (count, seconds, threshold) of
    // the same causes, and a scrape between two of them would show a
    // series in one family and not yet in the next.
    let registry = Arc::new(RwLock::new(registry));
    let server = tiny_http::Server::http(cfg.listen)
        .map_err(|e| anyhow::anyhow!("listening on {}: {e}", cfg.listen))?;
    let listen = cfg.listen;
    {
        let registry = registry.clone();
        std::thread::Builder::new()
            .name("isold-http".into())
            .spawn(move || {
                for req in server.incoming_requests() {
                    let resp = if req.url() == "/metrics" {
                        let mut body = String::new();
                        let r = registry.read().unwrap_or_else(|e| e.into_inner());
                        let _ = prometheus_client::encoding::text::encode(&mut body, &r);
                        tiny_http::Response::from_string(body).with_header(
                        "Content-Type: application/openmetrics-text; version=1.0.0; charset=utf-8"
                            .parse::<tiny_http::Header>()
                            .unwrap(),
                    )
                    } else {
                        tiny_http::Response::from_string("isold: metrics at /metrics\n")
                            .with_status_code(404)
                    };
                    let _ = req.respond(resp);
                }
            })?;
    }

    let mut cap = start_capture(&cfg, &cpus)?;
    let pol = Arc::new(RwLock::new(policy(&cfg, &cpus)?));
    let limits = Arc::new(RwLock::new(cfg.limits.clone()));
    let (api_tx, api_rx) = mpsc::channel::<socket::Msg>();
    socket::listen(
        &cfg.socket,
        socket::Shared {
            policy: pol.clone(),
            limits: limits.clone(),
            to_main: api_tx,
        },
    )?;
    let mut svc = Service::new();
    m.up.set(1);
    m.watched_cpus.set(cpus.len() as i64);
    m.init_cpus(&cpus);
    eprintln!(
        "isold: watching CPUs {cpus}; metrics on http://{listen}/metrics; task isolation API on {}",
        cfg.socket.display()
    );

    let t0 = Instant::now();
    let mut drift = drift::Drift::new();
    let mut last_drift: Option<Instant> = None;
    let mut last_update = Instant::now();
    while !stop.load(Ordering::Relaxed) && opts.duration.is_none_or(|d| t0.elapsed() < d) {
        // API requests are served as they come; the rest every 50 ms.
        let tick_end = Instant::now() + Duration::from_millis(50);
        while let Some(left) = tick_end.checked_duration_since(Instant::now()) {
            match api_rx.recv_timeout(left) {
                Ok(socket::Msg::Request { uid, req, reply }) => {
                    let resp = svc.handle(&cap, &pol.read().unwrap(), uid, &req);
                    log_request(uid, &req, &resp);
                    let _ = reply.send(resp);
                }
                Ok(socket::Msg::TickSeen { cpu, reply }) => {
                    let _ = reply.send(isol_task::service::tick_seen(&cap, cpu));
                }
                Err(_) => break,
            }
        }
        // Drain often so the ring never fills; fold at the interval.
        for r in cap.drain_raw() {
            m.note_worst(&r);
        }
        if last_update.elapsed() >= Duration::from_millis(cfg.interval_ms) {
            let _collecting = registry.write().unwrap_or_else(|e| e.into_inner());
            m.update_aggregates(&cap.aggregates());
            m.update_worst();
            m.update_drops(cap.drops());
            m.update_breaks(&cap.breaks());
            m.isolated_tasks.set(cap.registrations().len() as i64);
            last_update = Instant::now();
        }
        if last_drift.is_none_or(|t| t.elapsed() >= DRIFT_EVERY) {
            let r = drift.check(&Root::default(), &cpus);
            let _collecting = registry.write().unwrap_or_else(|e| e.into_inner());
            let kind = |k: &str| metrics::DriftKind { kind: k.into() };
            m.drift_current
                .get_or_create(&kind("irq"))
                .set(r.irqs as i64);
            m.drift_current
                .get_or_create(&kind("task"))
                .set(r.tasks as i64);
            m.drift_events
                .get_or_create(&kind("irq"))
                .inc_by(r.new_irqs as u64);
            m.drift_events
                .get_or_create(&kind("task"))
                .inc_by(r.new_tasks as u64);
            last_drift = Some(Instant::now());
            svc.prune(&cap);
        }
        if hup.swap(false, Ordering::Relaxed) {
            // A new config is checked completely, and a new capture
            // started, before the old one is touched: one isold cannot
            // serve is refused and the old one stays in force.
            let reloaded = Config::load(&opts.config).and_then(|mut new| {
                new.listen = cfg.listen; // the socket stays
                let (new_cpus, hk) = watched(&new)?;
                let new_policy = policy(&new, &new_cpus)?;
                let restart = new.cpus != cfg.cpus || new.buffer_kb != cfg.buffer_kb;
                // Reattaching patches kernel text (IPIs to every CPU):
                // only when the watched set or the ring really changes.
                let cap = if restart {
                    // isol's own attach must not count as a registered
                    // task's break: disarm the old programs meanwhile.
                    cap.set_armed(false);
                    let started = start_capture(&new, &new_cpus);
                    if started.is_err() {
                        cap.set_armed(true);
                    }
                    Some(started?)
                } else {
                    None
                };
                Ok((new, new_cpus, hk, new_policy, cap))
            });
            match reloaded {
                Err(e) => {
                    m.reload_failures.inc();
                    eprintln!("isold: reload refused, keeping the old config: {e:#}");
                }
                Ok((new, new_cpus, hk, new_policy, new_cap)) => {
                    let _collecting = registry.write().unwrap_or_else(|e| e.into_inner());
                    if let Some(c) = new_cap {
                        // Dropping the old capture detaches its programs.
                        cap = c;
                        // The new programs start with no registrations.
                        svc = Service::new();
                        m.reset_baseline();
                        cpus = new_cpus;
                        m.watched_cpus.set(cpus.len() as i64);
                        m.init_cpus(&cpus);
                        drift = drift::Drift::new();
                        let _ = isol_system::affinity::pin_current_thread(&hk);
                    }
                    *pol.write().unwrap() = new_policy;
                    *limits.write().unwrap() = new.limits.clone();
                    m.set_limits(
                        new.threshold_us.saturating_mul(1000),
                        (new.retention_s > 0).then(|| Duration::from_secs(new.retention_s)),
                    );
                    cfg = new;
                    m.reloads.inc();
                    eprintln!("isold: configuration reloaded; watching CPUs {cpus}");
                }
            }
        }
    }
    let _ = std::fs::remove_file(&cfg.socket);
    Ok(())
}
