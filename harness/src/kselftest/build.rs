//! Builds the kernel tree's livepatch selftests for a kernel: the scripts as
//! they are, `test_modules` out of tree against the kernel's build directory
//! (`make -C <build dir> M=<copy of test_modules>`), and the
//! `test_klp-call_getpid` helper, statically linked, with the target's gcc.
//! Cached by everything that goes in; the result is laid out as an
//! installed kselftest (`livepatch/{*.sh,settings,test_klp-call_getpid,test_modules/*.ko}`).

use super::scripts::{self, Script};
use crate::apt::{self, Apt};
use crate::arch::Arch;
use crate::cache::Hasher;
use crate::cache::Scratch;
use crate::error::{Error, IoContext, Result};
use crate::event::{emit, try_stage, Event};
use crate::kernel::Kernel;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Where the suite lives in the guest: `cd` here, then `./test-x.sh`.
pub const GUEST_DIR: &str = "/root/kselftest/livepatch";

/// The selftests' directory inside a kernel tree.
const SUITE: &str = "tools/testing/selftests/livepatch";

/// The helper test-syscall.sh starts, one per CPU.
const HELPER: &str = "test_klp-call_getpid";

/// The built suite of one kernel.
pub struct Built {
    /// The kernel tree it came from.
    pub tree: PathBuf,
    pub scripts: Vec<Script>,
    /// The installed layout (`…/livepatch`), in klpt's cache.
    pub dir: PathBuf,
    /// Seconds the build took; None when it came from the cache.
    pub build_secs: Option<f64>,
}

impl Built {
    /// The files to put in the guest image, under [`GUEST_DIR`].
    pub fn image_files(&self) -> Result<Vec<crate::image::Extra>> {
        let mut out = Vec::new();
        let mut stack = vec![self.dir.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).ctx(|| format!("read {}", d.display()))?.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                let rel = p.strip_prefix(&self.dir).unwrap_or(&p).to_string_lossy().into_owned();
                let exec = rel.ends_with(".sh") || rel == HELPER;
                let data = std::fs::read(&p).ctx(|| format!("read {}", p.display()))?;
                out.push((
                    format!("{}/{rel}", GUEST_DIR.trim_start_matches('/')),
                    if exec { 0o755 } else { 0o644 },
                    data,
                ));
            }
        }
        out.sort();
        Ok(out)
    }
}

/// The kernel source tree of `k` that holds the livepatch selftests: the
/// `source` link of a `make O=` build directory, the tree a klpt-owned
/// `build-*` directory sits in, or the build directory itself (in-tree builds).
pub fn source_tree(k: &Kernel) -> Result<PathBuf> {
    let b = &k.build_dir;
    let mut candidates = vec![b.join("source")];
    candidates.extend(b.parent().map(Path::to_path_buf));
    candidates.push(b.clone());
    candidates.extend(k.source_dirs.iter().cloned());
    candidates
        .iter()
        .find(|c| c.join(SUITE).join("functions.sh").is_file())
        .map(|c| std::fs::canonicalize(c).unwrap_or_else(|_| c.clone()))
        .ok_or_else(|| {
            Error::Other(format!(
                "kernel {} has no source tree with {SUITE} (looked in {}); run the selftests with --kernel source, source:SERIES, or the build directory of a kernel tree",
                k.id,
                candidates.iter().map(|c| c.display().to_string()).collect::<Vec<_>>().join(", ")
            ))
        })
}

/// The scripts of `k`'s tree, read without building anything (for `--list`).
pub fn scripts_of(k: &Kernel) -> Result<Vec<Script>> {
    scripts::discover(&source_tree(k)?.join(SUITE))
}

/// Every file below `dir`, sorted, as (relative path, content).
fn tree_files(dir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).ctx(|| format!("read {}", d.display()))?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.is_file() {
                let rel = p.strip_prefix(dir).unwrap_or(&p).to_string_lossy().into_owned();
                out.push((rel, std::fs::read(&p).ctx(|| format!("read {}", p.display()))?));
            }
        }
    }
    out.sort();
    Ok(out)
}

fn gcc(arch: Arch) -> String {
    format!("{}gcc", arch.cross_compile())
}

/// Builds (or takes from the cache) the selftests of `k`'s tree.
pub fn build(k: &Kernel) -> Result<Built> {
    let tree = source_tree(k)?;
    build_suite(k, &tree.join(SUITE), &tree)
}

/// Builds the suite in `suite` (a directory laid out as the tree's
/// `tools/testing/selftests/livepatch`, from `tree`) against `k`.
pub fn build_suite(k: &Kernel, suite: &Path, tree: &Path) -> Result<Built> {
    let (suite, tree) = (suite.to_path_buf(), tree.to_path_buf());
    let modules_src = suite.join("test_modules");
    if !modules_src.join("Makefile").is_file() {
        return Err(Error::Other(format!(
            "{}: no test_modules/ (the layout since Linux 6.9); older trees build the test modules with the kernel (lib/livepatch), which klpt does not run",
            suite.display()
        )));
    }
    let scripts = scripts::discover(&suite)?;
    let files = tree_files(&suite)?;
    let version = Command::new(gcc(k.arch))
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").to_string())
        .unwrap_or_default();
    let mut h = Hasher::new();
    h.part("kernel", &k.build_hash)
        .part("arch", k.arch.name)
        .part("cross", k.arch.cross_compile())
        .part("gcc", &version);
    for (rel, data) in &files {
        h.part("name", rel).part("data", data);
    }
    let root = crate::cache::dir("kselftest");
    let dest = root.join(format!("{}-{}", k.arch.name, h.hex()));
    let dir = dest.join("livepatch");
    if dest.join(".klpt-built").exists() {
        emit(Event::Cached { what: &format!("kselftest build {}", dir.display()) });
        return Ok(Built { tree, scripts, dir, build_secs: None });
    }
    sweep(&root);
    let t0 = Instant::now();
    // Locked while it lives, so a later run's sweep tells it from a killed run's.
    let tmp = Scratch::new(&root, ".build-").ctx(|| "create kselftest build dir".into())?;
    try_stage(
        &format!(
            "kselftest: building {} test_modules and {HELPER} ({} scripts) from {}",
            k.arch.name,
            scripts.len(),
            tree.display()
        ),
        || -> Result<()> {
            // Out of tree, in a copy: the kernel tree is never written to.
            let work = tmp.path().join("work/test_modules");
            std::fs::create_dir_all(&work).ctx(|| "create work dir".into())?;
            for (rel, data) in files.iter().filter(|(r, _)| r.starts_with("test_modules/")) {
                let p = tmp.path().join("work").join(rel);
                if let Some(parent) = p.parent() {
                    std::fs::create_dir_all(parent).ctx(|| format!("create {}", parent.display()))?;
                }
                std::fs::write(&p, data).ctx(|| format!("write {}", p.display()))?;
            }
            crate::modules::build::kbuild(k, &work)
                .map_err(|output| Error::ModuleBuild { module: "kselftest test_modules".into(), output })?;
            let out = tmp.path().join("livepatch");
            std::fs::create_dir_all(out.join("test_modules")).ctx(|| "create livepatch dir".into())?;
            let mut kos = 0;
            for e in std::fs::read_dir(&work).ctx(|| "read test_modules".into())?.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "ko") {
                    std::fs::copy(&p, out.join("test_modules").join(e.file_name()))
                        .ctx(|| format!("copy {}", p.display()))?;
                    kos += 1;
                }
            }
            if kos == 0 {
                return Err(Error::ModuleBuild {
                    module: "kselftest test_modules".into(),
                    output: "make finished but built no .ko".into(),
                });
            }
            // The scripts and what they read, as `make install` would lay them out.
            for (rel, data) in
                files.iter().filter(|(r, _)| !r.contains('/') && (r.ends_with(".sh") || r.as_str() == "settings"))
            {
                std::fs::write(out.join(rel), data).ctx(|| format!("write {rel}"))?;
            }
            let helper_src = suite.join(format!("{HELPER}.c"));
            if helper_src.is_file() {
                static_binary(k.arch, &helper_src, &out.join(HELPER))?;
            }
            std::fs::write(tmp.path().join(".klpt-built"), tree.display().to_string())
                .ctx(|| "mark kselftest build".into())
        },
    )?;
    let _ = std::fs::remove_dir_all(tmp.path().join("work"));
    tmp.publish(&dest).ctx(|| format!("store {}", dest.display()))?;
    Ok(Built { tree, scripts, dir, build_secs: Some(t0.elapsed().as_secs_f64()) })
}

/// `gcc -static` for the target; a cross compiler without the target's C
/// library gets a sysroot of the target's Debian `libc6-dev` and
/// `linux-libc-dev`, fetched with klpt's private apt.
fn static_binary(arch: Arch, src: &Path, out: &Path) -> Result<()> {
    let compile = |extra: &[String]| {
        Command::new(gcc(arch))
            .args(["-static", "-O2", "-Wall"])
            .args(extra)
            .arg("-o")
            .arg(out)
            .arg(src)
            .env("LC_ALL", "C")
            .output()
    };
    let first = compile(&[]).ctx(|| format!("run {}", gcc(arch)))?;
    if first.status.success() {
        return Ok(());
    }
    if arch.cross_compile().is_empty() {
        return Err(Error::Other(format!(
            "{} -static {} failed (is the C library's static archive, libc6-dev, installed?):\n{}",
            gcc(arch),
            src.display(),
            String::from_utf8_lossy(&first.stderr)
        )));
    }
    let root = sysroot(arch)?;
    let t = arch.triplet;
    let r = root.display();
    let flags = vec![
        format!("--sysroot={r}"),
        format!("-isystem{r}/usr/include/{t}"),
        format!("-isystem{r}/usr/include"),
        format!("-B{r}/usr/lib/{t}"),
        format!("-L{r}/usr/lib/{t}"),
    ];
    let second = compile(&flags).ctx(|| format!("run {}", gcc(arch)))?;
    if second.status.success() {
        return Ok(());
    }
    Err(Error::Other(format!(
        "{} -static {} failed, also with the target's libc6-dev in {r}:\n{}",
        gcc(arch),
        src.display(),
        String::from_utf8_lossy(&second.stderr)
    )))
}

/// The target's `libc6-dev` and `linux-libc-dev`, unpacked once.
fn sysroot(arch: Arch) -> Result<PathBuf> {
    let apt = Apt::new(&apt::host_codename(), arch.deb)?;
    apt.update()?;
    let debs = apt.download(&["libc6-dev".to_string(), "linux-libc-dev".to_string()])?;
    let mut h = Hasher::new();
    for d in &debs {
        h.part("deb", d.file_name().unwrap_or_default().to_string_lossy().as_bytes());
    }
    let root = crate::cache::dir("sysroot");
    let dest = root.join(format!("{}-{}", arch.name, h.hex()));
    if dest.join(".klpt-ready").exists() {
        return Ok(dest);
    }
    sweep(&root);
    let tmp = Scratch::new(&root, ".build-").ctx(|| "create sysroot dir".into())?;
    for d in &debs {
        apt::unpack(d, tmp.path())?;
    }
    std::fs::write(tmp.path().join(".klpt-ready"), "").ctx(|| "mark sysroot".into())?;
    tmp.publish(&dest).ctx(|| format!("store {}", dest.display()))?;
    Ok(dest)
}

/// Removes what a killed run left in `root` (never a live run's build).
fn sweep(root: &Path) {
    for d in crate::cache::sweep(root, ".build-") {
        emit(Event::Note { msg: &format!("kselftest: removed {}, left by an interrupted run", d.display()) });
    }
}
