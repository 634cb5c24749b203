//! Initramfs assembly: a newc cpio archive, written directly (no staging
//! tree, no external `cpio`), uncompressed (the kernel unpacks it fastest and
//! building it takes milliseconds, so it is rebuilt for every run).

use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;

/// Writer for the "new ASCII" (070701) cpio format the kernel reads.
pub struct CpioWriter<W: Write> {
    out: W,
    ino: u32,
    dirs: BTreeSet<String>,
    paths: BTreeSet<String>,
}

impl<W: Write> CpioWriter<W> {
    pub fn new(out: W) -> Self {
        CpioWriter {
            out,
            ino: 1,
            dirs: BTreeSet::new(),
            paths: BTreeSet::new(),
        }
    }

    /// Add a directory (and its missing parents).
    pub fn dir(&mut self, path: &str) -> Result<()> {
        let path = normalize(path)?;
        if path.is_empty() || self.dirs.contains(&path) {
            return Ok(());
        }
        self.parents(&path)?;
        self.dirs.insert(path.clone());
        self.entry(&path, S_IFDIR | 0o755, &[])
    }

    /// Add a regular file; missing parent directories are created.
    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> Result<()> {
        let path = normalize(path)?;
        self.parents(&path)?;
        self.entry(&path, S_IFREG | (mode & 0o7777), data)
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        let path = normalize(path)?;
        self.parents(&path)?;
        self.entry(&path, S_IFLNK | 0o777, target.as_bytes())
    }

    /// Write the trailer and return the underlying writer.
    pub fn finish(mut self) -> Result<W> {
        self.raw("TRAILER!!!", 0, &[])?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn parents(&mut self, path: &str) -> Result<()> {
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent)?;
        }
        Ok(())
    }

    fn entry(&mut self, path: &str, mode: u32, data: &[u8]) -> Result<()> {
        // A later entry would silently replace the first one in the guest.
        if !self.paths.insert(path.to_owned()) {
            bail!("initramfs: /{path} added twice");
        }
        self.raw(path, mode, data)
    }

    fn raw(&mut self, name: &str, mode: u32, data: &[u8]) -> Result<()> {
        let ino = self.ino;
        self.ino += 1;
        let nlink = if mode & S_IFDIR == S_IFDIR { 2 } else { 1 };
        let header = format!(
            "070701{ino:08x}{mode:08x}{:08x}{:08x}{nlink:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            0, // uid
            0, // gid
            0, // mtime
            data.len(),
            0, // devmajor
            0, // devminor
            0, // rdevmajor
            0, // rdevminor
            name.len() + 1,
            0, // check
        );
        self.out.write_all(header.as_bytes())?;
        self.out.write_all(name.as_bytes())?;
        self.out.write_all(&[0])?;
        self.pad(110 + name.len() + 1)?;
        self.out.write_all(data)?;
        self.pad(data.len())?;
        Ok(())
    }

    fn pad(&mut self, len: usize) -> Result<()> {
        let pad = (4 - len % 4) % 4;
        self.out.write_all(&[0u8; 3][..pad])?;
        Ok(())
    }
}

/// "/a//b/" -> "a/b"; rejects ".." and empty components that would escape.
fn normalize(path: &str) -> Result<String> {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
        bail!("initramfs path {path:?} contains ..");
    }
    Ok(parts.join("/"))
}

/// What goes into the guest at one path.
#[derive(Clone, Debug)]
pub enum Source {
    /// A host file (mode kept) or directory (copied recursively).
    Host(PathBuf),
    Bytes {
        data: Vec<u8>,
        mode: u32,
    },
}

/// Write an initramfs with `entries` (guest path, source) to `dest`.
pub fn write(dest: &Path, entries: &[(String, Source)]) -> Result<()> {
    let file =
        std::fs::File::create(dest).with_context(|| format!("creating {}", dest.display()))?;
    let mut cpio = CpioWriter::new(std::io::BufWriter::new(file));
    for dir in ["dev", "proc", "sys", "tmp", "root", "run"] {
        cpio.dir(dir)?;
    }
    for (guest, source) in entries {
        match source {
            Source::Bytes { data, mode } => cpio.file(guest, *mode, data)?,
            Source::Host(host) => add_host(&mut cpio, host, guest)?,
        }
    }
    cpio.finish()?;
    Ok(())
}

fn add_host<W: Write>(cpio: &mut CpioWriter<W>, host: &Path, guest: &str) -> Result<()> {
    let meta = std::fs::symlink_metadata(host)
        .with_context(|| format!("lab file {} (for guest {guest})", host.display()))?;
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(host)?;
        cpio.symlink(guest, &target.to_string_lossy())
    } else if meta.is_dir() {
        cpio.dir(guest)?;
        let mut children: Vec<_> = std::fs::read_dir(host)
            .with_context(|| format!("reading {}", host.display()))?
            .collect::<std::io::Result<_>>()?;
        children.sort_by_key(|e| e.file_name());
        for child in children {
            let name = child.file_name();
            let sub = format!("{guest}/{}", name.to_string_lossy());
            add_host(cpio, &child.path(), &sub)?;
        }
        Ok(())
    } else {
        let data = std::fs::read(host).with_context(|| format!("reading {}", host.display()))?;
        cpio.file(guest, meta.permissions().mode(), &data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newc_layout() {
        let mut w = CpioWriter::new(Vec::new());
        w.file("/bin/x", 0o755, b"hello").unwrap();
        w.symlink("/bin/sh", "busybox").unwrap();
        let out = w.finish().unwrap();
        let text = String::from_utf8_lossy(&out);
        // Parent directory first, then the file, with 4-byte alignment.
        assert!(text.starts_with("070701"));
        let bin = text.find("bin\0").unwrap();
        let x = text.find("bin/x\0").unwrap();
        assert!(bin < x);
        assert_eq!(out.len() % 4, 0);
        assert!(text.contains("TRAILER!!!"));
        assert!(w_dup().is_err());
    }

    fn w_dup() -> Result<()> {
        let mut w = CpioWriter::new(Vec::new());
        w.file("a", 0o644, b"")?;
        w.file("/a", 0o644, b"")
    }

    #[test]
    fn roundtrip_with_cpio_tool() {
        if std::process::Command::new("cpio")
            .arg("--version")
            .output()
            .is_err()
        {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("i.cpio");
        write(
            &img,
            &[(
                "/lab/a.sh".into(),
                Source::Bytes {
                    data: b"echo hi\n".to_vec(),
                    mode: 0o755,
                },
            )],
        )
        .unwrap();
        let out = std::process::Command::new("cpio")
            .args(["-t", "-v", "-F"])
            .arg(&img)
            .output()
            .unwrap();
        let list = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(list.contains("lab/a.sh"), "{list}");
        assert!(list.contains("-rwxr-xr-x"), "{list}");
    }
}
