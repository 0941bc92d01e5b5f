//! Kernel artifacts: a bootable image plus the build tree that out-of-tree
//! modules are compiled against, and what the kernel can do (probed from its
//! config, symbol table and headers, never from its version number).

pub mod build;
pub mod caps;
pub mod debian;
pub mod dir;
pub mod export;
pub mod origin;
pub mod pvh;

use crate::arch::Arch;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct Kernel {
    /// Short name used in trial names, reports and xfail patterns.
    pub id: String,
    pub arch: Arch,
    /// `uname -r`.
    pub release: String,
    pub image: PathBuf,
    /// Where `make M=` builds modules (`-C` directory).
    pub build_dir: PathBuf,
    /// Directories searched for kernel headers (`include/linux/livepatch.h`).
    pub source_dirs: Vec<PathBuf>,
    pub config: PathBuf,
    pub system_map: Option<PathBuf>,
    /// `lib/modules/<release>` of a distribution kernel, for the guest's
    /// network drivers; None when they are built in.
    pub modules_dir: Option<PathBuf>,
    /// Hash of the build tree's identity (config + Module.symvers), for module caching.
    pub build_hash: String,
    /// Where it came from (source, series, config, toolchain), for reports.
    pub origin: origin::Origin,
}

/// What `--kernel` names: nothing or `debian` (Debian's current kernel),
/// `source` (built from Debian's kernel source), `source:SERIES[,SERIES]`
/// (the same with patch series applied), a kernel build directory, or a
/// kernel artifact file (`klpt kernel build --export`).
pub fn resolve(spec: Option<&str>, arch: Arch) -> crate::error::Result<Kernel> {
    match spec {
        None | Some("debian") => debian::current(arch),
        Some(s) if s == "source" || s.starts_with("source:") => {
            let series =
                s.strip_prefix("source:").map(|l| l.split(',').map(PathBuf::from).collect()).unwrap_or_default();
            built(&build::Spec { src: None, arch, series })
        }
        Some(path) => open_path(std::path::Path::new(path), arch),
    }
}

/// The kernel `klpt kernel build` builds (or finds cached) for `spec`, named
/// as `--kernel source[:SERIES]` names it.
pub fn built(spec: &build::Spec) -> crate::error::Result<Kernel> {
    let (dir, origin) = build::build_with_origin(spec)?;
    Ok(named(dir::open(&dir, spec.arch)?, spec, origin))
}

fn named(mut k: Kernel, spec: &build::Spec, origin: origin::Origin) -> Kernel {
    // A user's tree keeps the build directory's name.
    if spec.src.is_none() {
        k.id = source_id(&spec.series, &k.release);
    }
    k.origin = origin;
    k
}

/// A build directory, or an artifact file (unpacked into the cache once).
fn open_path(path: &std::path::Path, arch: Arch) -> crate::error::Result<Kernel> {
    if path.is_file() {
        export::open(path, arch)
    } else {
        dir::open(path, arch)
    }
}

/// What `--kernel` names, as far as it can be known without fetching,
/// building or installing anything.
pub enum Peek {
    /// Available: fetched or built already, or a build directory.
    Ready(Box<Kernel>),
    /// Not available yet: its id when klpt can tell it (Debian's kernel,
    /// from the package metadata), and what makes it available.
    Absent { id: Option<String>, how: String },
}

/// [`resolve`] without side effects beyond klpt's private apt metadata: no
/// package download, no kernel build, no host install. A kernel already in
/// the cache is opened as `resolve` would.
pub fn peek(spec: Option<&str>, arch: Arch) -> crate::error::Result<Peek> {
    match spec {
        None | Some("debian") => {
            let (id, ready) = debian::peek(arch)?;
            if ready {
                return Ok(Peek::Ready(Box::new(debian::current(arch)?)));
            }
            Ok(Peek::Absent {
                id: Some(id),
                how: format!(
                    "Debian's kernel for {} is not downloaded yet: `klpt run` (without --list) fetches it",
                    arch.name
                ),
            })
        }
        Some(s) if s == "source" || s.starts_with("source:") => {
            let series: Vec<PathBuf> =
                s.strip_prefix("source:").map(|l| l.split(',').map(PathBuf::from).collect()).unwrap_or_default();
            let spec = build::Spec { src: None, arch, series };
            match build::cached_with_origin(&spec)? {
                Some((dir, origin)) => Ok(Peek::Ready(Box::new(named(dir::open(&dir, arch)?, &spec, origin)))),
                None => {
                    let series: String = spec.series.iter().map(|p| format!(" --series {}", p.display())).collect();
                    Ok(Peek::Absent { id: None, how: format!("`--kernel {s}` for {} is not built yet: build it with `klpt kernel build --arch {}{series}`", arch.name, arch.name) })
                }
            }
        }
        // An artifact is unpacked (locally, once): its headers and scripts are needed to list.
        Some(path) => open_path(std::path::Path::new(path), arch).map(|k| Peek::Ready(Box::new(k))),
    }
}

/// `src-7.2.13` or `src-7.2.13+v2-replace-set`: short, stable trial names.
fn source_id(series: &[PathBuf], release: &str) -> String {
    let series: Vec<String> = series
        .iter()
        .map(|p| p.file_name().map(|n| n.to_string_lossy().trim_end_matches(".mbox").to_string()).unwrap_or_default())
        .collect();
    if series.is_empty() {
        format!("src-{release}")
    } else {
        format!("src-{release}+{}", series.join("+"))
    }
}
