//! Builds a case's modules with the kernel's own Kbuild, cached by the hash
//! of the generated source and the build tree it is compiled against.

use super::gen;
use crate::kernel::caps::Caps;
use crate::case::Case;
use crate::error::{Error, IoContext, Result};
use crate::kernel::Kernel;
use std::collections::BTreeMap;
use crate::cache::Scratch;
use crate::event::{emit, try_stage, Event};
use crate::cleanup::spawn_group;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// One module's generated source.
pub struct Source {
    pub name: String,
    pub c: String,
}

/// All modules of a case klpt generates (not the prebuilt ones), targets first.
pub fn sources(case: &Case, caps: &Caps) -> Vec<Source> {
    let targets = case.doc.targets.iter().filter(|t| t.ko.is_none()).map(|t| Source { name: t.name.clone(), c: gen::target_c(case, t) });
    let patches = (0..case.doc.livepatches.len()).filter(|&i| case.doc.livepatches[i].ko.is_none()).map(|i| Source { name: case.doc.livepatches[i].name.clone(), c: gen::livepatch_c(case, i, caps) });
    targets.chain(patches).collect()
}

/// Builds (or reuses) every module and every program the case spawns;
/// returns name → file (`.ko` for a module), uploaded to the guest's /root
/// under the file's name. Prebuilt modules are checked against the kernel
/// first: a mismatch is found before anything compiles or boots.
pub fn build_all(case: &Case, k: &Kernel, caps: &Caps) -> Result<BTreeMap<String, PathBuf>> {
    sweep();
    let mut out = BTreeMap::new();
    for m in super::prebuilt::of(case) {
        out.insert(m.name.to_string(), super::prebuilt::prepare(&m, k)?);
    }
    for s in sources(case, caps) {
        let ko = build_one(&s, k)?;
        out.insert(s.name, ko);
    }
    for p in super::program::programs(case) {
        out.insert(super::program::file(p), super::program::build(p, k)?);
    }
    Ok(out)
}

/// Removes the partial module builds (and prebuilt copies) of killed runs
/// (see `cache::sweep`).
pub fn sweep() {
    let root = crate::cache::dir("modules");
    for prefix in [BUILD_PREFIX, PREBUILT_PREFIX] {
        for d in crate::cache::sweep(&root, prefix) {
            emit(Event::Note { msg: &format!("modules: removed {}, left by an interrupted run", d.display()) });
        }
    }
}

/// Module builds happen in `modules/.build-XXXX` and are renamed into place when done.
const BUILD_PREFIX: &str = ".build-";
/// Prebuilt modules are copied into `modules/.prebuilt-XXXX` first, likewise.
pub(super) const PREBUILT_PREFIX: &str = ".prebuilt-";

/// Where the module built from `s` for `k` is cached (its `.ko` inside).
fn cached(s: &Source, k: &Kernel) -> PathBuf {
    let key = crate::cache::Hasher::new()
        .part("kernel", &k.build_hash)
        .part("arch", k.arch.name)
        .part("cross", k.arch.cross_compile())
        .part("name", &s.name)
        .part("c", &s.c)
        .hex();
    crate::cache::dir("modules").join(format!("{}-{key}", s.name))
}

/// Builds every module `cases` need on `k` that is not cached yet in one
/// Kbuild call with a job per core, each module in a subdirectory of one
/// scratch tree (`obj-m += m0/ m1/ ...`): one `make` instead of one per
/// module. Best effort: when the batch fails (a module that does not
/// compile), each case builds its own modules as before, which names the
/// culprit at its case's line.
pub fn build_batch(cases: &[&Case], k: &Kernel, caps: &Caps) {
    sweep();
    let mut todo: BTreeMap<PathBuf, Source> = BTreeMap::new();
    for c in cases {
        for s in sources(c, caps) {
            let dest = cached(&s, k);
            if !dest.join(format!("{}.ko", s.name)).exists() {
                todo.insert(dest, s);
            }
        }
    }
    // Kbuild refuses two modules of one name in one build (modules-check):
    // a name's second version goes into the next call.
    let mut rounds: Vec<BTreeMap<PathBuf, Source>> = Vec::new();
    for (dest, s) in todo {
        match rounds.iter_mut().find(|r| !r.values().any(|o| o.name == s.name)) {
            Some(r) => {
                r.insert(dest, s);
            }
            None => rounds.push(BTreeMap::from([(dest, s)])),
        }
    }
    for round in rounds.into_iter().filter(|r| r.len() > 1) {
        batch(round, k);
    }
}

fn batch(todo: BTreeMap<PathBuf, Source>, k: &Kernel) {
    let jobs = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let what = format!("modules: building {} modules for {} in one Kbuild call (-j{jobs})", todo.len(), k.id);
    let _ = try_stage(&what, || -> Result<()> {
        let root = crate::cache::dir("modules");
        let tmp = Scratch::new(&root, BUILD_PREFIX).ctx(|| "create module build dir".into())?;
        let mut top = String::new();
        for (i, s) in todo.values().enumerate() {
            let d = tmp.path().join(format!("m{i}"));
            std::fs::create_dir(&d).ctx(|| "create module build dir".into())?;
            std::fs::write(d.join(format!("{}.c", s.name)), &s.c).ctx(|| "write module source".into())?;
            std::fs::write(d.join("Kbuild"), format!("obj-m := {}.o\n", s.name)).ctx(|| "write Kbuild".into())?;
            top.push_str(&format!("obj-m += m{i}/\n"));
        }
        std::fs::write(tmp.path().join("Kbuild"), top).ctx(|| "write Kbuild".into())?;
        kbuild_jobs(k, tmp.path(), jobs).map_err(|output| Error::ModuleBuild { module: format!("{} modules in one batch", todo.len()), output })?;
        for (i, dest) in todo.keys().enumerate() {
            crate::cache::publish(&tmp.path().join(format!("m{i}")), dest).ctx(|| format!("store module in {}", dest.display()))?;
        }
        Ok(())
    });
}

pub(super) fn build_one(s: &Source, k: &Kernel) -> Result<PathBuf> {
    let dest = cached(s, k);
    let ko = dest.join(format!("{}.ko", s.name));
    if ko.exists() {
        return Ok(ko);
    }
    let root = crate::cache::dir("modules");
    try_stage(&format!("modules: building {} for {}", s.name, k.id), || -> Result<()> {
        let tmp = Scratch::new(&root, BUILD_PREFIX).ctx(|| "create module build dir".into())?;
        std::fs::write(tmp.path().join(format!("{}.c", s.name)), &s.c).ctx(|| "write module source".into())?;
        std::fs::write(tmp.path().join("Kbuild"), format!("obj-m := {}.o\n", s.name)).ctx(|| "write Kbuild".into())?;
        kbuild(k, tmp.path()).map_err(|output| Error::ModuleBuild { module: s.name.clone(), output })?;
        tmp.publish(&dest).ctx(|| format!("store module in {}", dest.display()))
    })?;
    Ok(ko)
}

/// `make -C <build tree> M=<dir> modules`; the error is the compiler's output.
/// make runs in its own process group, killed with its compilers on
/// interruption, and dies with klpt (see `cleanup::spawn_group`).
pub fn kbuild(k: &Kernel, dir: &Path) -> std::result::Result<(), String> {
    kbuild_jobs(k, dir, 1)
}

/// [`kbuild`] with `jobs` parallel jobs.
fn kbuild_jobs(k: &Kernel, dir: &Path, jobs: usize) -> std::result::Result<(), String> {
    let mut cmd = Command::new("make");
    cmd.arg(format!("-j{jobs}")).arg("-C")
        .arg(&k.build_dir)
        .arg(format!("M={}", dir.display()))
        .arg(format!("ARCH={}", k.arch.kbuild))
        .arg(format!("CROSS_COMPILE={}", k.arch.cross_compile()))
        .arg("modules")
        .env("LC_ALL", "C")
        // gcc's own temporary files go into the build directory, and with it.
        .env("TMPDIR", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (child, _group) = spawn_group(&mut cmd).map_err(|e| format!("cannot run make: {e}"))?;
    let out = child.wait_with_output().map_err(|e| format!("cannot wait for make: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // Keep the compiler's diagnostics; drop make's directory chatter.
    let diag: Vec<&str> = text.lines().filter(|l| !l.starts_with("make") && !l.trim_start().starts_with("CC [M]")).collect();
    Err(diag.join("\n"))
}
