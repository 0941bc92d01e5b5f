//! Guest images: an initramfs per (architecture, kernel modules), built from
//! a recipe in `images/` with Debian packages of the guest's architecture,
//! cached by the hash of everything that goes in. `guest.yaml` is the normal
//! guest; a recipe may `extends:` another (e.g. `selftests.yaml`, the
//! kernel's selftests' userland on top of it), and callers may add files.

pub mod cpio;
mod elf;

use crate::apt::{self, Apt};
use crate::error::{Error, IoContext, Result};
use crate::kernel::Kernel;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Recipe {
    /// Another recipe (a file name in the same directory) whose lists this
    /// one extends and whose `init` it inherits unless it names its own.
    #[serde(default)]
    extends: Option<String>,
    #[serde(default)]
    packages: Vec<String>,
    /// Paths inside the packages; copied with their libraries.
    #[serde(default)]
    binaries: Vec<String>,
    /// Command names, looked up in bin, sbin, usr/bin and usr/sbin of the
    /// unpacked packages (wherever this Debian release puts them) and
    /// installed at that path, a package's symlink as a symlink.
    #[serde(default)]
    commands: Vec<String>,
    /// `path: command`: a symlink at `path` to where `command` was
    /// installed, unless `path` already exists (`bin/stat: stat` for
    /// scripts that hard-code `/bin/stat`; `usr/bin/awk: mawk` for the
    /// link Debian's maintainer scripts would make).
    #[serde(default)]
    links: std::collections::BTreeMap<String, String>,
    /// `guest path: file`, a file of the recipe directory copied into the image.
    #[serde(default)]
    files: std::collections::BTreeMap<String, String>,
    /// The kmod binary (one of `binaries`) that [`INSMOD`] links to
    /// (inherited through `extends:`).
    #[serde(default)]
    insmod: Option<String>,
    #[serde(default)]
    kernel_modules: Vec<String>,
    #[serde(default)]
    init: Option<String>,
}

/// A file a caller adds to an image: (path in the guest, mode, content).
pub type Extra = (String, u32, Vec<u8>);

/// A recipe with its `extends:` chain merged (lists deduplicated, the
/// nearest `init` wins), and the text of every file in the chain for the
/// cache key.
fn load_recipe(dir: &Path, name: &str, depth: usize) -> Result<(Recipe, String)> {
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path).ctx(|| format!("read image recipe {}", path.display()))?;
    let mut r: Recipe = serde_norway::from_str(&text).map_err(|e| Error::Other(format!("{}: {e}", path.display())))?;
    let Some(base_name) = r.extends.take() else { return Ok((r, text)) };
    if depth > 8 {
        return Err(Error::Other(format!("{}: `extends:` chain is deeper than 8 recipes (a cycle?)", path.display())));
    }
    let (mut base, base_text) = load_recipe(dir, &base_name, depth + 1)?;
    fn merge(into: &mut Vec<String>, more: Vec<String>) {
        for m in more {
            if !into.contains(&m) {
                into.push(m);
            }
        }
    }
    merge(&mut base.packages, r.packages);
    merge(&mut base.binaries, r.binaries);
    merge(&mut base.commands, r.commands);
    merge(&mut base.kernel_modules, r.kernel_modules);
    base.links.extend(r.links);
    base.files.extend(r.files);
    if r.init.is_some() {
        base.init = r.init;
    }
    if r.insmod.is_some() {
        base.insmod = r.insmod;
    }
    Ok((base, format!("{base_text}\n---\n{text}")))
}

/// klpt's module loader in the guest: a symlink named `insmod` to kmod, which
/// dispatches on argv[0]. kmod's insmod makes exactly one `finit_module`
/// call per load (libkmod falls back to `init_module` only on ENOSYS), so a
/// module the kernel refuses is refused, and logged, once. Busybox's
/// `insmod` applet retries with `init_module` after any `finit_module`
/// failure, which runs a livepatch's `klp_enable_patch()` twice.
pub const INSMOD: &str = "/usr/lib/klpt/insmod";

/// Files klpt writes into every image: (path, mode, content). Root logs in
/// with klpt's key only: no password hashes to the `*` in /etc/shadow, while
/// dropbear refuses an account whose hash starts with `!` (keys included)
/// and, with `-B`, lets anyone into one whose hash is empty.
const FIXED: &[(&str, u32, &str)] = &[
    ("etc/passwd", 0o644, "root:x:0:0:root:/root:/bin/sh\n"),
    ("etc/group", 0o644, "root:x:0:\n"),
    ("etc/shadow", 0o600, "root:*:0:0:99999:7:::\n"),
    ("etc/shells", 0o644, "/bin/sh\n"),
];

/// The directory of image recipes: `$KLPT_IMAGES`, else `images/` of the source tree.
pub fn recipes_dir() -> PathBuf {
    std::env::var_os("KLPT_IMAGES").map(PathBuf::from).unwrap_or_else(|| crate::project_root().join("images"))
}

/// Builds (or reuses) the normal guest's initramfs for `k`; returns its path.
pub fn build(k: &Kernel) -> Result<PathBuf> {
    build_recipe(k, "guest.yaml", &[])
}

/// Builds (or reuses) the initramfs of recipe `name` (in [`recipes_dir`])
/// for `k`, with `extra` files added; returns its path.
pub fn build_recipe(k: &Kernel, name: &str, extra: &[Extra]) -> Result<PathBuf> {
    let dir = recipes_dir();
    let recipe_path = dir.join(name);
    let (recipe, recipe_text) = load_recipe(&dir, name, 0)?;
    let insmod = recipe
        .insmod
        .clone()
        .ok_or_else(|| Error::Other(format!("{}: no `insmod:` (nor in what it extends)", recipe_path.display())))?;
    if !recipe.binaries.contains(&insmod) {
        return Err(Error::Other(format!("{}: `insmod: {insmod}` is not one of `binaries`", recipe_path.display())));
    }
    let init_name = recipe
        .init
        .clone()
        .ok_or_else(|| Error::Other(format!("{}: no `init:` (nor in what it extends)", recipe_path.display())))?;
    let init = std::fs::read(dir.join(&init_name)).ctx(|| format!("read {}", dir.join(&init_name).display()))?;
    let mut files: Vec<Extra> = Vec::new();
    for (guest, file) in &recipe.files {
        let data = std::fs::read(dir.join(file)).ctx(|| format!("read {}", dir.join(file).display()))?;
        files.push((guest.clone(), 0o755, data));
    }
    files.extend(extra.iter().cloned());
    let apt = Apt::new(&apt::host_codename(), k.arch.deb)?;
    apt.update()?;
    let debs = apt.download(&recipe.packages)?;
    let modules = kernel_modules(k, &recipe.kernel_modules)?;
    let (_, pubkey) = crate::keys::client_key()?;

    let mut h = crate::cache::Hasher::new();
    h.part("recipe", &recipe_text)
        .part("init", &init)
        .part("key", &pubkey)
        .part("arch", k.arch.name)
        .part("insmod", INSMOD);
    for (path, mode, text) in FIXED {
        h.part("fixed", format!("{path} {mode:o} {text}"));
    }
    for (path, mode, data) in &files {
        h.part("file", path).part("mode", mode.to_le_bytes()).part("data", data);
    }
    for d in &debs {
        h.part("deb", d.file_name().unwrap_or_default().to_string_lossy().as_bytes());
    }
    for m in &modules {
        h.file("module", m).ctx(|| format!("read {}", m.display()))?;
    }
    let stem = name.trim_end_matches(".yaml");
    let out = crate::cache::dir("images").join(if stem == "guest" {
        format!("{}-{}.cpio", k.arch.name, h.hex())
    } else {
        format!("{}-{stem}-{}.cpio", k.arch.name, h.hex())
    });
    if out.exists() {
        return Ok(out);
    }
    crate::event::stage(&format!("image: building {} initramfs ({name})", k.arch.name), || {
        assemble(&recipe, &debs, &modules, &init, &files, &pubkey, k, &out)
    })?;
    Ok(out)
}

/// Where `name` lives among the unpacked packages' command directories.
fn find_command(root: &Path, name: &str) -> Option<PathBuf> {
    ["bin", "sbin", "usr/bin", "usr/sbin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| root.join(p).symlink_metadata().is_ok() && resolve_in(root, p).is_file())
}

#[allow(clippy::too_many_arguments)]
fn assemble(
    recipe: &Recipe,
    debs: &[PathBuf],
    modules: &[PathBuf],
    init: &[u8],
    files: &[Extra],
    pubkey: &str,
    k: &Kernel,
    out: &Path,
) -> Result<()> {
    let stage = crate::cleanup::TempDir::new("klpt-image-").ctx(|| "create staging dir".into())?;
    for d in debs {
        apt::unpack(d, stage.path())?;
    }
    let mut bins: Vec<PathBuf> = recipe.binaries.iter().map(PathBuf::from).collect();
    // Commands: a package's symlink (sbin/insmod -> /bin/kmod) stays a
    // symlink, its target is copied.
    let mut links: Vec<(PathBuf, String)> = Vec::new();
    let mut installed = std::collections::BTreeMap::new();
    for c in &recipe.commands {
        let p = find_command(stage.path(), c).ok_or_else(|| {
            Error::Other(format!(
                "image recipe: no package listed provides the command `{c}` (in bin, sbin, usr/bin or usr/sbin)"
            ))
        })?;
        match std::fs::read_link(stage.path().join(&p)) {
            Ok(target) => {
                let real = resolve_in(stage.path(), &p);
                let rel = real.strip_prefix(stage.path()).map(Path::to_path_buf).unwrap_or_default();
                if !bins.contains(&rel) {
                    bins.push(rel);
                }
                links.push((p.clone(), target.to_string_lossy().into_owned()));
            }
            Err(_) => {
                if !bins.contains(&p) {
                    bins.push(p.clone());
                }
            }
        }
        installed.insert(c.clone(), p);
    }
    for (path, cmd) in &recipe.links {
        let target = installed.get(cmd).ok_or_else(|| {
            Error::Other(format!("image recipe: link {path} -> `{cmd}`, which is not one of `commands`"))
        })?;
        let path = PathBuf::from(path);
        if !bins.contains(&path) && !links.iter().any(|(l, _)| *l == path) {
            links.push((path, format!("/{}", target.display())));
        }
    }
    let libs = elf::closure(stage.path(), &bins, k.arch.triplet)?;

    let tmp = tempfile::NamedTempFile::new_in(out.parent().expect("cache dir")).ctx(|| "create image file".into())?;
    let mut c = cpio::Cpio::new(std::io::BufWriter::new(tmp.as_file()));
    let io = |r: std::io::Result<()>| r.ctx(|| "write initramfs".into());
    let mut dirs = BTreeSet::new();
    for d in [
        "bin",
        "sbin",
        "usr",
        "usr/bin",
        "usr/sbin",
        "etc",
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
        "root",
        "lib",
        "lib/modules",
        "var",
        "var/log",
    ] {
        dirs.insert(PathBuf::from(d));
    }
    let extra_paths: Vec<PathBuf> = files.iter().map(|(p, ..)| PathBuf::from(p.trim_start_matches('/'))).collect();
    let insmod = PathBuf::from(INSMOD.trim_start_matches('/'));
    for p in
        bins.iter().chain(libs.iter()).chain(links.iter().map(|(l, _)| l)).chain(extra_paths.iter()).chain([&insmod])
    {
        for a in p.ancestors().skip(1) {
            if !a.as_os_str().is_empty() {
                dirs.insert(a.to_path_buf());
            }
        }
    }
    for d in &dirs {
        io(c.dir(&d.to_string_lossy(), 0o755))?;
    }
    io(c.dir("root/.ssh", 0o700))?;
    for p in bins.iter().chain(libs.iter()) {
        // Follow symlinks (e.g. the loader in lib64) so the image holds real files.
        let data = std::fs::read(resolve_in(stage.path(), p)).ctx(|| format!("read {}", p.display()))?;
        io(c.file(&p.to_string_lossy(), 0o755, &data))?;
    }
    // A merged-/usr layout may leave binaries where PATH does not look.
    io(c.symlink("bin/sh", "busybox"))?;
    for (l, target) in &links {
        io(c.symlink(&l.to_string_lossy(), target))?;
    }
    for (path, mode, data) in files {
        io(c.file(path, *mode, data))?;
    }
    let kmod = recipe.insmod.as_deref().unwrap_or_default();
    io(c.symlink(INSMOD, &format!("/{}", kmod.trim_start_matches('/'))))?;
    let mut order = String::new();
    for m in modules {
        let name = m.file_name().unwrap_or_default().to_string_lossy().to_string();
        let data = std::fs::read(m).ctx(|| format!("read {}", m.display()))?;
        io(c.file(&format!("lib/modules/{name}"), 0o644, &data))?;
        order.push_str(name.trim_end_matches(".ko"));
        order.push('\n');
    }
    io(c.file("etc/klpt-modules", 0o644, order.as_bytes()))?;
    for (path, mode, text) in FIXED {
        io(c.file(path, *mode, text.as_bytes()))?;
    }
    io(c.file("root/.ssh/authorized_keys", 0o600, pubkey.as_bytes()))?;
    io(c.file("init", 0o755, init))?;
    let w = c.finish().ctx(|| "finish initramfs".into())?;
    drop(w);
    tmp.persist(out).map_err(|e| Error::Io { what: format!("store {}", out.display()), source: e.error })?;
    Ok(())
}

/// `rel` inside `root` with symlinks followed inside `root`: package
/// symlinks may be absolute (`/lib64/ld64.so.2 -> /lib/...`) and must not
/// resolve against the host.
fn resolve_in(root: &Path, rel: &Path) -> PathBuf {
    let mut cur = rel.to_path_buf();
    for _ in 0..16 {
        // Resolve the first symlinked component, if any.
        let mut acc = PathBuf::new();
        let mut changed = false;
        for comp in cur.components() {
            acc.push(comp);
            if let Ok(target) = std::fs::read_link(root.join(&acc)) {
                let base = acc.parent().map(Path::to_path_buf).unwrap_or_default();
                let rest = cur.strip_prefix(&acc).map(Path::to_path_buf).unwrap_or_default();
                let t = if target.is_absolute() {
                    target.strip_prefix("/").map(Path::to_path_buf).unwrap_or_default()
                } else {
                    base.join(target)
                };
                cur = normalize(&t.join(rest));
                changed = true;
                break;
            }
        }
        if !changed {
            break;
        }
    }
    root.join(cur)
}

fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// The `.ko` files for `names` and their dependencies, dependencies first.
/// Names the kernel builds in (or lacks) are skipped.
fn kernel_modules(k: &Kernel, names: &[String]) -> Result<Vec<PathBuf>> {
    let Some(dir) = &k.modules_dir else { return Ok(Vec::new()) };
    let mut index = std::collections::BTreeMap::new();
    let mut stack = vec![dir.join("kernel")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).ctx(|| format!("read {}", d.display()))?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Some(n) = p.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".ko")) {
                index.insert(n.replace('-', "_"), p.clone());
            }
        }
    }
    let mut out: Vec<PathBuf> = Vec::new();
    fn visit(
        name: &str,
        index: &std::collections::BTreeMap<String, PathBuf>,
        out: &mut Vec<PathBuf>,
        depth: usize,
    ) -> Result<()> {
        let Some(p) = index.get(&name.replace('-', "_")) else { return Ok(()) };
        if out.contains(p) || depth > 32 {
            return Ok(());
        }
        let data = std::fs::read(p).ctx(|| format!("read {}", p.display()))?;
        for dep in modinfo(&data, "depends").split(',').filter(|d| !d.is_empty()) {
            visit(dep, index, out, depth + 1)?;
        }
        if !out.contains(p) {
            out.push(p.clone());
        }
        Ok(())
    }
    for n in names {
        visit(n, &index, &mut out, 0)?;
    }
    Ok(out)
}

/// A `key=value` string from a module's `.modinfo` section.
fn modinfo(data: &[u8], key: &str) -> String {
    let pat = format!("{key}=");
    data.split(|b| *b == 0)
        .find_map(|s| s.strip_prefix(pat.as_bytes()))
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_password_is_locked_but_not_refused_by_dropbear() {
        let shadow = FIXED.iter().find(|(p, ..)| *p == "etc/shadow").expect("image has /etc/shadow").2;
        let root = shadow.lines().find_map(|l| l.strip_prefix("root:")).expect("root has a shadow entry");
        let hash = root.split(':').next().unwrap_or_default();
        // Empty: no password at all; `!`: dropbear refuses the account, keys included.
        assert!(!hash.is_empty() && !hash.starts_with('!'), "{hash:?}");
        // `*` is no crypt(3) hash of any password.
        assert_eq!(hash, "*");
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        std::fs::create_dir_all(r.join("lib/triplet")).unwrap();
        std::fs::create_dir_all(r.join("lib64")).unwrap();
        std::fs::write(r.join("lib/triplet/ld.so"), "x").unwrap();
        std::os::unix::fs::symlink("/lib/triplet/ld.so", r.join("lib64/abs.so")).unwrap();
        std::os::unix::fs::symlink("../lib/triplet/ld.so", r.join("lib64/rel.so")).unwrap();
        assert_eq!(resolve_in(r, Path::new("lib64/abs.so")), r.join("lib/triplet/ld.so"));
        assert_eq!(resolve_in(r, Path::new("lib64/rel.so")), r.join("lib/triplet/ld.so"));
    }
}
