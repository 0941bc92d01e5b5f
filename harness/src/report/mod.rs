//! Reports: each trial's outcome, and the reporters that turn a run's
//! [`results::TrialResult`]s into KTAP (the kernel selftest format), JUnit
//! XML and the matrix.

pub mod kcidb;
pub mod matrix;
pub mod results;

use results::{TrialResult, Verdict};
use std::fmt::Write;

/// Why a trial failed: a closed set, so a report never has to guess from
/// the wording of a message. Only [`Cause::GuestLost`] is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The kernel did something other than the case expects (an assertion
    /// or an errno mismatch, a warning in the log, a transition that never
    /// ended).
    KernelVerdict,
    /// The kernel panicked, oopsed or hit a BUG (the console says so).
    KernelCrash,
    /// A step ran past its `timeout:`.
    StepTimeout,
    /// QEMU exited, or the connection to the guest broke with no crash on
    /// the console.
    GuestLost,
    /// klpt could not set the case up or failed itself: local I/O, a
    /// module that does not build, a prebuilt module built for another
    /// kernel.
    HarnessError,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::KernelVerdict => "kernel verdict",
            Cause::KernelCrash => "kernel crash",
            Cause::StepTimeout => "step timeout",
            Cause::GuestLost => "guest lost",
            Cause::HarnessError => "harness error",
        }
    }
}

/// A failed trial: its cause and the whole story, whose first line says
/// what went wrong.
#[derive(Debug, Clone)]
pub struct Failure {
    pub cause: Cause,
    pub message: String,
}

impl Failure {
    pub fn new(cause: Cause, message: impl Into<String>) -> Failure {
        Failure { cause, message: message.into() }
    }
    pub fn first_line(&self) -> String {
        format!("{}: {}", self.cause.as_str(), self.message.lines().next().unwrap_or(""))
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.cause.as_str(), self.message)
    }
}

#[derive(Debug, Clone)]
pub enum Status {
    Pass,
    Fail(Failure),
    Skip(String),
    /// Failed as the case's `xfail` entry for this kernel expects.
    Xfail(String),
    /// Passed although the case's `xfail` entry for this kernel expects a
    /// failure: fails the run. The message says which entry.
    Xpass(String),
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub name: String,
    pub case_id: String,
    pub arch: String,
    pub kernel: String,
    pub status: Status,
    /// Host wall time of the whole trial.
    pub secs: f64,
    /// Guest uptime at the end of the case (time the guest itself ran).
    pub guest_secs: Option<f64>,
    /// Host seconds until the guest was reachable over SSH.
    pub ssh_ready_secs: Option<f64>,
    pub notes: Vec<String>,
    /// Fresh guests this trial needed beyond the first (a lost guest is retried once).
    pub retries: u32,
    /// Each step that ran in the final attempt: its kind (`load`, `assert`,
    /// ...) and host seconds.
    pub step_secs: Vec<(&'static str, f64)>,
    /// The trial's artifacts directory (consoles, collected state).
    pub artifacts: Option<std::path::PathBuf>,
    /// An xfail or xpass trial: the `reason` of the case's `xfail:` entry alone.
    pub xfail_reason: Option<String>,
}

impl Outcome {
    /// A trial that has not run yet: passing until something says otherwise.
    pub fn new(name: String, case_id: String, arch: &str, kernel: &str) -> Outcome {
        Outcome {
            name,
            case_id,
            arch: arch.into(),
            kernel: kernel.into(),
            status: Status::Pass,
            secs: 0.0,
            guest_secs: None,
            ssh_ready_secs: None,
            notes: Vec::new(),
            retries: 0,
            step_secs: Vec::new(),
            artifacts: None,
            xfail_reason: None,
        }
    }

    pub fn word(&self) -> &'static str {
        match self.status {
            Status::Pass => "pass",
            Status::Fail(_) => "fail",
            Status::Skip(_) => "skip",
            Status::Xfail(_) => "xfail",
            Status::Xpass(_) => "xpass",
        }
    }
}

/// KTAP of `results` in the order given (plan order). Totals count every
/// verdict; an unfinished trial counts as an error.
pub fn ktap(results: &[TrialResult]) -> String {
    let mut s = format!("KTAP version 1\n1..{}\n", results.len());
    for (i, r) in results.iter().enumerate() {
        let n = i + 1;
        let name = r.name.replace('#', "_");
        for note in &r.notes {
            let _ = writeln!(s, "# {note}");
        }
        let one_line = || r.message.replace('\n', " ");
        match r.verdict {
            Verdict::Pass => {
                let _ = writeln!(s, "ok {n} {name}");
            }
            Verdict::Skip => {
                let _ = writeln!(s, "ok {n} {name} # SKIP {}", one_line());
            }
            Verdict::Xfail => {
                let _ = writeln!(s, "ok {n} {name} # XFAIL {}", one_line());
            }
            Verdict::Fail | Verdict::Xpass | Verdict::Error | Verdict::Unfinished => {
                let story = match r.verdict {
                    Verdict::Xpass => format!("XPASS: {}", r.message),
                    Verdict::Unfinished => format!("unfinished: {}", r.message),
                    _ => r.story(),
                };
                for l in story.lines() {
                    let _ = writeln!(s, "# {l}");
                }
                let _ = writeln!(s, "not ok {n} {name}");
            }
        }
    }
    let t = results::totals(results);
    let c = |v: Verdict| t[&v];
    let _ = writeln!(
        s,
        "# Totals: pass:{} fail:{} xfail:{} xpass:{} skip:{} error:{}",
        c(Verdict::Pass),
        c(Verdict::Fail),
        c(Verdict::Xfail),
        c(Verdict::Xpass),
        c(Verdict::Skip),
        c(Verdict::Error) + c(Verdict::Unfinished)
    );
    s
}

fn xml(s: &str) -> String {
    s.chars()
        .filter(|c| *c == '\n' || *c == '\t' || !c.is_control())
        .collect::<String>()
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// JUnit's class of a trial: `arch.kernel`, the kernel id's own dots made
/// underscores (CI front ends read dots in a class name as packages).
pub fn junit_class(arch: &str, kernel: &str) -> String {
    format!("{arch}.{}", kernel.replace('.', "_"))
}

/// JUnit XML of `results` in the order given (plan order). Failures are
/// the kernel's (fail, xpass); errors are klpt's own and unfinished trials.
pub fn junit(results: &[TrialResult]) -> String {
    let t = results::totals(results);
    let failures = t[&Verdict::Fail] + t[&Verdict::Xpass];
    let errors = t[&Verdict::Error] + t[&Verdict::Unfinished];
    let skipped = t[&Verdict::Skip];
    let total: f64 = results.iter().map(|r| r.secs).sum();
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let head = format!(
        "tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{total:.3}\"",
        results.len()
    );
    let _ = writeln!(s, "<testsuites name=\"klpt\" {head}>\n<testsuite name=\"klpt\" {head}>");
    for r in results {
        let class = xml(&junit_class(&r.arch, &r.kernel));
        let _ = write!(s, "  <testcase classname=\"{class}\" name=\"{}\" time=\"{:.3}\"", xml(&r.case_id), r.secs);
        let ty = r.cause.map(|c| c.as_str()).unwrap_or("unfinished");
        match r.verdict {
            Verdict::Pass => s.push_str("/>\n"),
            Verdict::Fail => {
                let _ = writeln!(
                    s,
                    ">\n    <failure message=\"{}\" type=\"{ty}\">{}</failure>\n  </testcase>",
                    xml(&r.first_line()),
                    xml(&r.story())
                );
            }
            Verdict::Xpass => {
                let _ = writeln!(
                    s,
                    ">\n    <failure message=\"XPASS: {}\" type=\"xpass\">{}</failure>\n  </testcase>",
                    xml(r.message.lines().next().unwrap_or("")),
                    xml(&r.message)
                );
            }
            Verdict::Error | Verdict::Unfinished => {
                let msg = if r.verdict == Verdict::Unfinished {
                    format!("unfinished: {}", r.first_line())
                } else {
                    r.first_line()
                };
                let _ = writeln!(
                    s,
                    ">\n    <error message=\"{}\" type=\"{ty}\">{}</error>\n  </testcase>",
                    xml(&msg),
                    xml(&r.story())
                );
            }
            Verdict::Skip => {
                let _ = writeln!(s, ">\n    <skipped message=\"{}\"/>\n  </testcase>", xml(&r.message));
            }
            Verdict::Xfail => {
                let _ =
                    writeln!(s, ">\n    <system-out>expected failure: {}</system-out>\n  </testcase>", xml(&r.message));
            }
        }
    }
    s.push_str("</testsuite>\n</testsuites>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(name: &str, status: Status) -> TrialResult {
        let mut o = Outcome::new(name.into(), name.into(), "x86_64", "6.1.0-50");
        o.status = status;
        o.secs = 1.0;
        TrialResult::from_outcome(&o, results::TrialKind::Case, None)
    }

    #[test]
    fn ktap_and_junit() {
        let v = vec![
            o("a", Status::Pass),
            o("b", Status::Fail(Failure::new(Cause::KernelVerdict, "x <y>\nz"))),
            o("c", Status::Skip("no LIVEPATCH".into())),
        ];
        let k = ktap(&v);
        assert!(
            k.starts_with(
                "KTAP version 1\n1..3\nok 1 a\n# kernel verdict: x <y>\n# z\nnot ok 2 b\nok 3 c # SKIP no LIVEPATCH\n"
            ),
            "{k}"
        );
        assert!(k.ends_with("# Totals: pass:1 fail:1 xfail:0 xpass:0 skip:1 error:0\n"), "{k}");
        let j = junit(&v);
        assert!(
            j.contains("failures=\"1\"")
                && j.contains("x &lt;y&gt;")
                && j.contains("<skipped message=\"no LIVEPATCH\"/>")
        );
        assert!(j.contains("classname=\"x86_64.6_1_0-50\""), "{j}");
    }

    #[test]
    fn totals_count_every_verdict() {
        let planned = results::PlannedTrial {
            name: "d".into(),
            kind: results::TrialKind::Case,
            arch: "x86_64".into(),
            kernel: "k".into(),
            case_id: "d".into(),
            case_path: None,
        };
        let v = vec![
            o("a", Status::Xpass("expected to fail".into())),
            o("b", Status::Fail(Failure::new(Cause::HarnessError, "no gcc"))),
            o("c", Status::Xfail("known".into())),
            TrialResult::unfinished(&planned, "the run was cancelled"),
        ];
        let k = ktap(&v);
        assert!(k.ends_with("# Totals: pass:0 fail:0 xfail:1 xpass:1 skip:0 error:2\n"), "{k}");
        assert!(k.contains("# unfinished: the run was cancelled\nnot ok 4 d\n"), "{k}");
        let j = junit(&v);
        assert!(j.contains("failures=\"1\" errors=\"2\""), "{j}");
        assert!(j.contains("<error message=\"harness error: no gcc\""), "{j}");
    }
}
