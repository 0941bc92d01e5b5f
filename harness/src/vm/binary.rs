//! Which QEMU binary runs an architecture. The host's QEMU normally; a
//! private one, the release's backports QEMU fetched with the private apt
//! and unpacked into the cache (never installed), when
//!
//! * the host has none (klpt does not install one when that would remove a
//!   package, nor when it may not install at all),
//! * the profile needs a newer one (s390x: QEMU 7.2's TCG gets the checksum
//!   instruction wrong, so every TCP SYN to the guest fails its checksum),
//! * or `KLPT_QEMU=private` asks for it.
//!
//! The private QEMU brings what the host lacks for it: its firmware and the
//! shared libraries of packages the host does not have (or has too old),
//! found by simulating the install against the host's dpkg status. Those
//! libraries reach QEMU through `LD_LIBRARY_PATH`, set on its command only.

use super::arch::profile;
use crate::apt::{self, Apt, PkgVersion};
use crate::arch::{Arch, PerArch};
use crate::error::{Error, IoContext, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Clone)]
pub struct QemuBinary {
    pub path: PathBuf,
    /// Firmware directories (`-L`, in order) of a private copy.
    pub data_dirs: Vec<PathBuf>,
    /// Environment of a private copy: its libraries and modules.
    pub env: Vec<(String, String)>,
}

impl QemuBinary {
    fn host(bin: &str) -> QemuBinary {
        QemuBinary { path: PathBuf::from(bin), data_dirs: Vec::new(), env: Vec::new() }
    }

    /// A command for this binary, with a private copy's firmware directories
    /// and library path.
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.path);
        for d in &self.data_dirs {
            c.arg("-L").arg(d);
        }
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }
}

/// The major version `qemu-system-* --version` reports; None when it does not run.
fn major_version(mut cmd: Command) -> Option<u32> {
    let out = cmd.arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text.split("version ").nth(1)?;
    v.split('.').next()?.trim().parse().ok()
}

pub fn resolve(arch: Arch) -> Result<QemuBinary> {
    static RESOLVED: PerArch<QemuBinary> = PerArch::new();
    RESOLVED.get_or_try(arch, || {
        if std::env::var("KLPT_QEMU").is_ok_and(|v| v == "private") {
            return private(arch, "KLPT_QEMU=private");
        }
        let p = profile(arch);
        match (p.min_qemu, major_version(Command::new(p.qemu))) {
            (_, None) => private(arch, &format!("the host has no {}", p.qemu)),
            (Some(min), Some(v)) if v < min => {
                private(arch, &format!("the host's {} is version {v}, older than {min}", p.qemu))
            }
            _ => Ok(QemuBinary::host(p.qemu)),
        }
    })
}

/// The backports package with `arch`'s QEMU: the per-target split package
/// where the release has one (`qemu-system-s390x`), else the host's name.
fn private_package(apt: &Apt, arch: Arch) -> String {
    let split = format!("qemu-system-{}", profile(arch).qemu.trim_start_matches("qemu-system-"));
    if apt.depends(&split).is_ok() {
        split
    } else {
        profile(arch).package.to_string()
    }
}

fn private(arch: Arch, why: &str) -> Result<QemuBinary> {
    let codename = apt::host_codename();
    let suite = format!("{codename}-backports");
    let host = Arch::host().ok_or_else(|| {
        Error::Other(format!("QEMU: no private QEMU for a host of architecture {}", std::env::consts::ARCH))
    })?;
    let apt = Apt::with_suites(&[&codename, &suite], host.deb)?;
    apt.update()?;
    let pkg = private_package(&apt, arch);
    let debs = apt.download_exact(&needed_packages(&apt, &pkg, &suite)?)?;
    let key = debs
        .iter()
        .map(|d| d.file_name().unwrap_or_default().to_string_lossy().to_string())
        .collect::<Vec<_>>()
        .join("+");
    let root = crate::cache::root().join("qemu").join(crate::cache::Hasher::new().part("debs", &key).hex());
    if !root.join(".klpt-ready").exists() {
        let parent = crate::cache::root().join("qemu");
        std::fs::create_dir_all(&parent).ctx(|| format!("create {}", parent.display()))?;
        let tmp = crate::cleanup::TempDir::new_in(&parent, ".unpack-").ctx(|| "create qemu dir".into())?;
        crate::event::stage(
            &format!("qemu: unpacking {} package(s) for a private {}", debs.len(), profile(arch).qemu),
            || -> Result<()> {
                for d in &debs {
                    apt::unpack(d, tmp.path())?;
                }
                Ok(())
            },
        )?;
        std::fs::write(tmp.path().join(".klpt-ready"), "").ctx(|| "mark qemu".into())?;
        crate::cache::publish_temp(tmp, &root).ctx(|| format!("store {}", root.display()))?;
    }
    let bin = private_binary(&root, arch, host.triplet);
    if !bin.path.exists() {
        return Err(Error::Other(format!("QEMU: {suite}'s {pkg} has no {}", profile(arch).qemu)));
    }
    let problems = missing_libraries(&bin)?;
    if !problems.is_empty() {
        return Err(Error::Other(format!(
            "the private QEMU {} cannot run here:\n  {}",
            bin.path.display(),
            problems.join("\n  ")
        )));
    }
    let version = major_version(bin.command()).ok_or_else(|| {
        Error::Other(format!("QEMU: the private QEMU {} does not run (`--version` failed)", bin.path.display()))
    })?;
    let libs = if bin.env.iter().any(|(k, _)| k == "LD_LIBRARY_PATH") { ", with its own libraries" } else { "" };
    crate::event::emit(crate::event::Event::Note {
        msg: &format!("{}: {why}: using {suite}'s QEMU {version} ({}){libs}", arch.name, bin.path.display()),
    });
    Ok(bin)
}

/// The packages a private `pkg` needs on this host: what installing it from
/// `release` would install (simulated against the host's dpkg status, so
/// packages the host has in a good enough version are not fetched), kept to
/// `pkg`'s own dependency closure (an install would also upgrade unrelated
/// installed packages that share `qemu-system-common`).
fn needed_packages(apt: &Apt, pkg: &str, release: &str) -> Result<Vec<PkgVersion>> {
    let sim = apt.simulate_install(&[pkg.to_string()], release, Path::new("/var/lib/dpkg/status"))?;
    if !sim.install.iter().any(|p| p.name == pkg) {
        return Err(Error::Other(format!(
            "QEMU: apt plans no install of {pkg} from {release} (is the host's version newer?)"
        )));
    }
    let names: Vec<String> = sim.install.iter().map(|p| p.name.clone()).collect();
    let deps = apt.depends_map(&names, release)?;
    let keep = closure(pkg, &deps, &names.iter().cloned().collect());
    Ok(sim.install.into_iter().filter(|p| keep.contains(&p.name)).collect())
}

/// `root` and the packages in `within` reachable from it through `deps`.
fn closure(root: &str, deps: &BTreeMap<String, Vec<String>>, within: &BTreeSet<String>) -> BTreeSet<String> {
    let mut seen = BTreeSet::from([root.to_string()]);
    let mut todo = vec![root.to_string()];
    while let Some(p) = todo.pop() {
        for d in deps.get(&p).into_iter().flatten() {
            if within.contains(d) && seen.insert(d.clone()) {
                todo.push(d.clone());
            }
        }
    }
    seen
}

/// The binary in an unpacked root: firmware from the root first (QEMU's
/// built-in paths, the host's, come after `-L`), and the root's library and
/// module directories when they hold anything.
fn private_binary(root: &Path, arch: Arch, triplet: &str) -> QemuBinary {
    let data_dirs = ["usr/share/qemu", "usr/share/seabios", "usr/lib/ipxe/qemu"]
        .iter()
        .map(|d| root.join(d))
        .filter(|d| d.is_dir())
        .collect();
    let has_libs = |d: &Path| {
        std::fs::read_dir(d)
            .map(|rd| rd.flatten().any(|e| e.file_name().to_string_lossy().contains(".so")))
            .unwrap_or(false)
    };
    let lib_dirs: Vec<String> = [format!("lib/{triplet}"), format!("usr/lib/{triplet}")]
        .iter()
        .map(|d| root.join(d))
        .filter(|d| has_libs(d))
        .map(|d| d.display().to_string())
        .collect();
    let mut env = Vec::new();
    if !lib_dirs.is_empty() {
        env.push(("LD_LIBRARY_PATH".to_string(), lib_dirs.join(":")));
    }
    let modules = root.join(format!("usr/lib/{triplet}/qemu"));
    if modules.is_dir() {
        env.push(("QEMU_MODULE_DIR".to_string(), modules.display().to_string()));
    }
    QemuBinary { path: root.join("usr/bin").join(profile(arch).qemu), data_dirs, env }
}

/// What the dynamic loader cannot resolve for `bin` with its environment:
/// `ldd`'s "not found" lines (missing libraries or symbol versions).
fn missing_libraries(bin: &QemuBinary) -> Result<Vec<String>> {
    let out = Command::new("ldd")
        .arg(&bin.path)
        .envs(bin.env.iter().map(|(k, v)| (k, v)))
        .env("LC_ALL", "C")
        .output()
        .ctx(|| "run ldd".into())?;
    Ok(ldd_problems(&format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))))
}

fn ldd_problems(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| l.contains("not found")).map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_reports_missing_libraries_and_versions() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\tlibslirp.so.0 => not found\n\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x7f)\n\
                    /x/qemu: /lib/x86_64-linux-gnu/libglib-2.0.so.0: version `GLIB_2.76' not found (required by /x/qemu)\n";
        assert_eq!(
            ldd_problems(text),
            vec![
                "libslirp.so.0 => not found".to_string(),
                "/x/qemu: /lib/x86_64-linux-gnu/libglib-2.0.so.0: version `GLIB_2.76' not found (required by /x/qemu)"
                    .to_string()
            ]
        );
        assert!(ldd_problems("\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x7f)\n").is_empty());
    }

    #[test]
    fn closure_keeps_the_dependencies_and_drops_unrelated_upgrades() {
        // Installing qemu-system-s390x upgrades qemu-system-common, so apt
        // also upgrades the host's qemu-system-x86, which s390x does not need.
        let deps: BTreeMap<String, Vec<String>> = [
            ("qemu-system-s390x", vec!["libc6", "qemu-system-common", "libslirp0"]),
            ("qemu-system-common", vec!["libc6"]),
            ("qemu-system-x86", vec!["qemu-system-common", "seabios"]),
            ("libslirp0", vec!["libglib2.0-0"]),
            ("seabios", vec![]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
        .collect();
        let plan: BTreeSet<String> =
            ["qemu-system-s390x", "qemu-system-common", "qemu-system-x86", "libslirp0", "seabios"]
                .map(String::from)
                .into();
        let got = closure("qemu-system-s390x", &deps, &plan);
        assert_eq!(got, ["qemu-system-s390x", "qemu-system-common", "libslirp0"].map(String::from).into());
    }

    #[test]
    fn private_binary_environment_only_where_the_root_has_files() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("usr/share/qemu")).unwrap();
        std::fs::create_dir_all(r.join("usr/lib/x86_64-linux-gnu/qemu")).unwrap();
        let b = private_binary(r, crate::arch::X86_64, "x86_64-linux-gnu");
        assert_eq!(b.data_dirs, vec![r.join("usr/share/qemu")]);
        assert!(!b.env.iter().any(|(k, _)| k == "LD_LIBRARY_PATH"));
        std::fs::write(r.join("usr/lib/x86_64-linux-gnu/libslirp.so.0"), "").unwrap();
        let b = private_binary(r, crate::arch::X86_64, "x86_64-linux-gnu");
        assert!(b.env.contains(&("LD_LIBRARY_PATH".into(), r.join("usr/lib/x86_64-linux-gnu").display().to_string())));
        let args: Vec<String> = b.command().get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args, vec!["-L".to_string(), r.join("usr/share/qemu").display().to_string()]);
    }
}
