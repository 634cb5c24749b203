//! Errors name the missing privilege, kernel feature or bad input, and
//! say how to get it.

use serde::Serialize;

/// Something isol needs that this machine or this process lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Missing {
    /// Short stable identifier (`root`, `tracefs`, `btf`, `bpf`,
    /// `nohz_full`, `context_tracking`, `osnoise`).
    pub what: &'static str,
    /// One sentence: what is missing and what it prevents.
    pub why: String,
    /// How to get it.
    pub fix: String,
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (fix: {})", self.why, self.fix)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}", .0.iter().map(|m| m.to_string()).collect::<Vec<_>>().join("; "))]
    Missing(Vec<Missing>),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    Parse { path: String, msg: String },
    #[error("mounting tracefs at {path} failed: {source}")]
    Mount {
        path: String,
        source: nix::errno::Errno,
    },
}
