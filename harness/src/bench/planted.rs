//! `klpt bench --planted`: how fast `klpt explore` finds bugs it was not
//! written for. Each fixture is one small change to a reference series or
//! to stock 7.2 (`cases/explore/planted/*/`); the benchmark builds that
//! kernel, explores it from a fixed seed until the first divergence, shrinks
//! it, and prints the operations and wall time it took and the size of the
//! shrunk case against the targets.

use crate::event::{emit, Event};
use crate::explore::{self, Divergence};
use crate::runner::{AccelChoice, Target};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The targets: found within this long, shrunk to at most this many steps.
pub const FIND_WITHIN: Duration = Duration::from_secs(600);
pub const MAX_STEPS: usize = 8;

/// `planted.yaml` of a fixture directory.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixture {
    /// Series applied before the fixture's own patch, relative to the
    /// fixture directory; empty for stock.
    base: Vec<PathBuf>,
    /// One line: what is wrong in the planted kernel.
    bug: String,
}

/// A fixture, resolved: its name, what is planted, the `--kernel` spec.
pub struct Planted {
    pub name: String,
    pub bug: String,
    pub kernel: String,
}

/// Reads `dir/planted.yaml`: the fixture's kernel is its base series, then
/// the directory itself as one more series.
pub fn load(dir: &Path) -> Result<Planted, String> {
    let file = dir.join("planted.yaml");
    let text = std::fs::read_to_string(&file).map_err(|e| {
        format!(
            "{}: {e}\n  (a planted-bug fixture is a directory with its patch and a planted.yaml: `base: [SERIES...]` relative to it, `bug: ONE LINE`)",
            file.display()
        )
    })?;
    let f: Fixture = serde_norway::from_str(&text).map_err(|e| {
        let at = e.location().map_or(String::new(), |l| format!(":{}", l.line()));
        format!("{}{at}: {e}", file.display())
    })?;
    let mut series = Vec::new();
    for b in &f.base {
        let p = dir.join(b);
        let p =
            std::fs::canonicalize(&p).map_err(|e| format!("{}: base series {}: {e}", file.display(), p.display()))?;
        series.push(p.display().to_string());
    }
    series.push(std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf()).display().to_string());
    if series.iter().any(|s| s.contains(',')) {
        return Err(format!(
            "{}: a series path may not contain a comma (`--kernel source:` splits at commas)",
            file.display()
        ));
    }
    let name = dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned());
    Ok(Planted { name, bug: f.bug, kernel: format!("source:{}", series.join(",")) })
}

/// The fixture directories: the given ones, or every one below `root`.
pub fn fixtures(paths: &[PathBuf], root: &Path) -> Result<Vec<Planted>, String> {
    let dirs: Vec<PathBuf> = if paths.is_empty() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(root)
            .map_err(|e| format!("{}: {e}", root.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("planted.yaml").is_file())
            .collect();
        v.sort();
        v
    } else {
        paths.to_vec()
    };
    if dirs.is_empty() {
        return Err(format!("no planted-bug fixtures (directories with a planted.yaml) in {}", root.display()));
    }
    dirs.iter().map(|d| load(d)).collect()
}

/// One fixture's result.
struct Row {
    name: String,
    semantics: String,
    prepare_secs: f64,
    first: Option<Divergence>,
    explored_ops: usize,
    explored_secs: f64,
}

pub fn bench(planted: &[Planted], arch: crate::arch::Arch, accel: AccelChoice, seed: u64) -> Result<bool, String> {
    let artifacts = PathBuf::from("klpt-artifacts").join("bench-planted");
    let mut rows = Vec::new();
    for p in planted {
        emit(Event::Note { msg: &format!("bench: planted bug {}: {}", p.name, p.bug) });
        let t0 = Instant::now();
        let t = Target::prepare(arch, Some(&p.kernel), accel).map_err(|e| format!("{} ({}): {e}", p.name, p.kernel))?;
        let prepare_secs = t0.elapsed().as_secs_f64();
        let opts = explore::Options {
            seed,
            ops: usize::MAX,
            time: Some(FIND_WITHIN),
            ops_per_guest: 40,
            patches: 5,
            artifacts: artifacts.join(&p.name),
            dry_run: false,
            shrink_runs: 60,
            jobs: crate::runner::default_parallel_guests().min(2),
            stop_at_first: true,
        };
        let s = explore::explore(&t, &opts)?;
        print!("{}: {}", p.name, explore::report(&s));
        rows.push(Row {
            name: p.name.clone(),
            semantics: explore::features(&t.caps).semantics().name().to_string(),
            prepare_secs,
            first: s.divergences.first().cloned(),
            explored_ops: s.ops,
            explored_secs: s.secs,
        });
    }
    let (table, ok) = table(&rows);
    print!("{table}");
    Ok(ok)
}

fn table(rows: &[Row]) -> (String, bool) {
    let mut out = format!(
        "\nplanted bugs, seed-driven exploration until the first divergence (targets: found within {} s, shrunk to at most {MAX_STEPS} steps):\n",
        FIND_WITHIN.as_secs()
    );
    out.push_str(&format!(
        "{:<32} {:<28} {:>9} {:>8} {:>9} {:>13} {:>7} {:>6}\n",
        "fixture", "semantics", "kernel s", "ops", "found s", "shrink s/runs", "ops", "steps"
    ));
    let (mut found, mut small) = (0, 0);
    for r in rows {
        match &r.first {
            Some(d) => {
                let ok_found = d.secs <= FIND_WITHIN.as_secs_f64();
                found += ok_found as usize;
                let (shrink, ops, steps) = match &d.shrunk {
                    Some(s) => {
                        small += (s.steps <= MAX_STEPS) as usize;
                        (format!("{:.0}/{}", s.secs, s.runs), s.ops.to_string(), s.steps.to_string())
                    }
                    None => ("-".into(), "-".into(), "not shrunk".into()),
                };
                out.push_str(&format!(
                    "{:<32} {:<28} {:>9.0} {:>8} {:>9.0} {:>13} {:>7} {:>6}\n",
                    r.name, r.semantics, r.prepare_secs, d.ops_until, d.secs, shrink, ops, steps
                ));
            }
            None => out.push_str(&format!(
                "{:<32} {:<28} {:>9.0} {:>8} {:>9} NOT FOUND in {} operations, {:.0} s\n",
                r.name, r.semantics, r.prepare_secs, "-", "-", r.explored_ops, r.explored_secs
            )),
        }
    }
    for r in rows.iter().filter_map(|r| r.first.as_ref().and_then(|d| d.shrunk.as_ref().map(|s| (&r.name, s)))) {
        out.push_str(&format!("  {}: klpt run {}\n", r.0, r.1.case.display()));
    }
    let n = rows.len();
    out.push_str(&format!(
        "planted bugs found within {} s: {found}/{n}; shrunk to at most {MAX_STEPS} steps: {small}/{n}\n",
        FIND_WITHIN.as_secs()
    ));
    (out, found == n && small == n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_fixture_loads_and_names_existing_series() {
        let root = crate::project_root().join("cases/explore/planted");
        let all = fixtures(&[], &root).expect("the shipped fixtures load");
        assert!(all.len() >= 4, "{} fixtures", all.len());
        for p in &all {
            assert!(p.kernel.starts_with("source:") && p.kernel.ends_with(&p.name), "{}", p.kernel);
            assert!(!p.bug.is_empty());
        }
    }

    #[test]
    fn a_bad_fixture_says_where_and_how_to_fix() {
        let dir = crate::cleanup::TempDir::new("klpt-planted-test-").expect("temp dir");
        let e = load(dir.path()).err().expect("no planted.yaml");
        assert!(e.contains("planted.yaml") && e.contains("base:"), "{e}");
        std::fs::write(dir.path().join("planted.yaml"), "base: []\nbug: x\nseed: 3\n").expect("write");
        let e = load(dir.path()).err().expect("unknown key");
        assert!(e.contains("planted.yaml:3") && e.contains("seed"), "{e}");
        std::fs::write(dir.path().join("planted.yaml"), "base: [nope]\nbug: x\n").expect("write");
        let e = load(dir.path()).err().expect("missing base");
        assert!(e.contains("base series") && e.contains("nope"), "{e}");
    }
}
