//! Host prerequisites: found, installed from Debian packages when klpt runs
//! as root, or named with the exact command to run.

use crate::error::{Error, Result};
use crate::event::stage;
use crate::vm::Arch;
use std::process::Command;

/// Whether `tool` is an executable file in a `$PATH` directory.
pub fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// (tool, Debian package) pairs klpt needs for these architectures.
pub fn needed(arches: &[Arch]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = [
        ("dpkg-deb", "dpkg"),
        ("apt-get", "apt"),
        ("readelf", "binutils"),
        ("xz", "xz-utils"),
        ("make", "make"),
        ("gcc-12", "gcc-12"),
        ("ssh-keygen", "openssh-client"),
        ("ssh", "openssh-client"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    for a in arches {
        v.push((a.qemu.to_string(), a.qemu_package().to_string()));
        if !a.cross_compile().is_empty() {
            v.push((format!("{}gcc", a.cross), format!("gcc-{}", a.cross.trim_end_matches('-'))));
        }
    }
    v
}

/// What building a kernel from source needs on top of [`needed`].
pub fn ensure_kernel_build(arch: Arch) -> Result<()> {
    let mut v = needed(&[arch]);
    for (t, p) in [("flex", "flex"), ("bison", "bison"), ("bc", "bc"), ("git", "git"), ("ccache", "ccache"), ("perl", "perl"), ("tar", "tar")] {
        v.push((t.into(), p.into()));
    }
    // Headers without a tool to look for.
    for (h, p) in [("/usr/include/libelf.h", "libelf-dev"), ("/usr/include/openssl/ssl.h", "libssl-dev")] {
        v.push((h.into(), p.into()));
    }
    install_missing(v)
}

/// Makes sure the tools exist, installing missing packages when root.
pub fn ensure(arches: &[Arch]) -> Result<()> {
    install_missing(needed(arches))
}

fn install_missing(needed: Vec<(String, String)>) -> Result<()> {
    let missing: Vec<(String, String)> = needed.into_iter().filter(|(t, _)| if t.starts_with('/') { !std::path::Path::new(t).exists() } else { !on_path(t) }).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut pkgs: Vec<String> = missing.iter().map(|(_, p)| p.clone()).collect();
    pkgs.sort();
    pkgs.dedup();
    let tools = missing.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>().join(", ");
    let install = format!("apt-get install -y --no-install-recommends {}", pkgs.join(" "));
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root || std::env::var_os("KLPT_NO_INSTALL").is_some() {
        return Err(Error::HostTools { missing: tools, install: format!("sudo {install}") });
    }
    stage(&format!("host: installing {}", pkgs.join(" ")), || -> Result<()> {
        let try_install = || Command::new("apt-get").args(["install", "-y", "-q", "--no-install-recommends"]).args(&pkgs).env("DEBIAN_FRONTEND", "noninteractive").status();
        let ok = try_install().map(|s| s.success()).unwrap_or(false)
            || (Command::new("apt-get").args(["update", "-q"]).status().map(|s| s.success()).unwrap_or(false) && try_install().map(|s| s.success()).unwrap_or(false));
        if ok { Ok(()) } else { Err(Error::HostTools { missing: tools.clone(), install: install.clone() }) }
    })
}
