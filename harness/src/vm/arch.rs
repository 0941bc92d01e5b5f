//! QEMU's side of each architecture ([`crate::arch`] has the rest): the
//! system emulator, machine, console and virtio transport, as data.

use crate::arch::Arch;

#[derive(Debug)]
pub struct Profile {
    /// The system emulator's binary.
    pub qemu: &'static str,
    /// Debian's package of it.
    pub package: &'static str,
    /// Machine, CPU and firmware options.
    pub machine: &'static [&'static str],
    pub console: &'static str,
    /// Virtio transport suffix (`pci` or `ccw`).
    pub virtio: &'static str,
    /// The guest can report a panic to QEMU natively.
    pub native_panic: bool,
    /// Oldest QEMU major version that runs this guest correctly under TCG.
    pub min_qemu: Option<u32>,
    /// Under TCG, run a guest's vCPUs on one host thread, not one each:
    /// multi-threaded TCG sometimes keeps running code another vCPU has
    /// patched (Debian's QEMU 7.2, arm64: in 2 of 8 trials, a function
    /// ftrace had just hooked was never traced while two vCPUs called it
    /// 100,000 times a second, and syscall-01's patched getpid went
    /// uncalled for 30 s; 0 of 12 with one thread; x86_64, s390x and
    /// ppc64le: 0 of 12 either way).
    pub tcg_one_thread: bool,
}

/// Per architecture, in the order of [`crate::arch::ALL`].
static PROFILES: [(&str, Profile); 4] = [
    (
        "x86_64",
        Profile {
            qemu: "qemu-system-x86_64",
            package: "qemu-system-x86",
            machine: &["-M", "q35", "-cpu", "max"],
            console: "ttyS0",
            virtio: "pci",
            native_panic: false,
            min_qemu: None,
            tcg_one_thread: false,
        },
    ),
    (
        "arm64",
        Profile {
            qemu: "qemu-system-aarch64",
            package: "qemu-system-arm",
            machine: &["-M", "virt,gic-version=3", "-cpu", "cortex-a57"],
            console: "ttyAMA0",
            virtio: "pci",
            native_panic: false,
            min_qemu: None,
            tcg_one_thread: true,
        },
    ),
    (
        "s390x",
        Profile {
            qemu: "qemu-system-s390x",
            package: "qemu-system-misc",
            machine: &["-M", "s390-ccw-virtio", "-cpu", "max"],
            console: "ttysclp0",
            virtio: "ccw",
            native_panic: true,
            min_qemu: Some(8),
            tcg_one_thread: false,
        },
    ),
    (
        "ppc64le",
        Profile {
            qemu: "qemu-system-ppc64",
            package: "qemu-system-ppc",
            machine: &[
                "-M",
                "pseries,x-vof=on,cap-cfpc=broken,cap-sbbc=broken,cap-ibs=broken,cap-ccf-assist=off",
                "-cpu",
                "POWER9",
            ],
            console: "hvc0",
            virtio: "pci",
            native_panic: true,
            min_qemu: None,
            tcg_one_thread: false,
        },
    ),
];

/// How QEMU runs a guest of `arch`.
pub fn profile(arch: Arch) -> &'static Profile {
    // Every `Arch` is one of `crate::arch::ALL`, each with a profile (tested).
    &PROFILES.iter().find(|(n, _)| *n == arch.name).expect("every architecture has a QEMU profile").1
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_architecture_has_a_profile() {
        assert_eq!(super::PROFILES.iter().map(|(n, _)| *n).collect::<Vec<_>>(), crate::arch::ARCHES);
    }
}
