//! Kernels built once: `klpt kernel build --export FILE` writes one file with
//! everything klpt needs of a kernel (boot image, `.config`, `System.map`,
//! `Module.symvers`, the build tree out-of-tree modules compile against, the
//! livepatch selftests), and `--kernel FILE` uses it on another machine.
//!
//! The file is a zstd-compressed tar (with zstd's content checksum): a
//! manifest first (`klpt-kernel.json`: what the kernel is, for trial names
//! and reports), then `build/`, one merged tree laid out as the kernel's
//! `scripts/package/install-extmod-build` lays out an external-module tree,
//! with the boot image at its place in the build tree. Entries are sorted,
//! with fixed owners and times, so one kernel exports to the same bytes.
//!
//! On use, the file is unpacked once into the cache under its content hash
//! (in a locked scratch directory renamed into place, so an interrupted
//! unpack leaves no entry) and opened like any build directory.

use super::origin::Origin;
use super::Kernel;
use crate::arch::Arch;
use crate::cache::Scratch;
use crate::error::{Error, IoContext, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

/// The manifest's name, the archive's first entry.
pub const MANIFEST: &str = "klpt-kernel.json";
/// Bumped when the layout changes incompatibly.
const FORMAT: u32 = 1;
/// zstd's frame magic number, little-endian.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// The merged build tree inside the artifact.
const BUILD: &str = "build";
/// The livepatch selftests (and the make fragment their Makefile includes).
const SELFTESTS: [&str; 2] = ["tools/testing/selftests/livepatch", "tools/testing/selftests/lib.mk"];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// The trial id the kernel had where it was built (`src-7.2.13+v2-replace-set`).
    pub id: String,
    /// klpt's architecture name (`x86_64`).
    pub arch: String,
    /// `uname -r`.
    pub release: String,
    /// The boot image, relative to the artifact's root.
    pub image: String,
    /// The machine the build tree's host programs (modpost, fixdep, objtool) run on.
    pub host: String,
    pub origin: Origin,
    /// Entries after the manifest: an archive cut short at an entry boundary has fewer.
    pub files: usize,
}

/// Writes `k` as an artifact to `out` (replaced atomically); returns its size in bytes.
pub fn export(k: &Kernel, out: &Path) -> Result<u64> {
    let files = collect(k)?;
    let image =
        files.iter().find(|(_, src)| **src == k.image).map(|(rel, _)| rel.clone()).ok_or_else(|| Error::Kernel {
            dir: k.build_dir.clone(),
            msg: format!("boot image {} is not in the build tree", k.image.display()),
        })?;
    let manifest = Manifest {
        format: FORMAT,
        id: k.id.clone(),
        arch: k.arch.name.into(),
        release: k.release.clone(),
        image,
        host: std::env::consts::ARCH.into(),
        origin: k.origin.clone(),
        files: files.len(),
    };
    let parent = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    // Written next to the destination and renamed: no half-written artifact.
    let tmp = crate::cleanup::TempDir::new_in(parent, ".klpt-export-")
        .ctx(|| format!("create a temporary directory in {}", parent.display()))?;
    let part = tmp.path().join("artifact");
    write(&part, &manifest, &files)?;
    std::fs::rename(&part, out).ctx(|| format!("move the artifact to {}", out.display()))?;
    std::fs::metadata(out).map(|m| m.len()).ctx(|| format!("stat {}", out.display()))
}

fn write(path: &Path, manifest: &Manifest, files: &BTreeMap<String, PathBuf>) -> Result<()> {
    let what = || format!("write {}", path.display());
    let file = std::fs::File::create(path).ctx(what)?;
    let mut z = zstd::Encoder::new(std::io::BufWriter::new(file), 12).ctx(what)?;
    z.include_checksum(true).ctx(what)?;
    let mut tar = tar::Builder::new(z);
    tar.mode(tar::HeaderMode::Deterministic);
    let json = serde_json::to_vec_pretty(manifest).expect("manifest serializes");
    let mut h = tar::Header::new_gnu();
    h.set_size(json.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    tar.append_data(&mut h, MANIFEST, json.as_slice()).ctx(what)?;
    for (rel, src) in files {
        tar.append_path_with_name(src, rel).ctx(|| format!("add {} to {}", src.display(), path.display()))?;
    }
    let z = tar.into_inner().ctx(what)?;
    let mut w = z.finish().ctx(what)?;
    w.flush().ctx(what)?;
    w.into_inner().map_err(|e| e.into_error()).ctx(what)?.sync_all().ctx(what)
}

/// What goes into the artifact: its path inside → the file on disk (symlinks followed).
fn collect(k: &Kernel) -> Result<BTreeMap<String, PathBuf>> {
    let obj = &k.build_dir;
    let fail = |msg: String| Error::Kernel { dir: obj.clone(), msg };
    // `make O=` trees link to their source; in-tree builds are their own.
    let src = std::fs::canonicalize(obj.join("source")).unwrap_or_else(|_| obj.clone());
    let srcarch = k.arch.kbuild;
    let auto_conf = std::fs::read_to_string(obj.join("include/config/auto.conf"))
        .map_err(|e| fail(format!("no include/config/auto.conf ({e}): not a configured kernel build tree")))?;
    let enabled = |opt: &str| auto_conf.lines().any(|l| l == format!("{opt}=y"));
    if !src.join(format!("arch/{srcarch}/Makefile")).is_file() {
        return Err(fail(format!(
            "no kernel source next to it ({} has no arch/{srcarch}/Makefile): export a `make O=` or in-tree build",
            src.display()
        )));
    }
    let mut out = BTreeMap::new();
    let mut add = |root: &Path, rel: &str| out.insert(format!("{BUILD}/{rel}"), root.join(rel));

    // From the source tree: Makefiles, headers, Kbuild's scripts.
    add(&src, "Makefile");
    // The Makefiles directly in arch/<arch>, and the platform lists anywhere below.
    let arch_make = |rel: &str, is_dir: bool| {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        is_dir
            || (name.starts_with("Makefile") && rel.matches('/').count() == 2)
            || name == "Kbuild.platforms"
            || name == "Platform"
    };
    for rel in walk(&src, &format!("arch/{srcarch}"), &arch_make, true)? {
        add(&src, &rel);
    }
    for dir in walk_dirs(&src, &format!("arch/{srcarch}"))?
        .into_iter()
        .filter(|d| d.ends_with("/include") && !d.contains("/generated"))
    {
        for rel in walk(&src, &dir, &|_, _| true, false)? {
            add(&src, &rel);
        }
    }
    for rel in walk(
        &src,
        "include",
        &|rel, is_dir| !(is_dir && (rel == "include/config" || rel == "include/generated")),
        false,
    )? {
        add(&src, &rel);
    }
    for rel in walk(&src, "scripts", &in_scripts, true)? {
        add(&src, &rel);
    }
    for s in SELFTESTS {
        if src.join(s).is_file() {
            add(&src, s);
        } else {
            for rel in walk(&src, s, &|_, _| true, true)? {
                add(&src, &rel);
            }
        }
    }

    // From the build tree: configuration, symbols, generated headers, host programs.
    for rel in [".config", "Module.symvers", "include/config/auto.conf", "include/config/kernel.release"] {
        if !obj.join(rel).is_file() {
            return Err(fail(format!("no {rel}: build the kernel completely first")));
        }
        add(obj, rel);
    }
    let mut tools = vec![];
    if enabled("CONFIG_OBJTOOL") {
        tools.push("tools/objtool/objtool");
    }
    if enabled("CONFIG_DEBUG_INFO_BTF_MODULES") {
        tools.push("tools/bpf/resolve_btfids/resolve_btfids");
    }
    for rel in tools {
        if !obj.join(rel).is_file() {
            return Err(fail(format!("no {rel}, which module builds run: build the kernel completely first")));
        }
        add(obj, rel);
    }
    for dir in ["include/generated".to_string(), format!("arch/{srcarch}/include/generated")] {
        for rel in walk(obj, &dir, &|_, _| true, false)? {
            add(obj, &rel);
        }
    }
    // Host programs (fixdep, modpost, GCC plugins) and scripts/module.lds.
    for rel in walk(obj, "scripts", &in_scripts, true)? {
        add(obj, &rel);
    }
    if let Some(map) = &k.system_map {
        out.insert(format!("{BUILD}/System.map"), map.clone());
    }
    // The boot image, where the build put it.
    match k.image.strip_prefix(obj) {
        Ok(rel) => {
            out.insert(format!("{BUILD}/{}", rel.display()), k.image.clone());
        }
        Err(_) => {
            out.insert(format!("image-{}", k.image.file_name().unwrap_or_default().to_string_lossy()), k.image.clone());
        }
    }
    // Build leftovers external modules never read.
    out.retain(|rel, _| {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        !(name.ends_with(".o") || (name.starts_with('.') && name.ends_with(".cmd")))
    });
    Ok(out)
}

/// The part of `scripts/` an external module build uses (install-extmod-build's
/// selection): not the atomic, dtc, kconfig and package tools.
fn in_scripts(rel: &str, is_dir: bool) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    if is_dir {
        !matches!(name, "atomic" | "dtc" | "kconfig" | "package")
    } else {
        !matches!(name, "unifdef" | "mk_elfconfig")
    }
}

/// Files below `root/dir` (relative to `root`) that `keep(rel, is_dir)`
/// accepts, descending only into accepted directories. Symlinks are followed;
/// dangling ones are skipped. A missing `dir` is an error when `required`.
fn walk(root: &Path, dir: &str, keep: &dyn Fn(&str, bool) -> bool, required: bool) -> Result<Vec<String>> {
    let mut out = Vec::new();
    if !root.join(dir).is_dir() {
        if required {
            return Err(Error::Kernel { dir: root.into(), msg: format!("no {dir}/") });
        }
        return Ok(out);
    }
    let mut stack = vec![dir.to_string()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(root.join(&d)).ctx(|| format!("read {}/{d}", root.display()))? {
            let e = e.ctx(|| format!("read {}/{d}", root.display()))?;
            let rel = format!("{d}/{}", e.file_name().to_string_lossy());
            let Ok(meta) = std::fs::metadata(e.path()) else { continue };
            if !keep(&rel, meta.is_dir()) {
                continue;
            }
            if meta.is_dir() {
                stack.push(rel);
            } else if meta.is_file() {
                out.push(rel);
            }
        }
    }
    Ok(out)
}

/// Directories below `root/dir`, relative to `root`.
fn walk_dirs(root: &Path, dir: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_string()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(root.join(&d)).ctx(|| format!("read {}/{d}", root.display()))?.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let rel = format!("{d}/{}", e.file_name().to_string_lossy());
                stack.push(rel.clone());
                out.push(rel);
            }
        }
    }
    Ok(out)
}

/// `--kernel FILE`: the artifact's kernel, unpacked into the cache on first use.
pub fn open(file: &Path, arch: Arch) -> Result<Kernel> {
    let fail = |msg: String| Error::Kernel { dir: file.into(), msg };
    let mut f = std::fs::File::open(file).map_err(|e| fail(format!("cannot open: {e}")))?;
    let mut magic = [0u8; 4];
    if f.read_exact(&mut magic).is_err() || magic != ZSTD_MAGIC {
        return Err(fail("not a kernel artifact (not zstd-compressed); pass a build directory, or a file written by `klpt kernel build --export FILE`".into()));
    }
    let key = {
        let mut h = crate::cache::Hasher::new();
        h.file("artifact", file).map_err(|e| fail(format!("cannot read: {e}")))?;
        h.hex()
    };
    let dest = crate::cache::root().join("kernels").join(format!("artifact-{key}"));
    if dest.exists() {
        crate::event::emit(crate::event::Event::Cached {
            what: &format!("kernel {} (unpacked {})", file.display(), dest.display()),
        });
    } else {
        crate::event::try_stage(&format!("kernel: unpacking {}", file.display()), || unpack(file, &dest, arch))?;
    }
    let manifest: Manifest = std::fs::read(dest.join(MANIFEST))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| Error::Kernel {
            dir: dest.clone(),
            msg: format!("unreadable {MANIFEST}; remove this directory to unpack the artifact again"),
        })?;
    check(&manifest, arch).map_err(fail)?;
    let mut k = super::dir::open(&dest, arch)?;
    k.image = dest.join(&manifest.image);
    if !k.image.is_file() {
        return Err(fail(format!(
            "its manifest names the boot image {}, which it does not hold; export it again",
            manifest.image
        )));
    }
    k.id = manifest.id;
    k.origin = manifest.origin;
    Ok(k)
}

/// Whether the artifact fits this run: its arch and its host programs' machine.
fn check(m: &Manifest, arch: Arch) -> std::result::Result<(), String> {
    if m.format != FORMAT {
        return Err(format!(
            "artifact format {} (this klpt reads format {FORMAT}); export the kernel again with this klpt",
            m.format
        ));
    }
    if !Path::new(&m.image).components().all(|c| matches!(c, std::path::Component::Normal(_))) {
        return Err(format!("its manifest names the boot image `{}`, outside the artifact", m.image));
    }
    if m.arch != arch.name {
        return Err(format!("kernel {} is built for {}, not {}: run with --arch {}, or export the {} kernel (`klpt kernel build --arch {} --export FILE`)", m.id, m.arch, arch.name, m.arch, arch.name, arch.name));
    }
    if m.host != std::env::consts::ARCH {
        return Err(format!("the build tree's host programs (modpost, objtool) were built for a {} host; this host is {}: export it on a {} host", m.host, std::env::consts::ARCH, std::env::consts::ARCH));
    }
    Ok(())
}

/// Unpacks `file` into `dest` through a locked scratch directory.
fn unpack(file: &Path, dest: &Path, arch: Arch) -> Result<()> {
    let parent = dest.parent().expect("cache path has a parent");
    for d in crate::cache::sweep(parent, ".import-") {
        crate::event::emit(crate::event::Event::Note {
            msg: &format!("kernel: removed {}, left by an interrupted run", d.display()),
        });
    }
    let tmp = Scratch::new(parent, ".import-").ctx(|| format!("create a directory in {}", parent.display()))?;
    let fail = |msg: String| Error::Kernel { dir: file.into(), msg };
    let damaged = |e: std::io::Error| {
        fail(format!("corrupt or truncated ({e}); copy it again, or export it again with `klpt kernel build --export`"))
    };
    let f = std::fs::File::open(file).map_err(|e| fail(format!("cannot open: {e}")))?;
    let z = zstd::Decoder::new(BufReader::new(f)).map_err(damaged)?;
    let mut tar = tar::Archive::new(z);
    let mut entries = tar.entries().map_err(damaged)?;
    let mut first = entries.next().ok_or_else(|| fail("empty archive".into()))?.map_err(damaged)?;
    if first.path().map_err(damaged)?.as_os_str() != MANIFEST {
        return Err(fail(format!(
            "no {MANIFEST} first: not a kernel artifact written by `klpt kernel build --export`"
        )));
    }
    let mut json = Vec::new();
    first.read_to_end(&mut json).map_err(damaged)?;
    let manifest: Manifest = serde_json::from_slice(&json).map_err(|e| {
        fail(format!("corrupt {MANIFEST} ({e}); copy it again, or export it again with `klpt kernel build --export`"))
    })?;
    check(&manifest, arch).map_err(fail)?;
    crate::cleanup::unless_interrupted(|| std::fs::write(tmp.path().join(MANIFEST), &json))
        .ok_or_else(|| fail("interrupted".into()))?
        .ctx(|| format!("write {}", tmp.path().display()))?;
    let mut n = 0;
    for e in entries.by_ref() {
        let mut e = e.map_err(damaged)?;
        let path = e.path().map_err(damaged)?.into_owned();
        // unpack_in refuses paths that leave the directory (absolute, `..`).
        // An interruption stops the unpack between entries, not within one.
        let unpacked =
            crate::cleanup::unless_interrupted(|| e.unpack_in(tmp.path())).ok_or_else(|| fail("interrupted".into()))?;
        if !unpacked.map_err(damaged)? {
            return Err(fail(format!("entry {} points outside the artifact", path.display())));
        }
        n += 1;
    }
    if n != manifest.files {
        return Err(fail(format!("truncated: {n} of {} files; copy it again", manifest.files)));
    }
    // The tar reader stops at the end-of-archive block; reading the frame to
    // its end makes zstd check its content checksum.
    std::io::copy(&mut tar.into_inner(), &mut std::io::sink()).map_err(damaged)?;
    tmp.publish(dest).ctx(|| format!("move the kernel into {}", dest.display()))
}

/// `klpt kernel build --export FILE`: builds (or finds cached) the kernel of
/// `spec` and exports it, printing what was written.
pub fn export_build(spec: &super::build::Spec, out: &Path) -> Result<u64> {
    let k = super::built(spec)?;
    let t0 = std::time::Instant::now();
    let size =
        crate::event::try_stage(&format!("kernel: exporting {} to {}", k.id, out.display()), || export(&k, out))?;
    println!(
        "{}: {} ({}, {:.1} MB, {:.1}s)",
        spec.arch.name,
        out.display(),
        k.id,
        size as f64 / 1e6,
        t0.elapsed().as_secs_f64()
    );
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small artifact of made-up files, as `export` writes it.
    fn artifact(dir: &Path, arch: &str, files: &[(&str, &str)], claimed: Option<usize>) -> PathBuf {
        let mut map = BTreeMap::new();
        for (rel, data) in files {
            let p = dir.join(rel.replace('/', "_"));
            std::fs::write(&p, data).unwrap();
            map.insert(rel.to_string(), p);
        }
        let m = Manifest {
            format: FORMAT,
            id: "test".into(),
            arch: arch.into(),
            release: "1.0".into(),
            image: "build/vmlinux".into(),
            host: std::env::consts::ARCH.into(),
            origin: Origin::default(),
            files: claimed.unwrap_or(map.len()),
        };
        let out = dir.join(format!("{arch}-{}.tar.zst", map.len()));
        write(&out, &m, &map).unwrap();
        out
    }

    fn unpack_err(file: &Path, arch: Arch) -> String {
        let d = tempfile::tempdir().unwrap();
        let dest = d.path().join("k");
        let e = unpack(file, &dest, arch).unwrap_err().to_string();
        assert!(!dest.exists(), "no cache entry after: {e}");
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().flatten().filter(|e| e.file_name() != ".klpt-scratch-lock").count(),
            0,
            "no scratch directory after: {e}"
        );
        e
    }

    #[test]
    fn a_good_artifact_unpacks_with_its_manifest() {
        let d = tempfile::tempdir().unwrap();
        let f = artifact(d.path(), "x86_64", &[("build/a", "1"), ("build/sub/b", "2")], None);
        let dest = d.path().join("k");
        unpack(&f, &dest, crate::arch::X86_64).unwrap();
        assert_eq!(std::fs::read_to_string(dest.join("build/sub/b")).unwrap(), "2");
        assert!(dest.join(MANIFEST).is_file() && !dest.join(".klpt-lock").exists());
    }

    #[test]
    fn damaged_or_foreign_artifacts_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let good = artifact(d.path(), "x86_64", &[("build/a", "1"), ("build/b", "2")], None);
        let x86 = crate::arch::X86_64;
        assert!(
            unpack_err(&good, crate::arch::ARM64).contains("is built for x86_64, not arm64: run with --arch x86_64")
        );
        // Cut at an entry boundary: the tar reader alone would not notice.
        let short = artifact(d.path(), "x86_64", &[("build/a", "1")], Some(2));
        assert!(unpack_err(&short, x86).contains("truncated: 1 of 2 files"));
        let bytes = std::fs::read(&good).unwrap();
        let cut = d.path().join("cut");
        std::fs::write(&cut, &bytes[..bytes.len() - 9]).unwrap();
        assert!(unpack_err(&cut, x86).contains("corrupt or truncated"), "{}", unpack_err(&cut, x86));
        let mut flipped = bytes.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0x55;
        std::fs::write(&cut, &flipped).unwrap();
        // Caught by the tar headers, the manifest's syntax or zstd's checksum.
        let e = unpack_err(&cut, x86);
        assert!(e.contains("corrupt"), "{e}");
        // A flipped bit in a file's data: only zstd's checksum sees it.
        let noise: String =
            (0..40000u32).map(|i| char::from(b'a' + (i.wrapping_mul(2654435761) >> 27) as u8 % 26)).collect();
        let big = artifact(d.path(), "x86_64", &[("build/noise", &noise)], None);
        let mut bytes = std::fs::read(&big).unwrap();
        let at = bytes.len() * 2 / 3;
        bytes[at] ^= 1;
        std::fs::write(&cut, &bytes).unwrap();
        let e = unpack_err(&cut, x86);
        assert!(e.contains("corrupt"), "{e}");
        // Not zstd at all: refused before anything is read into the cache.
        std::fs::write(&cut, "hello").unwrap();
        assert!(open(&cut, x86).unwrap_err().to_string().contains("not a kernel artifact (not zstd-compressed)"));
        // zstd, but not klpt's.
        std::fs::write(&cut, zstd::encode_all(&b"just some text"[..], 3).unwrap()).unwrap();
        let e = unpack_err(&cut, x86);
        assert!(
            e.contains("corrupt or truncated") || e.contains("not a kernel artifact") || e.contains("empty archive"),
            "{e}"
        );
    }
}
