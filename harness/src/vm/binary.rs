//! Which QEMU binary runs an architecture. The host's QEMU normally; for
//! profiles that need a newer one (s390x: QEMU 7.2's TCG gets the checksum
//! instruction wrong, so every TCP SYN to the guest fails its checksum), the
//! release's backports QEMU, fetched with the private apt and unpacked into
//! the cache (never installed).

use super::arch::{Arch, PerArch};
use crate::apt::{self, Apt};
use crate::error::{Error, IoContext, Result};
use std::path::PathBuf;
use std::process::Command;

#[derive(Debug, Clone)]
pub struct QemuBinary {
    pub path: PathBuf,
    /// Firmware directory (`-L`) for a private copy.
    pub data_dir: Option<PathBuf>,
}

impl QemuBinary {
    /// A command for this binary, with its firmware directory when private.
    pub fn command(&self) -> std::process::Command {
        let mut c = Command::new(&self.path);
        if let Some(d) = &self.data_dir {
            c.arg("-L").arg(d);
        }
        c
    }
}

/// The major version `qemu-system-* --version` reports.
fn major_version(bin: &str) -> Option<u32> {
    let out = Command::new(bin).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text.split("version ").nth(1)?;
    v.split('.').next()?.trim().parse().ok()
}

pub fn resolve(arch: Arch) -> Result<QemuBinary> {
    static RESOLVED: PerArch<QemuBinary> = PerArch::new();
    RESOLVED.get_or_try(arch, || match (arch.min_qemu, major_version(arch.qemu)) {
        (Some(min), Some(v)) if v < min => backports(arch),
        _ => Ok(QemuBinary { path: PathBuf::from(arch.qemu), data_dir: None }),
    })
}

fn backports(arch: Arch) -> Result<QemuBinary> {
    let suite = format!("{}-backports", apt::host_codename());
    let apt = Apt::new(&suite, Arch::host().map(|a| a.deb).unwrap_or("amd64"))?;
    apt.update()?;
    let pkg = format!("qemu-system-{}", arch.qemu.trim_start_matches("qemu-system-"));
    let debs = apt.download(&[pkg.clone(), "qemu-system-data".into()])?;
    let key = debs.iter().map(|d| d.file_name().unwrap_or_default().to_string_lossy().to_string()).collect::<Vec<_>>().join("+");
    let root = crate::cache::root().join("qemu").join(crate::cache::Hasher::new().part("debs", &key).hex());
    if !root.join(".klpt-ready").exists() {
        let tmp = super::cleanup::TempDir::new_in(&crate::cache::root().join("qemu"), ".unpack-").ctx(|| "create qemu dir".into())?;
        for d in &debs {
            apt::unpack(d, tmp.path())?;
        }
        std::fs::write(tmp.path().join(".klpt-ready"), "").ctx(|| "mark qemu".into())?;
        let t = tmp.keep();
        crate::cache::publish(&t, &root).ctx(|| format!("store {}", root.display()))?;
    }
    let path = root.join("usr/bin").join(arch.qemu);
    if !path.exists() {
        return Err(Error::Vm(format!("{suite} has no {}", arch.qemu)));
    }
    crate::event::emit(crate::event::Event::Note { msg: &format!("{}: using {suite}'s QEMU ({}) instead of the host's", arch.name, path.display()) });
    Ok(QemuBinary { path, data_dir: Some(root.join("usr/share/qemu")) })
}
