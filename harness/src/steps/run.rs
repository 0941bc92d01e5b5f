//! Runs a case's steps in a booted guest. Every step has a deadline (its
//! `timeout:`, else the case's) that bounds every guest command it runs;
//! waits poll state in the guest against that deadline, never fixed sleeps.
//! After every step the kernel log is fetched and health-checked.
//!
//! A step is one guest command ([`super::script`]): its action, the waits
//! after it (or an assertion's snapshot) and the kernel-log sync travel
//! together, and a `wait:` step is one command that polls in the guest and
//! streams its rounds. The step's deadline bounds the command until the
//! step's own work is over; the sync after it has the harness budget, as a
//! separate sync command had. The path of before (one command per action,
//! wait and sync) stays for `klpt bench --steps` ([`Session::legacy`]).

use super::assert::{self, sh_quote, Verdict};
use super::errno;
use super::health;
use super::kmsg::{self, Record};
use super::script::{self, Part, Section};
use crate::case::{Action, Assertion, Case, Cond, Requires, Step};
use crate::kernel::caps::Caps;
use crate::vm::ssh::{Guest, Output};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The loader: kmod's insmod, exactly one `finit_module` per load (see
/// [`crate::image::INSMOD`]).
pub use crate::image::INSMOD;

/// Why a case stopped.
#[derive(Debug)]
pub enum Stop {
    /// The kernel did something other than the case expects.
    Verdict(String),
    /// The kernel lacks a capability the case requires.
    Skip(String),
    /// A guest command ran past the step's deadline.
    Timeout(String),
    /// The transport to the guest broke; whether the kernel crashed is for
    /// the runner to decide from the console.
    Lost(String),
    /// klpt itself failed (local I/O).
    Harness(String),
}

impl Stop {
    pub fn message(&self) -> &str {
        match self {
            Stop::Verdict(m) | Stop::Skip(m) | Stop::Timeout(m) | Stop::Lost(m) | Stop::Harness(m) => m,
        }
    }
}

impl From<crate::error::Error> for Stop {
    fn from(e: crate::error::Error) -> Stop {
        use crate::error::Error;
        match e {
            Error::SshTimeout(m) => Stop::Timeout(m),
            Error::Ssh(_) | Error::Vm(_) | Error::GuestCrash(_) => Stop::Lost(e.to_string()),
            other => Stop::Harness(other.to_string()),
        }
    }
}

type StepResult = Result<(), Stop>;

pub struct Session<'a> {
    guest: &'a Guest,
    case: &'a Case,
    caps: &'a Caps,
    /// Every kernel log record since the case started.
    pub records: Vec<Record>,
    kmsg_offset: u64,
    /// Index into `records` where the current dmesg window starts.
    window_start: usize,
    health_from: usize,
    taint_baseline: u64,
    sync_n: u64,
    symbols: RefCell<BTreeMap<String, bool>>,
    /// Spawned groups' process ids.
    groups: BTreeMap<String, Vec<u32>>,
    pub notes: Vec<String>,
    /// When the running step must be done.
    deadline: Instant,
    /// The running step's timeout in seconds, for messages.
    step_secs: u64,
    /// Run steps the way klpt did before one command per step: a command
    /// for the action, one per wait and one for the log sync. Only for
    /// `klpt bench --steps`, which compares the two.
    pub legacy: bool,
    /// The kind and host seconds of each step that ran (steps skipped by
    /// `when:` are not counted).
    pub step_times: Vec<(&'static str, f64)>,
}

/// How a step command's kernel-log sync went.
enum Synced {
    /// The taint value; the new records are in.
    Done(u64),
    /// The transport failed or timed out during the sync.
    Failed(Stop),
    /// The command did not get to its sync (it failed earlier, or ended):
    /// a separate sync command fetches the log, as before.
    Missing,
}

/// What one composed command gave.
struct Ran {
    parser: script::Parser,
    /// The transport's failure, if any, and whether it came before the
    /// step's own work was over (then it is the step's failure).
    error: Option<(Stop, bool)>,
    stderr: String,
    status: i32,
}

impl Ran {
    /// The output of part `i`, a command. A command that ended the step's
    /// shell itself (`kill $$`) has the whole command's status and output,
    /// as when it ran alone.
    fn output(&self, i: usize) -> Result<Output, Stop> {
        match self.parser.get(&format!("p{i}")) {
            Some(s) => Ok(Output { status: s.status(), stdout: s.body.clone(), stderr: self.stderr.clone() }),
            None if (0..i).all(|j| self.parser.get(&format!("p{j}")).is_some_and(|s| s.status() == 0)) => {
                Ok(Output { status: self.status, stdout: self.parser.rest(), stderr: self.stderr.clone() })
            }
            None => Err(self.ended_early(i)),
        }
    }

    /// Whether wait part `i` saw its condition hold, and what it reported if not.
    fn waited(&self, i: usize) -> Result<(bool, String), Stop> {
        match self.parser.get(&format!("p{i}")) {
            Some(s) => Ok((s.status() == 0, s.body.clone())),
            None => Err(self.ended_early(i)),
        }
    }

    fn ended_early(&self, i: usize) -> Stop {
        Stop::Harness(format!(
            "the step's guest command ended (exit status {}) before its part {i} was done; its output:\n{}{}",
            self.status,
            self.parser.rest(),
            self.stderr
        ))
    }
}

/// Seconds a `wait:` step's guest loop sleeps between rounds (awoken at
/// once when the host has seen enough).
const POLL: &str = "0.05";

/// Unpacks the modules' archive (on stdin) into /root.
const UPLOAD: &str = "cd /root && cpio -i -d -m";

/// Budget of harness-side guest commands outside a step's own work
/// (upload, kernel-log sync, capability probes, artifact collection).
const HARNESS: Duration = Duration::from_secs(60);

impl<'a> Session<'a> {
    /// Uploads the case's modules and takes the initial log and taint state.
    pub fn start(
        guest: &'a Guest,
        case: &'a Case,
        caps: &'a Caps,
        modules: &BTreeMap<String, PathBuf>,
    ) -> Result<Session<'a>, Stop> {
        // Modules and programs go to /root under their file names, in one
        // cpio archive extracted by the same command as the first log sync
        // (a step's: the tag at KERN_DEBUG, polled with shell builtins):
        // one round trip, however many modules a case has.
        let mut archive = crate::image::cpio::Cpio::new(Vec::new());
        for file in modules.values() {
            let data = std::fs::read(file).map_err(|e| Stop::Harness(format!("read {}: {e}", file.display())))?;
            let name = file.file_name().unwrap_or_default().to_string_lossy();
            let perm = if name.ends_with(".ko") { 0o644 } else { 0o755 };
            archive.file(&name, perm, &data).map_err(|e| Stop::Harness(format!("archive {name}: {e}")))?;
        }
        let archive = archive.finish().map_err(|e| Stop::Harness(format!("archive: {e}")))?;
        let mut s = Session {
            guest,
            case,
            caps,
            records: Vec::new(),
            kmsg_offset: 0,
            window_start: 0,
            health_from: 0,
            taint_baseline: 0,
            sync_n: 0,
            symbols: RefCell::default(),
            groups: BTreeMap::new(),
            notes: Vec::new(),
            deadline: Instant::now() + HARNESS,
            step_secs: HARNESS.as_secs(),
            legacy: false,
            step_times: Vec::new(),
        };
        s.taint_baseline = s.upload(&archive)?;
        s.window_start = s.records.len();
        s.health_from = s.records.len();
        Ok(s)
    }

    /// Runs a command of the current step, bounded by the step's deadline.
    fn sh(&self, cmd: &str) -> Result<Output, Stop> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.timed_out());
        }
        self.guest.exec(cmd, left).map_err(|e| match e {
            crate::error::Error::SshTimeout(_) => self.timed_out(),
            other => other.into(),
        })
    }

    fn timed_out(&self) -> Stop {
        Stop::Timeout(format!("did not finish within its timeout of {}s", self.step_secs))
    }

    /// A harness command with its own budget (log sync, probes, artifacts).
    fn sh_harness(&self, cmd: &str) -> Result<Output, Stop> {
        Ok(self.guest.exec(cmd, HARNESS)?)
    }

    /// Waits in the guest until `cond` (a shell test) holds; false when the
    /// step's deadline passes first.
    fn wait_guest(&self, cond: &str) -> Result<bool, Stop> {
        // The guest gives up (on its own clock) a second before the host
        // would, so a condition that never holds is a verdict, not a timeout.
        let secs = self.deadline.saturating_duration_since(Instant::now()).as_secs().saturating_sub(1);
        let script = format!(
            "end=$(( $(cut -d. -f1 /proc/uptime) + {secs} )); while ! ( {cond} ); do [ $(cut -d. -f1 /proc/uptime) -ge $end ] && exit 1; usleep 20000; done; exit 0"
        );
        Ok(self.sh(&script)?.status == 0)
    }

    /// Unpacks `archive` in the guest and syncs the log, as one step
    /// command; returns the taint value.
    fn upload(&mut self, archive: &[u8]) -> Result<u64, Stop> {
        let nonce = script::nonce();
        let sync = self.next_sync(&nonce);
        let budget_cs = HARNESS.as_millis() as u64 / 10;
        let parts = [script::Part::Run(UPLOAD.into())];
        let cmd = script::step_script(&nonce, "upload", budget_cs, &parts, &sync, &script::Paths::default());
        let out = self.guest.exec_with_input(&cmd, Some(archive), HARNESS)?;
        let mut parser = script::Parser::new(&nonce);
        parser.feed(out.stdout.as_bytes());
        let mut ran = Ran { parser, error: None, stderr: out.stderr, status: out.status };
        let unpacked = ran.output(0)?;
        if unpacked.status != 0 {
            return Err(Stop::Harness(format!("cpio failed ({}): {}", unpacked.status, unpacked.stderr.trim())));
        }
        match self.take_sync(&mut ran, sync.offset) {
            Synced::Done(taint) => Ok(taint),
            Synced::Failed(e) => Err(e),
            Synced::Missing => Err(Stop::Harness(format!(
                "the guest command ended (exit status {}) before its log sync; its output:\n{}{}",
                ran.status,
                ran.parser.rest(),
                ran.stderr
            ))),
        }
    }

    /// Marks the log, waits until the recorder has it, fetches new records;
    /// returns the current taint value.
    fn sync(&mut self) -> Result<u64, Stop> {
        self.sync_n += 1;
        let tag = format!("{}{}", kmsg::SYNC_TAG, self.sync_n);
        let script =
            crate::template::LOG_SYNC_SH.fill(&[("TAG", &tag), ("OFFSET", &(self.kmsg_offset + 1).to_string())]);
        let out = self.guest.exec_with_input(&script, None, HARNESS)?;
        let (taint, log) = out.stdout.split_once('\n').unwrap_or((&out.stdout, ""));
        // Only complete lines count; a partial last line is fetched next time.
        let complete = &log[..log.rfind('\n').map(|i| i + 1).unwrap_or(0)];
        self.kmsg_offset += complete.len() as u64;
        let last = self.records.last().map(|r| r.seq);
        self.records.extend(kmsg::parse(complete, last));
        Ok(taint.trim().parse().unwrap_or(0))
    }

    /// Fails on kernel problems logged since the last check, except the
    /// warnings `step` declares, each of which must have been reported.
    fn health(&mut self, taint: u64, step: &Step) -> StepResult {
        let report = health::check(&self.records[self.health_from..], &step.warnings);
        self.health_from = self.records.len();
        if !report.bad.is_empty() {
            return Err(Stop::Verdict(format!("kernel reported a problem:\n  {}", report.bad.join("\n  "))));
        }
        if !report.missing.is_empty() {
            let missing: Vec<String> = report.missing.iter().map(|r| format!("/{r}/")).collect();
            return Err(Stop::Verdict(format!("expected kernel warning(s) not reported: {}", missing.join(", "))));
        }
        if report.warned {
            // A declared WARN() taints with W; later steps compare against that.
            self.taint_baseline |= taint & health::TAINT_WARN;
        }
        if let Some(t) = health::bad_taint(self.taint_baseline, taint) {
            return Err(Stop::Verdict(t));
        }
        Ok(())
    }

    /// The records of the current dmesg window (the last action step).
    pub fn window(&self) -> &[Record] {
        &self.records[self.window_start.min(self.records.len())..]
    }

    /// Whether the guest's /proc/kallsyms has `sym` (cached).
    fn has_symbol(&self, sym: &str) -> bool {
        if let Some(v) = self.symbols.borrow().get(sym) {
            return *v;
        }
        let found = self.sh_harness(&kallsyms_probe(sym)).map(|o| o.status == 0).unwrap_or(false);
        self.symbols.borrow_mut().insert(sym.to_string(), found);
        found
    }

    /// Requirements this kernel does not meet (static and in-guest probes).
    pub fn missing(&self, r: &Requires) -> Vec<String> {
        self.caps.missing(r, Some(&|s: &str| self.has_symbol(s)))
    }

    /// Whether a `when:` condition holds for this kernel: everything in
    /// `has` is present and everything in `lacks` is absent.
    pub fn holds(&self, c: &Cond) -> bool {
        if !self.missing(&c.has).is_empty() {
            return false;
        }
        let l = &c.lacks;
        let each = |mk: &dyn Fn() -> Vec<Requires>| mk().iter().all(|r| !self.missing(r).is_empty());
        each(&|| l.config.iter().map(|x| Requires { config: vec![x.clone()], ..Default::default() }).collect())
            && each(&|| {
                l.kallsyms.iter().map(|x| Requires { kallsyms: vec![x.clone()], ..Default::default() }).collect()
            })
            && each(&|| {
                l.structs()
                    .iter()
                    .flat_map(|(kind, fields)| {
                        fields.iter().map(|f| {
                            let mut r = Requires::default();
                            r.add_field(kind, f);
                            r
                        })
                    })
                    .collect()
            })
            && each(&|| l.sysfs.iter().map(|x| Requires { sysfs: vec![x.clone()], ..Default::default() }).collect())
    }

    /// The step's timeout in seconds: its own, else a wait's, else the case's.
    fn step_timeout(&self, step: &Step) -> u64 {
        step.timeout.unwrap_or(match step.action {
            Action::Wait { timeout, .. } => timeout,
            _ => self.case.doc.timeout,
        })
    }

    pub fn run(&mut self, step: &Step) -> StepResult {
        if let Some(c) = &step.when {
            if !self.holds(c) {
                self.notes.push(format!("step {} ({}): condition not met, skipped", step.index + 1, step.label));
                return Ok(());
            }
        }
        let t0 = Instant::now();
        self.step_secs = self.step_timeout(step);
        self.deadline = t0 + Duration::from_secs(self.step_secs);
        let r = if self.legacy { self.run_legacy(step) } else { self.run_one(step) };
        self.step_times.push((kind(&step.action), t0.elapsed().as_secs_f64()));
        r
    }

    /// A step in one guest command (a `wait:` in one streaming command).
    fn run_one(&mut self, step: &Step) -> StepResult {
        let before = self.records.len();
        let what = format!("step {} (line {}): {}", step.index + 1, step.line, step.label);
        let (result, synced) = match &step.action {
            Action::Wait { until, .. } => self.wait_one(until, &what),
            a => self.act_one(a, &what),
        };
        let synced = match synced {
            Synced::Done(t) => Ok(t),
            Synced::Failed(e) => Err(e),
            Synced::Missing => self.sync(),
        };
        self.finish(step, result, synced, before)
    }

    /// Ends a step: the step's own failure is the one reported (a log sync
    /// that fails after it, the guest may be gone, only adds a note); an
    /// action opens the next dmesg window at `before`; then the health check.
    fn finish(&mut self, step: &Step, result: StepResult, synced: Result<u64, Stop>, before: usize) -> StepResult {
        let taint = match (synced, &result) {
            (Ok(t), _) => t,
            (Err(e), Err(_)) => {
                self.notes.push(format!("the kernel-log sync after the failed step failed too: {}", e.message()));
                return result;
            }
            (Err(e), Ok(())) => return Err(e),
        };
        if !matches!(step.action, Action::Assert(_) | Action::Wait { .. }) {
            self.window_start = before;
        }
        result?;
        self.health(taint, step)
    }

    /// Runs a composed command (nonce `nonce`), handing each section to
    /// `on` as it arrives; `on` returns true to stop a streaming command.
    /// Until the `work` section the step's deadline bounds it, after it the
    /// harness budget (the sync).
    fn run_composed(
        &mut self,
        nonce: &str,
        cmd: &str,
        hold_stdin: bool,
        on: &mut dyn FnMut(&mut Self, &Section) -> bool,
    ) -> Ran {
        let guest = self.guest;
        let step_deadline = self.deadline;
        let mut parser = script::Parser::new(nonce);
        let mut work_over: Option<Instant> = None;
        let mut stop = false;
        let res = guest.exec_stream(cmd, hold_stdin, &mut |chunk| {
            let new = parser.feed(chunk);
            let from = parser.sections.len() - new;
            for sec in &parser.sections[from..] {
                if sec.name == "work" && work_over.is_none() {
                    work_over = Some(Instant::now());
                }
                if !stop && on(self, sec) {
                    stop = true;
                }
            }
            script_flow(work_over, step_deadline, stop)
        });
        match res {
            Ok(o) => Ran { parser, error: None, stderr: o.stderr, status: o.status },
            Err(e) => {
                let in_work = work_over.is_none();
                let stop = match e {
                    crate::error::Error::SshTimeout(_) if in_work => self.timed_out(),
                    crate::error::Error::SshTimeout(_) => Stop::Timeout(format!(
                        "the kernel-log sync after the step did not finish within {}s",
                        HARNESS.as_secs()
                    )),
                    other => other.into(),
                };
                Ran { parser, error: Some((stop, in_work)), stderr: String::new(), status: -1 }
            }
        }
    }

    /// The next sync's tag: numbered, and unguessable for what runs before it.
    fn next_sync(&mut self, nonce: &str) -> script::Sync {
        self.sync_n += 1;
        script::Sync { tag: format!("{}{} {}", kmsg::SYNC_TAG, self.sync_n, &nonce[..12]), offset: self.kmsg_offset }
    }

    /// Takes in the sync sections of `ran` (a sync from byte `offset`).
    fn take_sync(&mut self, ran: &mut Ran, offset: u64) -> Synced {
        if let Some((e, false)) = ran.error.take() {
            return Synced::Failed(e);
        }
        let (Some(taint), Some(log)) = (ran.parser.get("taint"), ran.parser.get("log")) else { return Synced::Missing };
        let taint = taint.body.trim().parse().unwrap_or(0);
        let complete = script::complete_lines(&log.body).to_string();
        self.kmsg_offset = offset + complete.len() as u64;
        self.add_records(&complete);
        Synced::Done(taint)
    }

    /// Appends the records of complete log lines not seen yet.
    fn add_records(&mut self, complete: &str) {
        let last = self.records.last().map(|r| r.seq);
        self.records.extend(kmsg::parse(complete, last));
    }

    /// Centiseconds the guest may spend before `until`, or None when the
    /// step's deadline has passed.
    fn guest_budget(&self, until: Instant) -> Option<u64> {
        if self.deadline <= Instant::now() {
            return None;
        }
        Some((until.saturating_duration_since(Instant::now()).as_millis() / 10) as u64)
    }

    /// An action or assertion step as one command.
    fn act_one(&mut self, a: &Action, what: &str) -> (StepResult, Synced) {
        // The guest gives up a second before the host would, so a condition
        // that never holds is a verdict, not a timeout.
        let Some(end_cs) = self.guest_budget(self.deadline).map(|cs| cs.saturating_sub(100)) else {
            return (Err(self.timed_out()), Synced::Missing);
        };
        // A load's arguments name spawned pids and this kernel's syscall symbols.
        let resolved;
        let a = match a {
            Action::Load { module, args, wait, refused } => match self.load_args(module, args) {
                Ok(args) => {
                    resolved = Action::Load { module: module.clone(), args, wait: *wait, refused: refused.clone() };
                    &resolved
                }
                Err(e) => return (Err(e), Synced::Missing),
            },
            a => a,
        };
        let parts = self.plan(a);
        let nonce = script::nonce();
        let sync = self.next_sync(&nonce);
        let cmd = script::step_script(&nonce, what, end_cs, &parts, &sync, &script::Paths::default());
        let mut ran = self.run_composed(&nonce, &cmd, false, &mut |_, _| false);
        let result = match &ran.error {
            Some((_, true)) => {
                let (e, _) = ran.error.take().expect("checked");
                return (Err(e), Synced::Missing);
            }
            // Judged before the sync's records are in: an assertion's dmesg
            // window ends where the previous step's sync ended, as before.
            _ => self.judge(a, &ran),
        };
        let synced = self.take_sync(&mut ran, sync.offset);
        (result, synced)
    }

    /// The parts of an action's command (see [`Self::judge`]).
    fn plan(&self, a: &Action) -> Vec<Part> {
        let value_is = |file: &str, v: &str| format!("__v=; read -r __v < {file}; [ \"$__v\" = {v} ]");
        match a {
            Action::Load { module, args, wait, .. } => {
                let mut p = vec![Part::Run(load_command(module, args))];
                if *wait && self.case.livepatch(module).is_some() {
                    p.push(Part::Wait {
                        cond: value_is(&format!("/sys/kernel/livepatch/{module}/transition"), "0"),
                        report: None,
                    });
                }
                p
            }
            Action::Disable { patch, wait, .. } => {
                let mut p = vec![Part::Run(format!("echo 0 > /sys/kernel/livepatch/{patch}/enabled"))];
                if *wait {
                    p.push(Part::Wait { cond: format!("[ ! -d /sys/kernel/livepatch/{patch} ]"), report: None });
                }
                p
            }
            Action::Force { patch, .. } => vec![Part::Run(format!("echo 1 > /sys/kernel/livepatch/{patch}/force"))],
            Action::Write { path, value, .. } => {
                vec![Part::Run(format!("echo {} > {}", sh_quote(value), sh_quote(path)))]
            }
            Action::Unload { module, refused } => {
                let mut p = Vec::new();
                if refused.is_none() {
                    // A patch drops its module reference only after its
                    // transition and free finish: wait for that, then unload.
                    let f = format!("/sys/module/{module}/refcnt");
                    p.push(Part::Wait {
                        cond: format!("__v=0; read -r __v < {f}; [ \"$__v\" = 0 ]"),
                        report: Some(format!("cat {f}")),
                    });
                }
                p.push(Part::Run(format!("rmmod {module}")));
                p.push(Part::Wait { cond: format!("[ ! -d /sys/module/{module} ]"), report: None });
                p
            }
            Action::Park { module, function } | Action::Release { module, function } => {
                let (word, state) =
                    if matches!(a, Action::Park { .. }) { ("park", "parked") } else { ("release", "idle") };
                let f = format!("/proc/{module}/{function}");
                vec![Part::Run(format!("echo {word} > {f}")), Part::Wait { cond: value_is(&f, state), report: None }]
            }
            Action::Call { module, parked, function, .. } => vec![Part::Run(call_command(module, parked, function))],
            Action::Spawn { program, command, count, .. } => {
                vec![Part::Run(spawn_command(program.as_deref(), command.as_deref(), *count))]
            }
            Action::Kill { name } => {
                let list = self.group_pids(name);
                vec![
                    Part::Run(format!("kill {list} 2>/dev/null; true")),
                    Part::Wait { cond: gone_condition(&list), report: None },
                ]
            }
            Action::Trace { function } => vec![Part::Run(trace_command(function.as_deref()))],
            Action::Shell { command, .. } => vec![Part::Run(command.clone())],
            Action::Assert(a) => {
                let script = assert::snapshot_script_with(a, true);
                if script.is_empty() {
                    vec![]
                } else {
                    vec![Part::Snapshot(script)]
                }
            }
            Action::Wait { .. } => unreachable!("a wait step is its own streaming command"),
        }
    }

    /// The verdict on an action's command, from its parts' sections; the
    /// same checks and messages as running the parts one by one.
    fn judge(&mut self, a: &Action, ran: &Ran) -> StepResult {
        let t = self.step_secs;
        match a {
            Action::Load { module, wait, refused, .. } => {
                let out = ran.output(0)?;
                expect_outcome("insmod", &out, refused.as_deref())?;
                if out.status == 0 && *wait && self.case.livepatch(module).is_some() && !ran.waited(1)?.0 {
                    return Err(Stop::Verdict(format!(
                        "the patching transition of {module} did not finish within {t}s{}",
                        self.stuck_hint()
                    )));
                }
                Ok(())
            }
            Action::Disable { patch, wait, refused } => {
                let out = ran.output(0)?;
                expect_outcome("disable", &out, refused.as_deref())?;
                if out.status == 0 && *wait && !ran.waited(1)?.0 {
                    return Err(Stop::Verdict(format!(
                        "{patch} did not finish unpatching within {t}s{}",
                        self.stuck_hint()
                    )));
                }
                Ok(())
            }
            Action::Force { refused, .. } => expect_outcome("force", &ran.output(0)?, refused.as_deref()),
            Action::Write { path, value, refused } => {
                expect_outcome(&format!("write {value:?} to {path}"), &ran.output(0)?, refused.as_deref())
            }
            Action::Unload { module, refused } => {
                let mut i = 0;
                if refused.is_none() {
                    let (ok, refcnt) = ran.waited(0)?;
                    if !ok {
                        return Err(Stop::Verdict(format!(
                            "rmmod {module}: module still in use (refcnt {}) after {t}s",
                            refcnt.trim()
                        )));
                    }
                    i = 1;
                }
                let out = ran.output(i)?;
                expect_outcome("rmmod", &out, refused.as_deref())?;
                if out.status == 0 && !ran.waited(i + 1)?.0 {
                    return Err(Stop::Verdict(format!("{module} still present in /sys/module {t}s after rmmod")));
                }
                Ok(())
            }
            Action::Park { module, function } | Action::Release { module, function } => {
                let (word, state) =
                    if matches!(a, Action::Park { .. }) { ("park", "parked") } else { ("release", "idle") };
                expect_outcome(word, &ran.output(0)?, None)?;
                if !ran.waited(1)?.0 {
                    return Err(Stop::Verdict(format!(
                        "/proc/{module}/{function} did not become `{state}` within {t}s"
                    )));
                }
                Ok(())
            }
            Action::Call { module, parked, function, prints } => {
                call_verdict(module, parked, function, prints.as_ref(), &ran.output(0)?)
            }
            Action::Spawn { name, count, .. } => {
                let pids = spawn_verdict(name, *count, &ran.output(0)?)?;
                self.groups.insert(name.clone(), pids);
                Ok(())
            }
            Action::Kill { name } => {
                let list = self.group_pids(name);
                self.groups.remove(name);
                if !ran.waited(1)?.0 {
                    return Err(Stop::Verdict(format!("group {name} (pids {list}) still running {t}s after kill")));
                }
                Ok(())
            }
            Action::Trace { function } => {
                let what = function.as_ref().map_or("stop tracing".to_string(), |f| format!("trace {f}"));
                expect_outcome(&what, &ran.output(0)?, None)
            }
            Action::Shell { command, status } => shell_verdict(command, *status, &ran.output(0)?),
            Action::Assert(a) => {
                let out = match ran.parser.get("p0") {
                    Some(s) => s.body.clone(),
                    None if assert::snapshot_script_with(a, true).is_empty() => String::new(),
                    None => return Err(ran.ended_early(0)),
                };
                let v =
                    assert::evaluate(a, &assert::parse_snapshot(a, &out), self.window(), &self.case.doc.requires.sysfs);
                verdict_result(v, &mut self.notes)
            }
            Action::Wait { .. } => unreachable!("a wait step is its own streaming command"),
        }
    }

    /// A `wait:` step as one command: the guest takes a snapshot (and reads
    /// the log, for a dmesg condition) every round and streams it; klpt
    /// evaluates each round and tells the guest to stop once it holds.
    fn wait_one(&mut self, until: &Assertion, what: &str) -> (StepResult, Synced) {
        let t = self.step_secs;
        // The last round keeps up to a second to report what it saw.
        let give_up = self.deadline - Duration::from_secs(1).min(Duration::from_secs(t) / 2);
        let Some(end_cs) = self.guest_budget(give_up) else { return (Err(self.timed_out()), Synced::Missing) };
        let nonce = script::nonce();
        let sync = self.next_sync(&nonce);
        let snapshot = assert::snapshot_script_with(until, true);
        let rounds = script::Rounds { snapshot: &snapshot, dmesg: until.dmesg.is_some(), poll: POLL };
        let cmd = script::wait_script(&nonce, what, end_cs, &rounds, &sync, &script::Paths::default());
        let mut snap = String::new();
        let mut last: Option<Verdict> = None;
        let mut ran = self.run_composed(&nonce, &cmd, true, &mut |s, sec| match sec.name.as_str() {
            "snap" => {
                snap = sec.body.clone();
                false
            }
            "rlog" => {
                s.add_records(script::complete_lines(&sec.body));
                false
            }
            "round" => {
                let v = assert::evaluate(
                    until,
                    &assert::parse_snapshot(until, &snap),
                    s.window(),
                    &s.case.doc.requires.sysfs,
                );
                let done = v.ok() || !v.missing_required.is_empty();
                last = Some(v);
                done
            }
            _ => false,
        });
        if let Some((_, true)) = &ran.error {
            let (e, _) = ran.error.take().expect("checked");
            return (Err(e), Synced::Missing);
        }
        let settled = last.as_ref().is_some_and(|v| v.ok() || !v.missing_required.is_empty());
        let synced = self.take_sync(&mut ran, sync.offset);
        // A condition that never held is judged once more on the whole log
        // up to the final sync, as the last round of a sync-per-round wait was.
        let v = match (settled, last) {
            (true, Some(v)) => v,
            (false, Some(_)) => assert::evaluate(
                until,
                &assert::parse_snapshot(until, &snap),
                self.window(),
                &self.case.doc.requires.sysfs,
            ),
            (_, None) => return (Err(ran.ended_early(0)), synced),
        };
        let result = verdict_result(v, &mut self.notes).map_err(|e| match e {
            Stop::Verdict(m) => Stop::Verdict(format!("still not true after {t}s:\n{m}")),
            s => s,
        });
        (result, synced)
    }

    /// A step the way klpt ran steps before one command per step.
    fn run_legacy(&mut self, step: &Step) -> StepResult {
        let before = self.records.len();
        let result = self.act(&step.action);
        let synced = self.sync();
        self.finish(step, result, synced, before)
    }

    fn act(&mut self, a: &Action) -> StepResult {
        let t = self.step_secs;
        match a {
            Action::Load { module, args, wait, refused } => {
                let args = self.load_args(module, args)?;
                let out = self.sh(&load_command(module, &args))?;
                expect_outcome("insmod", &out, refused.as_deref())?;
                let is_patch = self.case.livepatch(module).is_some();
                if out.status == 0 && *wait && is_patch {
                    let f = format!("/sys/kernel/livepatch/{module}/transition");
                    if !self.wait_guest(&format!("[ \"$(cat {f} 2>/dev/null)\" = 0 ]"))? {
                        return Err(Stop::Verdict(format!(
                            "the patching transition of {module} did not finish within {t}s{}",
                            self.stuck_hint()
                        )));
                    }
                }
                Ok(())
            }
            Action::Disable { patch, wait, refused } => {
                let out = self.sh(&format!("echo 0 > /sys/kernel/livepatch/{patch}/enabled"))?;
                expect_outcome("disable", &out, refused.as_deref())?;
                if out.status == 0 && *wait && !self.wait_guest(&format!("[ ! -d /sys/kernel/livepatch/{patch} ]"))? {
                    return Err(Stop::Verdict(format!(
                        "{patch} did not finish unpatching within {t}s{}",
                        self.stuck_hint()
                    )));
                }
                Ok(())
            }
            Action::Force { patch, refused } => {
                let out = self.sh(&format!("echo 1 > /sys/kernel/livepatch/{patch}/force"))?;
                expect_outcome("force", &out, refused.as_deref())
            }
            Action::Write { path, value, refused } => {
                let out = self.sh(&format!("echo {} > {}", sh_quote(value), sh_quote(path)))?;
                expect_outcome(&format!("write {value:?} to {path}"), &out, refused.as_deref())
            }
            Action::Unload { module, refused } => {
                if refused.is_none() {
                    // A patch drops its module reference only after its
                    // transition and free finish: wait for that, then unload.
                    let f = format!("/sys/module/{module}/refcnt");
                    if !self.wait_guest(&format!("[ \"$(cat {f} 2>/dev/null || echo 0)\" = 0 ]"))? {
                        let n = self.sh_harness(&format!("cat {f}"))?.stdout;
                        return Err(Stop::Verdict(format!(
                            "rmmod {module}: module still in use (refcnt {}) after {t}s",
                            n.trim()
                        )));
                    }
                }
                let out = self.sh(&format!("rmmod {module}"))?;
                expect_outcome("rmmod", &out, refused.as_deref())?;
                if out.status == 0 && !self.wait_guest(&format!("[ ! -d /sys/module/{module} ]"))? {
                    return Err(Stop::Verdict(format!("{module} still present in /sys/module {t}s after rmmod")));
                }
                Ok(())
            }
            Action::Park { module, function } | Action::Release { module, function } => {
                let (word, state) =
                    if matches!(a, Action::Park { .. }) { ("park", "parked") } else { ("release", "idle") };
                let f = format!("/proc/{module}/{function}");
                let out = self.sh(&format!("echo {word} > {f}"))?;
                expect_outcome(word, &out, None)?;
                if !self.wait_guest(&format!("[ \"$(cat {f})\" = {state} ]"))? {
                    return Err(Stop::Verdict(format!("{f} did not become `{state}` within {t}s")));
                }
                Ok(())
            }
            Action::Call { module, parked, function, prints } => {
                let out = self.sh(&call_command(module, parked, function))?;
                call_verdict(module, parked, function, prints.as_ref(), &out)
            }
            Action::Spawn { name, program, command, count } => {
                let cmd = match (program, command) {
                    (Some(p), _) => format!("/root/{}", crate::modules::program::file(p)),
                    (None, Some(c)) => format!("sh -c {}", sh_quote(c)),
                    (None, None) => unreachable!("the case layer requires one"),
                };
                // Detached, so the SSH command returns; init reaps them.
                let script =
                    format!("for i in $(seq {count}); do setsid {cmd} </dev/null >/dev/null 2>&1 & echo $!; done");
                let out = self.sh(&script)?;
                let pids: Vec<u32> = out.stdout.split_whitespace().filter_map(|p| p.parse().ok()).collect();
                if out.status != 0 || pids.len() != *count as usize {
                    return Err(Stop::Verdict(format!(
                        "spawn {name}: started {} of {count}: {}",
                        pids.len(),
                        out.stderr.trim()
                    )));
                }
                self.groups.insert(name.clone(), pids);
                Ok(())
            }
            Action::Kill { name } => {
                let pids = self.groups.remove(name).unwrap_or_default();
                let list: Vec<String> = pids.iter().map(u32::to_string).collect();
                let list = list.join(" ");
                self.sh(&format!("kill {list} 2>/dev/null; true"))?;
                // Gone, or a zombie until init reaps it.
                let gone = gone_condition(&list);
                if !self.wait_guest(&gone)? {
                    return Err(Stop::Verdict(format!("group {name} (pids {list}) still running {t}s after kill")));
                }
                Ok(())
            }
            Action::Trace { function } => {
                // functions.sh's cleanup_tracing(), then trace_function()
                // with the filter set before the tracer, so that the tracer
                // never traces every function (slow under emulation).
                let mut script = String::from(
                    "T=/sys/kernel/tracing; [ -e $T/trace ] || T=/sys/kernel/debug/tracing; \
                     echo 0 > $T/tracing_on && echo > $T/set_ftrace_filter && echo nop > $T/current_tracer && echo > $T/trace",
                );
                if let Some(f) = function {
                    script.push_str(&format!(" && echo {} > $T/set_ftrace_filter && echo function > $T/current_tracer && echo 1 > $T/tracing_on", sh_quote(f)));
                }
                let out = self.sh(&script)?;
                let what = function.as_ref().map_or("stop tracing".to_string(), |f| format!("trace {f}"));
                expect_outcome(&what, &out, None)
            }
            Action::Shell { command, status } => {
                let out = self.sh(command)?;
                shell_verdict(command, *status, &out)
            }
            Action::Assert(a) => {
                let v = self.check(a)?;
                verdict_result(v, &mut self.notes)
            }
            Action::Wait { until, .. } => {
                // The last round keeps up to a second to report what it saw.
                let give_up = self.deadline - Duration::from_secs(1).min(Duration::from_secs(t) / 2);
                loop {
                    if until.dmesg.is_some() {
                        self.sync()?;
                    }
                    let v = self.check(until)?;
                    if v.ok() || !v.missing_required.is_empty() || Instant::now() >= give_up {
                        return verdict_result(v, &mut self.notes).map_err(|e| match e {
                            Stop::Verdict(m) => Stop::Verdict(format!("still not true after {t}s:\n{m}")),
                            s => s,
                        });
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// A spawned group's pids, space-separated.
    fn group_pids(&self, name: &str) -> String {
        self.groups.get(name).into_iter().flatten().map(u32::to_string).collect::<Vec<_>>().join(" ")
    }

    /// A load's arguments with `${group}` replaced by the group's pids
    /// (comma-separated) and, for a livepatch of a syscall, the symbol of
    /// the syscall's entry point this kernel has.
    fn load_args(&self, module: &str, args: &str) -> Result<String, Stop> {
        let mut out = args.to_string();
        for g in crate::case::groups(args) {
            let pids: Vec<String> = self.groups.get(g).into_iter().flatten().map(u32::to_string).collect();
            out = out.replace(&format!("${{{g}}}"), &pids.join(","));
        }
        let Some(lp) = self.case.livepatch(module) else {
            return Ok(out);
        };
        for (fi, f) in lp.functions.iter().enumerate() {
            let Some(sc) = &f.syscall else { continue };
            let candidates = crate::case::syscall_symbols(sc);
            match candidates.iter().find(|c| self.has_symbol(c)) {
                Some(sym) => out.push_str(&format!(" {}={sym}", crate::case::syscall_param(fi))),
                None => {
                    return Err(Stop::Skip(format!(
                        "kernel has no entry point for syscall {sc} (none of {})",
                        candidates.join(", ")
                    )))
                }
            }
        }
        Ok(out)
    }

    pub fn check(&self, a: &Assertion) -> Result<Verdict, Stop> {
        let script = assert::snapshot_script(a);
        let out = if script.is_empty() { String::new() } else { self.sh(&script)?.stdout };
        let snap = assert::parse_snapshot(a, &out);
        Ok(assert::evaluate(a, &snap, self.window(), &self.case.doc.requires.sysfs))
    }

    fn stuck_hint(&self) -> String {
        "; see stuck-tasks.txt in the artifacts".into()
    }

    /// Everything a developer needs to understand a failure, into `dir`.
    /// Best effort: what cannot be fetched is noted, never the failure.
    pub fn collect(&mut self, dir: &Path, step: Option<&Step>) {
        if let Err(e) = self.sync() {
            self.notes.push(format!("artifacts: could not fetch the kernel log: {}", e.message()));
        }
        let window: Vec<String> = self.window().iter().map(Record::line).collect();
        let _ = std::fs::write(dir.join("dmesg-window.txt"), window.join("\n") + "\n");
        let all: Vec<String> = self.records.iter().map(Record::line).collect();
        let _ = std::fs::write(dir.join("dmesg.txt"), all.join("\n") + "\n");
        if let Ok(o) = self.sh_harness(crate::template::LIVEPATCH_SYSFS_SH.text) {
            let _ = std::fs::write(dir.join("livepatch-sysfs.txt"), o.stdout);
        }
        // Tasks not yet switched to the transition's target state, with stacks.
        if let Ok(o) = self.sh_harness(crate::template::STUCK_TASKS_SH.text) {
            let _ = std::fs::write(dir.join("stuck-tasks.txt"), o.stdout);
        }
        if let Some(s) = step {
            let _ = std::fs::write(
                dir.join("failed-step.txt"),
                format!("step {} (line {}): {}\n{:#?}\n", s.index + 1, s.line, s.label, s.action),
            );
        }
    }
}

/// The step's kind, as case files name it.
pub fn kind(a: &Action) -> &'static str {
    match a {
        Action::Load { .. } => "load",
        Action::Disable { .. } => "disable",
        Action::Write { .. } => "write",
        Action::Force { .. } => "force",
        Action::Unload { .. } => "unload",
        Action::Park { .. } => "park",
        Action::Release { .. } => "release",
        Action::Wait { .. } => "wait",
        Action::Shell { .. } => "shell",
        Action::Assert(_) => "assert",
        Action::Call { .. } => "call",
        Action::Spawn { .. } => "spawn",
        Action::Kill { .. } => "kill",
        Action::Trace { .. } => "trace",
    }
}

/// Starts `count` detached copies of a program (uploaded to /root) or a
/// shell command, printing their pids; init reaps them.
fn spawn_command(program: Option<&str>, command: Option<&str>, count: u32) -> String {
    let cmd = match (program, command) {
        (Some(p), _) => format!("/root/{}", crate::modules::program::file(p)),
        (None, Some(c)) => format!("sh -c {}", sh_quote(c)),
        (None, None) => unreachable!("the case layer requires one"),
    };
    format!("for i in $(seq {count}); do setsid {cmd} </dev/null >/dev/null 2>&1 & echo $!; done")
}

fn spawn_verdict(name: &str, count: u32, out: &Output) -> Result<Vec<u32>, Stop> {
    let pids: Vec<u32> = out.stdout.split_whitespace().filter_map(|p| p.parse().ok()).collect();
    if out.status != 0 || pids.len() != count as usize {
        return Err(Stop::Verdict(format!("spawn {name}: started {} of {count}: {}", pids.len(), out.stderr.trim())));
    }
    Ok(pids)
}

/// True in the guest once every pid in `list` is gone (or a zombie until
/// init reaps it).
fn gone_condition(list: &str) -> String {
    // A subshell: in a composed step command, `exit` would end the command.
    format!("(for p in {list}; do [ -d /proc/$p ] && ! grep -q '^State:.*Z' /proc/$p/status 2>/dev/null && exit 1; done; exit 0)")
}

/// functions.sh's cleanup_tracing(), then trace_function() with the filter
/// set before the tracer, so the tracer never traces every function (slow
/// under emulation).
fn trace_command(function: Option<&str>) -> String {
    let mut script = String::from(
        "T=/sys/kernel/tracing; [ -e $T/trace ] || T=/sys/kernel/debug/tracing; \
         echo 0 > $T/tracing_on && echo > $T/set_ftrace_filter && echo nop > $T/current_tracer && echo > $T/trace",
    );
    if let Some(f) = function {
        script.push_str(&format!(
            " && echo {} > $T/set_ftrace_filter && echo function > $T/current_tracer && echo 1 > $T/tracing_on",
            sh_quote(f)
        ));
    }
    script
}

/// How long a composed command may take from now: the step's deadline
/// until its own work is over, then the harness budget for the sync.
fn script_flow(work_over: Option<Instant>, step_deadline: Instant, stop: bool) -> crate::vm::ssh::Flow {
    crate::vm::ssh::Flow { deadline: work_over.map(|t| t + HARNESS).unwrap_or(step_deadline), stop }
}

/// The guest command of a `call:` step: ask the parked worker, wait until
/// it has answered, print what the function printed.
fn call_command(module: &str, parked: &str, function: &str) -> String {
    let f = format!("/proc/{module}/{parked}");
    format!(
        "echo {} > {f} || exit 1; while [ \"$(cat {f}.call)\" = pending ]; do usleep 10000; done; cat {f}.call",
        sh_quote(&format!("call {function}"))
    )
}

fn call_verdict(
    module: &str,
    parked: &str,
    function: &str,
    prints: Option<&crate::case::Matcher>,
    out: &Output,
) -> StepResult {
    if out.status != 0 {
        let why = match errno::from_message(&out.stderr) {
            Some("ESRCH") => format!("no worker is parked in {module}.{parked}: park it first"),
            _ => out.stderr.trim().to_string(),
        };
        return Err(Stop::Verdict(format!("call {function} from the worker parked in {module}.{parked}: {why}")));
    }
    match prints.and_then(|m| assert::match_text(m, &out.stdout)) {
        Some(msg) => Err(Stop::Verdict(format!("{function}() called by the task parked in {module}.{parked}: {msg}"))),
        None => Ok(()),
    }
}

fn shell_verdict(command: &str, status: i32, out: &Output) -> StepResult {
    if out.status != status {
        return Err(Stop::Verdict(format!(
            "`{command}`: expected exit status {status}, got {}\n{}{}",
            out.status, out.stdout, out.stderr
        )));
    }
    Ok(())
}

fn verdict_result(v: Verdict, notes: &mut Vec<String>) -> StepResult {
    if !v.unchecked.is_empty() {
        notes.push(format!("not checked (attribute absent on this kernel): {}", v.unchecked.join(", ")));
    }
    if !v.missing_required.is_empty() {
        return Err(Stop::Skip(format!("kernel lacks sysfs attribute(s): {}", v.missing_required.join(", "))));
    }
    if v.mismatches.is_empty() {
        Ok(())
    } else {
        Err(Stop::Verdict(v.mismatches.join("\n")))
    }
}

/// Checks an operation's outcome against the expected refusal (if any).
fn expect_outcome(what: &str, out: &Output, refused: Option<&[String]>) -> StepResult {
    let msg = format!("{}{}", out.stdout, out.stderr);
    let got = errno::from_message(&msg);
    match (refused, out.status) {
        (None, 0) => Ok(()),
        (None, _) => Err(Stop::Verdict(format!("{what} failed ({}): {}", got.unwrap_or("unknown errno"), msg.trim()))),
        (Some(want), 0) => {
            Err(Stop::Verdict(format!("{what}: expected refusal with {}, but it succeeded", want.join(" or "))))
        }
        (Some(want), _) => match got {
            Some(g) if want.iter().any(|w| crate::case::errno::same(w, g)) => Ok(()),
            Some(g) => Err(Stop::Verdict(format!(
                "{what}: expected refusal with {}, got {g}: {}",
                want.join(" or "),
                msg.trim()
            ))),
            None => Err(Stop::Verdict(format!(
                "{what}: expected refusal with {}, got an error without errno: {}",
                want.join(" or "),
                msg.trim()
            ))),
        },
    }
}

/// The guest command that loads `module` with `args`: each argument is one
/// single-quoted word, so nothing in a case's `args:` is shell syntax.
pub fn load_command(module: &str, args: &str) -> String {
    let mut cmd = format!("{INSMOD} {}", sh_quote(&format!("/root/{module}.ko")));
    for a in module_args(args) {
        cmd.push(' ');
        cmd.push_str(&sh_quote(&a));
    }
    cmd
}

/// `name=value` words as the kernel's `parse_args()` splits them: at blanks
/// outside double quotes (`s="a b"` is one argument, quotes kept for it).
fn module_args(args: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in args.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                word.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// The guest test for a symbol in /proc/kallsyms: the name is compared as a
/// fixed string, so none of its characters is shell or regex syntax.
pub fn kallsyms_probe(sym: &str) -> String {
    format!("cut -d' ' -f3 /proc/kallsyms | grep -qxF -e {}", sh_quote(sym))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a POSIX shell makes of `cmd`'s words, for commands built only
    /// of single-quoted words (with `'\''` escapes) separated by spaces.
    fn shell_words(cmd: &str) -> Vec<String> {
        let mut words = vec![String::new()];
        let (mut quoted, mut escaped) = (false, false);
        for c in cmd.chars() {
            match c {
                c if escaped => {
                    escaped = false;
                    words.last_mut().expect("one word").push(c);
                }
                '\'' => quoted = !quoted,
                '\\' if !quoted => escaped = true,
                ' ' if !quoted => words.push(String::new()),
                c => words.last_mut().expect("one word").push(c),
            }
        }
        words
    }

    #[test]
    fn hostile_module_arguments_stay_data() {
        for args in ["x=1; echo INJECTED > /dev/kmsg", "a=$(reboot)", "b=`id`", "c='q'\"", "d=1\necho x", "e=*/"] {
            let cmd = load_command("klpt_m", args);
            let words = shell_words(&cmd);
            let want: Vec<String> = [INSMOD.to_string(), "/root/klpt_m.ko".into()]
                .into_iter()
                .chain(args.split_whitespace().map(String::from))
                .collect();
            assert_eq!(words, want, "{cmd}");
        }
    }

    #[test]
    fn module_arguments_split_as_the_kernel_splits_them() {
        assert_eq!(module_args(" a=1  s=\"x y\" b=2 "), vec!["a=1", "s=\"x y\"", "b=2"]);
        assert_eq!(
            shell_words(&load_command("m", "s=\"x y\"")),
            vec![INSMOD.to_string(), "/root/m.ko".into(), "s=\"x y\"".into()]
        );
    }

    #[test]
    fn hostile_symbol_names_stay_data() {
        let sym = "x$' /proc/kallsyms; echo pwned; `id` $(id)";
        let probe = kallsyms_probe(sym);
        let (head, quoted) = probe.split_once(" -e ").expect("pattern follows -e");
        assert_eq!(head, "cut -d' ' -f3 /proc/kallsyms | grep -qxF");
        assert_eq!(shell_words(quoted), vec![sym.to_string()]);
    }
}
