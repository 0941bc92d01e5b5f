//! The reporters of a run's event stream: the terminal (libtest's words,
//! so scripts that read `cargo test` output read klpt's), report files
//! written when the run finishes (KTAP, JUnit, results JSON, matrix,
//! KCIDB), and a JSON line per event.

use super::events::{Reporter, RunEvent};
use crate::report::results::{RunResults, Verdict};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The terminal: progress on stderr; a line per trial, the failures and
/// libtest's summary line on stdout.
pub struct Human {
    pub quiet: bool,
    /// Trials named but not run here (filters, other shards).
    pub filtered_out: usize,
    /// Print the summary (and failures); `klpt matrix` prints its table instead.
    pub summary: bool,
    dots: usize,
}

impl Human {
    pub fn new(quiet: bool, filtered_out: usize) -> Human {
        Human { quiet, filtered_out, summary: true, dots: 0 }
    }
}

fn word(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "ok",
        Verdict::Fail => "FAILED",
        Verdict::Skip => "ignored",
        Verdict::Xfail => "ok (expected failure)",
        Verdict::Xpass => "FAILED (unexpected pass)",
        Verdict::Error => "FAILED (harness error)",
        Verdict::Unfinished => "FAILED (unfinished)",
    }
}

impl Reporter for Human {
    fn report(&mut self, ev: &RunEvent<'_>) -> Result<(), String> {
        let mut out = std::io::stdout().lock();
        match ev {
            RunEvent::RunStarted { plan, .. } => {
                let n = plan.mine.len();
                let _ = writeln!(out, "\nrunning {n} test{}", if n == 1 { "" } else { "s" });
            }
            RunEvent::Progress { secs, progress } => crate::event::print(progress, *secs),
            RunEvent::TrialStarted { .. } | RunEvent::StepFinished { .. } => {}
            RunEvent::TrialFinished { result: r, .. } => {
                if self.quiet {
                    let c = match r.verdict {
                        Verdict::Pass | Verdict::Xfail => '.',
                        Verdict::Skip => 'i',
                        _ => 'F',
                    };
                    self.dots += 1;
                    let _ = write!(out, "{c}{}", if self.dots.is_multiple_of(88) { "\n" } else { "" });
                } else if r.verdict == Verdict::Skip || r.verdict == Verdict::Xfail {
                    let _ = writeln!(
                        out,
                        "test {} ... {}, {}",
                        r.name,
                        word(r.verdict),
                        r.message.lines().next().unwrap_or("")
                    );
                } else {
                    let _ = writeln!(out, "test {} ... {}", r.name, word(r.verdict));
                }
                let _ = out.flush();
            }
            RunEvent::RunFinished { cancelled, secs, results, .. } => {
                if self.quiet && !self.dots.is_multiple_of(88) {
                    let _ = writeln!(out);
                }
                if !self.summary {
                    return Ok(());
                }
                let failed: Vec<_> = results.results.iter().filter(|r| r.verdict.is_failure()).collect();
                if !failed.is_empty() {
                    let _ = writeln!(out, "\nfailures:\n");
                    for r in &failed {
                        let story = match r.verdict {
                            Verdict::Xpass => format!("XPASS: {}", r.message),
                            Verdict::Unfinished => format!("unfinished: {}", r.message),
                            _ => r.story(),
                        };
                        let _ = writeln!(out, "---- {} ----\n{story}\n", r.name);
                    }
                    let _ = writeln!(out, "failures:");
                    for r in &failed {
                        let _ = writeln!(out, "    {}", r.name);
                    }
                }
                if *cancelled {
                    let n = results.results.iter().filter(|r| r.verdict == Verdict::Unfinished).count();
                    let _ = writeln!(out, "\nthe run was cancelled: {n} trial(s) unfinished");
                }
                let count = |f: &dyn Fn(Verdict) -> bool| results.results.iter().filter(|r| f(r.verdict)).count();
                let passed = count(&|v| matches!(v, Verdict::Pass | Verdict::Xfail));
                let ignored = count(&|v| v == Verdict::Skip);
                let _ = writeln!(
                    out,
                    "\ntest result: {}. {passed} passed; {} failed; {ignored} ignored; 0 measured; {} filtered out; finished in {secs:.2}s\n",
                    if failed.is_empty() { "ok" } else { "FAILED" },
                    failed.len(),
                    self.filtered_out
                );
            }
        }
        Ok(())
    }
}

/// Report files, written when the run finishes (also when it is cancelled).
#[derive(Debug, Clone, Default)]
pub struct Files {
    pub ktap: Option<PathBuf>,
    pub junit: Option<PathBuf>,
    /// The run's results as JSON (`klpt report merge` reads them).
    pub results: Option<PathBuf>,
    /// The case × kernel table as JSON.
    pub matrix: Option<PathBuf>,
    pub kcidb: Option<PathBuf>,
}

fn write(p: &Path, s: &str) -> Result<(), String> {
    if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(p, s).map_err(|e| format!("cannot write {}: {e}", p.display()))
}

impl Files {
    /// Refuses, before any work starts, a report whose directory cannot be made.
    pub fn check(&self) -> Result<(), String> {
        for p in [&self.ktap, &self.junit, &self.results, &self.matrix, &self.kcidb].into_iter().flatten() {
            if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create {} for {}: {e}", dir.display(), p.display()))?;
            }
        }
        Ok(())
    }

    pub fn write_all(&self, run: &RunResults) -> Result<(), String> {
        let mut errors = Vec::new();
        let mut put = |p: &Option<PathBuf>, f: &dyn Fn() -> Result<String, String>| {
            if let Some(p) = p {
                if let Err(e) = f().and_then(|s| write(p, &s)) {
                    errors.push(e);
                }
            }
        };
        put(&self.ktap, &|| Ok(crate::report::ktap(&run.results)));
        put(&self.junit, &|| Ok(crate::report::junit(&run.results)));
        put(&self.results, &|| serde_json::to_string_pretty(run).map(|s| s + "\n").map_err(|e| e.to_string()));
        put(&self.matrix, &|| Ok(crate::report::matrix::Matrix::from_results(&run.results).json()));
        put(&self.kcidb, &|| kcidb(run));
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("\n"))
        }
    }
}

/// The KCIDB report of `run` (see `report::kcidb::from_results`). The run
/// id comes from `KLPT_RUN_ID` (a CI pipeline's id, shared by its shards),
/// else from the plan, which a run and its shards share too.
fn kcidb(run: &RunResults) -> Result<String, String> {
    let run_id = std::env::var("KLPT_RUN_ID").ok().filter(|s| !s.is_empty());
    let url = std::env::var("KLPT_ARTIFACTS_URL").ok().filter(|s| !s.is_empty());
    let (meta, trials) = crate::report::kcidb::from_results(run, run_id, url);
    crate::report::kcidb::render(&meta, &trials).map_err(|e| e.to_string())
}

impl Reporter for Files {
    fn report(&mut self, ev: &RunEvent<'_>) -> Result<(), String> {
        match ev {
            RunEvent::RunFinished { results, .. } => self.write_all(results),
            _ => Ok(()),
        }
    }
}

/// `klpt matrix`: the case × kernel table on stdout when the run ends.
pub struct MatrixTable;

impl Reporter for MatrixTable {
    fn report(&mut self, ev: &RunEvent<'_>) -> Result<(), String> {
        if let RunEvent::RunFinished { results, .. } = ev {
            print!("{}", crate::report::matrix::Matrix::from_results(&results.results).text());
        }
        Ok(())
    }
}

/// Every event as one JSON object per line, flushed as it happens (a
/// dashboard can follow the file while the run goes on).
pub struct JsonLines {
    path: PathBuf,
    file: std::io::BufWriter<std::fs::File>,
}

impl JsonLines {
    pub fn create(path: &Path) -> Result<JsonLines, String> {
        write(path, "")?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        Ok(JsonLines { path: path.to_path_buf(), file: std::io::BufWriter::new(file) })
    }
}

impl Reporter for JsonLines {
    fn report(&mut self, ev: &RunEvent<'_>) -> Result<(), String> {
        let err = |e: &dyn std::fmt::Display| format!("cannot write {}: {e}", self.path.display());
        let line = serde_json::to_string(ev).map_err(|e| err(&e))?;
        writeln!(self.file, "{line}").and_then(|_| self.file.flush()).map_err(|e| err(&e))
    }
}
