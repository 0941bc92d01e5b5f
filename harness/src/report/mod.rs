//! Reports: each trial's outcome, written as KTAP (the kernel selftest
//! format) and JUnit XML after the run.

pub mod kcidb;
pub mod matrix;

use std::fmt::Write;

/// Why a trial failed: a closed set, so a report never has to guess from
/// the wording of a message. Only [`Cause::GuestLost`] is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
        }
    }

    pub fn word(&self) -> &'static str {
        match self.status {
            Status::Pass => "pass",
            Status::Fail(_) => "fail",
            Status::Skip(_) => "skip",
            Status::Xfail(_) => "xfail",
        }
    }
}

pub fn ktap(outcomes: &[Outcome]) -> String {
    let mut s = format!("KTAP version 1\n1..{}\n", outcomes.len());
    for (i, o) in outcomes.iter().enumerate() {
        let n = i + 1;
        let name = o.name.replace('#', "_");
        for note in &o.notes {
            let _ = writeln!(s, "# {note}");
        }
        match &o.status {
            Status::Pass => {
                let _ = writeln!(s, "ok {n} {name}");
            }
            Status::Fail(f) => {
                for l in f.to_string().lines() {
                    let _ = writeln!(s, "# {l}");
                }
                let _ = writeln!(s, "not ok {n} {name}");
            }
            Status::Skip(r) => {
                let _ = writeln!(s, "ok {n} {name} # SKIP {}", r.replace('\n', " "));
            }
            Status::Xfail(r) => {
                let _ = writeln!(s, "ok {n} {name} # XFAIL {}", r.replace('\n', " "));
            }
        }
    }
    let count = |w: &str| outcomes.iter().filter(|o| o.word() == w).count();
    let _ = writeln!(s, "# Totals: pass:{} fail:{} xfail:{} xpass:0 skip:{} error:0", count("pass"), count("fail"), count("xfail"), count("skip"));
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

pub fn junit(outcomes: &[Outcome]) -> String {
    let count = |w: &str| outcomes.iter().filter(|o| o.word() == w).count();
    let total: f64 = outcomes.iter().map(|o| o.secs).sum();
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        s,
        "<testsuites name=\"klpt\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{total:.3}\">\n<testsuite name=\"klpt\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{total:.3}\">",
        outcomes.len(), count("fail"), count("skip"), outcomes.len(), count("fail"), count("skip")
    );
    for o in outcomes {
        let class = xml(&format!("{}.{}", o.arch, o.kernel));
        let _ = write!(s, "  <testcase classname=\"{class}\" name=\"{}\" time=\"{:.3}\"", xml(&o.case_id), o.secs);
        match &o.status {
            Status::Pass => s.push_str("/>\n"),
            Status::Fail(f) => {
                let _ = writeln!(s, ">\n    <failure message=\"{}\" type=\"{}\">{}</failure>\n  </testcase>", xml(&f.first_line()), f.cause.as_str(), xml(&f.to_string()));
            }
            Status::Skip(r) => {
                let _ = writeln!(s, ">\n    <skipped message=\"{}\"/>\n  </testcase>", xml(r));
            }
            Status::Xfail(r) => {
                let _ = writeln!(s, ">\n    <system-out>expected failure: {}</system-out>\n  </testcase>", xml(r));
            }
        }
    }
    s.push_str("</testsuite>\n</testsuites>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(name: &str, status: Status) -> Outcome {
        Outcome { name: name.into(), case_id: name.into(), arch: "x86_64".into(), kernel: "k".into(), status, secs: 1.0, guest_secs: None, ssh_ready_secs: None, notes: vec![], retries: 0, step_secs: vec![] }
    }

    #[test]
    fn ktap_and_junit() {
        let v = vec![o("a", Status::Pass), o("b", Status::Fail(Failure::new(Cause::KernelVerdict, "x <y>\nz"))), o("c", Status::Skip("no LIVEPATCH".into()))];
        let k = ktap(&v);
        assert!(k.starts_with("KTAP version 1\n1..3\nok 1 a\n# kernel verdict: x <y>\n# z\nnot ok 2 b\nok 3 c # SKIP no LIVEPATCH\n"), "{k}");
        let j = junit(&v);
        assert!(j.contains("failures=\"1\"") && j.contains("x &lt;y&gt;") && j.contains("<skipped message=\"no LIVEPATCH\"/>"));
    }
}
