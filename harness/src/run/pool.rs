//! The pool: N worker threads take this run's trials in plan order, each
//! runs one trial at a time and tells the event stream as it starts, as
//! each step finishes and as it ends. Workers take no new trial once a
//! signal interrupts klpt.

use super::events::Stream;
use crate::case::Case;
use crate::kselftest::Suite;
use crate::report::results::{PlannedTrial, TrialKind, TrialResult, Verdict};
use crate::report::Cause;
use crate::runner::{Options, Target};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// One trial to run.
pub enum Work {
    Case {
        target: Arc<Target>,
        case: Arc<Case>,
        opts: Arc<Options>,
    },
    /// Its script runs on the suite's driver thread; the trial waits for the scenario.
    Kselftest {
        suite: Arc<Suite>,
        script: usize,
        scenario: usize,
    },
}

pub struct Job {
    /// Position in the plan.
    pub index: usize,
    pub trial: PlannedTrial,
    pub work: Work,
}

impl Job {
    fn run(&self, stream: &Stream) -> TrialResult {
        match &self.work {
            Work::Case { target, case, opts } => {
                let o =
                    crate::runner::run_case_observed(target, case, opts, false, &|step| stream.step(self.index, step));
                TrialResult::from_outcome(&o, TrialKind::Case, Some(&case.file))
            }
            Work::Kselftest { suite, script, scenario } => {
                TrialResult::from_outcome(&suite.outcome(*script, *scenario), TrialKind::Kselftest, None)
            }
        }
    }
}

/// Runs `jobs` on `threads` workers; returns when all ran or a signal stopped the run.
pub fn execute(jobs: Vec<Job>, threads: usize, stream: &Stream) {
    let n = threads.clamp(1, jobs.len().max(1));
    let queue = Mutex::new(VecDeque::from(jobs));
    std::thread::scope(|s| {
        for w in 0..n {
            let queue = &queue;
            std::thread::Builder::new()
                .name(format!("klpt-trial-{w}"))
                .spawn_scoped(s, move || loop {
                    if crate::cleanup::interrupted() {
                        break;
                    }
                    let Some(job) = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front() else { break };
                    stream.trial_started(job.index);
                    let start = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs_f64())
                        .ok();
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run(stream)));
                    let result = r.unwrap_or_else(|p| {
                        let why = p
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        let mut r = TrialResult::unfinished(
                            &job.trial,
                            &format!("klpt panicked while running this trial: {why}"),
                        );
                        r.verdict = Verdict::Error;
                        r.cause = Some(Cause::HarnessError);
                        r
                    });
                    stream.trial_finished(job.index, TrialResult { start_unix: start, ..result });
                })
                .expect("spawn a trial worker");
        }
    });
}
