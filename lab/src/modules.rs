//! Kernel modules from an unpacked kernel package, for insmod in the guest.
//!
//! The packages ship no modules.dep (the postinst runs depmod), so the
//! dependencies come from each module's own `.modinfo` section (`depends=`),
//! and `modules.builtin` says what needs no loading at all. Compressed
//! modules (`.ko.xz`, `.ko.zst`, `.ko.gz`: 6.12's are xz) are decompressed on
//! the host: busybox insmod and older kernels take plain ELF only.

use crate::kernel::Kernel;
use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One loadable module of a kernel package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Module {
    /// Module name as the kernel knows it (`virtio_pci`: dashes become
    /// underscores).
    pub name: String,
    /// The file in the package, possibly compressed.
    pub path: PathBuf,
}

impl Module {
    /// The module's ELF image, decompressed.
    pub fn elf(&self) -> Result<Vec<u8>> {
        let file = self.path.to_string_lossy();
        let tool: &[&str] = if file.ends_with(".ko") {
            return std::fs::read(&self.path)
                .with_context(|| format!("reading {}", self.path.display()));
        } else if file.ends_with(".ko.xz") {
            &["xz", "-dc"]
        } else if file.ends_with(".ko.zst") {
            &["zstd", "-dcq"]
        } else if file.ends_with(".ko.gz") {
            &["gzip", "-dc"]
        } else {
            bail!("{}: not a kernel module file", self.path.display());
        };
        // Binary output: not through kernel::run, which returns text.
        let o = Command::new(tool[0])
            .args(&tool[1..])
            .arg(&self.path)
            .output()
            .with_context(|| format!("running {}", tool[0]))?;
        if !o.status.success() {
            bail!(
                "{} {} failed: {}",
                tool.join(" "),
                self.path.display(),
                String::from_utf8_lossy(&o.stderr).trim()
            );
        }
        Ok(o.stdout)
    }

    /// File name for the guest: `NAME.ko`.
    pub fn file_name(&self) -> String {
        format!("{}.ko", self.name)
    }
}

fn module_name(file: &str) -> Option<String> {
    let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .find_map(|ext| file.strip_suffix(ext))?;
    Some(stem.replace('-', "_"))
}

/// Every module file of the package by name.
fn index(dir: &Path) -> Result<HashMap<String, PathBuf>> {
    let mut out = HashMap::new();
    let mut stack = vec![dir.join("kernel")];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("reading {}", d.display())),
        };
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                stack.push(path);
            } else if let Some(name) = module_name(&entry.file_name().to_string_lossy()) {
                out.insert(name, path);
            }
        }
    }
    Ok(out)
}

/// Names of the built-in modules (`modules.builtin`: `kernel/.../NAME.ko`).
fn builtin(dir: &Path) -> Result<Vec<String>> {
    let path = dir.join("modules.builtin");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| module_name(l.rsplit('/').next()?))
        .collect())
}

pub(crate) fn resolve(kernel: &Kernel, names: &[&str]) -> Result<Vec<Module>> {
    let dir = &kernel.modules_dir;
    let files = index(dir)?;
    let builtin = builtin(dir)?;
    let mut order = Vec::new();
    let mut visiting = Vec::new();
    for name in names {
        visit(
            &name.replace('-', "_"),
            &files,
            &builtin,
            &mut order,
            &mut visiting,
            kernel,
        )?;
    }
    Ok(order)
}

/// Depth-first: a module after everything it depends on.
fn visit(
    name: &str,
    files: &HashMap<String, PathBuf>,
    builtin: &[String],
    order: &mut Vec<Module>,
    visiting: &mut Vec<String>,
    kernel: &Kernel,
) -> Result<()> {
    if order.iter().any(|m| m.name == name) || builtin.iter().any(|b| b == name) {
        return Ok(());
    }
    if visiting.iter().any(|v| v == name) {
        bail!(
            "module dependency cycle: {} -> {name}",
            visiting.join(" -> ")
        );
    }
    let Some(path) = files.get(name) else {
        bail!(
            "kernel {}: no module {name} (neither built in nor in {})",
            kernel.release,
            kernel.modules_dir.display()
        );
    };
    let module = Module {
        name: name.to_owned(),
        path: path.clone(),
    };
    let deps = depends(&module.elf()?)
        .with_context(|| format!("reading the .modinfo of {}", path.display()))?;
    visiting.push(name.to_owned());
    for dep in deps {
        visit(&dep, files, builtin, order, visiting, kernel)?;
    }
    visiting.pop();
    order.push(module);
    Ok(())
}

/// The `depends=` list of a module's `.modinfo` section.
fn depends(elf: &[u8]) -> Result<Vec<String>> {
    let info = section(elf, ".modinfo").context("no .modinfo section")?;
    let mut deps = Vec::new();
    for field in info.split(|&b| b == 0) {
        if let Some(list) = field.strip_prefix(b"depends=") {
            let list = String::from_utf8_lossy(list);
            deps.extend(
                list.split(',')
                    .filter(|d| !d.is_empty())
                    .map(|d| d.replace('-', "_")),
            );
        }
    }
    Ok(deps)
}

/// The bytes of the ELF64 little-endian section `wanted`.
fn section<'a>(elf: &'a [u8], wanted: &str) -> Option<&'a [u8]> {
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return None;
    }
    let u16_at = |o: usize| Some(u16::from_le_bytes(elf.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(elf.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(elf.get(o..o + 8)?.try_into().ok()?));
    let shoff = usize::try_from(u64_at(0x28)?).ok()?;
    let shentsize = usize::from(u16_at(0x3a)?);
    let shnum = usize::from(u16_at(0x3c)?);
    let shstrndx = usize::from(u16_at(0x3e)?);
    let header = |i: usize| -> Option<(u32, usize, usize)> {
        let h = shoff.checked_add(i.checked_mul(shentsize)?)?;
        let name = u32_at(h)?;
        let offset = usize::try_from(u64_at(h + 0x18)?).ok()?;
        let size = usize::try_from(u64_at(h + 0x20)?).ok()?;
        Some((name, offset, size))
    };
    let (_, stroff, strsize) = header(shstrndx)?;
    let strtab = elf.get(stroff..stroff.checked_add(strsize)?)?;
    for i in 0..shnum {
        let (name, offset, size) = header(i)?;
        let name = strtab.get(name as usize..)?;
        let end = name.iter().position(|&b| b == 0)?;
        if &name[..end] == wanted.as_bytes() {
            return elf.get(offset..offset.checked_add(size)?);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(module_name("virtio_pci.ko").as_deref(), Some("virtio_pci"));
        assert_eq!(module_name("kvm-amd.ko.xz").as_deref(), Some("kvm_amd"));
        assert_eq!(module_name("modules.order"), None);
    }

    #[test]
    fn modinfo_of_a_host_module() {
        // Any module of the running kernel, if the host has one readable.
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let dir = Path::new("/lib/modules").join(release.trim());
        let Ok(files) = index(&dir) else { return };
        let Some((name, path)) = files.iter().next() else {
            return;
        };
        let m = Module {
            name: name.clone(),
            path: path.clone(),
        };
        let Ok(elf) = m.elf() else { return };
        assert!(section(&elf, ".modinfo").is_some(), "{}", path.display());
        depends(&elf).unwrap();
    }
}
