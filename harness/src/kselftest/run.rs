//! Runs the built selftests in klpt's guests and turns every scenario into
//! an [`Outcome`]. One guest runs the scripts one after another, as
//! `run_kselftest.sh` would (`cd` into the suite, `./test-x.sh`); a guest
//! that crashes, hangs or is lost fails the scenario that was running, and
//! the next script gets a fresh guest. A lost guest (no crash, no hang)
//! gets its script rerun once in a fresh guest, as klpt's cases do.
//!
//! Trials ask for their scenario's outcome; the first ask for a script
//! queues it for the target's driver thread, which runs queued scripts in
//! order and hands out each scenario as soon as the next one starts, so
//! results stream while a script runs and a filtered-out script never runs.

use super::build::{Built, GUEST_DIR};
use super::parse::{Decided, Parser, Verdict};
use super::scripts::Script;
use crate::error::{Error, Result};
use crate::event::{emit, Event};
use crate::report::{Cause, Failure, Outcome, Status};
use crate::runner::{self, Booted, Options, Target, SETTLE};
use crate::vm::ssh::Chunk;
use std::collections::VecDeque;
use std::io::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The Debian root PATH: the image's Debian tools win over busybox's
/// links in /bin (the scripts' expected transcripts quote kmod and procps).
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How long a scenario (or a script's setup before its first scenario) may
/// run without a verdict before klpt calls it hung. A failing `loop_until`
/// gives up after 600 × 0.1 s plus its commands; a passing scenario takes
/// seconds.
pub const SCENARIO_TIMEOUT: Duration = Duration::from_secs(240);

/// A target's selftests: the built suite, its guest, the outcomes so far.
pub struct Suite {
    pub target: Arc<Target>,
    pub built: Built,
    /// `<artifacts>/<arch>/<kernel>/kselftest`: consoles and transcripts.
    pub dir: PathBuf,
    pub scenario_timeout: Duration,
    boot_timeout: Duration,
    state: Mutex<State>,
    cond: Condvar,
    driver: Mutex<Option<std::thread::JoinHandle<()>>>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<usize>,
    queued: Vec<bool>,
    results: Vec<Vec<Option<Outcome>>>,
    closing: bool,
    boots: usize,
    /// Host seconds spent in scripts and boots, for the bench.
    busy: f64,
}

/// Why a script did not finish, and the whole story.
struct Interruption {
    cause: Cause,
    message: String,
}

impl Suite {
    /// The suite of `target`, its consoles and transcripts under
    /// `artifacts`; a scenario gets `scenario_timeout` to reach its verdict
    /// ([`SCENARIO_TIMEOUT`] by default).
    pub fn new(
        target: Arc<Target>,
        built: Built,
        artifacts: &std::path::Path,
        scenario_timeout: Duration,
    ) -> Arc<Suite> {
        let dir = artifacts.join(target.arch.name).join(&target.kernel.id).join("kselftest");
        let n = built.scripts.len();
        let results = built.scripts.iter().map(|s| vec![None; s.scenarios.len()]).collect();
        Arc::new(Suite {
            target,
            built,
            dir,
            scenario_timeout,
            boot_timeout: Duration::from_secs(240),
            state: Mutex::new(State { queued: vec![false; n], results, ..State::default() }),
            cond: Condvar::new(),
            driver: Mutex::new(None),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `x86_64/src-7.2.13/kselftest/test-callbacks/06`.
    pub fn trial_name(&self, script: &Script, sc: usize) -> String {
        format!("{}/{}/{}", self.target.arch.name, self.target.kernel.id, script.case_id(&script.scenarios[sc]))
    }

    /// Queues script `si` for the driver (once), starting the driver.
    /// Trials do this on their first ask; asking up front for every
    /// selected script lets several targets' guests run at once.
    pub fn request(self: &Arc<Self>, si: usize) {
        let mut st = self.lock();
        if st.queued[si] {
            return;
        }
        st.queued[si] = true;
        st.queue.push_back(si);
        drop(st);
        self.cond.notify_all();
        let mut d = self.driver.lock().unwrap_or_else(|e| e.into_inner());
        if d.is_none() {
            let me = self.clone();
            *d = Some(
                std::thread::Builder::new()
                    .name("klpt-kselftest".into())
                    .spawn(move || me.drive())
                    .expect("spawn the kselftest driver"),
            );
        }
    }

    /// The outcome of scenario `sc` of script `si`, running the script if needed.
    pub fn outcome(self: &Arc<Self>, si: usize, sc: usize) -> Outcome {
        self.request(si);
        let mut st = self.lock();
        loop {
            if let Some(o) = &st.results[si][sc] {
                return o.clone();
            }
            st = self.cond.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Runs every script in order; returns every scenario's outcome and the
    /// host seconds the scripts and their boots took.
    pub fn run_all(self: &Arc<Self>) -> (Vec<Outcome>, f64) {
        for si in 0..self.built.scripts.len() {
            self.request(si);
        }
        let mut out = Vec::new();
        for (si, s) in self.built.scripts.iter().enumerate() {
            for sc in 0..s.scenarios.len() {
                out.push(self.outcome(si, sc));
            }
        }
        self.finish();
        let busy = self.lock().busy;
        (out, busy)
    }

    /// Guests booted so far.
    pub fn boots(&self) -> usize {
        self.lock().boots
    }

    /// Stops the driver once it has run what was queued, and its guest with it.
    pub fn finish(&self) {
        self.lock().closing = true;
        self.cond.notify_all();
        if let Some(h) = self.driver.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = h.join();
        }
    }

    /// The driver thread: queued scripts in order, one guest reused until it dies.
    fn drive(self: Arc<Self>) {
        let mut guest: Option<Booted> = None;
        loop {
            let si = {
                let mut st = self.lock();
                loop {
                    if let Some(si) = st.queue.pop_front() {
                        break Some(si);
                    }
                    if st.closing {
                        break None;
                    }
                    st = self.cond.wait(st).unwrap_or_else(|e| e.into_inner());
                }
            };
            let Some(si) = si else { break };
            let t0 = Instant::now();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_script(si, &mut guest, None)));
            self.lock().busy += t0.elapsed().as_secs_f64();
            if r.is_err() {
                guest = None;
                self.fail_rest(
                    si,
                    Cause::HarnessError,
                    "klpt's selftest driver panicked while running this script".into(),
                    0,
                );
            }
        }
        drop(guest);
    }

    fn boot(&self) -> Result<Booted> {
        let n = {
            let mut st = self.lock();
            st.boots += 1;
            st.boots
        };
        let dir = self.dir.join(format!("boot-{n}"));
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::Io { what: format!("create {}", dir.display()), source: e })?;
        let what = format!("kselftest {}/{}: booting guest {n}", self.target.arch.name, self.target.kernel.id);
        let opts = Options {
            artifacts: self.dir.clone(),
            keep_failed: false,
            boot_timeout: self.boot_timeout,
            guest_time: false,
            restore_ahead: false,
        };
        crate::event::stage(&what, || runner::boot_smp(&self.target, 1, &dir, &opts))
    }

    /// Publishes decided scenarios of script `si` (the first outcome of a
    /// scenario stands: a rerun after a lost guest fills in only the rest).
    fn publish(&self, si: usize, decided: Vec<Decided>, interrupted: Option<&Interruption>, retried: Option<&str>) {
        if decided.is_empty() {
            return;
        }
        let script = &self.built.scripts[si];
        let mut st = self.lock();
        for d in decided {
            let sc = d.index - 1;
            if st.results[si][sc].is_some() {
                continue;
            }
            let mut o = self.outcome_of(script, &d, interrupted);
            if let Some(first) = retried {
                o.retries = 1;
                let note = format!("retried once in a fresh guest; the first attempt failed with:\n{first}");
                match &mut o.status {
                    Status::Fail(f) => f.message.push_str(&format!("\n{note}")),
                    _ => o.notes.push(note),
                }
            }
            st.results[si][sc] = Some(o);
        }
        drop(st);
        self.cond.notify_all();
    }

    /// Fails every scenario of `si` not yet decided (boot failures, panics).
    fn fail_rest(&self, si: usize, cause: Cause, message: String, retries: u32) {
        let script = &self.built.scripts[si];
        let mut st = self.lock();
        for (sc, s) in script.scenarios.iter().enumerate() {
            if st.results[si][sc].is_none() {
                let mut o = self.blank(script, sc);
                o.notes.push(s.title.clone());
                o.retries = retries;
                o.status = Status::Fail(Failure::new(cause, message.clone()));
                st.results[si][sc] = Some(o);
            }
        }
        drop(st);
        self.cond.notify_all();
    }

    fn blank(&self, script: &Script, sc: usize) -> Outcome {
        Outcome::new(
            self.trial_name(script, sc),
            script.case_id(&script.scenarios[sc]),
            self.target.arch.name,
            &self.target.kernel.id,
        )
    }

    fn outcome_of(&self, script: &Script, d: &Decided, interrupted: Option<&Interruption>) -> Outcome {
        let sc = d.index - 1;
        let mut o = self.blank(script, sc);
        o.secs = d.secs.unwrap_or(0.0);
        o.notes = d.notes.clone();
        let transcript = self.dir.join(format!("{}.out", script.name));
        o.status = match &d.verdict {
            Verdict::Ok => Status::Pass,
            Verdict::NotOk { diff } => Status::Fail(Failure::new(
                Cause::KernelVerdict,
                format!("check_result: the kernel log differs from the script's expected transcript (--- expected, +++ result):\n{diff}\ntranscript: {}", transcript.display()),
            )),
            Verdict::Died { exit, error } => {
                // A tool the guest lacks is klpt's fault, not the kernel's.
                let cause = if error.contains("command not found") || error.contains(": not found") { Cause::HarnessError } else { Cause::KernelVerdict };
                let (first, rest) = error.split_once('\n').unwrap_or((error, ""));
                let rest = if rest.is_empty() { String::new() } else { format!("\n{rest}") };
                Status::Fail(Failure::new(cause, format!("the script stopped (exit {exit}): {first}{rest}\ntranscript: {}", transcript.display())))
            }
            Verdict::Skipped(r) => Status::Skip(r.clone()),
            Verdict::NotRun(r) => Status::Skip(r.clone()),
            Verdict::Interrupted => match interrupted {
                Some(i) => Status::Fail(Failure::new(i.cause, i.message.clone())),
                None => Status::Fail(Failure::new(Cause::HarnessError, "the script was interrupted for no recorded reason".to_string())),
            },
        };
        o
    }

    /// Runs script `si` in `guest` (booting one if there is none). `retry`
    /// carries the first attempt's failure when this is the rerun after a
    /// lost guest.
    fn run_script(&self, si: usize, guest: &mut Option<Booted>, retry: Option<String>) {
        let script = &self.built.scripts[si];
        let n = script.scenarios.len();
        let label = format!(
            "kselftest {}/{}: {} ({n} scenario{})",
            self.target.arch.name,
            self.target.kernel.id,
            script.file,
            if n == 1 { "" } else { "s" }
        );
        if guest.is_none() {
            match self.boot() {
                Ok(b) => *guest = Some(b),
                Err(e) => {
                    let cause = match e {
                        Error::GuestCrash(_) => Cause::KernelCrash,
                        Error::Vm(_) | Error::Ssh(_) | Error::SshTimeout(_) => Cause::GuestLost,
                        _ => Cause::HarnessError,
                    };
                    self.fail_rest(si, cause, format!("boot: {e}"), u32::from(retry.is_some()));
                    return;
                }
            }
        }
        let b = guest.as_ref().expect("booted above");
        let _ = std::fs::create_dir_all(&self.dir);
        let suffix = if retry.is_some() { ".retry" } else { "" };
        let mut out_log = std::fs::File::create(self.dir.join(format!("{}{suffix}.out", script.name))).ok();
        let mut err_log = std::fs::File::create(self.dir.join(format!("{}{suffix}.err", script.name))).ok();
        emit(Event::Begin { what: &label });
        let t0 = Instant::now();
        let mut parser = Parser::new(script);
        let console_mark = b.vm.console_len();
        let mut last_start: Option<usize> = None;
        let mut deadline = Instant::now() + self.scenario_timeout;
        let mut stop: Option<&'static str> = None;
        let cmd = format!("cd {GUEST_DIR} && PATH={PATH} exec ./{}", script.file);
        let streamed = b.guest.exec_watch(&cmd, Duration::from_millis(25), |chunk| {
            let t = t0.elapsed().as_secs_f64();
            match chunk {
                Chunk::Stdout(s) => {
                    if let Some(f) = &mut out_log {
                        let _ = f.write_all(s.as_bytes());
                    }
                    parser.stdout(s, t);
                }
                Chunk::Stderr(s) => {
                    if let Some(f) = &mut err_log {
                        let _ = f.write_all(s.as_bytes());
                    }
                    parser.stderr(s);
                }
                Chunk::Idle => {}
            }
            let now = parser.running().map(|(i, _)| i);
            if now != last_start {
                last_start = now;
                deadline = Instant::now() + self.scenario_timeout;
                if let Some((i, title)) = parser.running() {
                    emit(Event::Progress {
                        what: &format!("kselftest {}/{} {}", self.target.arch.name, self.target.kernel.id, script.name),
                        line: &format!("{i:02} {title}"),
                    });
                }
            }
            self.publish(si, parser.take_ready(), None, retry.as_deref());
            if b.vm.fatal().is_some() {
                stop = Some("crash");
            } else if b.vm.exited().is_some() {
                stop = Some("exit");
            } else if Instant::now() > deadline {
                stop = Some("timeout");
            }
            if stop.is_some() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        let t = t0.elapsed().as_secs_f64();
        // A crash on the console while the script ended is still a crash.
        let interruption = match (&streamed, stop) {
            (Ok(Some(_)), None) if b.vm.fatal().is_none() => None,
            (Ok(Some(_)), None) => Some(self.judge(b, "crash", script)),
            (Ok(_), Some(why)) => Some(self.judge(b, why, script)),
            (Ok(None), None) => Some(Interruption {
                cause: Cause::HarnessError,
                message: "the script was abandoned for no reason".into(),
            }),
            (Err(e), _) => Some(self.judge(b, &format!("broken: {e}"), script)),
        };
        match interruption {
            None => {
                let status = streamed.ok().flatten().unwrap_or(-1);
                parser.end(status, t);
                let ready = parser.take_ready();
                let ok = parser.decided().iter().filter(|d| d.verdict == Verdict::Ok).count();
                self.publish(si, ready, None, retry.as_deref());
                emit(Event::Done { what: &format!("{label}: exit {status}, {ok} ok"), secs: t });
            }
            Some(i) => {
                // start_test logs `===== TEST: <title> =====` before it
                // works: the console knows the scenario a dying guest was in
                // even when its TEST output never left the guest.
                if let Some(title) = last_logged_start(&b.vm.console_since(console_mark)) {
                    parser.started_per_log(&title, t);
                }
                let at = parser.interrupt(t);
                let lost = i.cause == Cause::GuestLost;
                emit(Event::Warn {
                    msg: &format!(
                        "{label}: {} in scenario {}",
                        i.cause.as_str(),
                        at.map(|a| format!("{a:02}")).unwrap_or_else(|| "-".into())
                    ),
                });
                // The next script, or the rerun, gets a fresh guest.
                *guest = None;
                if lost && retry.is_none() {
                    // Scenarios decided before the loss stand; the rerun decides the rest.
                    let (before, _): (Vec<Decided>, Vec<Decided>) =
                        parser.take_ready().into_iter().partition(|d| at.is_none_or(|a| d.index < a));
                    self.publish(si, before, None, None);
                    let first = Failure::new(i.cause, i.message).to_string();
                    self.run_script(si, guest, Some(first));
                    return;
                }
                self.publish(si, parser.take_ready(), Some(&i), retry.as_deref());
            }
        }
    }

    /// What stopped a script: `why` is `crash`, `exit`, `timeout` or
    /// `broken: <transport error>`. Reads the console to its end first.
    fn judge(&self, b: &Booted, why: &str, script: &Script) -> Interruption {
        let console = b.vm.cfg.console_log.display().to_string();
        let tail = |n| b.vm.console_tail(n);
        if why == "timeout" {
            if let Some(c) = b.vm.fatal() {
                return Interruption {
                    cause: Cause::KernelCrash,
                    message: format!("the kernel crashed:\n{c}\nconsole: {console}"),
                };
            }
            let secs = self.scenario_timeout.as_secs();
            // A guest that still answers has a stuck script; one that does not, a hung kernel.
            // Each blocking SSH call waits up to the timeout: a short one
            // bounds the probe of a dead guest to seconds.
            return match b.guest.exec("true", Duration::from_secs(5)) {
                Ok(_) => Interruption {
                    cause: Cause::StepTimeout,
                    message: format!("no verdict within {secs}s ({} is stuck; the guest still answers)\nconsole tail:\n{}\nconsole: {console}", script.file, tail(15)),
                },
                Err(_) => {
                    let fate = b.vm.settle(SETTLE);
                    match fate.crash {
                        Some(c) => Interruption { cause: Cause::KernelCrash, message: format!("the kernel crashed:\n{c}\nconsole: {console}") },
                        None => Interruption {
                            cause: Cause::KernelCrash,
                            message: format!("the kernel hung: no verdict within {secs}s and the guest no longer answers over SSH\nconsole tail:\n{}\nconsole: {console}", tail(20)),
                        },
                    }
                }
            };
        }
        let fate = b.vm.settle(SETTLE);
        match (fate.crash, fate.exited) {
            (Some(c), _) => Interruption { cause: Cause::KernelCrash, message: format!("the kernel crashed:\n{c}\nconsole: {console}") },
            // QEMU runs with -no-reboot: a guest that resets itself (a triple
            // fault) makes it exit 0, and nothing in a selftest reboots.
            (None, Some(x)) if x == "exit status: 0" => Interruption {
                cause: Cause::KernelCrash,
                message: format!("the guest reset itself mid-script (QEMU exited 0 under -no-reboot: a triple fault) with no panic on the console\nconsole tail:\n{}\nconsole: {console}", tail(20)),
            },
            (None, Some(x)) => Interruption { cause: Cause::GuestLost, message: format!("QEMU exited ({x}) with no crash on the console\nconsole tail:\n{}\nconsole: {console}", tail(12)) },
            (None, None) => Interruption {
                cause: Cause::GuestLost,
                // `broken: SSH: `<command>`: <error>`: the error is what matters.
                message: format!(
                    "the connection to the guest broke while {} ran; QEMU is still running and the console shows no crash (SSH: {})\nconsole: {console}",
                    script.file,
                    why.rsplit("`: ").next().unwrap_or(why)
                ),
            },
        }
    }
}

/// The title in the last `===== TEST: <title> =====` line (start_test's
/// kernel-log line) of console text.
pub fn last_logged_start(console: &str) -> Option<String> {
    console.lines().rev().find_map(|l| {
        let i = l.find("===== TEST: ")?;
        l[i + 12..].trim_end().strip_suffix(" =====").map(str::to_string)
    })
}

/// Prepares a target whose guest carries the selftests of `kernel`'s tree.
pub fn prepare(arch: crate::arch::Arch, kernel: Option<&str>, accel: runner::AccelChoice) -> Result<(Target, Built)> {
    prepare_suite(arch, kernel, accel, None)
}

/// [`prepare`] with the suite in `suite` (laid out as the tree's
/// `tools/testing/selftests/livepatch`) instead of the kernel tree's own.
pub fn prepare_suite(
    arch: crate::arch::Arch,
    kernel: Option<&str>,
    accel: runner::AccelChoice,
    suite: Option<&std::path::Path>,
) -> Result<(Target, Built)> {
    let mut built = None;
    let t = Target::prepare_with(arch, kernel, accel, |k| {
        let b = match suite {
            Some(s) => super::build::build_suite(k, s, s)?,
            None => super::build::build(k)?,
        };
        let files = b.image_files()?;
        built = Some(b);
        crate::image::build_recipe(k, "selftests.yaml", &files)
    })?;
    Ok((t, built.expect("the image closure ran")))
}
