//! Kernels built once: `klpt kernel build --export FILE` on the shared cache
//! (where klpt's x86_64 kernel from Debian's source is built), then
//! `klpt run --kernel FILE` with `KLPT_CACHE` pointing at an empty
//! directory, as on a machine that never built a kernel. The case passes,
//! the empty cache fetched no kernel source and built no kernel, and the
//! module it built against the unpacked tree is byte-identical to the one
//! built against the original build tree; the kernel tree's livepatch
//! selftests (`klpt selftests`) run from the artifact too. Damaged artifacts and a wrong
//! `--arch` are refused with what is wrong, and an interrupted unpack
//! leaves no cache entry.
//!
//! Ignored by default, as `tests/kselftest.rs`: it needs the source kernel,
//! which it would otherwise build (`klpt kernel build --arch x86_64`).
//! `cargo test --release --test export -- --ignored`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

const CASE: &str = "cases/stock/basic-enable-disable.yaml";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// `klpt ARGS` in the project root; `cache`: KLPT_CACHE (else the shared cache).
fn klpt(args: &[&str], cache: Option<&Path>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_klpt"));
    c.args(args).current_dir(root());
    if let Some(d) = cache {
        c.env("KLPT_CACHE", d);
    }
    c.output().expect("run klpt")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every `*.ko` below `dir`, relative path → bytes.
fn modules(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "ko") {
                out.push((p.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

/// The names in `dir`, without klpt's lock files.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.ends_with("-lock"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
#[ignore = "needs klpt's x86_64 kernel from source (cargo test --release --test export -- --ignored)"]
fn exported_kernel_runs_on_an_empty_cache() {
    let work = tempfile::tempdir().unwrap();
    let artifacts = work.path().join("artifacts");
    let art = artifacts.to_str().unwrap();
    let file = work.path().join("k.tar.zst");
    let file_s = file.to_str().unwrap();

    // Export from the shared cache: a cache hit, no build.
    let t0 = Instant::now();
    let o = klpt(&["kernel", "build", "--arch", "x86_64", "--export", file_s], None);
    assert!(o.status.success(), "export failed:\n{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(": cached") && !err.contains("kernel: building") && !err.contains("kernel: configuring"),
        "export must reuse the cached build:\n{}",
        text(&o)
    );
    let size = std::fs::metadata(&file).unwrap().len();
    eprintln!("export: {:.1} MB in {:.1}s", size as f64 / 1e6, t0.elapsed().as_secs_f64());

    // The same case on the shared cache (the original build tree), for its module.
    let o = klpt(&["run", CASE, "--artifacts", art, "--kernel", "source"], None);
    assert!(o.status.success(), "run on the build tree failed:\n{}", text(&o));

    // Another machine: an empty cache.
    let cache = work.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    let t0 = Instant::now();
    let o = klpt(&["run", CASE, "--artifacts", art, "--kernel", file_s], Some(&cache));
    let secs = t0.elapsed().as_secs_f64();
    assert!(o.status.success(), "run with --kernel FILE on an empty cache failed:\n{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let passed = regex::Regex::new(r"(?m)^test x86_64/src-[^/ ]+/stock/basic-enable-disable \.\.\. ok$").unwrap();
    assert!(
        passed.is_match(&out) && out.contains("1 passed"),
        "the case did not pass on the exported kernel:\n{}",
        text(&o)
    );
    eprintln!("run on an empty cache: {secs:.1}s");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("modules: building"),
        "the empty cache must build the case's module against the unpacked tree:\n{}",
        text(&o)
    );

    // No kernel source fetched, no kernel built: only the unpacked artifact.
    for sub in ["src", "kbuild", "ccache"] {
        assert!(!cache.join(sub).exists(), "{sub}/ in the empty cache: a kernel was fetched or built\n{}", text(&o));
    }
    let kernels = entries(&cache.join("kernels"));
    assert!(kernels.len() == 1 && kernels[0].starts_with("artifact-"), "kernels/ holds {kernels:?}");

    // Built against the unpacked tree = built against the original tree.
    let mine = modules(&cache.join("modules"));
    assert!(!mine.is_empty(), "no module in the empty cache");
    let shared = klpt::cache::root().join("modules");
    for (rel, data) in &mine {
        let theirs = std::fs::read(shared.join(rel))
            .unwrap_or_else(|e| panic!("{}: not built against the build tree ({e})", rel.display()));
        assert!(&theirs == data, "{} differs between the build tree and the unpacked artifact", rel.display());
    }

    // The kernel tree's livepatch selftests travel with it: their test
    // modules build against the unpacked tree and pass.
    let o = klpt(&["selftests", "--artifacts", art, "--kernel", file_s, "test-livepatch/"], Some(&cache));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains("test result: ok. 5 passed"),
        "selftests on the exported kernel:\n{}",
        text(&o)
    );
    assert!(!cache.join("src").exists(), "the selftests fetched a kernel source");

    // Wrong arch: refused before anything is built.
    let o = klpt(&["run", CASE, "--artifacts", art, "--arch", "arm64", "--kernel", file_s], Some(&cache));
    assert!(
        !o.status.success() && String::from_utf8_lossy(&o.stderr).contains("is built for x86_64, not arm64"),
        "{}",
        text(&o)
    );

    // Truncated: refused, no cache entry, no scratch directory left.
    let cut = work.path().join("cut.tar.zst");
    std::fs::write(&cut, &std::fs::read(&file).unwrap()[..size as usize / 2]).unwrap();
    let o = klpt(&["run", CASE, "--artifacts", art, "--kernel", cut.to_str().unwrap()], Some(&cache));
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("corrupt or truncated"), "{}", text(&o));
    assert_eq!(entries(&cache.join("kernels")), kernels, "a damaged artifact left something in kernels/");

    // Ctrl-C while unpacking: exit 130, nothing left in kernels/.
    let fresh = work.path().join("fresh");
    let mut child = Command::new(env!("CARGO_BIN_EXE_klpt"))
        .args(["run", "--list", CASE, "--kernel", file_s])
        .current_dir(root())
        .env("KLPT_CACHE", &fresh)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = String::new();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    while !seen.contains("kernel: unpacking") {
        seen.push_str(&lines.next().expect("klpt ended before unpacking").unwrap());
        seen.push('\n');
    }
    // Midway, with files in the scratch directory: its removal is then long
    // enough that a handler exiting during it would leave it behind.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let filling = || {
        std::fs::read_dir(fresh.join("kernels")).into_iter().flatten().flatten().any(|e| {
            e.file_name().to_string_lossy().starts_with(".import-")
                && std::fs::read_dir(e.path()).map(|d| d.count()).unwrap_or(0) > 2
        })
    };
    while !filling() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().unwrap();
    assert!(
        !rest.iter().any(|l| l.contains("unpacking") && l.contains("done")),
        "the unpack finished before the signal: {rest:?}"
    );
    assert_eq!(status.code(), Some(130), "{seen}{rest:?}");
    assert_eq!(
        entries(&fresh.join("kernels")),
        Vec::<String>::new(),
        "an interrupted unpack left something in kernels/"
    );
}
