//! One typed event stream from a run to every reporter. The pool sends
//! trial and step events, pipeline stages their progress (`crate::event`),
//! and [`Stream::finish`] the end; reporters (human, KTAP, JUnit, JSON
//! lines, results, matrix) only ever see these events. The stream keeps
//! each trial's result by plan position, so every report is in plan order
//! and a cancelled run still reports every trial, the unfinished ones as
//! such.

use crate::event::Event;
use crate::report::results::{KernelRecord, PlanRecord, RunResults, TrialResult, Verdict, FORMAT};
use crate::runner::StepDone;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What happens in a run, in the order it happens.
#[derive(Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent<'a> {
    /// The plan is made; nothing is prepared yet.
    RunStarted {
        plan: &'a PlanRecord,
        threads: usize,
        started_unix: u64,
    },
    /// `index`: the trial's position in the plan.
    TrialStarted {
        index: usize,
        name: &'a str,
    },
    StepFinished {
        index: usize,
        name: &'a str,
        step: &'a StepDone,
    },
    TrialFinished {
        index: usize,
        result: &'a TrialResult,
    },
    /// A pipeline stage's progress (downloads, builds, boots, warnings).
    Progress {
        secs: f64,
        #[serde(flatten)]
        progress: &'a Event<'a>,
    },
    /// Every trial has a result, unfinished ones included.
    RunFinished {
        cancelled: bool,
        secs: f64,
        totals: BTreeMap<Verdict, usize>,
        #[serde(skip)]
        results: &'a RunResults,
    },
}

/// A consumer of the stream. Errors (a report that cannot be written) are
/// collected and make the run fail once it is finished.
pub trait Reporter: Send {
    fn report(&mut self, ev: &RunEvent<'_>) -> Result<(), String>;
}

struct Inner {
    reporters: Vec<Box<dyn Reporter>>,
    plan: PlanRecord,
    /// Plan position of each trial of `plan.mine`, and its result so far.
    slots: BTreeMap<usize, Option<TrialResult>>,
    started: std::collections::BTreeSet<usize>,
    finished: Option<RunResults>,
    errors: Vec<String>,
    kernels: BTreeMap<String, KernelRecord>,
}

impl Inner {
    fn send(&mut self, ev: &RunEvent<'_>) {
        for r in &mut self.reporters {
            if let Err(e) = r.report(ev) {
                self.errors.push(e);
            }
        }
    }
}

pub struct Stream {
    inner: Mutex<Inner>,
    t0: Instant,
    started_unix: u64,
    artifacts: Option<String>,
}

impl Stream {
    /// Starts the stream of a run of `plan` (its `mine` trials) with
    /// `threads` trials at once: sends RunStarted, takes over progress
    /// events, and makes Ctrl-C, SIGTERM and SIGHUP finish it (every
    /// report written) before klpt exits.
    pub fn start(
        plan: PlanRecord,
        reporters: Vec<Box<dyn Reporter>>,
        threads: usize,
        artifacts: Option<&std::path::Path>,
    ) -> Arc<Stream> {
        let position: BTreeMap<&str, usize> =
            plan.trials.iter().enumerate().map(|(i, t)| (t.name.as_str(), i)).collect();
        let slots = plan.mine.iter().map(|n| (position[n.as_str()], None)).collect();
        let started_unix =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let stream = Arc::new(Stream {
            inner: Mutex::new(Inner {
                reporters,
                plan,
                slots,
                started: Default::default(),
                finished: None,
                errors: Vec::new(),
                kernels: BTreeMap::new(),
            }),
            t0: Instant::now(),
            started_unix,
            artifacts: artifacts
                .map(|a| std::path::absolute(a).unwrap_or_else(|_| a.to_path_buf()).display().to_string()),
        });
        {
            let mut inner = stream.lock();
            let plan = inner.plan.clone();
            inner.send(&RunEvent::RunStarted { plan: &plan, threads, started_unix });
        }
        let s = stream.clone();
        crate::event::sink(move |ev, secs| s.progress(ev, secs));
        let s = stream.clone();
        crate::cleanup::on_interrupt(move |why| {
            let why = if why.starts_with("SIG") { format!("the run was interrupted ({why})") } else { why.to_string() };
            let _ = s.finish(Some(&why));
        });
        stream
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a kernel the run has (for reports that describe it).
    pub fn kernel(&self, k: &crate::kernel::Kernel) {
        let r = KernelRecord::of(k);
        self.lock().kernels.insert(r.key(), r);
    }

    pub fn trial_started(&self, index: usize) {
        let mut inner = self.lock();
        if inner.finished.is_some() {
            return;
        }
        inner.started.insert(index);
        let name = inner.plan.trials[index].name.clone();
        inner.send(&RunEvent::TrialStarted { index, name: &name });
    }

    pub fn step(&self, index: usize, step: &StepDone) {
        let mut inner = self.lock();
        if inner.finished.is_some() {
            return;
        }
        let name = inner.plan.trials[index].name.clone();
        inner.send(&RunEvent::StepFinished { index, name: &name, step });
    }

    pub fn trial_finished(&self, index: usize, result: TrialResult) {
        let mut inner = self.lock();
        if inner.finished.is_some() {
            return;
        }
        inner.send(&RunEvent::TrialFinished { index, result: &result });
        inner.slots.insert(index, Some(result));
    }

    fn progress(&self, ev: &Event<'_>, secs: f64) {
        let mut inner = self.lock();
        if inner.finished.is_some() {
            drop(inner);
            return crate::event::print(ev, secs);
        }
        inner.send(&RunEvent::Progress { secs, progress: ev });
    }

    /// Ends the run: trials without a result are unfinished (`cancelled`
    /// says why), RunFinished goes out and reporters write their files.
    /// The first call counts; later ones (the signal handler's, after a
    /// normal end) return the same results.
    pub fn finish(&self, cancelled: Option<&str>) -> Result<RunResults, String> {
        let mut inner = self.lock();
        if let Some(r) = &inner.finished {
            return Ok(r.clone());
        }
        let plan = inner.plan.clone();
        let mut results = Vec::new();
        for (&i, slot) in &inner.slots {
            results.push(match slot {
                Some(r) => r.clone(),
                None => {
                    let why = match (cancelled, inner.started.contains(&i)) {
                        (Some(c), true) => format!("{c} while this trial ran"),
                        (Some(c), false) => format!("{c} before this trial started"),
                        (None, _) => "the run ended before this trial finished".to_string(),
                    };
                    TrialResult::unfinished(&plan.trials[i], &why)
                }
            });
        }
        let secs = self.t0.elapsed().as_secs_f64();
        let run = RunResults {
            format: FORMAT,
            klpt_version: env!("CARGO_PKG_VERSION").to_string(),
            started_unix: self.started_unix,
            secs,
            cancelled: cancelled.is_some(),
            artifacts: self.artifacts.clone(),
            plan,
            results,
            kernels: inner.kernels.clone(),
        };
        let totals = crate::report::results::totals(&run.results);
        inner.send(&RunEvent::RunFinished { cancelled: run.cancelled, secs, totals, results: &run });
        inner.finished = Some(run.clone());
        drop(inner);
        crate::event::unsink();
        let errors = std::mem::take(&mut self.lock().errors);
        if errors.is_empty() {
            Ok(run)
        } else {
            Err(errors.join("\n"))
        }
    }
}
