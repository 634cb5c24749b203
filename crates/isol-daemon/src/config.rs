//! isold's configuration file (TOML), re-read on SIGHUP.
//!
//! ```toml
//! cpus = "2-3"              # CPUs to watch (default: the isolated CPUs)
//! listen = "127.0.0.1:9977" # /metrics; loopback unless you say otherwise
//! interval_ms = 1000        # how often counters are refreshed
//! max_details = 32          # distinct `detail` label values per CPU
//! buffer_kb = 8192          # ring buffer size
//! socket = "/run/isol/isold.sock" # the task isolation API's requests
//! strict_syscalls = false   # see Config::strict_syscalls
//! threshold_us = 10         # also count interruptions at least this long
//! retention_s = 0           # drop cause series quiet this long (0: keep)
//!
//! [limits]                  # the socket, against clients that misbehave
//! request_bytes = 65536     # longest request line
//! connections = 256         # open connections, all users together
//! connections_per_user = 16 # open connections of one uid
//! idle_timeout_s = 30       # a connection that sends nothing this long
//!
//! [users]                   # who may isolate tasks on which CPUs (root: all)
//! alice = "2-3"
//! "1001" = "3"
//! ```

use anyhow::{Context, Result};
use isol_cpulist::CpuSet;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const DEFAULT_PATH: &str = "/etc/isol/isold.toml";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9977";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub cpus: Option<CpuSet>,
    pub listen: SocketAddr,
    pub interval_ms: u64,
    /// Bound on label cardinality: beyond this many distinct details per
    /// CPU, further ones are counted under `detail="other"`.
    pub max_details: usize,
    pub buffer_kb: u32,
    /// Unix socket for the task isolation API (mode 0666: every request
    /// is checked against the caller's credentials and `users`).
    pub socket: PathBuf,
    /// Attach raw_syscalls:sys_enter so strict tasks that count their own
    /// syscalls are caught on CPUs without context tracking (costs every
    /// syscall on every CPU ~80 ns; nohz_full CPUs do not need it).
    pub strict_syscalls: bool,
    /// Interruptions at least this long are counted apart
    /// (isol_interruptions_over_threshold_total).
    pub threshold_us: u64,
    /// Cause series that have not moved for this long leave the
    /// exposition (their detail slot is freed); 0 keeps them.
    pub retention_s: u64,
    /// User name or uid -> CPUs that user may isolate tasks on.
    pub users: BTreeMap<String, CpuSet>,
    /// Bounds on what one client of the socket may hold.
    pub limits: Limits,
}

/// The socket is world-writable and isold is root: without bounds, any
/// local user could exhaust its memory (one endless line) or threads
/// (connections that say nothing), and with it every isolated task's
/// protection.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Longest request line; a longer one is refused and the connection
    /// closed (a real request is a few hundred bytes).
    pub request_bytes: usize,
    /// Open connections, all users together (each holds a thread).
    pub connections: usize,
    /// Open connections of one uid, so one user cannot take them all.
    pub connections_per_user: usize,
    /// A connection that sends nothing this long is closed.
    pub idle_timeout_s: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_bytes: 64 * 1024,
            connections: 256,
            connections_per_user: 16,
            idle_timeout_s: 30,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cpus: None,
            listen: DEFAULT_LISTEN.parse().unwrap(),
            interval_ms: 1000,
            max_details: 32,
            buffer_kb: 8192,
            socket: isol_task::protocol::DEFAULT_SOCKET.into(),
            strict_syscalls: false,
            threshold_us: 10,
            retention_s: 0,
            users: BTreeMap::new(),
            limits: Limits::default(),
        }
    }
}

impl Config {
    /// Parse a config file; a missing file at the default path means the
    /// defaults, anywhere else it is an error.
    pub fn load(path: &Path) -> Result<Config> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound && path == Path::new(DEFAULT_PATH) =>
            {
                return Ok(Config::default())
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Config::parse(&text).with_context(|| format!("{}", path.display()))
    }

    /// Parse and check a config's text.
    pub fn parse(text: &str) -> Result<Config> {
        let c: Config = toml::from_str(text).context("invalid configuration")?;
        anyhow::ensure!(c.interval_ms >= 10, "interval_ms must be at least 10");
        anyhow::ensure!(c.max_details >= 1, "max_details must be at least 1");
        let l = &c.limits;
        anyhow::ensure!(
            l.request_bytes >= 1024,
            "limits.request_bytes must be at least 1024"
        );
        anyhow::ensure!(
            l.connections >= 1 && l.connections_per_user >= 1,
            "limits.connections and limits.connections_per_user must be at least 1"
        );
        anyhow::ensure!(
            l.idle_timeout_s >= 1,
            "limits.idle_timeout_s must be at least 1"
        );
        c.user_cpus().context("[users]")?;
        Ok(c)
    }

    /// `users` by uid (names resolved now).
    pub fn user_cpus(&self) -> Result<BTreeMap<u32, CpuSet>> {
        let mut out = BTreeMap::new();
        for (who, cpus) in &self.users {
            let uid = match who.parse::<u32>() {
                Ok(u) => u,
                Err(_) => nix::unistd::User::from_name(who)
                    .ok()
                    .flatten()
                    .map(|u| u.uid.as_raw())
                    .with_context(|| format!("no user named {who:?}"))?,
            };
            out.insert(uid, cpus.clone());
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects_with_the_offending_key() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.toml");
        std::fs::write(&p, "cpus = \"1-2\"\nlisten = \"127.0.0.1:1234\"\n").unwrap();
        let c = Config::load(&p).unwrap();
        assert_eq!(c.cpus.unwrap().to_string(), "1-2");
        assert_eq!(c.listen.port(), 1234);
        assert_eq!(c.interval_ms, 1000);
        std::fs::write(&p, "cpus = \"1-\"\n").unwrap();
        assert!(format!("{:#}", Config::load(&p).unwrap_err()).contains("1-"));
        std::fs::write(&p, "colour = 1\n").unwrap();
        assert!(format!("{:#}", Config::load(&p).unwrap_err()).contains("colour"));
        assert!(Config::load(&d.path().join("missing.toml")).is_err());
        std::fs::write(&p, "[users]\nroot = \"1\"\n\"1001\" = \"2-3\"\n").unwrap();
        let u = Config::load(&p).unwrap().user_cpus().unwrap();
        assert_eq!(u[&0].to_string(), "1");
        assert_eq!(u[&1001].to_string(), "2-3");
        std::fs::write(&p, "[users]\nno-such-user-here = \"1\"\n").unwrap();
        assert!(format!("{:#}", Config::load(&p).unwrap_err()).contains("no-such-user-here"));
    }

    #[test]
    fn the_shipped_config_parses_with_the_defaults() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist/isold.toml");
        let c = Config::load(&p).unwrap();
        assert_eq!(c.listen, Config::default().listen);
        assert_eq!(c.socket, Config::default().socket);
        assert_eq!(c.threshold_us, 10);
        assert!(c.users.is_empty());
        assert_eq!(c.limits, Limits::default());
    }

    proptest::proptest! {
        // Config text as an administrator (or a broken deploy) may write
        // it: known keys with any values, unknown keys, garbage. Never a
        // panic; what is accepted obeys the checks.
        #[test]
        fn any_config_text_is_refused_or_valid(
            lines in proptest::collection::vec(
                (
                    proptest::prop_oneof![
                        proptest::strategy::Just("cpus".to_string()),
                        proptest::strategy::Just("listen".to_string()),
                        proptest::strategy::Just("interval_ms".to_string()),
                        proptest::strategy::Just("max_details".to_string()),
                        proptest::strategy::Just("buffer_kb".to_string()),
                        proptest::strategy::Just("threshold_us".to_string()),
                        proptest::strategy::Just("[limits]\nrequest_bytes".to_string()),
                        proptest::strategy::Just("[limits]\nconnections".to_string()),
                        proptest::strategy::Just("[users]\nroot".to_string()),
                        "[a-z_]{1,8}",
                    ],
                    proptest::prop_oneof![
                        "-?[0-9]{1,22}",
                        "\"[0-9,\\-]{0,12}\"",
                        "\"[0-9\\.:]{0,22}\"",
                        "\\PC{0,16}",
                        proptest::strategy::Just("true".to_string()),
                    ],
                ),
                0..8,
            ),
        ) {
            let text: String = lines.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
            if let Ok(c) = Config::parse(&text) {
                proptest::prop_assert!(c.interval_ms >= 10 && c.max_details >= 1);
                proptest::prop_assert!(c.limits.request_bytes >= 1024);
                proptest::prop_assert!(c.limits.connections >= 1 && c.limits.idle_timeout_s >= 1);
            }
        }
    }

    #[test]
    fn limits_parse_and_nonsense_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.toml");
        std::fs::write(&p, "[limits]\nrequest_bytes = 4096\nconnections = 8\n").unwrap();
        let c = Config::load(&p).unwrap();
        assert_eq!(c.limits.request_bytes, 4096);
        assert_eq!(c.limits.connections, 8);
        assert_eq!(c.limits.connections_per_user, 16);
        for bad in [
            "request_bytes = 10",
            "connections = 0",
            "connections_per_user = 0",
            "idle_timeout_s = 0",
            "threads = 3",
        ] {
            std::fs::write(&p, format!("[limits]\n{bad}\n")).unwrap();
            let e = format!("{:#}", Config::load(&p).unwrap_err());
            let key = bad.split(' ').next().unwrap();
            assert!(e.contains(key), "{bad}: {e}");
        }
    }
}
