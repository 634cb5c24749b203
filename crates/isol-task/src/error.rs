//! Errors of the task isolation API: each names what is wrong and, where
//! there is one, the fix.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Os {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("bad configuration: {0}")]
    Config(String),
    #[error("not configured: call configure() (or run under chisol -q ...) before activating")]
    NotConfigured,
    #[error("CPU affinity: {0}")]
    Affinity(String),
    #[error("{0}")]
    Tick(String),
    #[error("no watcher for breaks: {0}")]
    NoWatcher(String),
    #[error("isold refused: {0}")]
    Refused(String),
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn os(what: impl Into<String>) -> Error {
        Error::Os {
            what: what.into(),
            source: std::io::Error::last_os_error(),
        }
    }
    /// A stable number for the C library's return codes.
    pub fn code(&self) -> i32 {
        match self {
            Error::Os { source, .. } => source.raw_os_error().map(|e| -e).unwrap_or(-libc::EIO),
            Error::Config(_) => -libc::EINVAL,
            Error::NotConfigured => -libc::EINVAL,
            Error::Affinity(_) => -libc::EINVAL,
            Error::Tick(_) => -libc::EBUSY,
            Error::NoWatcher(_) => -libc::ENOTCONN,
            Error::Refused(_) => -libc::EPERM,
            Error::Invalid(_) => -libc::EINVAL,
            Error::Other(_) => -libc::EIO,
        }
    }
}
