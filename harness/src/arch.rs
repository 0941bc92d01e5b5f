//! The architectures klpt tests, as data shared by every layer: names (the
//! case files' `arches:`), and what building and packaging for each needs.
//! QEMU's side of an architecture is `vm::arch`. Code elsewhere never
//! matches on names.

/// klpt's names, also the guests' `uname -m`.
pub const ARCHES: [&str; 4] = ["x86_64", "arm64", "s390x", "ppc64le"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arch {
    /// klpt's name, also the `uname -m` of the guest.
    pub name: &'static str,
    /// Debian's architecture name.
    pub deb: &'static str,
    /// Kbuild's `ARCH=`.
    pub kbuild: &'static str,
    /// Debian cross compiler prefix (used when the host is another arch).
    pub cross: &'static str,
    /// Debian multiarch triplet of the guest libraries.
    pub triplet: &'static str,
    /// Kernel image paths inside a build tree, in order of preference.
    pub images: &'static [&'static str],
    /// Debian's metapackage for the current kernel of this arch.
    pub deb_kernel_meta: &'static str,
    pub deb_headers_meta: &'static str,
    /// ELF `e_machine` and byte order of the kernel's modules.
    pub elf_machine: u16,
    pub big_endian: bool,
}

pub const X86_64: Arch = Arch {
    name: "x86_64",
    deb: "amd64",
    kbuild: "x86",
    cross: "x86_64-linux-gnu-",
    triplet: "x86_64-linux-gnu",
    images: &["arch/x86/boot/bzImage"],
    deb_kernel_meta: "linux-image-amd64",
    deb_headers_meta: "linux-headers-amd64",
    elf_machine: 62, /* EM_X86_64 */
    big_endian: false,
};

pub const ARM64: Arch = Arch {
    name: "arm64",
    deb: "arm64",
    kbuild: "arm64",
    cross: "aarch64-linux-gnu-",
    triplet: "aarch64-linux-gnu",
    images: &["arch/arm64/boot/Image"],
    deb_kernel_meta: "linux-image-arm64",
    deb_headers_meta: "linux-headers-arm64",
    elf_machine: 183, /* EM_AARCH64 */
    big_endian: false,
};

pub const S390X: Arch = Arch {
    name: "s390x",
    deb: "s390x",
    kbuild: "s390",
    cross: "s390x-linux-gnu-",
    triplet: "s390x-linux-gnu",
    images: &["arch/s390/boot/bzImage"],
    deb_kernel_meta: "linux-image-s390x",
    deb_headers_meta: "linux-headers-s390x",
    elf_machine: 22, /* EM_S390 */
    big_endian: true,
};

pub const PPC64LE: Arch = Arch {
    name: "ppc64le",
    deb: "ppc64el",
    kbuild: "powerpc",
    cross: "powerpc64le-linux-gnu-",
    triplet: "powerpc64le-linux-gnu",
    images: &["vmlinux"],
    deb_kernel_meta: "linux-image-powerpc64le",
    deb_headers_meta: "linux-headers-powerpc64le",
    elf_machine: 21, /* EM_PPC64 */
    big_endian: false,
};

pub const ALL: [Arch; 4] = [X86_64, ARM64, S390X, PPC64LE];

impl Arch {
    pub fn by_name(name: &str) -> Option<Arch> {
        let n = match name {
            "amd64" => "x86_64",
            "aarch64" => "arm64",
            "ppc64el" => "ppc64le",
            n => n,
        };
        ALL.iter().copied().find(|a| a.name == n)
    }

    /// The architecture klpt itself runs on.
    pub fn host() -> Option<Arch> {
        Arch::by_name(std::env::consts::ARCH)
    }

    /// `CROSS_COMPILE=` value: empty when building natively.
    pub fn cross_compile(&self) -> &'static str {
        if Arch::host() == Some(*self) {
            ""
        } else {
            self.cross
        }
    }
}

/// A value worked out once per architecture and run (which QEMU binary,
/// whether KVM works), shared by every target of that architecture.
pub struct PerArch<T>(std::sync::Mutex<Vec<(&'static str, T)>>);

impl<T: Clone> PerArch<T> {
    pub const fn new() -> Self {
        Self(std::sync::Mutex::new(Vec::new()))
    }

    /// The value for `arch`, computed by `f` the first time. The lock is not
    /// held while `f` runs (it may boot a guest or download a package).
    pub fn get_or_try<E>(&self, arch: Arch, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let find = || {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .find(|(n, _)| *n == arch.name)
                .map(|(_, v)| v.clone())
        };
        if let Some(v) = find() {
            return Ok(v);
        }
        let v = f()?;
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push((arch.name, v.clone()));
        Ok(v)
    }
}

impl<T: Clone> Default for PerArch<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_names_are_the_profiles() {
        assert_eq!(ALL.map(|a| a.name), ARCHES);
        assert_eq!(Arch::by_name("aarch64"), Some(ARM64));
        assert_eq!(Arch::by_name("ppc64el"), Some(PPC64LE));
    }
}
