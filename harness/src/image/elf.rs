//! Shared-library closure of ELF binaries of any architecture, via readelf.

use crate::error::{run, Error, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn needed(bin: &Path) -> Result<(Vec<String>, Option<String>)> {
    let dynamic = run(Command::new("readelf").arg("-dW").arg(bin))?;
    let libs = dynamic
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1).and_then(|r| r.split(']').next()).map(str::to_string))
        .collect();
    let headers = run(Command::new("readelf").arg("-lW").arg(bin))?;
    let interp = headers
        .lines()
        .find_map(|l| l.split("program interpreter: ").nth(1))
        .map(|r| r.trim_end_matches(']').to_string());
    Ok((libs, interp))
}

/// Paths (relative to `root`) of every library `bins` need, transitively,
/// plus the dynamic loader.
pub fn closure(root: &Path, bins: &[PathBuf], triplet: &str) -> Result<BTreeSet<PathBuf>> {
    let dirs = [format!("lib/{triplet}"), format!("usr/lib/{triplet}"), "lib".into(), "usr/lib".into(), "lib64".into()];
    let mut out = BTreeSet::new();
    let mut todo: Vec<PathBuf> = bins.to_vec();
    while let Some(bin) = todo.pop() {
        let (libs, interp) = needed(&super::resolve_in(root, &bin))?;
        if let Some(i) = interp {
            out.insert(PathBuf::from(i.trim_start_matches('/')));
        }
        for lib in libs {
            let rel =
                dirs.iter().map(|d| Path::new(d).join(&lib)).find(|p| super::resolve_in(root, p).exists()).ok_or_else(
                    || {
                        Error::Other(format!(
                            "{}: needs {lib}, which no listed package provides; add its package to images/guest.yaml",
                            bin.display()
                        ))
                    },
                )?;
            if out.insert(rel.clone()) {
                todo.push(rel);
            }
        }
    }
    Ok(out)
}
