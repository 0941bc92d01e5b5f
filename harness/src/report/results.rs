//! A run's outcomes as data: one [`TrialResult`] per planned trial and the
//! [`RunResults`] around them, serialisable so that `--results FILE`
//! writes them and `klpt report merge` reads several back. Every reporter
//! (KTAP, JUnit, matrix, KCIDB) works from these records in plan order, so
//! a merged set of shards reports exactly as one unsharded run.

use super::{Cause, Outcome, Status};
use serde::{Deserialize, Serialize};

/// Version of the results file format; bumped on incompatible changes.
pub const FORMAT: u32 = 1;

/// A trial's verdict: every status a report counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    /// The kernel's verdict was not what the case expects.
    Fail,
    Skip,
    /// Failed as the case's `xfail` entry for this kernel expects.
    Xfail,
    /// Passed although the case's `xfail` entry expects a failure.
    Xpass,
    /// klpt failed itself, or lost the guest even on the retry (cause
    /// `harness error`, `guest lost`): the kernel was not judged.
    Error,
    /// The run was cancelled (or no shard ran it) before the trial finished.
    Unfinished,
}

impl Verdict {
    pub const ALL: [Verdict; 7] = [
        Verdict::Pass,
        Verdict::Fail,
        Verdict::Skip,
        Verdict::Xfail,
        Verdict::Xpass,
        Verdict::Error,
        Verdict::Unfinished,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Skip => "skip",
            Verdict::Xfail => "xfail",
            Verdict::Xpass => "xpass",
            Verdict::Error => "error",
            Verdict::Unfinished => "unfinished",
        }
    }

    /// Whether the run fails because of it.
    pub fn is_failure(self) -> bool {
        matches!(self, Verdict::Fail | Verdict::Xpass | Verdict::Error | Verdict::Unfinished)
    }
}

/// What kind of trial: one of klpt's cases, or a scenario of the kernel
/// tree's livepatch selftests (`klpt run --kselftest`, `klpt selftests`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrialKind {
    Case,
    Kselftest,
}

/// Host seconds of one step that ran, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepTiming {
    /// `load`, `assert`, `wait`, ...
    pub kind: String,
    pub secs: f64,
}

/// One trial's result, self-contained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrialResult {
    /// `x86_64/debian-6.1.0-50-amd64/stock/basic-enable-disable`.
    pub name: String,
    pub kind: TrialKind,
    pub arch: String,
    /// The kernel's id (`debian-6.1.0-50-amd64`, `src-7.2.13+v2-replace-set`).
    pub kernel: String,
    /// `stock/basic-enable-disable`, or `kselftest/test-callbacks/06`.
    pub case_id: String,
    /// The case file (cases only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_path: Option<String>,
    pub verdict: Verdict,
    /// Why it failed (fail, xpass, error), or why it is unfinished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Cause>,
    /// The failure's whole story, or the skip or xfail reason; empty on a pass.
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub notes: Vec<String>,
    /// Host wall time of the whole trial.
    pub secs: f64,
    /// Guest uptime at the end of the case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_secs: Option<f64>,
    /// Host seconds until the guest answered over SSH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_ready_secs: Option<f64>,
    /// Fresh guests needed beyond the first (a lost guest is retried once).
    #[serde(default)]
    pub retries: u32,
    #[serde(default)]
    pub steps: Vec<StepTiming>,
    /// Where the trial's console logs and failure artifacts are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<String>,
    /// An xfail or xpass trial: the reason of the case's `xfail:` entry
    /// alone (`message` also has this run's failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xfail_reason: Option<String>,
    /// When the trial started, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_unix: Option<f64>,
}

impl TrialResult {
    /// The record of a finished trial.
    pub fn from_outcome(o: &Outcome, kind: TrialKind, case_path: Option<&std::path::Path>) -> TrialResult {
        let (verdict, cause, message) = match &o.status {
            Status::Pass => (Verdict::Pass, None, String::new()),
            Status::Skip(r) => (Verdict::Skip, None, r.clone()),
            Status::Xfail(r) => (Verdict::Xfail, None, r.clone()),
            Status::Xpass(r) => (Verdict::Xpass, Some(Cause::KernelVerdict), r.clone()),
            Status::Fail(f) if matches!(f.cause, Cause::HarnessError | Cause::GuestLost) => {
                (Verdict::Error, Some(f.cause), f.message.clone())
            }
            Status::Fail(f) => (Verdict::Fail, Some(f.cause), f.message.clone()),
        };
        TrialResult {
            name: o.name.clone(),
            kind,
            arch: o.arch.clone(),
            kernel: o.kernel.clone(),
            case_id: o.case_id.clone(),
            case_path: case_path.map(|p| p.display().to_string()),
            verdict,
            cause,
            message,
            notes: o.notes.clone(),
            secs: o.secs,
            guest_secs: o.guest_secs,
            ssh_ready_secs: o.ssh_ready_secs,
            retries: o.retries,
            steps: o.step_secs.iter().map(|(k, s)| StepTiming { kind: k.to_string(), secs: *s }).collect(),
            artifacts: o.artifacts.as_ref().map(|p| p.display().to_string()),
            xfail_reason: o.xfail_reason.clone(),
            start_unix: None,
        }
    }

    /// A planned trial that never finished: `why` says so.
    pub fn unfinished(trial: &PlannedTrial, why: &str) -> TrialResult {
        TrialResult {
            name: trial.name.clone(),
            kind: trial.kind,
            arch: trial.arch.clone(),
            kernel: trial.kernel.clone(),
            case_id: trial.case_id.clone(),
            case_path: trial.case_path.clone(),
            verdict: Verdict::Unfinished,
            cause: None,
            message: why.to_string(),
            notes: Vec::new(),
            secs: 0.0,
            guest_secs: None,
            ssh_ready_secs: None,
            retries: 0,
            steps: Vec::new(),
            artifacts: None,
            xfail_reason: None,
            start_unix: None,
        }
    }

    /// The first line of what went wrong, with its cause: `kernel verdict: step 3 ...`.
    pub fn first_line(&self) -> String {
        let first = self.message.lines().next().unwrap_or("");
        match self.cause {
            Some(c) => format!("{}: {first}", c.as_str()),
            None => first.to_string(),
        }
    }

    /// The whole message, prefixed by its cause as a failure prints.
    pub fn story(&self) -> String {
        match self.cause {
            Some(c) => format!("{}: {}", c.as_str(), self.message),
            None => self.message.clone(),
        }
    }
}

/// A trial of the plan, named before any target is prepared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedTrial {
    pub name: String,
    pub kind: TrialKind,
    pub arch: String,
    pub kernel: String,
    pub case_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_path: Option<String>,
}

/// What a run set out to do: every selected trial in plan order (before
/// partitioning, so shards of one plan agree on it), and this run's share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanRecord {
    pub trials: Vec<PlannedTrial>,
    /// `count:2/3`, `hash:1/4`, or none for an unsharded run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// Names of the trials this run's partition holds, in plan order.
    pub mine: Vec<String>,
}

/// A kernel trials ran on, as reports beyond the trial name need it
/// (KCIDB's checkout and build records).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelRecord {
    pub arch: String,
    /// The id trial names carry.
    pub id: String,
    /// `uname -r`.
    pub release: String,
    /// Its `.config`.
    pub config: String,
    pub origin: crate::kernel::origin::Origin,
}

impl KernelRecord {
    pub fn of(k: &crate::kernel::Kernel) -> KernelRecord {
        KernelRecord {
            arch: k.arch.name.to_string(),
            id: k.id.clone(),
            release: k.release.clone(),
            config: k.config.display().to_string(),
            origin: k.origin.clone(),
        }
    }

    /// `x86_64/src-7.2.13`: the key of [`RunResults::kernels`], as trial names begin.
    pub fn key(&self) -> String {
        format!("{}/{}", self.arch, self.id)
    }
}

/// The contents of a `--results` file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResults {
    pub format: u32,
    pub klpt_version: String,
    /// Seconds since the Unix epoch when the run started.
    pub started_unix: u64,
    pub secs: f64,
    /// Interrupted (Ctrl-C, SIGTERM, SIGHUP, `--timeout`): unfinished trials say so.
    pub cancelled: bool,
    /// The run's `--artifacts` directory, absolute; trials' `artifacts` are below it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<String>,
    pub plan: PlanRecord,
    /// One per trial of `plan.mine`, in plan order.
    pub results: Vec<TrialResult>,
    /// The kernels klpt had or prepared, by `arch/id` (a run cancelled
    /// before it fetched or built a kernel lacks it).
    #[serde(default)]
    pub kernels: std::collections::BTreeMap<String, KernelRecord>,
}

/// Counts of each verdict.
pub fn totals(results: &[TrialResult]) -> std::collections::BTreeMap<Verdict, usize> {
    let mut m: std::collections::BTreeMap<Verdict, usize> = Verdict::ALL.iter().map(|v| (*v, 0)).collect();
    for r in results {
        *m.entry(r.verdict).or_default() += 1;
    }
    m
}
