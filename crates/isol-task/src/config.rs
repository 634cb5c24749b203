//! What a task asks for: the patch's configuration (quiesce mask, one-shot
//! mask, inheritance) plus strict mode from the earlier task isolation series.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

bitflags::bitflags! {
    /// Kernel activities to quiesce. Bit 0 is the patch's
    /// ISOL_F_QUIESCE_VMSTATS; the others are isol's (stock kernels only).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
    #[serde(transparent)]
    pub struct Quiesce: u64 {
        /// Per-CPU VM statistics folded so the vmstat work never visits.
        const VMSTAT = 1 << 0;
        /// This CPU's LRU and mlock page batches drained, so a later
        /// lru_add_drain_all() (mlock, migration, compaction) skips it.
        const LRU = 1 << 1;
        /// Activation waits until no timer is pending on the CPU (the
        /// watcher reads /proc/timer_list on a housekeeping CPU) and names
        /// the ones it could not wait out.
        const TIMERS = 1 << 2;
    }
}

const QUIESCE_NAMES: &[(&str, Quiesce)] = &[
    ("vmstat_sync", Quiesce::VMSTAT),
    ("lru_drain", Quiesce::LRU),
    ("timers", Quiesce::TIMERS),
];

impl Quiesce {
    /// Parse `vmstat_sync,lru_drain` (chisol's -q), or `all`.
    pub fn parse(list: &str) -> Result<Quiesce> {
        let mut q = Quiesce::empty();
        for w in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            if w == "all" {
                q |= Quiesce::all();
                continue;
            }
            match QUIESCE_NAMES.iter().find(|(n, _)| *n == w) {
                Some((_, b)) => q |= *b,
                None => {
                    return Err(Error::Config(format!(
                        "unknown quiesce action {w:?} (known: {}, all)",
                        QUIESCE_NAMES
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )))
                }
            }
        }
        Ok(q)
    }
    pub fn names(self) -> Vec<&'static str> {
        QUIESCE_NAMES
            .iter()
            .filter(|(_, b)| self.contains(*b))
            .map(|(n, _)| *n)
            .collect()
    }
}

/// What a child created by fork/clone gets (the patch's I_CFG_INHERIT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Inherit {
    #[default]
    None,
    /// The configuration (ISOL_INHERIT_CONF).
    Conf,
    /// The configuration and the activation (ISOL_INHERIT_ACTIVE).
    Active,
}

impl Inherit {
    pub fn parse(s: &str) -> Result<Inherit> {
        match s {
            "conf" => Ok(Inherit::Conf),
            "active" => Ok(Inherit::Active),
            "none" => Ok(Inherit::None),
            _ => Err(Error::Config(format!(
                "inherit must be conf, active or none, not {s:?}"
            ))),
        }
    }
    pub fn abi_mask(self) -> u8 {
        use crate::abi::*;
        match self {
            Inherit::None => 0,
            Inherit::Conf => ISOL_INHERIT_CONF,
            Inherit::Active => ISOL_INHERIT_CONF | ISOL_INHERIT_ACTIVE,
        }
    }
}

/// Strict mode: the first interruption signals the task and ends its
/// isolation (the earlier task isolation series).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Strict {
    /// Signal sent on a break (SIGKILL by default, as in those series).
    pub signal: i32,
    /// The task's own syscalls and page faults break isolation too (the
    /// series' strict mode); otherwise only interruptions it did not ask for.
    pub syscalls: bool,
    /// Only the task's own syscalls and page faults break it, not
    /// interruptions: a debugging aid that finds where a hot loop enters
    /// the kernel, whatever else the machine does.
    #[serde(default)]
    pub own_only: bool,
}

impl Default for Strict {
    fn default() -> Self {
        Strict {
            signal: libc::SIGKILL,
            syscalls: false,
            own_only: false,
        }
    }
}

/// How the task is isolated, for reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Quiesced at activation and at each re-quiesce; stays isolated
    /// across its own syscalls; breaks counted.
    Persistent,
    /// Quiesced at activation only; breaks counted.
    OneShot,
    /// The first break signals the task.
    Strict,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Persistent => "persistent",
            Mode::OneShot => "one-shot",
            Mode::Strict => "strict",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub quiesce: Quiesce,
    /// Subset of `quiesce` done at activation only.
    pub oneshot: Quiesce,
    pub inherit: Inherit,
    pub strict: Option<Strict>,
    /// mlockall and prefault the stack (page faults are interruptions).
    pub lock_memory: bool,
    /// How long activation waits for the tick to stop on the CPU.
    pub tick_timeout_ms: u64,
    /// Accept a CPU the kernel does not isolate (testing on ordinary
    /// machines); the activation report says so.
    pub allow_unisolated: bool,
    /// Persistent mode: open the per-thread system-call counter that makes
    /// `quiesce_if_needed` one load (see `persist`). Off by default: the
    /// tracepoint it enables is switched by patching kernel text, an IPI
    /// to every CPU (other isolated ones included) when the first such
    /// counter opens and the last one closes.
    pub entry_counter: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            quiesce: Quiesce::VMSTAT | Quiesce::LRU,
            oneshot: Quiesce::empty(),
            inherit: Inherit::None,
            strict: None,
            lock_memory: true,
            tick_timeout_ms: 2000,
            allow_unisolated: false,
            entry_counter: false,
        }
    }
}

/// Environment variable carrying the configuration across exec (chisol
/// sets it; the library reads it when the program has configured nothing).
pub const ENV: &str = "ISOL_TASK_CONFIG";
/// Set with ENV when the activation is inherited across exec too.
pub const ENV_ACTIVE: &str = "ISOL_TASK_ACTIVE";
/// The pid ENV was set for. The task isolation patch keeps a task's state
/// across exec (same pid), and a child created by fork gets it only as the
/// configuration's inheritance says; the environment reaches every
/// descendant, so a process whose pid differs applies that rule itself.
pub const ENV_PID: &str = "ISOL_TASK_PID";
/// Set by `chisol --preload`: libisol's constructor locks and prefaults the
/// new program's memory (what activation does, but mlockall is lost at exec).
pub const ENV_LOCK: &str = "ISOL_TASK_LOCK";

impl Config {
    pub fn validate(&self) -> Result<()> {
        if self.strict.is_some_and(|s| s.own_only && !s.syscalls) {
            return Err(Error::Config(
                "strict mode for the task's own entries only needs syscalls to count".into(),
            ));
        }
        if !self.quiesce.contains(self.oneshot) {
            return Err(Error::Config(
                "the one-shot mask must be a subset of the quiesce mask".into(),
            ));
        }
        if let Some(s) = self.strict {
            if !(1..=64).contains(&s.signal) {
                return Err(Error::Config(format!(
                    "strict signal {} is not a signal number (1..64)",
                    s.signal
                )));
            }
        }
        Ok(())
    }

    pub fn mode(&self) -> Mode {
        if self.strict.is_some() {
            Mode::Strict
        } else if !self.oneshot.is_empty() && self.oneshot == self.quiesce {
            Mode::OneShot
        } else {
            Mode::Persistent
        }
    }

    pub fn to_env(&self) -> String {
        serde_json::to_string(self).expect("config serializes")
    }

    pub fn from_env() -> Option<Result<Config>> {
        let v = std::env::var(ENV).ok()?;
        Some(
            serde_json::from_str(&v)
                .map_err(|e| Error::Config(format!("{ENV}: {e}")))
                .and_then(|c: Config| c.validate().map(|_| c)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn quiesce_names_round_trip_and_reject() {
        let q = Quiesce::parse("vmstat_sync,lru_drain").unwrap();
        assert_eq!(q, Quiesce::VMSTAT | Quiesce::LRU);
        assert_eq!(q.names(), vec!["vmstat_sync", "lru_drain"]);
        assert_eq!(Quiesce::parse("all").unwrap(), Quiesce::all());
        let e = Quiesce::parse("vmstat,x").unwrap_err().to_string();
        assert!(e.contains("\"vmstat\""), "{e}");
    }
    #[test]
    fn validation_follows_the_patch() {
        let c = Config {
            quiesce: Quiesce::VMSTAT,
            oneshot: Quiesce::LRU,
            ..Default::default()
        };
        assert!(c.validate().is_err());
        let c = Config {
            strict: Some(Strict {
                signal: 0,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(c.validate().is_err());
        let c = Config {
            strict: Some(Strict {
                own_only: true,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(
            c.validate().is_err(),
            "own_only without syscalls breaks on nothing"
        );
        let c = Config {
            quiesce: Quiesce::VMSTAT,
            oneshot: Quiesce::VMSTAT,
            ..Default::default()
        };
        assert_eq!(c.mode(), Mode::OneShot);
        let back: Config = serde_json::from_str(&c.to_env()).unwrap();
        assert_eq!(back, c);
    }
}
