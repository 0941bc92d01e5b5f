//! Programs klpt builds for the guest (`spawn: {program: ...}`), with the
//! kernel's (cross) gcc, cached by their source and compiler.

use crate::case::{Action, Case};
use crate::error::{Error, IoContext, Result};
use crate::kernel::Kernel;
use std::path::PathBuf;
use std::process::Command;

/// The programs a case's `spawn:` steps start.
pub fn programs(case: &Case) -> Vec<&str> {
    let mut out: Vec<&str> = case
        .steps
        .iter()
        .filter_map(|s| match &s.action {
            Action::Spawn { program: Some(p), .. } => Some(p.as_str()),
            _ => None,
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The guest file (in /root) of a program klpt builds.
pub fn file(name: &str) -> String {
    format!("klpt-{name}")
}

/// `getpid`: calls getpid() until it is killed, as the selftests'
/// test_klp-call_getpid. No libc: a raw system call per architecture, so
/// any cross gcc links it statically.
const GETPID: &str = crate::template::GETPID_C.text;

/// The compiler's first `--version` line, so that a new compiler rebuilds.
fn version(gcc: &str) -> String {
    Command::new(gcc)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").to_string())
        .unwrap_or_else(|_| gcc.to_string())
}

/// Builds (or reuses) program `name` with the kernel's (cross) gcc.
pub fn build(name: &str, k: &Kernel) -> Result<PathBuf> {
    let src = match name {
        "getpid" => GETPID,
        other => return Err(Error::Other(format!("klpt builds no program `{other}`"))),
    };
    let gcc = format!("{}gcc", k.arch.cross_compile());
    let key = crate::cache::Hasher::new().part("arch", k.arch.name).part("gcc", version(&gcc)).part("c", src).hex();
    let root = crate::cache::dir("programs");
    let dest = root.join(format!("{name}-{key}"));
    let bin = dest.join(file(name));
    if bin.exists() {
        return Ok(bin);
    }
    let tmp = crate::cleanup::TempDir::new_in(&root, ".build-").ctx(|| "create program build dir".into())?;
    std::fs::write(tmp.path().join("prog.c"), src).ctx(|| "write program source".into())?;
    let out = Command::new(&gcc)
        .args(["-O2", "-static", "-nostdlib", "-ffreestanding", "-fno-stack-protector", "-fno-pie", "-no-pie", "-o"])
        .arg(tmp.path().join(file(name)))
        .arg(tmp.path().join("prog.c"))
        .output()
        .map_err(|e| Error::Other(format!("cannot run {gcc} for program {name}: {e}")))?;
    if !out.status.success() {
        return Err(Error::Other(format!(
            "program {name} does not build with {gcc}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    crate::cache::publish_temp(tmp, &dest).ctx(|| format!("store program in {}", dest.display()))?;
    Ok(bin)
}
