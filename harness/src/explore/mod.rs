//! `klpt explore`: random patches and operation sequences, run in guests
//! and compared with the reference model ([`crate::model`]) after every
//! operation. A run is a seed: guest `g`'s universe of patches and its
//! operations come from the seed's `g`-th fork, so the same seed on the same
//! kernel replays the same sequences. Every guest has its own universe:
//! conflicts need particular pairs of patches (two sets sharing a state,
//! say), which one fixed universe may never contain.

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
    /// Guests run at a time (each one vCPU); results are taken in guest
    /// order, so a seed replays the same way at any value.
    pub jobs: usize,
    /// Stop after the first batch of guests that diverged.
    pub stop_at_first: bool,
}

/// A guest where the kernel and the model disagreed.
#[derive(Debug, Clone)]
pub struct Divergence {
    pub guest: usize,
    /// 1-based number of the operation after which they disagreed, if known.
    pub op: Option<usize>,
    /// Operations run before it in all earlier guests, plus `op`.
    pub ops_until: usize,
    /// Wall time from the start of the exploration until the guest ended.
    pub secs: f64,
    /// The case that reproduces it (all of the guest's operations).
    pub case: PathBuf,
    pub shrunk: Option<Shrunk>,
    pub message: String,
}

/// The smallest case shrinking found.
#[derive(Debug, Clone)]
pub struct Shrunk {
    pub case: PathBuf,
    pub ops: usize,
    /// Steps of the written case.
    pub steps: usize,
    /// Fresh guests the shrinking ran, and their wall time.
    pub runs: usize,
    pub secs: f64,
}

#[derive(Debug, Default)]
pub struct Summary {
    pub ops: usize,
    pub guests: usize,
    pub secs: f64,
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

/// One guest's share of the exploration.
struct GuestPlan {
    g: usize,
    universe: Universe,
    plan: Vec<Planned>,
    file: PathBuf,
    case: crate::case::Case,
}

pub fn explore(t: &Target, opts: &Options) -> Result<Summary, String> {
    let features = features(&t.caps);
    let root = Rng::new(opts.seed);
    let dir = opts.artifacts.join("explore").join(t.arch.name).join(&t.kernel.id).join(format!("seed-{}", opts.seed));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    emit(Event::Note {
        msg: &format!(
            "explore: {} semantics, seed {}, {} patches per guest, {} guest(s) at a time; cases in {}",
            features.semantics(),
            opts.seed,
            opts.patches,
            opts.jobs.max(1),
            dir.display()
        ),
    });
    let run_opts = guest_options(dir.join("runs"));
    let t0 = Instant::now();
    let mut sum = Summary::default();
    while sum.ops < opts.ops && opts.time.is_none_or(|d| t0.elapsed() < d) {
        // The next batch: one plan per guest, in guest order.
        let mut batch = Vec::new();
        let mut planned = sum.ops;
        while batch.len() < opts.jobs.max(1) && planned < opts.ops {
            let g = sum.guests + batch.len();
            let mut rng = root.fork(g as u64);
            let universe = Universe::generate(&features, &mut rng.fork(u64::MAX), opts.patches);
            let mut model = universe.kernel();
            let n = opts.ops_per_guest.min(opts.ops - planned);
            let plan = sequence::generate(&universe, &mut model, &mut rng, n);
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
            let yaml = render::case_yaml(&universe, &plan, &desc, render::Checks::EveryOp);
            std::fs::write(&file, &yaml).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
            let case = crate::case::parse(&file, &yaml)
                .map_err(|e| format!("klpt generated an invalid case (a klpt bug):\n{e}"))?;
            planned += plan.len();
            batch.push(GuestPlan { g, universe, plan, file, case });
        }
        let outcomes: Vec<Status> = if opts.dry_run {
            batch.iter().map(|_| Status::Pass).collect()
        } else {
            each_at_once(&batch, |_, b| runner::run_case(t, &b.case, &run_opts).status)
        };
        let secs = t0.elapsed().as_secs_f64();
        for (b, status) in batch.iter().zip(outcomes) {
            sum.guests += 1;
            let agreed = match &status {
                Status::Pass => b.plan.len(),
                Status::Fail(f) => {
                    let op = failed_op(&f.message);
                    emit(Event::Warn {
                        msg: &format!(
                            "explore: guest {}: divergence at operation {} after {:.0}s: {}",
                            b.g,
                            op.map_or("?".into(), |o| o.to_string()),
                            secs,
                            f.first_line()
                        ),
                    });
                    let shrunk = match op {
                        Some(n) if opts.shrink_runs > 0 => {
                            let want = Signature::of(f);
                            shrink_divergence(t, &b.universe, &b.plan[..n], &dir, b.g, &want, opts)?
                        }
                        _ => None,
                    };
                    sum.divergences.push(Divergence {
                        guest: b.g,
                        op,
                        ops_until: sum.ops + op.unwrap_or(b.plan.len()),
                        secs,
                        case: b.file.clone(),
                        shrunk,
                        message: f.message.clone(),
                    });
                    op.map_or(0, |o| o - 1)
                }
                Status::Skip(why) => return Err(format!("the kernel cannot run the generated case: {why}")),
                Status::Xfail(_) | Status::Xpass(_) => unreachable!("generated cases have no xfail"),
            };
            sum.ops += b.plan.len();
            merge(&mut sum.coverage, &b.universe, &b.plan[..agreed]);
        }
        emit(Event::Note {
            msg: &format!(
                "explore: ops {}{}, guests {}, divergences {} ({:.0}s)",
                sum.ops,
                if opts.ops == usize::MAX { String::new() } else { format!("/{}", opts.ops) },
                sum.guests,
                sum.divergences.len(),
                t0.elapsed().as_secs_f64()
            ),
        });
        if opts.stop_at_first && !sum.divergences.is_empty() {
            break;
        }
    }
    sum.secs = t0.elapsed().as_secs_f64();
    let sem = features.semantics();
    sum.unreached = Rule::ALL
        .into_iter()
        .filter(|r| r.applies(sem) && !sum.coverage.contains_key(&format!("refused {}", r.id())))
        .collect();
    Ok(sum)
}

/// `f(i, item)` for every item at once, each on its own thread (each runs
/// a guest), the results in the items' order.
fn each_at_once<T: Sync, R: Send>(items: &[T], f: impl Fn(usize, &T) -> R + Sync) -> Vec<R> {
    std::thread::scope(|s| {
        let f = &f;
        let running: Vec<_> = items.iter().enumerate().map(|(i, x)| s.spawn(move || f(i, x))).collect();
        running.into_iter().map(|h| h.join().expect("a guest thread does not panic")).collect()
    })
}

/// How explored guests run: artifacts in `dir`, and a longer boot deadline
/// than cases get, for guests started beside others.
fn guest_options(dir: PathBuf) -> runner::Options {
    runner::Options { boot_timeout: Duration::from_secs(300), ..runner::Options::new(dir) }
}

/// What makes two failures the same divergence: the cause, the kind of
/// step (the action or the model's expectations), and which attributes,
/// files or log checks failed, with patch names and numbers left out (a
/// shrunk case may show the same wrong stack order on another patch).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Signature {
    cause: crate::report::Cause,
    step: String,
    what: Vec<String>,
}

impl Signature {
    fn of(f: &crate::report::Failure) -> Signature {
        let norm = |s: &str| {
            let s = regex::Regex::new(r"klpx_p\d+").expect("static regex").replace_all(s, "P");
            regex::Regex::new(r"\d+").expect("static regex").replace_all(&s, "N").to_string()
        };
        let re = regex::Regex::new(&format!(r"`{}\d+: ([^`]+)`", render::OP_PREFIX)).expect("static regex");
        let step = re.captures(&f.message).map(|c| norm(&c[1])).unwrap_or_default();
        // Indented `key: expected..., got ...` lines, or the first line.
        let mut what: Vec<String> = f
            .message
            .lines()
            .skip(1)
            .take_while(|l| l.starts_with("  ") && !l.trim_start().starts_with("artifacts:"))
            .filter_map(|l| l.trim().split_once(':').map(|(k, _)| norm(k)))
            .collect();
        if what.is_empty() {
            let first = f.message.lines().next().unwrap_or("");
            what.push(norm(first.split_once("`: ").map_or(first, |(_, r)| r)));
        }
        what.sort();
        what.dedup();
        Signature { cause: f.cause, step, what }
    }
}

/// Shrinks guest `g`'s divergence (its plan up to the diverging operation)
/// in fresh guests and writes the smallest case that still diverges there
/// the same way.
fn shrink_divergence(
    t: &Target,
    u: &Universe,
    plan: &[Planned],
    dir: &std::path::Path,
    g: usize,
    want: &Signature,
    opts: &Options,
) -> Result<Option<Shrunk>, String> {
    let t0 = Instant::now();
    let run_opts = guest_options(dir.join("runs-shrink"));
    let ops: Vec<crate::model::Op> = plan.iter().map(|p| p.op.clone()).collect();
    let mut tried = 0;
    let mut last_msg = String::new();
    // One candidate in a fresh guest: its failure, if it diverged the same way.
    let run_one = |cu: &Universe, cand: &[Planned], n: usize| -> Option<String> {
        let file = dir.join(format!("guest-{g:04}-shrink-{n:02}.yaml"));
        let yaml = render::case_yaml(cu, cand, "klpt explore: shrink candidate", render::Checks::LastOp);
        std::fs::write(&file, &yaml).ok()?;
        let case = crate::case::parse(&file, &yaml).ok();
        let _ = std::fs::remove_file(&file);
        let out = runner::run_case(t, &case?, &run_opts);
        match &out.status {
            Status::Fail(f) if failed_op(&f.message) == Some(cand.len()) && Signature::of(f) == *want => {
                Some(f.message.clone())
            }
            _ => None,
        }
    };
    let fails = |batch: &[shrink::Candidate]| -> Vec<bool> {
        let first = tried + 1;
        tried += batch.len();
        let found = each_at_once(batch, |i, (cu, cand)| run_one(cu, cand, first + i));
        if let Some(m) = found.iter().flatten().next() {
            last_msg = m.clone();
        }
        found.iter().map(Option::is_some).collect()
    };
    let (small, best) = shrink::shrink(u, &ops, opts.shrink_runs, opts.jobs, fails);
    if last_msg.is_empty() {
        emit(Event::Note {
            msg: &format!(
                "explore: guest {g}: no smaller case diverged the same way in {tried} guests; keeping the whole case"
            ),
        });
        return Ok(None);
    }
    let Some(plan) = shrink::replan(&small, &best) else { return Ok(None) };
    let found = last_msg.lines().take_while(|l| !l.trim_start().starts_with("artifacts:")).collect::<Vec<_>>();
    let desc = format!(
        "klpt explore: guest {g}'s divergence, shrunk from {} to {} operations; only the last one's outcome is checked in full.\nThe kernel disagreed with the model at the last operation (expected: the model, got: the kernel):\n  {}",
        ops.len(),
        best.len(),
        found.join("\n  ")
    );
    let file = dir.join(format!("guest-{g:04}-min.yaml"));
    let yaml = render::case_yaml(&small, &plan, &desc, render::Checks::LastOp);
    let steps = crate::case::parse(&file, &yaml).map(|c| c.doc.steps.len()).unwrap_or(0);
    std::fs::write(&file, &yaml).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    emit(Event::Note {
        msg: &format!(
            "explore: guest {g}: shrunk to {} operations ({steps} steps) in {tried} guests: {}",
            best.len(),
            file.display()
        ),
    });
    Ok(Some(Shrunk { case: file, ops: best.len(), steps, runs: tried, secs: t0.elapsed().as_secs_f64() }))
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
    let mut out = format!(
        "explore: {} operations in {} guests, {} divergences ({:.0}s)\n",
        s.ops,
        s.guests,
        s.divergences.len(),
        s.secs
    );
    for d in &s.divergences {
        let first = d.message.lines().next().unwrap_or("");
        out.push_str(&format!(
            "  guest {} operation {}: {first}\n    reproduce: klpt run {}\n",
            d.guest,
            d.op.map_or("?".into(), |o| o.to_string()),
            d.case.display()
        ));
        out.push_str(&format!("    first divergence after {} operations, {:.0}s\n", d.ops_until, d.secs));
        if let Some(s) = &d.shrunk {
            out.push_str(&format!(
                "    shrunk to {} operations, {} steps ({} guests, {:.0}s): klpt run {}\n",
                s.ops,
                s.steps,
                s.runs,
                s.secs,
                s.case.display()
            ));
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

    #[test]
    fn a_divergence_signature_ignores_patch_names_and_numbers() {
        use crate::report::{Cause, Failure};
        let f = |m: &str| Signature::of(&Failure::new(Cause::KernelVerdict, m));
        let a = f("step 4 (line 72) `op 2: what the model expects`: still not true after 20s:\n  klpx_p3/stack_order: expected 3, got 2\n  artifacts: /x");
        let b = f("step 9 (line 90) `op 5: what the model expects`: still not true after 10s:\n  klpx_p1/stack_order: expected 2, got 1");
        assert_eq!(a, b);
        assert_eq!(a.step, "what the model expects");
        assert_eq!(a.what, ["P/stack_order"]);
        let c = f(
            "step 9 (line 90) `op 5: what the model expects`: still not true after 10s:\n  /proc/version: expected x",
        );
        assert_ne!(a, c);
        let d = f("step 3 (line 50) `op 2: load klpx_p2`: refused with EBUSY, expected EINVAL");
        assert_eq!(
            (d.step.as_str(), d.what.clone()),
            ("load P", vec!["refused with EBUSY, expected EINVAL".to_string()])
        );
        assert_ne!(d, f("step 3 (line 50) `op 2: load klpx_p2`: it loaded, expected EINVAL"));
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
                let yaml = render::case_yaml(&u, &plan, "generated", render::Checks::EveryOp);
                let file = std::path::Path::new("/nonexistent/explore/generated.yaml");
                if let Err(e) = crate::case::parse(file, &yaml) {
                    panic!("{e}\n{yaml}");
                }
            }
        }
    }
}
