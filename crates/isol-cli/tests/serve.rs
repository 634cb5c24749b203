//! isold (`isol serve`): interruptions appear in /metrics with the right
//! labels within a scrape interval, SIGHUP reloads (and a bad config is
//! refused without dying), a real Prometheus server scrapes it, and a
//! flood keeps memory bounded with drops counted. Root, BPF: CI runs them.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body.split_once("\r\n\r\n")?.1.to_string())
}

/// The value of the first sample whose line starts with `prefix`.
fn sample(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

struct Daemon {
    child: Child,
    addr: SocketAddr,
    /// isold's stderr, shown when a wait fails.
    log: tempfile::NamedTempFile,
}

impl Daemon {
    fn start(config: &std::path::Path) -> Daemon {
        stay_on_housekeeping();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(ISOL)
            .args(["serve", "--config"])
            .arg(config)
            .args(["--listen", &addr.to_string()])
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        let d = Daemon { child, addr, log };
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(60) {
            if let Some(m) = get(addr, "/metrics") {
                // The sample, not the HELP line (which says "isol_up 1 while ...").
                if sample(&m, "isol_up ") == Some(1.0) {
                    return d;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("isold did not come up on {addr}");
    }
    fn metrics(&self) -> String {
        get(self.addr, "/metrics").expect("GET /metrics")
    }
    fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll /metrics until `ok` holds; panic after `limit` naming `what` and
/// showing the last answer.
fn wait_metrics(d: &Daemon, limit: Duration, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let t0 = Instant::now();
    let mut last = String::new();
    loop {
        // A scrape may time out while isold reloads on a busy machine.
        if let Some(m) = get(d.addr, "/metrics") {
            if ok(&m) {
                return m;
            }
            last = m;
        }
        assert!(
            t0.elapsed() < limit,
            "no {what} within {limit:?}:\n{last}\n--- isold's log ---\n{}",
            std::fs::read_to_string(d.log.path()).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

const TLB: &str = "isol_interruptions_total{cpu=\"1\",class=\"ipi\",kind=\"call_function_single\",detail=\"flush_tlb_func\"}";

#[test]
fn generator_ipis_appear_in_metrics_and_sighup_reloads() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("isold.toml");
    std::fs::write(&cfg, "cpus = \"1\"\ninterval_ms = 500\n").unwrap();
    let d = Daemon::start(&cfg);
    let before = sample(&d.metrics(), TLB).unwrap_or(0.0);
    let _v = Victim::start(&["--cpu", "1", "--tlb", "--duration", "60"]);
    // The victim's IPIs reach the series at the next collection.
    let m = wait_metrics(
        &d,
        Duration::from_secs(30),
        "the TLB-flush series to grow",
        |m| sample(m, TLB).is_some_and(|after| after > before),
    );
    assert!(
        sample(
            &m,
            "isol_interruption_seconds_total{cpu=\"1\",class=\"ipi\""
        )
        .unwrap()
            > 0.0
    );
    // The interval that counted them has its longest (TLB flushes come all
    // the time, so every interval has one).
    assert!(
        sample(
            &m,
            "isol_interruption_worst_seconds{cpu=\"1\",class=\"ipi\"}"
        )
        .unwrap()
            > 0.0,
        "{m}"
    );
    assert_eq!(sample(&m, "isol_watched_cpus"), Some(1.0));
    assert!(m.contains("isol_dropped_records_total{reason=\"ringbuf\"}"));
    // Every metric the Grafana dashboard plots exists.
    let dash = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../dist/grafana/isol.json"
    ))
    .unwrap();
    let names: std::collections::BTreeSet<&str> = dash
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("isol_"))
        .collect();
    assert!(names.len() >= 5, "{names:?}");
    for n in names {
        let base = n.strip_suffix("_total").unwrap_or(n);
        assert!(
            m.contains(&format!("# TYPE {base} ")),
            "dashboard plots {n}, which isold does not export"
        );
    }

    // SIGHUP with a new interval: reloaded, capture untouched.
    std::fs::write(&cfg, "cpus = \"1\"\ninterval_ms = 200\n").unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    wait_metrics(&d, Duration::from_secs(10), "reload", |m| {
        sample(m, "isol_config_reloads_total") == Some(1.0)
    });
    // A broken config is refused; the daemon keeps serving.
    std::fs::write(&cfg, "cpus = \"1-\"\n").unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    let m = wait_metrics(&d, Duration::from_secs(10), "the refusal", |m| {
        sample(m, "isol_config_reload_failures_total") == Some(1.0)
    });
    assert_eq!(sample(&m, "isol_config_reloads_total"), Some(1.0));
    assert!(m.contains("isol_up 1"));
}

#[test]
fn a_real_prometheus_server_scrapes_isold() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("isold.toml");
    std::fs::write(&cfg, "cpus = \"1\"\ninterval_ms = 500\n").unwrap();
    let d = Daemon::start(&cfg);
    let _v = Victim::start(&["--cpu", "1", "--tlb", "--duration", "120"]);
    let prom_port = free_port();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: isold\n    static_configs:\n      - targets: ['{}']\n",
            d.addr
        ),
    )
    .unwrap();
    let mut prom = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (apt-get install prometheus; scripts/setup.sh installs it)");
    let paddr: SocketAddr = format!("127.0.0.1:{prom_port}").parse().unwrap();
    let query = "/api/v1/query?query=isol_interruptions_total%7Bclass%3D%22ipi%22%2Cdetail%3D%22flush_tlb_func%22%7D";
    let t0 = Instant::now();
    let mut last = String::new();
    let found = loop {
        if let Some(body) = get(paddr, query) {
            if body.contains("flush_tlb_func") && body.contains("\"cpu\":\"1\"") {
                break true;
            }
            last = body;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let _ = prom.kill();
    let _ = prom.wait();
    assert!(
        found,
        "Prometheus never returned the TLB series; last answer: {last}"
    );
}

fn vm_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn a_flood_counts_drops_and_memory_stays_bounded() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("isold.toml");
    // A tiny ring: the storm must overflow it between drains.
    std::fs::write(&cfg, "cpus = \"1\"\ninterval_ms = 200\nbuffer_kb = 16\n").unwrap();
    let d = Daemon::start(&cfg);
    let _v = Victim::start(&["--cpu", "1", "--ipi-storm", "--duration", "120"]);
    std::thread::sleep(Duration::from_secs(3));
    let rss_early = vm_kb(d.child.id(), "VmRSS:");
    std::thread::sleep(Duration::from_secs(12));
    let m = d.metrics();
    let rss_late = vm_kb(d.child.id(), "VmRSS:");
    let dropped = sample(&m, "isol_dropped_records_total{reason=\"ringbuf\"}").unwrap();
    assert!(dropped > 0.0, "no drops reported under a storm:\n{m}");
    assert!(sample(&m, TLB).unwrap() > 1000.0);
    // Bounded: the aggregates and label sets do not grow with the number
    // of interruptions (allow allocator noise).
    assert!(
        rss_late < rss_early + 8 * 1024,
        "RSS grew from {rss_early} to {rss_late} kB"
    );
    assert!(vm_kb(d.child.id(), "VmHWM:") < 128 * 1024);
}

/// Distinct BPF programs `pid` holds (program and link fds both name a
/// prog_id in their fdinfo): what stays attached because of it.
fn programs_of(pid: u32) -> usize {
    let mut ids = std::collections::BTreeSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .flatten()
    {
        if let Ok(info) = std::fs::read_to_string(fd.path()) {
            ids.extend(
                info.lines()
                    .filter_map(|l| l.strip_prefix("prog_id:"))
                    .map(|v| v.trim().to_string()),
            );
        }
    }
    ids.len()
}

#[test]
fn reloads_replace_the_capture_without_leaking_and_an_unservable_config_is_refused() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("isold.toml");
    std::fs::write(&cfg, "cpus = \"1\"\ninterval_ms = 200\n").unwrap();
    let d = Daemon::start(&cfg);
    let pid = d.child.id();
    let programs = settled_programs(pid);
    // 30 reloads, each changing the watched CPU (a new capture every time).
    // RSS moves with the allocator (a reload holds two captures and their
    // symbol tables for a moment): a leak raises its floor, so the floor
    // of the last reloads is held against the peak of the early ones.
    let mut early_peak = 0;
    let mut late_floor = u64::MAX;
    for i in 1..=30u32 {
        let cpu = i % 2;
        std::fs::write(&cfg, format!("cpus = \"{}\"\ninterval_ms = 200\n", 1 - cpu)).unwrap();
        d.signal(nix::sys::signal::Signal::SIGHUP);
        wait_metrics(&d, Duration::from_secs(60), "reload", |m| {
            sample(m, "isol_config_reloads_total") == Some(i as f64)
        });
        assert_eq!(
            programs_of(pid),
            programs,
            "after reload {i}: the old capture's programs are still attached"
        );
        let rss = vm_kb(pid, "VmRSS:");
        if (5..=10).contains(&i) {
            early_peak = early_peak.max(rss);
        }
        if i > 25 {
            late_floor = late_floor.min(rss);
        }
    }
    assert!(
        late_floor < early_peak + 16 * 1024,
        "RSS grew: at most {early_peak} kB over reloads 5-10, at least {late_floor} kB over 26-30"
    );

    // Every online CPU watched: no housekeeping CPU left. Refused; isold
    // carries on with the old capture.
    std::fs::write(&cfg, "cpus = \"0-1\"\ninterval_ms = 200\n").unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    let m = wait_metrics(&d, Duration::from_secs(30), "refusal", |m| {
        sample(m, "isol_config_reload_failures_total") == Some(1.0)
    });
    assert!(m.contains("isol_up 1"));
    assert_eq!(sample(&m, "isol_config_reloads_total"), Some(30.0));
    assert_eq!(sample(&m, "isol_watched_cpus"), Some(1.0));
    assert_eq!(programs_of(pid), programs);
    // And it still captures: the generator's IPIs keep counting.
    std::fs::write(&cfg, "cpus = \"1\"\ninterval_ms = 200\n").unwrap();
    let before = sample(&d.metrics(), TLB).unwrap_or(0.0);
    let _v = Victim::start(&["--cpu", "1", "--tlb", "--duration", "60"]);
    wait_metrics(
        &d,
        Duration::from_secs(30),
        "TLB-flush IPIs after the refusal",
        |m| sample(m, TLB).is_some_and(|n| n > before),
    );
}

// ------------------------------------------------------ hostile clients

const NOBODY: libc::uid_t = 65534;

/// Run `f` on a thread whose credentials are user nobody's, the rest of
/// the test staying root. Raw syscalls on purpose: glibc's setresuid()
/// changes every thread of the process, the syscall only the caller, and
/// a unix socket records its connecting thread's credentials.
fn as_nobody<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    std::thread::spawn(move || {
        // SAFETY: integer arguments; affects only this thread.
        unsafe {
            assert_eq!(
                libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()),
                0
            );
            assert_eq!(
                libc::syscall(libc::SYS_setresgid, NOBODY, NOBODY, NOBODY),
                0
            );
            assert_eq!(
                libc::syscall(libc::SYS_setresuid, NOBODY, NOBODY, NOBODY),
                0
            );
        }
        f()
    })
}

/// isold with its API socket where nobody can reach it, and `limits`.
fn hostile_daemon(limits: &str) -> (tempfile::TempDir, std::path::PathBuf, Daemon) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let socket = dir.path().join("isold.sock");
    let cfg = dir.path().join("isold.toml");
    std::fs::write(
        &cfg,
        format!(
            "cpus = \"1\"\ninterval_ms = 200\nsocket = \"{}\"\n[limits]\n{limits}\n",
            socket.display()
        ),
    )
    .unwrap();
    let d = Daemon::start(&cfg);
    (dir, socket, d)
}

fn threads_of(pid: u32) -> u64 {
    vm_kb(pid, "Threads:")
}

/// The checks a hostile client must not break: a second client's status
/// request and /metrics each answer within a second, isol_up is 1 and the
/// programs are still attached.
fn still_serving(d: &Daemon, socket: &std::path::Path, programs: usize) {
    let t0 = Instant::now();
    let mut s = std::os::unix::net::UnixStream::connect(socket).expect("connect as root");
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    s.write_all(b"{\"op\":\"status\",\"pid\":null}\n").unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(&s), &mut line)
        .expect("a status answer within a second");
    assert!(line.contains("tasks"), "status answered {line:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "status took {:?}",
        t0.elapsed()
    );
    let t0 = Instant::now();
    let m = d.metrics();
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "/metrics took {:?}",
        t0.elapsed()
    );
    assert_eq!(sample(&m, "isol_up "), Some(1.0), "{m}");
    assert_eq!(programs_of(d.child.id()), programs, "isold lost programs");
}

fn settled_programs(pid: u32) -> usize {
    let t0 = Instant::now();
    loop {
        let n = programs_of(pid);
        if n >= 20 {
            return n;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "isold holds {n} programs"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_gigabyte_request_without_a_newline_from_nobody_costs_isold_nothing() {
    let _s = serial();
    let (_dir, socket, d) = hostile_daemon("");
    let pid = d.child.id();
    let programs = settled_programs(pid);
    let rss0 = vm_kb(pid, "VmRSS:");
    let sock = socket.clone();
    let (sent, reply) = as_nobody(move || {
        let mut s = std::os::unix::net::UnixStream::connect(&sock).expect("nobody connects");
        let chunk = vec![b'x'; 1 << 20];
        let mut sent = 0usize;
        // 1 GiB unless isold hangs up first.
        while sent < 1 << 30 {
            match s.write(&chunk) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut reply = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(&s), &mut reply);
        (sent, reply)
    })
    .join()
    .unwrap();
    assert!(
        reply.contains("longer than 65536 bytes"),
        "after {sent} bytes isold answered {reply:?}\n{}",
        std::fs::read_to_string(d.log.path()).unwrap_or_default()
    );
    let rss = vm_kb(pid, "VmRSS:");
    assert!(
        rss < rss0 + 4 * 1024,
        "isold's RSS went from {rss0} to {rss} kB"
    );
    still_serving(&d, &socket, programs);
}

#[test]
fn ten_thousand_idle_connections_from_nobody_leave_isold_bounded_and_serving() {
    let _s = serial();
    let (_dir, socket, d) = hostile_daemon("connections_per_user = 16\nidle_timeout_s = 3");
    let pid = d.child.id();
    let programs = settled_programs(pid);
    let threads0 = threads_of(pid);
    // Room for the connections in this process (root may raise its limit).
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    let want = 12_000.max(hard.min(1 << 20));
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, want, want).unwrap();
    let sock = socket.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let hostile = as_nobody(move || {
        let mut held = Vec::new();
        for _ in 0..10_000 {
            held.push(std::os::unix::net::UnixStream::connect(&sock).expect("nobody connects"));
        }
        // Those isold refused say why. Wait (with a deadline) until every
        // connection but those isold holds has its answer: the accept
        // loop may still be working through the backlog.
        for s in &held {
            s.set_nonblocking(true).unwrap();
        }
        let mut answered = vec![false; held.len()];
        let (mut refused, mut closed) = (0u32, 0u32);
        let t0 = Instant::now();
        loop {
            for (s, done) in held.iter().zip(answered.iter_mut()) {
                if *done {
                    continue;
                }
                let mut b = [0u8; 256];
                match (&*s).read(&mut b) {
                    Ok(0) => (*done, closed) = (true, closed + 1),
                    Ok(n) => {
                        *done = true;
                        if String::from_utf8_lossy(&b[..n]).contains("connections_per_user") {
                            refused += 1;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => (*done, closed) = (true, closed + 1),
                }
            }
            let pending = answered.iter().filter(|a| !**a).count();
            if pending <= 16 || t0.elapsed() > Duration::from_secs(60) {
                tx.send((refused, closed, pending)).unwrap();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Hold them, saying nothing, until the test is done looking.
        let _ = done_rx.recv_timeout(Duration::from_secs(120));
        drop(held);
    });
    let (refused, closed, pending) = rx
        .recv_timeout(Duration::from_secs(180))
        .expect("10 000 connections made and answered");
    let threads = threads_of(pid);
    // 16 connection threads at most, and a few for /metrics' server.
    assert!(
        threads <= threads0 + 16 + 4,
        "isold went from {threads0} to {threads} threads with 10 000 idle connections"
    );
    // Every connection over the limit was told why (those held past their
    // idle timeout, if the machine was that slow, were closed).
    assert!(
        pending <= 16 && refused + closed + pending as u32 == 10_000 && refused >= 9_900,
        "of 10 000 connections {refused} were told they were refused, {closed} closed, {pending} still waiting"
    );
    still_serving(&d, &socket, programs);
    // The idle timeout hands the held ones back while the client still
    // holds its end.
    let t0 = Instant::now();
    while threads_of(pid) > threads0 {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "idle connections still hold {} threads",
            threads_of(pid) - threads0
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    done_tx.send(()).unwrap();
    hostile.join().unwrap();
    still_serving(&d, &socket, programs);
}
