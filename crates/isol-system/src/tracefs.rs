//! Finding (and when allowed, mounting) tracefs, and asking it which
//! tracepoints and tracers this kernel has.

use crate::{Error, Missing, Root};
use serde::Serialize;
use std::path::{Path, PathBuf};

pub const DEFAULT_PATH: &str = "/sys/kernel/tracing";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Tracefs {
    Mounted {
        path: PathBuf,
    },
    /// The kernel has tracefs and this process may mount it.
    Mountable,
    /// The kernel has tracefs but this process may not mount it.
    NotPermitted,
    /// The kernel was built without tracefs (CONFIG_TRACING).
    Absent,
}

impl Tracefs {
    pub fn probe(root: &Root, can_mount: bool) -> Tracefs {
        let mounts = std::fs::read_to_string(root.proc("self/mounts")).unwrap_or_default();
        for l in mounts.lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() > 2 && f[2] == "tracefs" {
                return Tracefs::Mounted {
                    path: root.path(f[1]),
                };
            }
        }
        let fs = std::fs::read_to_string(root.proc("filesystems")).unwrap_or_default();
        if !fs
            .lines()
            .any(|l| l.split_whitespace().last() == Some("tracefs"))
        {
            Tracefs::Absent
        } else if can_mount {
            Tracefs::Mountable
        } else {
            Tracefs::NotPermitted
        }
    }

    pub fn path(&self) -> Option<&Path> {
        match self {
            Tracefs::Mounted { path } => Some(path),
            _ => None,
        }
    }

    /// What to tell the user when tracefs is needed but not usable.
    pub fn missing(&self) -> Option<Missing> {
        let (why, fix) = match self {
            Tracefs::Mounted { .. } => return None,
            Tracefs::Mountable => (
                format!("tracefs is not mounted at {DEFAULT_PATH}"),
                format!(
                    "mount -t tracefs nodev {DEFAULT_PATH} (isol mounts it itself when capturing)"
                ),
            ),
            Tracefs::NotPermitted => (
                format!(
                    "tracefs is not mounted at {DEFAULT_PATH} and mounting it needs CAP_SYS_ADMIN"
                ),
                format!("run as root, or have root run: mount -t tracefs nodev {DEFAULT_PATH}"),
            ),
            Tracefs::Absent => (
                "this kernel has no tracefs (CONFIG_TRACING is not set)".into(),
                "boot a kernel built with CONFIG_FTRACE/CONFIG_TRACING".into(),
            ),
        };
        Some(Missing {
            what: "tracefs",
            why,
            fix,
        })
    }

    /// Return tracefs's path, mounting it first if needed and permitted.
    pub fn ensure_mounted(root: &Root, can_mount: bool) -> Result<PathBuf, Error> {
        let t = Tracefs::probe(root, can_mount);
        match t {
            Tracefs::Mounted { path } => Ok(path),
            Tracefs::Mountable if root.is_live() => {
                nix::mount::mount(
                    Some("nodev"),
                    DEFAULT_PATH,
                    Some("tracefs"),
                    nix::mount::MsFlags::empty(),
                    None::<&str>,
                )
                .map_err(|source| Error::Mount {
                    path: DEFAULT_PATH.into(),
                    source,
                })?;
                Ok(PathBuf::from(DEFAULT_PATH))
            }
            other => Err(Error::Missing(other.missing().into_iter().collect())),
        }
    }
}

/// Does `system:event` exist under a mounted tracefs?
pub fn has_event(tracefs: &Path, event: &str) -> bool {
    match event.split_once(':') {
        Some((sys, name)) => tracefs.join("events").join(sys).join(name).is_dir(),
        None => false,
    }
}

/// Tracers the kernel offers (`available_tracers`).
pub fn tracers(tracefs: &Path) -> Vec<String> {
    std::fs::read_to_string(tracefs.join("available_tracers"))
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect()
}
