//! The machine's isolation settings, checked and fixed safely.
//!
//! - [`audit`] runs every item of the quiet-CPU checklist
//!   (REFERENCE.md §4) for a set of CPUs and says, per item, pass / warn /
//!   fail / skip, which noise it causes and the exact fix. Runtime-fixable
//!   items carry the [`Change`]s that fix them.
//! - [`apply`] makes those changes, recording each original value in an
//!   atomically written [`journal`] *before* touching it.
//! - [`revert`] restores every journaled value and checks that the file
//!   reads back byte for byte as before.
//!
//! Every reader takes an [`isol_system::Root`], so all of it runs on
//! fixture trees in tests ([`testing`]).

pub mod apply;
pub mod audit;
pub mod checks;
pub mod item;
pub mod journal;
pub mod revert;
pub mod sysfile;
#[doc(hidden)]
pub mod testing;

pub use apply::{apply, ApplyOptions, ApplyReport};
pub use audit::{audit, verdict, Report, Verdict};
pub use item::{Change, Item, Status};
pub use revert::{revert, RevertReport};

/// Errors of audit, apply and revert. Each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Cpus(String),
    #[error("journal {path}: {msg}")]
    Journal { path: String, msg: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}
