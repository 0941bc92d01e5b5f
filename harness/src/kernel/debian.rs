//! Debian's current kernel for an architecture: image and headers resolved
//! through the metapackages and unpacked privately (never installed).

use super::Kernel;
use crate::apt::{self, Apt};
use crate::arch::Arch;
use crate::error::{Error, IoContext, Result};
use std::path::Path;

/// Which kernel "Debian's current kernel" is: its trial id (`debian-<release>`)
/// and whether klpt has it unpacked already. Reads the private apt's
/// metadata only (refreshing its lists); downloads no package.
pub fn peek(arch: Arch) -> Result<(String, bool)> {
    let apt = Apt::new(&apt::host_codename(), arch.deb)?;
    apt.update()?;
    let image_pkg = apt.resolve(arch.deb_kernel_meta, "linux-image-")?;
    let id = format!("debian-{}", release_of(&image_pkg));
    let ready = crate::cache::root().join("kernels").join(&id).join(".klpt-ready").exists();
    Ok((id, ready))
}

/// `linux-image-6.1.0-50-amd64[-unsigned]` → `6.1.0-50-amd64`.
fn release_of(image_pkg: &str) -> String {
    image_pkg.trim_start_matches("linux-image-").trim_end_matches("-unsigned").to_string()
}

pub fn current(arch: Arch) -> Result<Kernel> {
    let apt = Apt::new(&apt::host_codename(), arch.deb)?;
    apt.update()?;
    let image_pkg = apt.resolve(arch.deb_kernel_meta, "linux-image-")?;
    let headers_pkg = apt.resolve(arch.deb_headers_meta, "linux-headers-")?;
    let common_pkg = apt.resolve(&headers_pkg, "linux-headers-")?;
    let kbuild_pkg = apt.resolve(&headers_pkg, "linux-kbuild-")?;
    let release = release_of(&image_pkg);
    let id = format!("debian-{release}");
    let root = crate::cache::root().join("kernels").join(&id);
    if !root.join(".klpt-ready").exists() {
        let debs = apt.download(&[image_pkg.clone(), headers_pkg.clone(), common_pkg.clone(), kbuild_pkg])?;
        crate::event::stage(&format!("kernel: unpacking {id}"), || unpack(&debs, &root, &release, &common_pkg))?;
    } else {
        crate::event::emit(crate::event::Event::Cached { what: &format!("kernel {id}") });
    }
    let build_dir = root.join("usr/src").join(&headers_pkg);
    let build_hash = crate::cache::Hasher::new()
        .part("id", &id)
        .file("symvers", &build_dir.join("Module.symvers"))
        .ctx(|| format!("read {}/Module.symvers", build_dir.display()))?
        .hex();
    let bzimage = root.join(format!("boot/vmlinuz-{release}"));
    // Booting the uncompressed PVH vmlinux saves the XZ decompression under TCG.
    let image = if arch.name == "x86_64" && std::env::var_os("KLPT_BZIMAGE").is_none() {
        super::pvh::vmlinux_for(&bzimage).unwrap_or(bzimage)
    } else {
        bzimage
    };
    Ok(Kernel {
        id,
        arch,
        image,
        source_dirs: vec![root.join("usr/src").join(&common_pkg)],
        build_dir,
        config: root.join(format!("boot/config-{release}")),
        system_map: Some(root.join(format!("boot/System.map-{release}"))),
        modules_dir: Some(root.join(format!("lib/modules/{release}"))),
        origin: super::origin::Origin {
            source: format!("debian-package:{image_pkg}"),
            config_hash: super::origin::file_sha256(&root.join(format!("boot/config-{release}"))).ok(),
            ..Default::default()
        },
        release,
        build_hash,
    })
}

/// Unpacks into a temporary directory, makes the headers usable where they
/// are, then moves the tree into place.
fn unpack(debs: &[std::path::PathBuf], root: &Path, release: &str, common_pkg: &str) -> Result<()> {
    let parent = root.parent().expect("cache path has a parent");
    std::fs::create_dir_all(parent).ctx(|| format!("create {}", parent.display()))?;
    let tmp = crate::cleanup::TempDir::new_in(parent, ".unpack-").ctx(|| "create temp dir".into())?;
    for d in debs {
        apt::unpack(d, tmp.path())?;
    }
    // The headers' Makefile includes the common headers by absolute path;
    // point it at the unpacked copy (final location).
    let mk = tmp.path().join(format!("usr/src/linux-headers-{release}/Makefile"));
    let text = std::fs::read_to_string(&mk).ctx(|| format!("read {}", mk.display()))?;
    let abs = format!("/usr/src/{common_pkg}/");
    if !text.contains(&abs) {
        return Err(Error::Kernel {
            dir: mk,
            msg: format!("expected an include of {abs}; Debian changed the headers layout"),
        });
    }
    let fixed = text.replace(&abs, &format!("{}/usr/src/{common_pkg}/", root.display()));
    std::fs::write(&mk, fixed).ctx(|| format!("write {}", mk.display()))?;
    std::fs::write(tmp.path().join(".klpt-ready"), "").ctx(|| "write marker".into())?;
    crate::cache::publish_temp(tmp, root).ctx(|| format!("move kernel into {}", root.display()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn release_from_the_image_package() {
        assert_eq!(super::release_of("linux-image-6.1.0-50-amd64"), "6.1.0-50-amd64");
        assert_eq!(super::release_of("linux-image-6.1.0-50-amd64-unsigned"), "6.1.0-50-amd64");
    }
}
