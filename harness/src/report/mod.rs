//! Reports: each trial's outcome, written as KTAP (the kernel selftest
//! format) and JUnit XML after the run.

pub mod matrix;

use std::fmt::Write;

#[derive(Debug, Clone)]
pub enum Status {
    Pass,
    Fail(String),
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
    /// The failure was losing the guest, not a kernel verdict.
    pub lost: bool,
}

impl Outcome {
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
            Status::Fail(msg) => {
                for l in msg.lines() {
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
            Status::Fail(m) => {
                let first = m.lines().next().unwrap_or("");
                let _ = writeln!(s, ">\n    <failure message=\"{}\">{}</failure>\n  </testcase>", xml(first), xml(m));
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
        Outcome { name: name.into(), case_id: name.into(), arch: "x86_64".into(), kernel: "k".into(), status, secs: 1.0, guest_secs: None, ssh_ready_secs: None, notes: vec![], lost: false }
    }

    #[test]
    fn ktap_and_junit() {
        let v = vec![o("a", Status::Pass), o("b", Status::Fail("x <y>\nz".into())), o("c", Status::Skip("no LIVEPATCH".into()))];
        let k = ktap(&v);
        assert!(k.starts_with("KTAP version 1\n1..3\nok 1 a\n# x <y>\n# z\nnot ok 2 b\nok 3 c # SKIP no LIVEPATCH\n"), "{k}");
        let j = junit(&v);
        assert!(j.contains("failures=\"1\"") && j.contains("x &lt;y&gt;") && j.contains("<skipped message=\"no LIVEPATCH\"/>"));
    }
}
