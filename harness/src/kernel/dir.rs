//! `--kernel DIR`: a kernel build tree (or a directory with the image and a
//! `build/` tree), as `make O=DIR` or `klpt kernel build` leaves it.

use super::Kernel;
use crate::arch::Arch;
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

pub fn open(dir: &Path, arch: Arch) -> Result<Kernel> {
    let dir =
        std::fs::canonicalize(dir).map_err(|e| Error::Kernel { dir: dir.into(), msg: format!("cannot open: {e}") })?;
    let build = if dir.join("Module.symvers").exists() { dir.clone() } else { dir.join("build") };
    let fail = |msg: String| Error::Kernel { dir: dir.clone(), msg };
    if !build.join("Module.symvers").exists() {
        return Err(fail(
            "no Module.symvers here or in build/: not a kernel build tree (run `make modules_prepare` or a full build)"
                .into(),
        ));
    }
    // An x86 vmlinux with a PVH note boots without decompression.
    let pvh = Some(build.join("vmlinux")).filter(|p| arch.name == "x86_64" && p.exists() && super::pvh::is_pvh(p));
    let image = match pvh {
        Some(p) => p,
        None => arch
            .images
            .iter()
            .flat_map(|i| [dir.join(i), build.join(i), dir.join(Path::new(i).file_name().unwrap_or_default())])
            .chain([dir.join("image")])
            .find(|p| p.is_file())
            .ok_or_else(|| fail(format!("no kernel image (looked for {} and `image`)", arch.images.join(", "))))?,
    };
    let config = build.join(".config");
    if !config.exists() {
        return Err(fail("no .config in the build tree".into()));
    }
    let release = std::fs::read_to_string(build.join("include/config/kernel.release"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let system_map = Some(build.join("System.map")).filter(|p| p.exists());
    // `make O=` trees link to their source; Debian-style trees carry headers.
    // Debian-style header trees include the common headers from their Makefile.
    let included = std::fs::read_to_string(build.join("Makefile"))
        .ok()
        .and_then(|m| m.lines().find_map(|l| l.strip_prefix("include ").map(|p| PathBuf::from(p.trim()))))
        .and_then(|p| p.parent().map(Path::to_path_buf));
    let source_dirs: Vec<PathBuf> = [Some(build.join("source")), Some(build.clone()), included]
        .into_iter()
        .flatten()
        .filter(|p| p.join("include/linux/livepatch.h").exists())
        .collect();
    let build_hash = crate::cache::Hasher::new()
        .part("release", &release)
        .file("config", &config)
        .and_then(|h| h.file("symvers", &build.join("Module.symvers")))
        .map(|h| h.hex())
        .map_err(|e| fail(format!("cannot hash build tree: {e}")))?;
    let name = dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    // Installed modules (`make modules_install INSTALL_MOD_PATH=DIR`), if any.
    let modules_dir = std::fs::read_dir(dir.join("lib/modules"))
        .ok()
        .and_then(|rd| rd.flatten().map(|e| e.path()).find(|p| p.join("kernel").is_dir()));
    Ok(Kernel {
        id: format!("{name}-{release}"),
        arch,
        release,
        image,
        build_dir: build,
        source_dirs,
        config,
        system_map,
        modules_dir,
        build_hash,
        origin: super::origin::Origin { source: format!("build-dir:{}", dir.display()), ..Default::default() },
    })
}
