//! `klpt kernel build`: a minimal livepatch-capable kernel from a source
//! tree (Debian's `linux-source` by default), optionally with a patch series,
//! cross-compiled out of tree into a cache keyed by everything that goes in.
//!
//! Trees klpt owns (Debian's source, series copies) are built in a `build-<arch>`
//! subdirectory so Kbuild uses relative paths and ccache hits across copies;
//! a user's tree is never written to: its build directory lives in the cache,
//! and make rebuilds only what changed.

use crate::apt::{self, Apt};
use crate::arch::Arch;
use crate::cache::{Hasher, Scratch};
use crate::cleanup::TempDir;
use crate::error::{run, Error, IoContext, Result};
use crate::event::{emit, stage, Event};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct Spec {
    /// A kernel source tree; None: Debian's `linux-source`.
    pub src: Option<PathBuf>,
    pub arch: Arch,
    /// mbox files or directories of patches, applied in order.
    pub series: Vec<PathBuf>,
}

/// The fragment files for `arch`: the common one, then the arch's.
pub fn fragments(arch: Arch) -> Vec<PathBuf> {
    let d = std::env::var_os("KLPT_CONFIGS")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::project_root().join("kernel-configs"));
    vec![d.join("livepatch.config"), d.join(format!("{}.config", arch.name))]
}

/// The tree and identity of an unpacked source tree.
fn source_identity(tree: &Path, pkg: &str) -> String {
    let version = std::fs::read_to_string(tree.join("Makefile")).ok().map(|m| kernel_version(&m)).unwrap_or_default();
    format!("debian:{pkg}:{version}")
}

/// Debian's kernel source if it is already unpacked: reads the private
/// apt's metadata (refreshing its lists), fetches nothing else.
fn debian_source_cached() -> Result<Option<(PathBuf, String)>> {
    let apt = Apt::new("sid", "amd64")?;
    apt.update()?;
    let pkg = apt.resolve("linux-source", "linux-source-")?;
    let tree = crate::cache::root().join("src").join(&pkg).join("tree");
    Ok(tree.join(".klpt-ready").exists().then(|| {
        let id = source_identity(&tree, &pkg);
        (tree, id)
    }))
}

/// Debian's kernel source (the `linux-source` metapackage of sid), unpacked once.
pub fn debian_source() -> Result<(PathBuf, String)> {
    let apt = Apt::new("sid", "amd64")?;
    apt.update()?;
    let pkg = apt.resolve("linux-source", "linux-source-")?;
    let root = crate::cache::root().join("src").join(&pkg);
    let tree = root.join("tree");
    if !tree.join(".klpt-ready").exists() {
        let deb = apt.download(std::slice::from_ref(&pkg))?;
        let src = crate::cache::root().join("src");
        sweep(&src, ".unpack-");
        let tmp = Scratch::new(&src, ".unpack-").ctx(|| "create source dir".into())?;
        stage(&format!("source: unpacking {pkg}"), || -> Result<()> {
            apt::unpack(&deb[0], tmp.path())?;
            let tarball = std::fs::read_dir(tmp.path().join("usr/src"))
                .ctx(|| "read usr/src".into())?
                .flatten()
                .map(|e| e.path())
                .find(|p| p.to_string_lossy().ends_with(".tar.xz"))
                .ok_or_else(|| Error::Other(format!("{pkg} holds no source tarball")))?;
            run(Command::new("tar").arg("-xf").arg(&tarball).arg("-C").arg(tmp.path()))?;
            let _ = std::fs::remove_dir_all(tmp.path().join("usr"));
            let top = std::fs::read_dir(tmp.path())
                .ctx(|| "read source".into())?
                .flatten()
                .map(|e| e.path())
                .find(|p| p.join("Makefile").exists());
            let top = top.ok_or_else(|| Error::Other("no kernel tree in the tarball".into()))?;
            std::fs::write(top.join(".klpt-ready"), "").ctx(|| "mark source".into())?;
            crate::cache::publish(&top, &tree).ctx(|| format!("store {}", tree.display()))
        })?;
    }
    let id = source_identity(&tree, &pkg);
    Ok((tree, id))
}

fn kernel_version(makefile: &str) -> String {
    let get = |k: &str| {
        makefile
            .lines()
            .find_map(|l| l.strip_prefix(k).map(|v| v.trim_start_matches([' ', '=']).trim().to_string()))
            .unwrap_or_default()
    };
    format!("{}.{}.{}", get("VERSION"), get("PATCHLEVEL"), get("SUBLEVEL"))
}

/// The patch files of the series arguments, in order.
fn patch_files(series: &[PathBuf], work: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for (i, s) in series.iter().enumerate() {
        // git apply runs inside the copy: paths must not be relative.
        let s = &std::fs::canonicalize(s).unwrap_or_else(|_| s.clone());
        if s.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(s)
                .ctx(|| format!("read series {}", s.display()))?
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.extension().is_some_and(|x| x == "patch" || x == "diff")
                        && !p.to_string_lossy().contains("cover-letter")
                })
                .collect();
            v.sort();
            if v.is_empty() {
                return Err(Error::Other(format!("series {}: no *.patch files", s.display())));
            }
            out.extend(v);
        } else if s.is_file() {
            // An mbox: one file per message, in order.
            let d = work.join(format!("mbox-{i}"));
            std::fs::create_dir_all(&d).ctx(|| "create mbox dir".into())?;
            run(Command::new("git").arg("mailsplit").arg(format!("-o{}", d.display())).arg(s))?;
            let mut v: Vec<PathBuf> =
                std::fs::read_dir(&d).ctx(|| "read mbox".into())?.flatten().map(|e| e.path()).collect();
            v.sort();
            out.extend(v.into_iter().filter(|p| {
                std::fs::read_to_string(p).is_ok_and(|t| t.contains("\n--- a/") || t.contains("\ndiff --git"))
            }));
        } else {
            return Err(Error::Other(format!("series {}: no such file or directory", s.display())));
        }
    }
    Ok(out)
}

fn toolchain(arch: Arch) -> String {
    let gcc = format!("{}gcc", arch.cross_compile());
    let v = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").to_string())
            .unwrap_or_default()
    };
    format!("{} | {}", v(&gcc), v(&format!("{}ld", arch.cross_compile())))
}

/// Where a build of `spec` lives and what goes into it: computed without
/// building, fetching or installing anything.
struct Layout {
    /// The tree make runs in: the base, or the series copy of it.
    tree: PathBuf,
    owned: bool,
    build: PathBuf,
    identity: String,
    base: PathBuf,
    patches: Vec<PathBuf>,
    /// Holds split mbox patches while they are needed.
    _scratch: TempDir,
    origin: super::origin::Origin,
}

impl Layout {
    fn new(spec: &Spec, base: PathBuf, identity: String, owned: bool) -> Result<Layout> {
        let arch = spec.arch;
        let frags = fragments(arch);
        let mut key = Hasher::new();
        key.part("source", &identity).part("arch", arch.name).part("toolchain", toolchain(arch));
        for f in &frags {
            key.file("fragment", f).ctx(|| format!("read fragment {}", f.display()))?;
        }
        let scratch = TempDir::new("klpt-series-").ctx(|| "create temp dir".into())?;
        let patches = patch_files(&spec.series, scratch.path())?;
        let mut series_key = Hasher::new();
        for p in &patches {
            series_key.file("patch", p).ctx(|| format!("read {}", p.display()))?;
        }
        let series_id = series_key.hex();
        // The tree to build: the base, or a patched copy of it.
        let (tree, owned) = if patches.is_empty() {
            (base.clone(), owned)
        } else {
            key.part("series", &series_id);
            (
                crate::cache::root().join("src").join(format!(
                    "{}-{}",
                    Hasher::new().part("id", &identity).hex(),
                    series_id
                )),
                true,
            )
        };
        let origin = super::origin::Origin {
            source: identity.clone(),
            series: spec
                .series
                .iter()
                .map(|s| s.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())
                .collect(),
            patches: patches
                .iter()
                .map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())
                .collect(),
            patchset_hash: super::origin::patchset_hash(&patches).ctx(|| "hash the series".into())?,
            config_name: Some(
                std::iter::once("tinyconfig".to_string())
                    .chain(frags.iter().map(|f| f.file_name().unwrap_or_default().to_string_lossy().into_owned()))
                    .collect::<Vec<_>>()
                    .join(" + "),
            ),
            config_hash: None,
            toolchain: Some(toolchain(arch)),
        };
        let key = key.hex();
        let build = if owned {
            tree.join(format!("build-{}-{key}", arch.name))
        } else {
            crate::cache::root().join("kbuild").join(format!("{}-{key}", arch.name))
        };
        Ok(Layout { tree, owned, build, identity, base, patches, _scratch: scratch, origin })
    }

    fn stamp(&self) -> PathBuf {
        self.build.join(".klpt-built")
    }
}

/// The build tree of `spec` if klpt has already built it (a cache hit for
/// [`build`]), without building, fetching or installing anything: None when
/// it is not built, or its source is not even fetched yet.
pub fn cached(spec: &Spec) -> Result<Option<PathBuf>> {
    Ok(cached_with_origin(spec)?.map(|(dir, _)| dir))
}

/// [`cached`], with where the kernel comes from.
pub fn cached_with_origin(spec: &Spec) -> Result<Option<(PathBuf, super::origin::Origin)>> {
    let (base, identity, owned) = match &spec.src {
        None => match debian_source_cached()? {
            Some((t, id)) => (t, id, true),
            None => return Ok(None),
        },
        Some(d) => {
            let d = std::fs::canonicalize(d).ctx(|| format!("kernel source {}", d.display()))?;
            let id = format!("dir:{}", d.display());
            (d, id, false)
        }
    };
    let l = Layout::new(spec, base, identity, owned)?;
    // A user's tree is rebuilt incrementally every time: never "cached".
    Ok((l.owned && l.stamp().exists()).then(|| with_config_hash(l.build, l.origin)))
}

/// Builds (or reuses) a kernel; returns its build tree (what `--kernel` takes).
pub fn build(spec: &Spec) -> Result<PathBuf> {
    build_with_origin(spec).map(|(dir, _)| dir)
}

/// The origin's `.config` hash, once the build tree has one.
fn with_config_hash(build: PathBuf, mut origin: super::origin::Origin) -> (PathBuf, super::origin::Origin) {
    origin.config_hash = super::origin::file_sha256(&build.join(".config")).ok();
    (build, origin)
}

/// [`build`], with where the kernel comes from.
pub fn build_with_origin(spec: &Spec) -> Result<(PathBuf, super::origin::Origin)> {
    let arch = spec.arch;
    crate::host::ensure_kernel_build(arch)?;
    let (base, identity, owned) = match &spec.src {
        None => {
            let (t, id) = debian_source()?;
            (t, id, true)
        }
        Some(d) => {
            let d = std::fs::canonicalize(d).ctx(|| format!("kernel source {}", d.display()))?;
            if !d.join("Makefile").exists() || !d.join("kernel/livepatch").exists() {
                return Err(Error::Kernel {
                    dir: d,
                    msg: "not a kernel source tree (no Makefile or kernel/livepatch)".into(),
                });
            }
            let id = format!("dir:{}", d.display());
            (d, id, false)
        }
    };
    let l = Layout::new(spec, base, identity, owned)?;
    if !l.patches.is_empty() && !l.tree.join(".klpt-ready").exists() {
        apply_series(&l.base, &l.patches, &l.tree)?;
    }
    let (tree, build, stamp) = (&l.tree, &l.build, l.stamp());
    if l.owned && stamp.exists() {
        emit(Event::Cached { what: &format!("kernel build {}", build.display()) });
        return Ok(with_config_hash(build.clone(), l.origin));
    }
    std::fs::create_dir_all(build).ctx(|| format!("create {}", build.display()))?;
    let frags = fragments(arch);
    if !build.join(".config").exists() || !build.join(".klpt-configured").exists() {
        configure(tree, build, arch, &frags)?;
    }
    compile(tree, build, arch)?;
    let image = arch.images.iter().map(|i| build.join(i)).find(|p| p.exists());
    if image.is_none() || !build.join("Module.symvers").exists() {
        return Err(Error::Kernel {
            dir: build.clone(),
            msg: format!("build finished without {} or Module.symvers", arch.images.join("/")),
        });
    }
    std::fs::write(&stamp, &l.identity).ctx(|| "write build stamp".into())?;
    Ok(with_config_hash(build.clone(), l.origin))
}

fn apply_series(base: &Path, patches: &[PathBuf], dest: &Path) -> Result<()> {
    let parent = dest.parent().expect("cache path");
    sweep(parent, ".series-");
    let tmp = Scratch::new(parent, ".series-").ctx(|| "create series copy".into())?;
    stage(&format!("source: copying {} for the series", base.display()), || {
        // A tar pipe copies the tree without .git and without build dirs.
        run(Command::new("sh").arg("-c").arg(format!(
            "tar -C '{}' --exclude=.git --exclude='./build-*' -cf - . | tar -C '{}' -xf -",
            base.display(),
            tmp.path().display()
        )))
    })?;
    let _ = std::fs::remove_file(tmp.path().join(".klpt-ready"));
    for p in patches {
        let out = Command::new("git")
            .args(["apply", "--whitespace=nowarn", "-p1"])
            .arg(p)
            .current_dir(tmp.path())
            .output()
            .ctx(|| "run git apply".into())?;
        if !out.status.success() {
            return Err(Error::Other(format!(
                "series does not apply: {} failed:\n{}",
                p.display(),
                String::from_utf8_lossy(&out.stderr).lines().take(15).collect::<Vec<_>>().join("\n")
            )));
        }
        emit(Event::Progress {
            what: "series",
            line: &format!("applied {}", p.file_name().unwrap_or_default().to_string_lossy()),
        });
    }
    std::fs::write(tmp.path().join(".klpt-ready"), "").ctx(|| "mark series copy".into())?;
    tmp.publish(dest).ctx(|| format!("store {}", dest.display()))
}

/// Removes `prefix*` directories of `parent` that killed runs left (see `cache::sweep`).
fn sweep(parent: &Path, prefix: &str) {
    for d in crate::cache::sweep(parent, prefix) {
        emit(Event::Note { msg: &format!("kernel: removed {}, left by an interrupted run", d.display()) });
    }
}

fn make(tree: &Path, build: &Path, arch: Arch) -> Command {
    let mut c = Command::new("make");
    c.arg("-C")
        .arg(tree)
        .arg(format!("O={}", build.display()))
        .arg(format!("ARCH={}", arch.kbuild))
        .arg(format!("CROSS_COMPILE={}", arch.cross_compile()));
    c.env("LC_ALL", "C");
    if crate::host::on_path("ccache") {
        c.arg(format!("CC=ccache {}gcc", arch.cross_compile()));
        c.env("CCACHE_DIR", crate::cache::dir("ccache"))
            .env("CCACHE_NOHASHDIR", "1")
            .env("CCACHE_BASEDIR", crate::cache::root());
    }
    c
}

/// tinyconfig + fragments, then a check that every fragment option took effect.
fn configure(tree: &Path, build: &Path, arch: Arch, frags: &[PathBuf]) -> Result<()> {
    stage(&format!("kernel: configuring {} (tinyconfig + {} fragments)", arch.name, frags.len()), || -> Result<()> {
        run(make(tree, build, arch).arg("tinyconfig"))?;
        run(Command::new(tree.join("scripts/kconfig/merge_config.sh"))
            .arg("-m")
            .arg("-O")
            .arg(build)
            .arg(build.join(".config"))
            .args(frags)
            .current_dir(tree)
            .env("ARCH", arch.kbuild))?;
        run(make(tree, build, arch).arg("olddefconfig"))?;
        Ok(())
    })?;
    let have = crate::kernel::caps::parse_config(
        &std::fs::read_to_string(build.join(".config")).ctx(|| "read .config".into())?,
    );
    let mut dropped = Vec::new();
    for f in frags {
        let text = std::fs::read_to_string(f).ctx(|| format!("read {}", f.display()))?;
        for l in text.lines().map(str::trim) {
            if let Some((k, v)) = l.split_once('=').filter(|(k, _)| k.starts_with("CONFIG_")) {
                let v = v.trim_matches('"');
                if have.get(k).map(String::as_str) != Some(v) {
                    dropped.push(format!(
                        "{k}={v} (got {}) from {}",
                        have.get(k).map(String::as_str).unwrap_or("unset"),
                        f.file_name().unwrap_or_default().to_string_lossy()
                    ));
                }
            } else if let Some(k) = l.strip_prefix("# ").and_then(|r| r.strip_suffix(" is not set")) {
                if matches!(have.get(k).map(String::as_str), Some("y") | Some("m")) {
                    dropped.push(format!("{k} should be unset"));
                }
            }
        }
    }
    if !dropped.is_empty() {
        return Err(Error::Kernel {
            dir: build.into(),
            msg: format!("Kconfig dropped fragment options (missing dependencies?):\n  {}", dropped.join("\n  ")),
        });
    }
    std::fs::write(build.join(".klpt-configured"), "").ctx(|| "mark configured".into())
}

/// `make all`, streaming progress every few seconds.
fn compile(tree: &Path, build: &Path, arch: Arch) -> Result<()> {
    let what = format!("kernel: building {} in {}", arch.name, build.display());
    emit(Event::Begin { what: &what });
    let t0 = Instant::now();
    let jobs = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let mut child = make(tree, build, arch)
        .arg(format!("-j{jobs}"))
        .arg("all")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ctx(|| "run make".into())?;
    let stderr = child.stderr.take().expect("piped");
    let errs = std::thread::spawn(move || BufReader::new(stderr).lines().map_while(|l| l.ok()).collect::<Vec<_>>());
    let mut last = Instant::now();
    let mut lines = 0usize;
    for line in BufReader::new(child.stdout.take().expect("piped")).lines().map_while(|l| l.ok()) {
        lines += 1;
        if last.elapsed() > Duration::from_secs(10) {
            emit(Event::Progress {
                what: arch.name,
                line: &format!("{lines} steps, {:.0}s: {}", t0.elapsed().as_secs_f64(), line.trim()),
            });
            last = Instant::now();
        }
    }
    let status = child.wait().ctx(|| "wait for make".into())?;
    let errs = errs.join().unwrap_or_default();
    if !status.success() {
        let tail: Vec<&str> = errs.iter().map(String::as_str).filter(|l| !l.starts_with("make")).collect();
        return Err(Error::Kernel {
            dir: build.into(),
            msg: format!("make failed:\n{}", tail[tail.len().saturating_sub(30)..].join("\n")),
        });
    }
    emit(Event::Done { what: &what, secs: t0.elapsed().as_secs_f64() });
    Ok(())
}

/// For `klpt bench`: a cold build (ccache off) of Debian's source for `arch`
/// in a scratch copy, then the rebuild after a change to one livepatch
/// source file. Returns (cold seconds, rebuild seconds).
pub fn bench_builds(arch: Arch) -> Result<(f64, f64)> {
    crate::host::ensure_kernel_build(arch)?;
    let (base, _) = debian_source()?;
    let scratch = TempDir::new_in(&crate::cache::root().join("bench"), "build-").ctx(|| "create bench dir".into())?;
    let tree = scratch.path().join("src");
    std::fs::create_dir_all(&tree).ctx(|| "create bench tree".into())?;
    // A hard-linked copy of the cached tree (build directories left out) costs
    // no data copying: an out-of-tree build never writes to its source, and
    // the one file the benchmark changes is replaced below, not edited in place.
    emit(Event::Note {
        msg: &format!("{}: linking a copy of the source tree for a cold build in {}", arch.name, tree.display()),
    });
    let mut cp = Command::new("cp");
    cp.arg("-al");
    for e in std::fs::read_dir(&base).ctx(|| format!("read {}", base.display()))? {
        let e = e.ctx(|| format!("read {}", base.display()))?;
        if !e.file_name().to_string_lossy().starts_with("build-") {
            cp.arg(e.path());
        }
    }
    run(cp.arg(&tree))?;
    let build = tree.join(format!("build-{}", arch.name));
    std::fs::create_dir_all(&build).ctx(|| "create bench build dir".into())?;
    // SAFETY (edition 2021): single-threaded at this point of the benchmark.
    std::env::set_var("CCACHE_DISABLE", "1");
    let t0 = Instant::now();
    let cold = configure(&tree, &build, arch, &fragments(arch))
        .and_then(|_| compile(&tree, &build, arch))
        .map(|_| t0.elapsed().as_secs_f64());
    std::env::remove_var("CCACHE_DISABLE");
    let cold = cold?;
    let core = tree.join("kernel/livepatch/core.c");
    let mut text = std::fs::read_to_string(&core).ctx(|| "read core.c".into())?;
    text.push_str("\n/* klpt bench: one-file change */\n");
    // Unlink first: writing through the hard link would edit the cached tree.
    std::fs::remove_file(&core).ctx(|| "unlink core.c".into())?;
    std::fs::write(&core, text).ctx(|| "write core.c".into())?;
    let t1 = Instant::now();
    compile(&tree, &build, arch)?;
    Ok((cold, t1.elapsed().as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series_dir() -> PathBuf {
        crate::project_root().join("cases/hybrid/series/v2-replace-set")
    }

    #[test]
    fn series_directory_skips_the_cover_letter() {
        let work = tempfile::tempdir().unwrap();
        let p = patch_files(&[series_dir()], work.path()).unwrap();
        assert_eq!(p.len(), 4);
        assert!(p[0].to_string_lossy().contains("0001-"));
    }

    #[test]
    fn mbox_is_split_into_its_patches() {
        let work = tempfile::tempdir().unwrap();
        let dir = patch_files(&[series_dir()], work.path()).unwrap();
        let mbox = work.path().join("series.mbox");
        let text: String = std::iter::once(series_dir().join("0000-cover-letter.patch"))
            .chain(dir.iter().cloned())
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        std::fs::write(&mbox, text).unwrap();
        let from_mbox = patch_files(&[mbox], work.path()).unwrap();
        // The cover letter has no diff and is dropped.
        assert_eq!(from_mbox.len(), 4);
    }

    #[test]
    fn version_from_makefile() {
        assert_eq!(kernel_version("VERSION = 7\nPATCHLEVEL = 2\nSUBLEVEL = 13\n"), "7.2.13");
    }
}
