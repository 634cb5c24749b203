//! Where /proc and /sys are. Real machines use `/`; tests point this at a
//! fixture tree built in a temporary directory.

use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct Root {
    pub proc: PathBuf,
    pub sys: PathBuf,
    /// Prefix for other absolute paths (`/boot`, `/etc`).
    pub base: PathBuf,
}

impl Default for Root {
    fn default() -> Self {
        Root::at("/")
    }
}

impl Root {
    /// A root whose `proc` and `sys` live under `base`.
    pub fn at(base: impl AsRef<Path>) -> Self {
        let base = base.as_ref().to_path_buf();
        Root {
            proc: base.join("proc"),
            sys: base.join("sys"),
            base,
        }
    }

    pub fn proc(&self, rel: &str) -> PathBuf {
        self.proc.join(rel)
    }
    pub fn sys(&self, rel: &str) -> PathBuf {
        self.sys.join(rel)
    }
    pub fn path(&self, abs: &str) -> PathBuf {
        self.base.join(abs.trim_start_matches('/'))
    }
    pub fn is_live(&self) -> bool {
        self.base == Path::new("/")
    }

    /// Read a small text file, trimmed. `None` if it does not exist or
    /// cannot be read (permission): callers decide whether that matters.
    pub fn read(&self, path: &Path) -> Option<String> {
        std::fs::read_to_string(path)
            .ok()
            .map(|s| s.trim().to_string())
    }
}
