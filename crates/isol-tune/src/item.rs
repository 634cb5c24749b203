//! One checklist item and the runtime change that fixes it.

use isol_cpulist::CpuSet;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Nothing to do.
    Pass,
    /// Not applicable or cannot be checked here (detail says why).
    Skip,
    /// Indirect or occasional noise; fix recommended.
    Warn,
    /// Direct, recurring noise on the CPUs.
    Fail,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Skip => "skip",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// A runtime change `isol apply` makes (and `isol revert` undoes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// Write `value` (plus a newline, as `echo` does) to a procfs/sysfs
    /// file. `select`: the file shows a bracketed choice among words
    /// (`always [madvise] never`); restoring writes the bracketed word.
    Write {
        path: PathBuf,
        value: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        select: bool,
    },
    /// `sched_setaffinity(tid, cpus)` for a movable thread.
    Affinity {
        pid: i32,
        tid: i32,
        comm: String,
        cpus: CpuSet,
    },
}

impl Change {
    pub fn write(path: PathBuf, value: impl Into<String>) -> Change {
        Change::Write {
            path,
            value: value.into(),
            select: false,
        }
    }

    /// What the journal keys entries by: one entry per file or thread.
    pub fn key(&self) -> String {
        match self {
            Change::Write { path, .. } => path.display().to_string(),
            Change::Affinity { tid, .. } => format!("task:{tid}"),
        }
    }

    /// Shell equivalent, for people and for `--dry-run`.
    pub fn command(&self) -> String {
        match self {
            Change::Write { path, value, .. } => format!("echo {value} > {}", path.display()),
            Change::Affinity { tid, cpus, .. } => format!("taskset -pc {cpus} {tid}"),
        }
    }
}

/// One item of the audit.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// Stable identifier, `area.name` (`irq.affinity`, `sysctl.timer_migration`).
    pub id: String,
    pub title: String,
    pub status: Status,
    /// The noise this item causes on the CPUs when it is not right.
    pub noise: String,
    /// What was found.
    pub detail: String,
    /// The exact fix: shell commands, a config line or boot parameters.
    /// `None` when the item passes.
    pub fix: Option<String>,
    /// Boot parameters this item needs (`nohz_full=1`); collected into the
    /// GRUB snippet.
    pub boot: Vec<String>,
    /// What `isol apply` changes for this item at run time.
    pub changes: Vec<Change>,
}

impl Item {
    pub fn new(id: &str, title: &str, noise: &str) -> Item {
        Item {
            id: id.into(),
            title: title.into(),
            status: Status::Pass,
            noise: noise.into(),
            detail: String::new(),
            fix: None,
            boot: Vec::new(),
            changes: Vec::new(),
        }
    }
    pub fn status(mut self, s: Status, detail: impl Into<String>) -> Item {
        self.status = s;
        self.detail = detail.into();
        self
    }
    pub fn pass(self, detail: impl Into<String>) -> Item {
        self.status(Status::Pass, detail)
    }
    pub fn skip(self, detail: impl Into<String>) -> Item {
        self.status(Status::Skip, detail)
    }
    pub fn warn(self, detail: impl Into<String>) -> Item {
        self.status(Status::Warn, detail)
    }
    pub fn fail(self, detail: impl Into<String>) -> Item {
        self.status(Status::Fail, detail)
    }
    pub fn fix(mut self, fix: impl Into<String>) -> Item {
        self.fix = Some(fix.into());
        self
    }
    pub fn boot(mut self, param: impl Into<String>) -> Item {
        self.boot.push(param.into());
        self
    }
    /// Add runtime changes; the fix text is their shell equivalent.
    pub fn changes(mut self, changes: Vec<Change>) -> Item {
        if !changes.is_empty() {
            let cmds: Vec<String> = changes.iter().map(Change::command).collect();
            let extra = self.fix.take();
            let mut fix = cmds.join("\n");
            if let Some(e) = extra {
                fix = format!("{fix}\n{e}");
            }
            self.fix = Some(fix);
        }
        self.changes = changes;
        self
    }
}
