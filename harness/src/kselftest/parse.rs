//! Reads a livepatch selftest script's output as it streams in and decides
//! each scenario, the way `functions.sh` reports them:
//!
//! * `start_test` prints `TEST: <title> ... ` (no newline) on stdout;
//! * `check_result` completes the line with `ok`, or with `not ok`, an empty
//!   line and the `diff -u` of the expected against the actual kernel log,
//!   then calls `die`;
//! * `die` prints `ERROR: <why>` on stderr and exits 1; `skip` prints
//!   `SKIP: <why>` on stderr and exits 4 (kselftest's skip code), as
//!   `has_kdir` does after `skip all tests: …` on stdout.
//!
//! A scenario is decided once the next one starts or the script ends, so
//! that an error the script hits after a scenario's `ok` (before the next
//! `start_test`) is that scenario's. The parser only sees text and the host
//! times the driver gives it; what a dead guest means is the driver's call
//! ([`Parser::interrupt`]).

use super::scripts::Script;

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// `check_result` printed `ok`.
    Ok,
    /// `check_result` printed `not ok`, with its diff (expected vs result).
    NotOk { diff: String },
    /// The script stopped in (or right after) this scenario without a
    /// verdict for it: `die` (`ERROR: …`) or any other non-zero exit.
    Died { exit: i32, error: String },
    /// The script exited with kselftest's skip code (4).
    Skipped(String),
    /// The script never started this scenario.
    NotRun(String),
    /// The guest stopped answering (crash, hang, lost) while this scenario
    /// ran; the driver knows why.
    Interrupted,
}

/// One scenario, decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Decided {
    /// 1-based, as [`super::scripts::Scenario::index`].
    pub index: usize,
    pub verdict: Verdict,
    /// Host seconds from its `TEST:` line to its verdict (or to the end).
    pub secs: Option<f64>,
    pub notes: Vec<String>,
}

/// The scenario running now.
struct Running {
    /// 0-based position in the script's scenarios.
    pos: usize,
    start: f64,
    end: Option<f64>,
    verdict: Option<Verdict>,
    notes: Vec<String>,
    /// Collecting the diff after `not ok`.
    diff: Option<String>,
}

pub struct Parser<'a> {
    script: &'a Script,
    /// Stdout not yet ended by a newline.
    partial: String,
    /// The partial line's `TEST:` was already taken as a start.
    partial_started: bool,
    stderr: String,
    running: Option<Running>,
    /// Position of the first scenario not yet started or passed over.
    next: usize,
    decided: Vec<Decided>,
    /// `skip all tests: …` from stdout.
    skip_all: Option<String>,
    /// A scenario that failed (`a/03`), for the reason the rest did not run.
    failed: Option<usize>,
    ready: Vec<Decided>,
    done: bool,
}

/// `TEST: <title> ... <rest>`: the title and what follows the ` ... `.
fn test_line(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix("TEST: ")?;
    // The title is everything up to the last ` ... ` (a title may contain dots).
    let i = rest.rfind(" ... ").or_else(|| rest.strip_suffix(" ...").map(|r| r.len()))?;
    Some((&rest[..i], rest.get(i + 5..).unwrap_or("").trim()))
}

impl<'a> Parser<'a> {
    pub fn new(script: &'a Script) -> Parser<'a> {
        Parser {
            script,
            partial: String::new(),
            partial_started: false,
            stderr: String::new(),
            running: None,
            next: 0,
            decided: Vec::new(),
            skip_all: None,
            failed: None,
            ready: Vec::new(),
            done: false,
        }
    }

    /// The scenarios decided since the last call, in order.
    pub fn take_ready(&mut self) -> Vec<Decided> {
        std::mem::take(&mut self.ready)
    }

    /// Every scenario decided so far (all of them once the script ended).
    pub fn decided(&self) -> &[Decided] {
        &self.decided
    }

    /// The scenario running now (1-based index) and its title.
    pub fn running(&self) -> Option<(usize, &str)> {
        self.running.as_ref().map(|r| (self.script.scenarios[r.pos].index, self.script.scenarios[r.pos].title.as_str()))
    }

    fn decide(&mut self, d: Decided) {
        self.decided.push(d.clone());
        self.ready.push(d);
    }

    fn name(&self, pos: usize) -> String {
        format!("{}/{:02}", self.script.name, self.script.scenarios[pos].index)
    }

    /// Ends the running scenario with what it has.
    fn close_running(&mut self, t: f64) {
        if let Some(r) = self.running.take() {
            let mut verdict = r.verdict.unwrap_or(Verdict::Interrupted);
            if let (Verdict::NotOk { diff }, Some(d)) = (&mut verdict, r.diff) {
                *diff = d.trim_matches('\n').to_string();
            }
            let secs = Some(r.end.unwrap_or(t) - r.start);
            self.decide(Decided { index: self.script.scenarios[r.pos].index, verdict, secs, notes: r.notes });
        }
    }

    /// A `TEST:` line (complete or not): the scenario it names starts.
    fn start(&mut self, title: &str, t: f64) {
        self.close_running(t);
        let found = self.script.scenarios[self.next..].iter().position(|s| s.title == title).map(|i| i + self.next);
        let mut notes = Vec::new();
        let pos = match found {
            Some(p) => p,
            None if self.next < self.script.scenarios.len() => {
                notes.push(format!("the script printed `TEST: {title}`, a title its source does not spell out; reported as the next scenario"));
                self.next
            }
            None => {
                // More scenarios than the source shows: nothing left to report them as.
                self.stderr.push_str(&format!("(klpt: unexpected extra scenario `{title}`)\n"));
                return;
            }
        };
        // Scenarios passed over were not run by the script (a false `if`).
        for p in self.next..pos {
            let why = self.not_run_by_script(p);
            self.decide(Decided {
                index: self.script.scenarios[p].index,
                verdict: Verdict::NotRun(why),
                secs: None,
                notes: Vec::new(),
            });
        }
        self.next = pos + 1;
        notes.insert(0, self.script.scenarios[pos].title.clone());
        self.running = Some(Running { pos, start: t, end: None, verdict: None, notes, diff: None });
    }

    fn not_run_by_script(&self, pos: usize) -> String {
        match &self.script.scenarios[pos].condition {
            Some(c) => format!("not run by the script: its condition `{c}` does not hold on this kernel"),
            None => "not run by the script".into(),
        }
    }

    fn line(&mut self, line: &str, t: f64) {
        if let Some((title, rest)) = test_line(line) {
            if !self.partial_started {
                self.start(title, t);
            }
            self.partial_started = false;
            if let Some(r) = &mut self.running {
                match rest {
                    "ok" => {
                        r.verdict = Some(Verdict::Ok);
                        r.end = Some(t);
                    }
                    "not ok" => {
                        r.verdict = Some(Verdict::NotOk { diff: String::new() });
                        r.end = Some(t);
                        r.diff = Some(String::new());
                    }
                    "" => {}
                    other => r.notes.push(format!("after its TEST line: {other}")),
                }
            }
            return;
        }
        self.partial_started = false;
        if let Some(m) = line.strip_prefix("skip all tests: ") {
            self.skip_all = Some(m.trim().to_string());
        }
        if let Some(r) = &mut self.running {
            if let Some(d) = &mut r.diff {
                d.push_str(line);
                d.push('\n');
            }
        }
    }

    /// Stdout as it arrives, at host time `t` (seconds).
    pub fn stdout(&mut self, chunk: &str, t: f64) {
        self.partial.push_str(chunk);
        while let Some(i) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=i).collect();
            self.line(line.trim_end_matches('\n'), t);
        }
        // `TEST: <title> ... ` arrives without its newline: start the clock now.
        if !self.partial_started {
            if let Some((title, "")) = test_line(&self.partial) {
                let title = title.to_string();
                self.start(&title, t);
                self.partial_started = true;
            }
        }
    }

    pub fn stderr(&mut self, chunk: &str) {
        self.stderr.push_str(chunk);
    }

    fn stderr_lines(&self) -> impl Iterator<Item = &str> {
        self.stderr.lines().map(str::trim_end).filter(|l| !l.is_empty())
    }

    /// Why the script skipped: its `SKIP:` line, or `skip all tests:`.
    fn skip_reason(&self) -> String {
        self.stderr_lines()
            .filter_map(|l| l.strip_prefix("SKIP: ").map(str::to_string))
            .last()
            .or_else(|| self.skip_all.clone())
            .or_else(|| self.stderr_lines().find_map(|l| l.strip_prefix("skip all tests: ").map(str::to_string)))
            .unwrap_or_else(|| "the script exited 4 (kselftest's skip code)".into())
    }

    /// Why the script stopped: its `ERROR:` line(s), else its last stderr lines.
    fn error_text(&self) -> String {
        // die's own words, and a tool the guest lacks (bash names it).
        let errors: Vec<&str> =
            self.stderr_lines().filter(|l| l.starts_with("ERROR: ") || l.ends_with("command not found")).collect();
        let lines: Vec<&str> = if errors.is_empty() { self.stderr_lines().collect() } else { errors };
        let tail = &lines[lines.len().saturating_sub(8)..];
        if tail.is_empty() {
            "(nothing on stderr)".into()
        } else {
            tail.join("\n")
        }
    }

    /// The script exited with `status` at host time `t`.
    pub fn end(&mut self, status: i32, t: f64) {
        if self.done {
            return;
        }
        self.done = true;
        if !self.partial.is_empty() {
            let p = std::mem::take(&mut self.partial);
            if !self.partial_started {
                self.line(&p, t);
            }
        }
        let skip = (status == 4).then(|| self.skip_reason());
        let err = self.error_text();
        if let Some(r) = &mut self.running {
            match (&r.verdict, status) {
                (Some(Verdict::Ok), 0) => {}
                (Some(Verdict::Ok), 4) => {
                    r.notes.push(format!("the script then skipped: {}", skip.clone().unwrap_or_default()))
                }
                (Some(Verdict::NotOk { .. }), _) => {}
                (_, 4) => r.verdict = Some(Verdict::Skipped(skip.clone().unwrap_or_default())),
                (Some(Verdict::Ok), _) => {
                    r.notes.push(format!("its check printed `ok`; the script exited {status} after it"));
                    r.verdict = Some(Verdict::Died { exit: status, error: err.clone() });
                }
                (_, _) => {
                    let error = if status == 0 {
                        "the script exited 0 without a verdict for this scenario".to_string()
                    } else {
                        err.clone()
                    };
                    r.verdict = Some(Verdict::Died { exit: status, error });
                }
            }
            if !matches!(r.verdict, Some(Verdict::Ok) | Some(Verdict::Skipped(_))) {
                self.failed = Some(r.pos);
            }
        } else if status != 0 && status != 4 && self.next < self.script.scenarios.len() {
            // Died before its first (next) scenario started: that scenario's.
            let pos = self.next;
            self.next += 1;
            self.failed = Some(pos);
            let idx = self.script.scenarios[pos].index;
            let notes = vec![
                self.script.scenarios[pos].title.clone(),
                "the script stopped before this scenario's TEST line".into(),
            ];
            self.decide(Decided { index: idx, verdict: Verdict::Died { exit: status, error: err }, secs: None, notes });
        }
        self.close_running(t);
        for p in self.next..self.script.scenarios.len() {
            let why = match (&skip, self.failed) {
                (Some(s), _) => Verdict::Skipped(s.clone()),
                (None, Some(f)) => {
                    Verdict::NotRun(format!("not run: the script stopped after {} failed", self.name(f)))
                }
                (None, None) => Verdict::NotRun(self.not_run_by_script(p)),
            };
            self.decide(Decided { index: self.script.scenarios[p].index, verdict: why, secs: None, notes: Vec::new() });
        }
        self.next = self.script.scenarios.len();
    }

    /// The kernel log (the console) shows that `start_test` began the
    /// scenario titled `title` (its `===== TEST: <title> =====` line), whose
    /// `TEST:` output may never have left a dying guest: it becomes the
    /// running scenario, unless it already is or lies behind.
    pub fn started_per_log(&mut self, title: &str, t: f64) {
        if self.done {
            return;
        }
        if self.running.as_ref().is_some_and(|r| self.script.scenarios[r.pos].title == title) {
            return;
        }
        if !self.script.scenarios[self.next..].iter().any(|s| s.title == title) {
            return;
        }
        self.start(title, t);
        self.partial_started = true;
        if let Some(r) = &mut self.running {
            r.notes.push("its start reached the kernel log; its TEST line never left the guest".into());
        }
    }

    /// The script never finished (the guest crashed, hung or was lost) at
    /// host time `t`: the running scenario, or the next one when none had
    /// started, is [`Verdict::Interrupted`]; the rest did not run. Returns
    /// the interrupted scenario's 1-based index.
    pub fn interrupt(&mut self, t: f64) -> Option<usize> {
        if self.done {
            return None;
        }
        self.done = true;
        let pos = match &mut self.running {
            Some(r) => {
                // A scenario that printed its verdict but whose successor never
                // started was still the script's current one (its cleanup, or
                // the script's exit trap, ran when the guest died).
                if let Some(v) = r.verdict.take() {
                    let word = if v == Verdict::Ok { "ok" } else { "not ok" };
                    r.notes.push(format!(
                        "its check printed `{word}`; the guest died after that, before the next scenario started"
                    ));
                }
                r.verdict = Some(Verdict::Interrupted);
                r.end = None;
                r.diff = None;
                let p = r.pos;
                self.close_running(t);
                Some(p)
            }
            None if self.next < self.script.scenarios.len() => {
                let p = self.next;
                self.next += 1;
                let title = self.script.scenarios[p].title.clone();
                self.decide(Decided {
                    index: self.script.scenarios[p].index,
                    verdict: Verdict::Interrupted,
                    secs: None,
                    notes: vec![title, "the guest died before the scenario's TEST line".into()],
                });
                Some(p)
            }
            None => None,
        };
        let why = match pos {
            Some(p) => format!("not run: the guest died during {}", self.name(p)),
            None => "not run: the guest died".into(),
        };
        for p in self.next..self.script.scenarios.len() {
            self.decide(Decided {
                index: self.script.scenarios[p].index,
                verdict: Verdict::NotRun(why.clone()),
                secs: None,
                notes: Vec::new(),
            });
        }
        self.next = self.script.scenarios.len();
        pos.map(|p| self.script.scenarios[p].index)
    }

    /// Everything the script wrote on stderr.
    pub fn stderr_text(&self) -> &str {
        &self.stderr
    }
}

#[cfg(test)]
mod tests;
