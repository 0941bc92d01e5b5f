//! Prebuilt modules: a case may name a livepatch or target module by its
//! `.ko` file (a distribution's livepatch package, `kpatch-build` or
//! `klp-build` output) instead of having klpt generate it. The case loader
//! has already checked what needs no kernel (an ELF module, its name, its
//! livepatch flag); here, before any guest boots, the module is checked
//! against the kernel under test: its architecture, its vermagic and, on a
//! kernel with `CONFIG_MODVERSIONS`, the CRCs of the symbols it imports. A
//! mismatch is a harness error naming both sides and how to rebuild, never an
//! `insmod` failure in the guest.
//!
//! The module then goes through the module cache like a built one: stored
//! under a key of the kernel, the name and the file's bytes, and uploaded
//! from there. The stored copy is the one that was checked, so a file
//! rewritten during a run cannot slip unchecked bytes into a guest.

use super::build::Source;
use crate::case::ko::{self, Ko};
use crate::error::{Error, IoContext, Result};
use crate::kernel::Kernel;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A module file named by a case.
pub struct Prebuilt<'a> {
    pub name: &'a str,
    pub path: &'a Path,
    pub livepatch: bool,
}

impl Prebuilt<'_> {
    fn what(&self) -> String {
        let kind = if self.livepatch { "livepatch" } else { "target module" };
        format!("prebuilt {kind} `{}` ({})", self.name, self.path.display())
    }
}

/// Every prebuilt module of `case`, targets first.
pub fn of(case: &crate::case::Case) -> Vec<Prebuilt<'_>> {
    let targets = case
        .doc
        .targets
        .iter()
        .filter_map(|t| Some(Prebuilt { name: &t.name, path: t.ko.as_deref()?, livepatch: false }));
    let patches = case
        .doc
        .livepatches
        .iter()
        .filter_map(|l| Some(Prebuilt { name: &l.name, path: l.ko.as_deref()?, livepatch: true }));
    targets.chain(patches).collect()
}

/// Checks `m` against kernel `k` and stores it in the module cache; returns
/// the cached `.ko`.
pub fn prepare(m: &Prebuilt, k: &Kernel) -> Result<PathBuf> {
    let setup = |msg: String| Error::Setup(format!("{}: {msg}", m.what()));
    let bytes = ko::read(m.path).map_err(setup)?;
    let key = crate::cache::Hasher::new()
        .part("kernel", &k.build_hash)
        .part("arch", k.arch.name)
        .part("name", m.name)
        .part("prebuilt", &bytes)
        .hex();
    let root = crate::cache::dir("modules");
    let dest = root.join(format!("{}-{key}", m.name));
    let cached = dest.join(format!("{}.ko", m.name));
    // Only checked bytes are ever stored under a key naming this kernel.
    if cached.exists() {
        return Ok(cached);
    }
    let info = Ko::parse(&bytes).map_err(setup)?;
    info.check_identity(m.name, m.livepatch).map_err(|(msg, hint)| setup(format!("{msg}\n  hint: {hint}")))?;
    check_kernel(m, &info, k)?;
    let tmp =
        crate::cache::Scratch::new(&root, super::build::PREBUILT_PREFIX).ctx(|| "create module cache dir".into())?;
    std::fs::write(tmp.path().join(format!("{}.ko", m.name)), &bytes).ctx(|| "store prebuilt module".into())?;
    std::fs::write(tmp.path().join("SOURCE"), format!("{}\n", m.path.display()))
        .ctx(|| "store prebuilt module".into())?;
    tmp.publish(&dest).ctx(|| format!("store module in {}", dest.display()))?;
    Ok(cached)
}

/// The checks that need the kernel: architecture, vermagic, symbol CRCs.
fn check_kernel(m: &Prebuilt, info: &Ko, k: &Kernel) -> Result<()> {
    let rebuild = rebuild_hint(k);
    if (info.machine, info.big_endian) != (k.arch.elf_machine, k.arch.big_endian) {
        return Err(Error::Setup(format!(
            "{}: built for another architecture (ELF machine {}, {}), but {} is {} (ELF machine {}, {})\n  {rebuild}",
            m.what(),
            info.machine,
            endian(info.big_endian),
            k.id,
            k.arch.name,
            k.arch.elf_machine,
            endian(k.arch.big_endian)
        )));
    }
    let want = vermagic(k)?;
    match info.info("vermagic") {
        None => {
            return Err(Error::Setup(format!(
                "{}: the module has no `vermagic=` in its `.modinfo`, so no kernel would load it\n  {rebuild}",
                m.what()
            )));
        }
        // Exact equality, stricter than the kernel, which with CRCs ignores
        // the release part: a livepatch is specific to one kernel build (its
        // relocations and `sympos` name that build's symbols).
        Some(got) if got != want => {
            return Err(Error::Setup(format!(
                "{}: built for another kernel: its vermagic is `{got}`, but kernel {} (release {}) needs `{want}`\n  {rebuild}",
                m.what(),
                k.id,
                k.release
            )));
        }
        Some(_) => {}
    }
    let bad = crc_mismatches(info, k)?;
    if !bad.is_empty() {
        let shown: Vec<String> = bad
            .iter()
            .take(5)
            .map(|(s, mine, theirs)| format!("`{s}` (module 0x{mine:08x}, kernel 0x{theirs:08x})"))
            .collect();
        let more = if bad.len() > 5 { format!(" and {} more", bad.len() - 5) } else { String::new() };
        return Err(Error::Setup(format!(
            "{}: same vermagic, but built against another build of kernel {}: symbol versions (CONFIG_MODVERSIONS) differ for {}{more}; the kernel would refuse it (\"disagrees about version of symbol\")\n  {rebuild}",
            m.what(),
            k.id,
            shown.join(", ")
        )));
    }
    Ok(())
}

fn endian(big: bool) -> &'static str {
    if big {
        "big-endian"
    } else {
        "little-endian"
    }
}

fn rebuild_hint(k: &Kernel) -> String {
    let cross = match k.arch.cross_compile() {
        "" => String::new(),
        c => format!(" ARCH={} CROSS_COMPILE={c}", k.arch.kbuild),
    };
    format!(
        "hint: rebuild the module against this kernel's build tree: `make -C {}{cross} M=<the module's source directory> modules` (kpatch-build and klp-build take this kernel's tree and vmlinux likewise), or run the case on the kernel it was built for",
        k.build_dir.display()
    )
}

/// The tiny module whose vermagic is the kernel's.
const PROBE: &str = "// SPDX-License-Identifier: GPL-2.0\n/* Built by klpt only to read the vermagic this kernel's Kbuild gives modules. */\n#include <linux/module.h>\nMODULE_LICENSE(\"GPL\");\nMODULE_DESCRIPTION(\"klpt vermagic probe\");\n";

/// The vermagic the kernel under test expects, read from a module klpt
/// builds for it with its own Kbuild (cached with the other modules, once
/// per build tree).
///
/// Why not compute it from the build tree: `VERMAGIC_STRING` is composed in
/// `include/linux/vermagic.h` from `UTS_RELEASE` and config-dependent parts
/// (`SMP`, `preempt`/`preempt_rt`, `mod_unload`, `modversions`, an
/// architecture part such as arm64's `aarch64`, the randstruct seed's
/// hash), and both the parts and their order have changed across releases
/// (the gcc version was dropped, `MODULE_RANDSTRUCT_PLUGIN` became
/// `MODULE_RANDSTRUCT`). Re-implementing the header would be one more thing
/// to keep in step with every kernel; the kernel's Kbuild composes it
/// exactly, for any kernel, at the cost of one small cached build.
pub fn vermagic(k: &Kernel) -> Result<String> {
    static MEMO: Mutex<BTreeMap<(String, &'static str), String>> = Mutex::new(BTreeMap::new());
    let id = (k.build_hash.clone(), k.arch.name);
    if let Some(v) = MEMO.lock().unwrap_or_else(|e| e.into_inner()).get(&id) {
        return Ok(v.clone());
    }
    let probe = Source { name: "klpt_vermagic".into(), c: PROBE.into() };
    let built = super::build::build_one(&probe, k)?;
    let bytes = ko::read(&built).map_err(Error::Other)?;
    let v = Ko::parse(&bytes)
        .ok()
        .and_then(|i| i.info("vermagic").map(str::to_string))
        .ok_or_else(|| Error::Other(format!("{}: the vermagic probe module has no vermagic", built.display())))?;
    MEMO.lock().unwrap_or_else(|e| e.into_inner()).insert(id, v.clone());
    Ok(v)
}

/// On a kernel with `CONFIG_MODVERSIONS`, the imported symbols whose CRC in
/// the module differs from the one in the kernel's `Module.symvers`, as
/// (symbol, module's CRC, kernel's CRC). Symbols the kernel does not export
/// (another module's, e.g. a prebuilt target's) are not klpt's to judge.
fn crc_mismatches(info: &Ko, k: &Kernel) -> Result<Vec<(String, u32, u32)>> {
    if info.versions.is_empty() {
        return Ok(Vec::new());
    }
    let config = std::fs::read_to_string(&k.config).ctx(|| format!("read {}", k.config.display()))?;
    if !config.lines().any(|l| l == "CONFIG_MODVERSIONS=y") {
        return Ok(Vec::new());
    }
    let symvers_path = k.build_dir.join("Module.symvers");
    let symvers = std::fs::read_to_string(&symvers_path).ctx(|| format!("read {}", symvers_path.display()))?;
    let crcs: BTreeMap<&str, u32> = symvers
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let crc = u32::from_str_radix(f.next()?.trim_start_matches("0x"), 16).ok()?;
            Some((f.next()?, crc))
        })
        .collect();
    Ok(info
        .versions
        .iter()
        .filter_map(|(crc, sym)| crcs.get(sym.as_str()).filter(|&&c| c != *crc).map(|&c| (sym.clone(), *crc, c)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::ko::test_elf;

    /// A kernel with just a config and a `Module.symvers` (no image, no headers).
    fn kernel(dir: &Path, modversions: bool) -> Kernel {
        let config = dir.join("config");
        std::fs::write(
            &config,
            if modversions { "CONFIG_MODVERSIONS=y\n" } else { "# CONFIG_MODVERSIONS is not set\n" },
        )
        .unwrap();
        std::fs::write(dir.join("Module.symvers"), "0x11111111\tklp_enable_patch\tvmlinux\tEXPORT_SYMBOL_GPL\t\n0x22222222\tseq_puts\tvmlinux\tEXPORT_SYMBOL\t\n").unwrap();
        Kernel {
            id: "test-kernel".into(),
            arch: crate::arch::X86_64,
            release: "6.1.0-test".into(),
            image: dir.join("image"),
            build_dir: dir.to_path_buf(),
            source_dirs: Vec::new(),
            config,
            system_map: None,
            modules_dir: None,
            build_hash: "test".into(),
            origin: Default::default(),
        }
    }

    fn versions(entries: &[(u32, &str)]) -> Vec<u8> {
        let mut v = Vec::new();
        for (crc, name) in entries {
            v.extend(u64::from(*crc).to_le_bytes());
            let mut n = name.as_bytes().to_vec();
            n.resize(56, 0);
            v.extend(n);
        }
        v
    }

    #[test]
    fn symbol_versions_are_compared_only_with_modversions() {
        let dir = tempfile::tempdir().unwrap();
        let v = versions(&[
            (0x11111111, "klp_enable_patch"),
            (0x33333333, "seq_puts"),
            (0x44444444, "klpt_other_module_export"),
        ]);
        let ko = Ko::parse(&test_elf(false, 1, &[(".modinfo", b"name=m\0livepatch=Y\0"), ("__versions", &v)])).unwrap();
        // Only the symbol the kernel exports with another CRC; another module's export is not judged.
        assert_eq!(
            crc_mismatches(&ko, &kernel(dir.path(), true)).unwrap(),
            vec![("seq_puts".to_string(), 0x33333333, 0x22222222)]
        );
        assert!(crc_mismatches(&ko, &kernel(dir.path(), false)).unwrap().is_empty());
    }

    #[test]
    fn only_generated_modules_have_c() {
        use crate::case::prebuilt::tests::{parse, GOOD};
        let c = parse(GOOD).unwrap();
        let names: Vec<String> =
            crate::modules::build::sources(&c, &Default::default()).into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["klpt_gen"]);
        assert_eq!(
            of(&c).iter().map(|m| (m.name, m.livepatch)).collect::<Vec<_>>(),
            [("klpt_pbt", false), ("klpt_pb", true)]
        );
    }

    #[test]
    fn another_architecture_is_a_setup_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.ko");
        // A big-endian s390x module against an x86_64 kernel.
        std::fs::write(
            &path,
            test_elf(true, 1, &[(".modinfo", b"name=klpt_m\0livepatch=Y\0vermagic=6.1.0-test SMP \0")]),
        )
        .unwrap();
        let m = Prebuilt { name: "klpt_m", path: &path, livepatch: true };
        let k = kernel(dir.path(), true);
        let info = Ko::parse(&std::fs::read(&path).unwrap()).unwrap();
        let e = check_kernel(&m, &info, &k).unwrap_err();
        assert!(matches!(e, Error::Setup(_)));
        let e = e.to_string();
        assert!(e.starts_with("prebuilt livepatch `klpt_m`") && e.contains("built for another architecture (ELF machine 22, big-endian), but test-kernel is x86_64 (ELF machine 62, little-endian)"), "{e}");
        assert!(e.contains(&format!("make -C {}", dir.path().display())), "{e}");
    }
}
