//! `klpt explore`: random patches and operation sequences, run in guests
//! and compared with the reference model ([`crate::model`]) after every
//! operation. A run is a seed: the universe of patches comes from it, and
//! guest `g`'s operations from its `g`-th fork, so the same seed on the same
//! kernel replays the same sequences.

pub mod render;
pub mod rng;
pub mod sequence;
pub mod shrink;
pub mod universe;

use crate::event::{emit, Event};
use crate::kernel::caps::Caps;
use crate::model::{Features, Kernel, Rule};
use crate::report::Status;
use crate::runner::{self, Target};
use rng::Rng;
use sequence::Planned;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use universe::Universe;

pub struct Options {
    pub seed: u64,
    /// Total operations to run.
    pub ops: usize,
    /// Stop starting guests after this long.
    pub time: Option<Duration>,
    pub ops_per_guest: usize,
    /// Patches in the universe.
    pub patches: usize,
    pub artifacts: PathBuf,
    /// Only generate and write the cases; boot nothing.
    pub dry_run: bool,
    /// Guests a divergence may use to shrink (0: do not shrink).
    pub shrink_runs: usize,
}

/// A guest where the kernel and the model disagreed.
#[derive(Debug, Clone)]
pub struct Divergence {
    pub guest: usize,
    /// 1-based number of the operation after which they disagreed, if known.
    pub op: Option<usize>,
    /// The case that reproduces it (all of the guest's operations).
    pub case: PathBuf,
    /// The shrunk case and its number of operations, if shrinking found one.
    pub shrunk: Option<(PathBuf, usize)>,
    pub message: String,
}

#[derive(Debug, Default)]
pub struct Summary {
    pub ops: usize,
    pub guests: usize,
    pub divergences: Vec<Divergence>,
    /// Model coverage over the operations the kernel agreed with.
    pub coverage: BTreeMap<String, u64>,
    pub unreached: Vec<Rule>,
}

/// The model's features from the kernel's probes. Sysfs attributes come
/// from their show/store symbols when System.map has them; otherwise all
/// are assumed, and the step layer does not check attributes the guest
/// lacks (it notes them).
pub fn features(caps: &Caps) -> Features {
    let fields = ["replace", "replaceable", "replace_set", "states"];
    let klp_patch = fields.iter().filter(|f| caps.has_field("klp_patch", f)).map(|f| f.to_string()).collect();
    let attrs = ["replace", "stack_order", "replaceable", "replace_set", "patched"];
    let sysfs = attrs
        .iter()
        .filter(|a| !caps.have_symbols || caps.symbols.contains(&format!("{a}_show")))
        .map(|a| a.to_string())
        .collect();
    Features { klp_patch, sysfs }
}

pub fn explore(t: &Target, opts: &Options) -> Result<Summary, String> {
    let features = features(&t.caps);
    let root = Rng::new(opts.seed);
    let universe = Universe::generate(&features, &mut root.fork(u64::MAX), opts.patches);
    let dir = opts.artifacts.join("explore").join(t.arch.name).join(&t.kernel.id).join(format!("seed-{}", opts.seed));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    emit(Event::Note {
        msg: &format!(
            "explore: {} semantics, seed {}, {} patches over {} targets + vmlinux; cases in {}",
            features.semantics(),
            opts.seed,
            universe.patches.len(),
            universe.targets.len(),
            dir.display()
        ),
    });
    let run_opts = runner::Options {
        artifacts: dir.join("runs"),
        keep_failed: false,
        boot_timeout: Duration::from_secs(300),
        guest_time: false,
        restore_ahead: false,
    };
    let t0 = Instant::now();
    let mut sum = Summary::default();
    while sum.ops < opts.ops && opts.time.is_none_or(|d| t0.elapsed() < d) {
        let g = sum.guests;
        let mut model = universe.kernel();
        let n = opts.ops_per_guest.min(opts.ops - sum.ops);
        let plan = sequence::generate(&universe, &mut model, &mut root.fork(g as u64), n);
        if plan.is_empty() {
            return Err("the model allows no operation in this universe".into());
        }
        let desc = format!(
            "klpt explore: seed {}, guest {g}, {} operations, {} semantics",
            opts.seed,
            plan.len(),
            features.semantics()
        );
        let file = dir.join(format!("guest-{g:04}.yaml"));
        let yaml = render::case_yaml(&universe, &plan, &desc);
        std::fs::write(&file, &yaml).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
        let case = crate::case::parse(&file, &yaml)
            .map_err(|e| format!("klpt generated an invalid case (a klpt bug):\n{e}"))?;
        sum.guests += 1;
        if opts.dry_run {
            sum.ops += plan.len();
            merge(&mut sum.coverage, &universe, &plan);
            continue;
        }
        let out = runner::run_case(t, &case, &run_opts);
        let agreed = match &out.status {
            Status::Pass => plan.len(),
            Status::Fail(f) => {
                let op = failed_op(&f.message);
                emit(Event::Warn {
                    msg: &format!(
                        "explore: guest {g}: divergence at operation {}: {}",
                        op.map_or("?".into(), |o| o.to_string()),
                        f.first_line()
                    ),
                });
                let shrunk = match op {
                    Some(n) if opts.shrink_runs > 0 => {
                        shrink_divergence(t, &universe, &plan[..n], &dir, g, &f.cause, opts.shrink_runs)?
                    }
                    _ => None,
                };
                sum.divergences.push(Divergence {
                    guest: g,
                    op,
                    case: file.clone(),
                    shrunk,
                    message: f.message.clone(),
                });
                op.map_or(0, |o| o - 1)
            }
            Status::Skip(why) => return Err(format!("the kernel cannot run the generated case: {why}")),
            Status::Xfail(_) | Status::Xpass(_) => unreachable!("generated cases have no xfail"),
        };
        sum.ops += plan.len();
        merge(&mut sum.coverage, &universe, &plan[..agreed]);
        emit(Event::Note {
            msg: &format!(
                "explore: ops {}/{}, guests {}, divergences {} ({:.0}s)",
                sum.ops,
                opts.ops,
                sum.guests,
                sum.divergences.len(),
                t0.elapsed().as_secs_f64()
            ),
        });
    }
    let sem = features.semantics();
    sum.unreached = Rule::ALL
        .into_iter()
        .filter(|r| r.applies(sem) && !sum.coverage.contains_key(&format!("refused {}", r.id())))
        .collect();
    Ok(sum)
}

/// Shrinks guest `g`'s divergence (its plan up to the diverging operation)
/// in fresh guests and writes the smallest case that still diverges there.
fn shrink_divergence(
    t: &Target,
    u: &Universe,
    plan: &[Planned],
    dir: &std::path::Path,
    g: usize,
    cause: &crate::report::Cause,
    runs: usize,
) -> Result<Option<(PathBuf, usize)>, String> {
    let run_opts = runner::Options {
        artifacts: dir.join("runs-shrink"),
        keep_failed: false,
        boot_timeout: Duration::from_secs(300),
        guest_time: false,
        restore_ahead: false,
    };
    let ops: Vec<crate::model::Op> = plan.iter().map(|p| p.op.clone()).collect();
    let mut tried = 0;
    let mut last_msg = String::new();
    let mut fails = |cand: &[Planned]| -> bool {
        tried += 1;
        let ops: Vec<_> = cand.iter().map(|p| p.op.clone()).collect();
        let small = u.only(&ops);
        let file = dir.join(format!("guest-{g:04}-shrink-{tried:02}.yaml"));
        let yaml = render::case_yaml(&small, cand, "klpt explore: shrink candidate");
        let Ok(case) = std::fs::write(&file, &yaml)
            .map_err(|e| e.to_string())
            .and_then(|_| crate::case::parse(&file, &yaml).map_err(|e| e.to_string()))
        else {
            return false;
        };
        let out = runner::run_case(t, &case, &run_opts);
        let _ = std::fs::remove_file(&file);
        match &out.status {
            Status::Fail(f) if &f.cause == cause && failed_op(&f.message) == Some(cand.len()) => {
                last_msg = f.message.clone();
                true
            }
            _ => false,
        }
    };
    let best = shrink::shrink(u, &ops, runs, &mut fails);
    let Some(plan) = shrink::replan(u, &best) else { return Ok(None) };
    let small = u.only(&best);
    let expected = last_msg.lines().take(6).collect::<Vec<_>>().join("\n  ");
    let desc = format!(
        "klpt explore: guest {g}'s divergence, shrunk from {} to {} operations. The kernel disagreed with the model at the last operation: {}",
        ops.len(),
        best.len(),
        if expected.is_empty() { "(see the original case)".to_string() } else { expected }
    );
    let file = dir.join(format!("guest-{g:04}-min.yaml"));
    std::fs::write(&file, render::case_yaml(&small, &plan, &desc))
        .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    emit(Event::Note {
        msg: &format!("explore: guest {g}: shrunk to {} operations in {tried} guests: {}", best.len(), file.display()),
    });
    Ok(Some((file, best.len())))
}

/// Adds what `plan` reaches in a fresh model to `cov`.
fn merge(cov: &mut BTreeMap<String, u64>, u: &Universe, plan: &[Planned]) {
    let mut k: Kernel = u.kernel();
    for p in plan {
        k.step(&p.op);
    }
    for (what, n) in k.coverage() {
        *cov.entry(what.clone()).or_default() += n;
    }
}

/// The operation number in a failure's `step N (line L) \`op K: ...\``.
fn failed_op(message: &str) -> Option<usize> {
    let re = regex::Regex::new(&format!(r"`{}(\d+):", render::OP_PREFIX)).expect("static regex");
    re.captures(message).and_then(|c| c[1].parse().ok())
}

/// The end-of-run report: totals, divergences, coverage.
pub fn report(s: &Summary) -> String {
    let mut out =
        format!("explore: {} operations in {} guests, {} divergences\n", s.ops, s.guests, s.divergences.len());
    for d in &s.divergences {
        let first = d.message.lines().next().unwrap_or("");
        out.push_str(&format!(
            "  guest {} operation {}: {first}\n    reproduce: klpt run {}\n",
            d.guest,
            d.op.map_or("?".into(), |o| o.to_string()),
            d.case.display()
        ));
        if let Some((f, n)) = &d.shrunk {
            out.push_str(&format!("    shrunk to {n} operations: klpt run {}\n", f.display()));
        }
    }
    out.push_str("model coverage (operations the kernel agreed with):\n");
    for (what, n) in &s.coverage {
        out.push_str(&format!("  {what:<40} {n}\n"));
    }
    if !s.unreached.is_empty() {
        out.push_str(&format!(
            "  refusals not reached: {}\n",
            s.unreached.iter().map(|r| r.id()).collect::<Vec<_>>().join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_op_from_a_step_failure() {
        assert_eq!(failed_op("step 7 (line 90) `op 3: what the model expects`: dmesg: ..."), Some(3));
        assert_eq!(failed_op("boot: no"), None);
    }

    /// Every generated case is valid for klpt's case loader, for each revision.
    #[test]
    fn generated_cases_load() {
        let kernels = [
            Features::new(&["replace", "states"], &["replace", "stack_order", "patched"]),
            Features::new(&["replace", "replaceable", "states"], &["replace", "stack_order", "patched", "replaceable"]),
            Features::new(&["replace_set", "states"], &["replace_set", "stack_order", "patched"]),
        ];
        for f in kernels {
            for seed in 0..8 {
                let root = Rng::new(seed);
                let u = Universe::generate(&f, &mut root.fork(u64::MAX), 5);
                let mut k = u.kernel();
                let plan = sequence::generate(&u, &mut k, &mut root.fork(0), 120);
                let yaml = render::case_yaml(&u, &plan, "generated");
                let file = std::path::Path::new("/nonexistent/explore/generated.yaml");
                if let Err(e) = crate::case::parse(file, &yaml) {
                    panic!("{e}\n{yaml}");
                }
            }
        }
    }
}
