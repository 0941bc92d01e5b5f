//! Kernel artifacts: a bootable image plus the build tree that out-of-tree
//! modules are compiled against, and what the kernel can do (probed from its
//! config, symbol table and headers, never from its version number).

pub mod caps;
pub mod debian;
pub mod dir;
pub mod pvh;

use crate::vm::Arch;
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
}

/// What `--kernel` names: nothing (Debian's current kernel) or a directory.
pub fn resolve(spec: Option<&str>, arch: Arch) -> crate::error::Result<Kernel> {
    match spec {
        None | Some("debian") => debian::current(arch),
        Some(path) => dir::open(std::path::Path::new(path), arch),
    }
}
