//! Builds a case's modules with the kernel's own Kbuild, cached by the hash
//! of the generated source and the build tree it is compiled against.

use super::gen;
use crate::kernel::caps::Caps;
use crate::case::Case;
use crate::error::{Error, IoContext, Result};
use crate::kernel::Kernel;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One module's generated source.
pub struct Source {
    pub name: String,
    pub c: String,
}

/// All modules of a case, targets first.
pub fn sources(case: &Case, caps: &Caps) -> Vec<Source> {
    let targets = case.doc.targets.iter().map(|t| Source { name: t.name.clone(), c: gen::target_c(case, t) });
    let patches = (0..case.doc.livepatches.len()).map(|i| Source { name: case.doc.livepatches[i].name.clone(), c: gen::livepatch_c(case, i, caps) });
    targets.chain(patches).collect()
}

/// Builds (or reuses) every module and every program the case spawns;
/// returns name → file (`.ko` for a module), uploaded to the guest's /root
/// under the file's name.
pub fn build_all(case: &Case, k: &Kernel, caps: &Caps) -> Result<BTreeMap<String, PathBuf>> {
    let mut out = BTreeMap::new();
    for s in sources(case, caps) {
        let ko = build_one(&s, k)?;
        out.insert(s.name, ko);
    }
    for p in super::program::programs(case) {
        out.insert(super::program::file(p), super::program::build(p, k)?);
    }
    Ok(out)
}

fn build_one(s: &Source, k: &Kernel) -> Result<PathBuf> {
    let key = crate::cache::Hasher::new()
        .part("kernel", &k.build_hash)
        .part("arch", k.arch.name)
        .part("cross", k.arch.cross_compile())
        .part("name", &s.name)
        .part("c", &s.c)
        .hex();
    let root = crate::cache::dir("modules");
    let dest = root.join(format!("{}-{key}", s.name));
    let ko = dest.join(format!("{}.ko", s.name));
    if ko.exists() {
        return Ok(ko);
    }
    let tmp = crate::vm::cleanup::TempDir::new_in(&root, ".build-").ctx(|| "create module build dir".into())?;
    std::fs::write(tmp.path().join(format!("{}.c", s.name)), &s.c).ctx(|| "write module source".into())?;
    std::fs::write(tmp.path().join("Kbuild"), format!("obj-m := {}.o\n", s.name)).ctx(|| "write Kbuild".into())?;
    kbuild(k, tmp.path()).map_err(|output| Error::ModuleBuild { module: s.name.clone(), output })?;
    let built = tmp.keep();
    crate::cache::publish(&built, &dest).ctx(|| format!("store module in {}", dest.display()))?;
    Ok(ko)
}

/// `make -C <build tree> M=<dir> modules`; the error is the compiler's output.
pub fn kbuild(k: &Kernel, dir: &Path) -> std::result::Result<(), String> {
    let out = Command::new("make")
        .arg("-C")
        .arg(&k.build_dir)
        .arg(format!("M={}", dir.display()))
        .arg(format!("ARCH={}", k.arch.kbuild))
        .arg(format!("CROSS_COMPILE={}", k.arch.cross_compile()))
        .arg("modules")
        .env("LC_ALL", "C")
        .output()
        .map_err(|e| format!("cannot run make: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // Keep the compiler's diagnostics; drop make's directory chatter.
    let diag: Vec<&str> = text.lines().filter(|l| !l.starts_with("make") && !l.trim_start().starts_with("CC [M]")).collect();
    Err(diag.join("\n"))
}
