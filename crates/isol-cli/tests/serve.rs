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
}

impl Daemon {
    fn start(config: &std::path::Path) -> Daemon {
        stay_on_housekeeping();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new(ISOL)
            .args(["serve", "--config"])
            .arg(config)
            .args(["--listen", &addr.to_string()])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let d = Daemon { child, addr };
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(60) {
            if let Some(m) = get(addr, "/metrics") {
                if sample(&m, "isol_up 1").is_some() || m.contains("isol_up 1") {
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

const TLB: &str = "isol_interruptions_total{cpu=\"1\",class=\"ipi\",kind=\"call_function_single\",detail=\"flush_tlb_func\"}";

#[test]
fn generator_ipis_appear_in_metrics_within_one_interval_and_sighup_reloads() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("isold.toml");
    std::fs::write(&cfg, "cpus = \"1\"\ninterval_ms = 500\n").unwrap();
    let d = Daemon::start(&cfg);
    let before = sample(&d.metrics(), TLB).unwrap_or(0.0);
    let _v = Victim::start(&["--cpu", "1", "--tlb", "--duration", "60"]);
    // One interval (500 ms) plus the time for the victim to start.
    std::thread::sleep(Duration::from_millis(1500));
    let m = d.metrics();
    let after = sample(&m, TLB).unwrap_or_else(|| panic!("no TLB-flush series:\n{m}"));
    assert!(after > before, "{after} <= {before}");
    assert!(
        sample(
            &m,
            "isol_interruption_seconds_total{cpu=\"1\",class=\"ipi\""
        )
        .unwrap()
            > 0.0
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
    let t0 = Instant::now();
    while sample(&d.metrics(), "isol_config_reloads_total") != Some(1.0) {
        assert!(t0.elapsed() < Duration::from_secs(10), "no reload seen");
        std::thread::sleep(Duration::from_millis(100));
    }
    // A broken config is refused; the daemon keeps serving.
    std::fs::write(&cfg, "cpus = \"1-\"\n").unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    std::thread::sleep(Duration::from_millis(800));
    let m = d.metrics();
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
