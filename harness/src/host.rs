//! Host prerequisites: found, installed from Debian packages when klpt runs
//! as root, or named with the exact command to run.

use crate::arch::Arch;
use crate::error::{Error, Result};
use crate::event::{emit, stage, Event};
use crate::vm::arch::profile;
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
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    for a in arches {
        v.push((profile(*a).qemu.to_string(), profile(*a).package.to_string()));
        if !a.cross_compile().is_empty() {
            v.push((format!("{}gcc", a.cross), format!("gcc-{}", a.cross.trim_end_matches('-'))));
        }
    }
    v
}

/// What building a kernel from source needs on top of [`needed`].
pub fn ensure_kernel_build(arch: Arch) -> Result<()> {
    let mut v = needed(&[arch]);
    for (t, p) in [
        ("flex", "flex"),
        ("bison", "bison"),
        ("bc", "bc"),
        ("git", "git"),
        ("ccache", "ccache"),
        ("perl", "perl"),
        ("tar", "tar"),
    ] {
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

/// What `klpt shell` needs on top of [`needed`]: the `ssh` client it runs.
pub fn ensure_shell() -> Result<()> {
    install_missing(vec![("ssh".into(), "openssh-client".into())])
}

/// Whether `pkg` is a QEMU system emulator package: one klpt can do without
/// installing, with a private QEMU (see [`crate::vm::binary`]).
fn is_qemu(pkg: &str) -> bool {
    pkg.starts_with("qemu-system-")
}

/// The line for a person to run: apt shows what it would do, removals
/// included, and asks before doing it.
fn install_line(pkgs: &[String]) -> String {
    format!("apt-get install --no-install-recommends {}", pkgs.join(" "))
}

fn install_missing(needed: Vec<(String, String)>) -> Result<()> {
    let missing: Vec<(String, String)> = needed
        .into_iter()
        .filter(|(t, _)| if t.starts_with('/') { !std::path::Path::new(t).exists() } else { !on_path(t) })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let pkgs_of = |qemu: bool| {
        let mut v: Vec<String> = missing.iter().filter(|(_, p)| is_qemu(p) == qemu).map(|(_, p)| p.clone()).collect();
        v.sort();
        v.dedup();
        v
    };
    let tools_of = |qemu: bool| {
        missing.iter().filter(|(_, p)| is_qemu(p) == qemu).map(|(t, _)| t.as_str()).collect::<Vec<_>>().join(", ")
    };
    let (pkgs, qemu) = (pkgs_of(false), pkgs_of(true));
    // SAFETY: geteuid has no preconditions.
    let may_install = unsafe { libc::geteuid() } == 0 && std::env::var_os("KLPT_NO_INSTALL").is_none();
    if !pkgs.is_empty() {
        if !may_install {
            return Err(Error::HostTools {
                missing: tools_of(false),
                install: format!("sudo {}", install_line(&pkgs)),
            });
        }
        apt_install(&pkgs).map_err(|why| Error::HostTools {
            missing: format!("{} ({why})", tools_of(false)),
            install: format!("sudo {}", install_line(&pkgs)),
        })?;
    }
    if !qemu.is_empty() {
        // No host QEMU is no reason to stop: vm::binary then runs a private one.
        let why =
            if may_install { apt_install(&qemu).err() } else { Some("klpt may not install packages here".into()) };
        if let Some(why) = why {
            emit(Event::Warn {
                msg: &format!("host: no {} ({why}); klpt will use a private QEMU from the release's backports, unpacked into its cache. To use the host's instead: sudo {}", tools_of(true), install_line(&qemu)),
            });
        }
    }
    Ok(())
}

/// Installs `pkgs` with the host's apt, never removing a package (apt aborts
/// instead). On failure, says why: the packages apt would have removed, or
/// that apt failed.
fn apt_install(pkgs: &[String]) -> std::result::Result<(), String> {
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends", "--no-remove"])
            .args(pkgs)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    stage(&format!("host: installing {}", pkgs.join(" ")), || {
        if install() {
            return Ok(());
        }
        let removes = would_remove(pkgs);
        if !removes.is_empty() {
            return Err(format!("installing them would remove {}, and klpt never removes packages", removes.join(" ")));
        }
        // Stale package lists (404s): refresh them once and retry.
        if Command::new("apt-get").args(["update", "-q"]).status().map(|s| s.success()).unwrap_or(false) && install() {
            return Ok(());
        }
        let removes = would_remove(pkgs);
        Err(if removes.is_empty() {
            "apt-get failed".to_string()
        } else {
            format!("installing them would remove {}, and klpt never removes packages", removes.join(" "))
        })
    })
}

/// The installed packages `apt-get install pkgs` would remove (a simulation
/// with the host's apt configuration; changes nothing).
fn would_remove(pkgs: &[String]) -> Vec<String> {
    let out = Command::new("apt-get")
        .args(["-s", "-q", "install", "--no-install-recommends"])
        .args(pkgs)
        .env("LC_ALL", "C")
        .output();
    out.map(|o| crate::apt::parse_simulation(&String::from_utf8_lossy(&o.stdout)).remove).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_klpt_shell_needs_the_ssh_client() {
        let tools: Vec<String> = needed(&crate::arch::ALL).into_iter().map(|(t, _)| t).collect();
        assert!(tools.iter().any(|t| t == "ssh-keygen"));
        assert!(!tools.iter().any(|t| t == "ssh"), "{tools:?}");
    }

    #[test]
    fn qemu_packages_are_the_system_emulators() {
        for a in crate::arch::ALL {
            assert!(is_qemu(profile(a).package), "{}", profile(a).package);
        }
        assert!(!is_qemu("qemu-utils") && !is_qemu("gcc-12"));
        assert_eq!(install_line(&["a".into(), "b".into()]), "apt-get install --no-install-recommends a b");
    }
}
