//! The census report (JSON schema `isol.census/1`, docs/json/census.md)
//! and its text form: the IPI deferral series' table by callback, the table by sender
//! stack, per-minute rates and the other interruptions.

use isol_cpulist::CpuSet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

pub const SCHEMA: &str = "isol.census/1";

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub schema: String,
    /// `isol` (captured by isol census) or `trace-cmd` (imported).
    pub source: String,
    /// Kernel release the census ran on (empty when imported and unknown).
    #[serde(default)]
    pub kernel: String,
    /// The isolated CPUs counted.
    pub cpus: CpuSet,
    #[serde(default)]
    pub housekeeping: CpuSet,
    pub duration_s: f64,
    #[serde(default)]
    pub load: Load,
    /// IPIs counted (rows of `callbacks`).
    pub ipis: u64,
    pub ipis_per_min: f64,
    /// Every interruption counted, IPIs included.
    pub interruptions: u64,
    pub callbacks: Vec<CallbackRow>,
    pub senders: Vec<SenderRow>,
    pub interruption_table: Vec<InterruptionRow>,
    /// Records left out of the tables: before the load started (isol's own
    /// attach patches kernel text) and after it stopped.
    #[serde(default)]
    pub excluded: Excluded,
    /// What the capture engine dropped (`isol watch`'s `drops`).
    #[serde(default)]
    pub drops: BTreeMap<String, u64>,
    #[serde(default)]
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Load {
    /// `builtin`, `command`, `none` or `unknown` (imported).
    pub kind: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Built-in load classes and the operations each performed.
    #[serde(default)]
    pub classes: Vec<ClassStats>,
    /// isol census's own spinning threads on the isolated CPUs (labelled:
    /// they are the census's victims, not the user's workload).
    #[serde(default)]
    pub victims: Vec<Victim>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ClassStats {
    pub class: String,
    pub mechanism: String,
    pub ops: u64,
    #[serde(default)]
    pub errors: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Victim {
    pub cpu: u32,
    pub tid: u32,
    pub comm: String,
    /// Loop iterations it completed (its progress under interference).
    pub loops: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CallbackRow {
    pub callback: String,
    /// IPI kinds that ran it (`call_function`, `call_function_single`, ...).
    pub kinds: Vec<String>,
    pub count: u64,
    pub per_min: f64,
    /// Counts per minute of the census (last minute may be partial).
    pub per_minute: Vec<u64>,
    /// Counts per target CPU.
    pub cpus: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SenderRow {
    pub callback: String,
    pub count: u64,
    pub per_min: f64,
    /// Sending tasks (per-CPU kthreads merged: `kworker`), with counts.
    pub comms: BTreeMap<String, u64>,
    /// `task`, `hardirq` or `softirq`.
    pub context: String,
    pub callsite: String,
    /// Kernel stack of the sender, innermost first, no offsets.
    pub stack: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct InterruptionRow {
    pub class: String,
    pub kind: String,
    pub detail: String,
    pub count: u64,
    pub per_min: f64,
    pub total_ns: u64,
    pub max_ns: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Excluded {
    pub before_load: u64,
    pub after_load: u64,
}

impl Report {
    pub fn new(source: &str) -> Report {
        Report {
            schema: SCHEMA.into(),
            source: source.into(),
            ..Default::default()
        }
    }

    pub fn from_json(text: &str) -> anyhow::Result<Report> {
        let r: Report = serde_json::from_str(text)?;
        if r.schema != SCHEMA {
            anyhow::bail!("schema {:?}, expected {SCHEMA}", r.schema);
        }
        Ok(r)
    }

    pub fn callback(&self, name: &str) -> Option<&CallbackRow> {
        self.callbacks.iter().find(|c| c.callback == name)
    }

    /// The text report; `top` sender stacks are shown in full.
    pub fn text(&self, top: usize) -> String {
        let mut o = String::new();
        let cpus = if self.cpus.is_empty() {
            "all".to_string()
        } else {
            self.cpus.to_string()
        };
        let _ = writeln!(
            o,
            "isol census ({}): CPUs {cpus}, {:.1} s{}{}",
            self.source,
            self.duration_s,
            if self.kernel.is_empty() {
                String::new()
            } else {
                format!(", kernel {}", self.kernel)
            },
            match self.load.kind.as_str() {
                "" | "unknown" => String::new(),
                "command" => format!(", load: {}", self.load.command.join(" ")),
                k => format!(", load {k}"),
            }
        );
        let _ = writeln!(
            o,
            "{} IPIs ({:.1}/min), {} interruptions in all",
            self.ipis, self.ipis_per_min, self.interruptions
        );
        for v in &self.load.victims {
            let _ = writeln!(
                o,
                "census victim (isol's own spinning thread, not your workload): CPU {} tid {} {} loops",
                v.cpu, v.tid, v.loops
            );
        }
        let dropped: u64 = self.drops.values().sum();
        if dropped > 0 {
            let _ = writeln!(o, "DROPPED: {:?}", self.drops);
        }
        let _ = writeln!(o, "\nIPIs by callback");
        let _ = writeln!(
            o,
            "{:>8} {:>9}  {:<40} kinds",
            "count", "per min", "callback"
        );
        if self.callbacks.is_empty() {
            let _ = writeln!(o, "  (none)");
        }
        for c in &self.callbacks {
            let _ = writeln!(
                o,
                "{:>8} {:>9.1}  {:<40} {}",
                c.count,
                c.per_min,
                c.callback,
                c.kinds.join(",")
            );
        }
        if !self.senders.is_empty() {
            let _ = writeln!(o, "\nIPIs by sender stack (top {top})");
            for s in self.senders.iter().take(top) {
                let comms: Vec<String> = s.comms.iter().map(|(c, n)| format!("{c}({n})")).collect();
                let _ = writeln!(
                    o,
                    "{:>8}  {}  from {} [{}]{}",
                    s.count,
                    s.callback,
                    comms.join(" "),
                    if s.context.is_empty() {
                        "?"
                    } else {
                        &s.context
                    },
                    if s.callsite.is_empty() {
                        String::new()
                    } else {
                        format!(" callsite={}", s.callsite)
                    }
                );
                if s.stack.is_empty() {
                    let _ = writeln!(o, "          (no stack)");
                }
                for f in &s.stack {
                    let _ = writeln!(o, "          => {f}");
                }
            }
            if self.senders.len() > top {
                let _ = writeln!(
                    o,
                    "  ... {} more stacks (--top N, or --json)",
                    self.senders.len() - top
                );
            }
        }
        let minutes = self
            .callbacks
            .iter()
            .map(|c| c.per_minute.len())
            .max()
            .unwrap_or(0);
        // A text table is read: at most an hour of columns (JSON has all).
        const COLUMNS: usize = 60;
        let shown = minutes.min(COLUMNS);
        if minutes > 1 {
            let _ = writeln!(o, "\nIPIs per minute");
            if minutes > COLUMNS {
                let _ = writeln!(
                    o,
                    "(the first {COLUMNS} of {minutes} minutes; --json has all)"
                );
            }
            let _ = write!(o, "{:<40}", "callback");
            for m in 0..shown {
                let _ = write!(o, " {:>6}", format!("m{}", m + 1));
            }
            let _ = writeln!(o);
            for c in &self.callbacks {
                let _ = write!(o, "{:<40}", c.callback);
                for m in 0..shown {
                    let _ = write!(o, " {:>6}", c.per_minute.get(m).copied().unwrap_or(0));
                }
                let _ = writeln!(o);
            }
        }
        let others: Vec<_> = self
            .interruption_table
            .iter()
            .filter(|i| i.class != "ipi")
            .collect();
        if !others.is_empty() {
            let _ = writeln!(o, "\nOther interruptions");
            let _ = writeln!(
                o,
                "{:>8} {:>9}  {:<10} {:<14} {:<34} {:>10}",
                "count", "per min", "class", "kind", "detail", "max"
            );
            for i in others {
                let _ = writeln!(
                    o,
                    "{:>8} {:>9.1}  {:<10} {:<14} {:<34} {:>10}",
                    i.count,
                    i.per_min,
                    i.class,
                    i.kind,
                    i.detail.chars().take(34).collect::<String>(),
                    ns(i.max_ns)
                );
            }
        }
        if !self.load.classes.is_empty() {
            let _ = writeln!(o, "\nBuilt-in load");
            for c in &self.load.classes {
                let _ = writeln!(
                    o,
                    "  {:<11} {:>9} ops  {}{}",
                    c.class,
                    c.ops,
                    c.mechanism,
                    if c.error.is_empty() {
                        String::new()
                    } else {
                        format!("  [{} errors: {}]", c.errors, c.error)
                    }
                );
            }
        }
        if self.excluded.before_load + self.excluded.after_load > 0 {
            let _ = writeln!(
                o,
                "\n(left out: {} records before the load started, e.g. isol's own attach; {} after it stopped)",
                self.excluded.before_load, self.excluded.after_load
            );
        }
        for n in &self.notes {
            let _ = writeln!(o, "note: {n}");
        }
        o
    }
}

pub use isol_system::units::ns;
