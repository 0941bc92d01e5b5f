//! A run, as `klpt run`, `klpt selftests` and `klpt matrix` do it: plan
//! every trial ([`plan`]) before any work, prepare only the targets this
//! run's trials need, run them on a pool of workers ([`pool`]), and send
//! everything that happens as one event stream ([`events`]) to the
//! reporters ([`reporters`]). [`merge`] feeds the results of several runs
//! (shards of one plan) through the same reporters.

pub mod events;
pub mod merge;
pub mod plan;
pub mod pool;
pub mod reporters;

use crate::arch::Arch;
use crate::case::Case;
use crate::report::results::TrialKind;
use crate::runner::{self, AccelChoice, Options, Target};
use events::{Reporter, Stream};
use plan::{Partition, Plan, Selection};
use reporters::{Files, Human, JsonLines, MatrixTable};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What to run and where to report it.
pub struct Request {
    pub cases: Vec<Arc<Case>>,
    /// Also the kernel tree's livepatch selftests, a trial per scenario.
    pub kselftest: bool,
    pub arches: Vec<Arch>,
    /// `--kernel` specs; None is the default (Debian's kernel).
    pub kernels: Vec<Option<String>>,
    pub accel: AccelChoice,
    pub selection: Selection,
    pub partition: Option<Partition>,
    /// Print the trials' names instead of running them.
    pub list: bool,
    /// Trials at once (default: [`runner::default_parallel_guests`]).
    pub threads: Option<usize>,
    pub quiet: bool,
    pub artifacts: PathBuf,
    pub keep_failed: bool,
    pub scenario_timeout: Duration,
    pub files: Files,
    /// Every event as a JSON line.
    pub jsonl: Option<PathBuf>,
    /// Print the case × kernel table instead of libtest's summary (`klpt matrix`).
    pub matrix_table: bool,
    /// Stop the run after this long (preparation included): its reports
    /// are written, unfinished trials marked, and klpt exits 1.
    pub timeout: Option<Duration>,
}

/// Loads every case below `paths`; all load errors at once.
pub fn load_cases(paths: &[PathBuf]) -> Result<Vec<Case>, String> {
    let files = crate::case::discover(paths).map_err(|e| e.to_string())?;
    let mut cases = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        match crate::case::load(&f) {
            Ok(c) => cases.push(c),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if !errors.is_empty() {
        return Err(errors.join("\n"));
    }
    Ok(cases)
}

/// Runs (or lists) the request. Ok(false): some trial failed.
pub fn run(req: Request) -> Result<bool, String> {
    req.files.check()?;
    if !req.list {
        // Partial module builds of a killed run go before anything else starts.
        crate::modules::build::sweep();
    }
    let targets = plan::targets(&req.arches, &req.kernels, req.kselftest, !req.list)?;
    let plan = Plan::new(targets, &req.cases, req.kselftest, &req.selection, req.partition)?;
    if req.list {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        for &i in &plan.mine {
            // A closed pipe (`klpt run --list | head`) ends the listing.
            if writeln!(out, "{}: test", plan.entries[i].trial.name).is_err() {
                break;
            }
        }
        return Ok(true);
    }
    let artifacts = runner::claim_artifacts(&req.artifacts).map_err(|e| e.to_string())?;
    let threads = req.threads.unwrap_or_else(runner::default_parallel_guests).max(1);
    let mut human = Human::new(req.quiet, plan.filtered_out);
    human.summary = !req.matrix_table;
    let mut reporters: Vec<Box<dyn Reporter>> = vec![Box::new(human)];
    if let Some(p) = &req.jsonl {
        reporters.push(Box::new(JsonLines::create(p)?));
    }
    if req.matrix_table {
        reporters.push(Box::new(MatrixTable));
    }
    reporters.push(Box::new(req.files.clone()));
    let stream = Stream::start(plan.record(), reporters, threads, Some(&artifacts));
    let _watchdog = req.timeout.map(watchdog);
    for k in plan.targets.iter().filter_map(|t| t.kernel.as_ref()) {
        stream.kernel(k);
    }
    let jobs = match prepare(&plan, &req, &artifacts, &stream, threads) {
        Ok(j) => j,
        Err(e) => {
            let _ = stream.finish(Some(&format!("the run stopped: {}", e.lines().next().unwrap_or(""))));
            return Err(e);
        }
    };
    let suites: Vec<Arc<crate::kselftest::Suite>> = jobs.1;
    pool::execute(jobs.0, threads, &stream);
    for s in &suites {
        s.finish();
    }
    let results = stream.finish(None)?;
    runner::wait_for_kept_guests();
    Ok(!results.results.iter().any(|r| r.verdict.is_failure()))
}

/// Ends the run when `limit` has passed, unless the returned sender is
/// dropped first (the run ended).
fn watchdog(limit: Duration) -> std::sync::mpsc::Sender<()> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
            crate::cleanup::abort(1, &format!("the run timed out after {}s (--timeout)", limit.as_secs()));
        }
    });
    tx
}

/// Prepares the targets this run's trials need (each once) and builds the
/// modules of its cases; returns its jobs in plan order, and the selftest
/// suites whose scripts are queued.
fn prepare(
    plan: &Plan,
    req: &Request,
    artifacts: &std::path::Path,
    stream: &Stream,
    threads: usize,
) -> Result<(Vec<pool::Job>, Vec<Arc<crate::kselftest::Suite>>), String> {
    let opts = Arc::new(Options {
        keep_failed: req.keep_failed,
        restore_ahead: runner::restore_ahead_pays(threads),
        ..Options::new(artifacts.to_path_buf())
    });
    let mut targets: Vec<Option<Arc<Target>>> = Vec::new();
    let mut suites: Vec<Option<Arc<crate::kselftest::Suite>>> = Vec::new();
    for (ti, spec) in plan.targets.iter().enumerate() {
        let what = spec.label();
        let same = |id: &str| {
            if id == spec.kernel_id {
                Ok(())
            } else {
                Err(format!("{what}: its trials were named for kernel {}, but klpt prepared {id}", spec.kernel_id))
            }
        };
        targets.push(if plan.needs(ti, TrialKind::Case) {
            let t = Target::prepare(spec.arch, spec.spec.as_deref(), req.accel).map_err(|e| format!("{what}: {e}"))?;
            same(&t.kernel.id)?;
            stream.kernel(&t.kernel);
            Some(Arc::new(t))
        } else {
            None
        });
        suites.push(if plan.needs(ti, TrialKind::Kselftest) {
            let (t, built) = crate::kselftest::prepare(spec.arch, spec.spec.as_deref(), req.accel)
                .map_err(|e| format!("{what}: {e}"))?;
            same(&t.kernel.id)?;
            stream.kernel(&t.kernel);
            Some(crate::kselftest::Suite::new(Arc::new(t), built, artifacts, req.scenario_timeout))
        } else {
            None
        });
    }
    // Every module this run's cases need, one Kbuild call per target.
    for (ti, t) in targets.iter().enumerate() {
        let Some(t) = t else { continue };
        let mine: Vec<&Case> = plan
            .mine
            .iter()
            .filter_map(|&i| match &plan.entries[i].work {
                plan::Work::Case(c)
                    if plan.entries[i].target == ti && t.caps.missing(&c.doc.requires, None).is_empty() =>
                {
                    Some(c.as_ref())
                }
                _ => None,
            })
            .collect();
        crate::modules::build::build_batch(&mine, &t.kernel, &t.caps);
    }
    let mut jobs = Vec::new();
    for &i in &plan.mine {
        let e = &plan.entries[i];
        let work = match &e.work {
            plan::Work::Case(c) => pool::Work::Case {
                target: targets[e.target].clone().expect("prepared above"),
                case: c.clone(),
                opts: opts.clone(),
            },
            plan::Work::Kselftest { script, scenario } => {
                let suite = suites[e.target].clone().expect("prepared above");
                let name = suite
                    .built
                    .scripts
                    .get(*script)
                    .filter(|s| *scenario < s.scenarios.len())
                    .map(|s| suite.trial_name(s, *scenario))
                    .unwrap_or_default();
                if name != e.trial.name {
                    return Err(format!(
                        "{}: the built selftests differ from the listed ones ({name} where the plan has {})",
                        plan.targets[e.target].label(),
                        e.trial.name
                    ));
                }
                // Queued in plan order: the drivers run while trials wait.
                suite.request(*script);
                pool::Work::Kselftest { suite, script: *script, scenario: *scenario }
            }
        };
        jobs.push(pool::Job { index: i, trial: e.trial.clone(), work });
    }
    Ok((jobs, suites.into_iter().flatten().collect()))
}
