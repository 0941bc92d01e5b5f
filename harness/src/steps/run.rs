//! Runs a case's steps in a booted guest. Every step has a deadline (its
//! `timeout:`, else the case's) that bounds every guest command it runs;
//! waits poll state in the guest against that deadline, never fixed sleeps.
//! After every step the kernel log is fetched and health-checked.

use super::assert::{self, sh_quote, Verdict};
use super::errno;
use super::health;
use super::kmsg::{self, Record};
use crate::case::{Action, Assertion, Case, Cond, Requires, Step};
use crate::kernel::caps::Caps;
use crate::vm::ssh::{Guest, Output};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The loader: kmod's insmod (see `images/guest.yaml`), exactly one
/// `finit_module` per load. Busybox's insmod, first on the guest's PATH,
/// falls back to `init_module` when `finit_module` fails, so a refused
/// livepatch would enter `klp_enable_patch` (and its callbacks) twice.
pub const INSMOD: &str = "/sbin/insmod";

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
}

/// Budget of harness-side guest commands outside a step's own work
/// (upload, kernel-log sync, capability probes, artifact collection).
const HARNESS: Duration = Duration::from_secs(60);

impl<'a> Session<'a> {
    /// Uploads the case's modules and takes the initial log and taint state.
    pub fn start(guest: &'a Guest, case: &'a Case, caps: &'a Caps, modules: &BTreeMap<String, PathBuf>) -> Result<Session<'a>, Stop> {
        // Modules and programs go to /root under their file names.
        for file in modules.values() {
            let data = std::fs::read(file).map_err(|e| Stop::Harness(format!("read {}: {e}", file.display())))?;
            let name = file.file_name().unwrap_or_default().to_string_lossy();
            guest.put(&data, &format!("/root/{name}"))?;
            if !name.ends_with(".ko") {
                guest.exec(&format!("chmod +x /root/{name}"), HARNESS)?;
            }
        }
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
        };
        s.taint_baseline = s.sync()?;
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

    /// Marks the log, waits until the recorder has it, fetches new records;
    /// returns the current taint value.
    fn sync(&mut self) -> Result<u64, Stop> {
        self.sync_n += 1;
        let tag = format!("{}{}", kmsg::SYNC_TAG, self.sync_n);
        let script = format!(
            "echo '{tag}' > /dev/kmsg; end=$(( $(cut -d. -f1 /proc/uptime) + 20 )); \
             until grep -q '{tag}$' /run/kmsg; do [ $(cut -d. -f1 /proc/uptime) -ge $end ] && break; usleep 10000; done; \
             cat /proc/sys/kernel/tainted; tail -c +{} /run/kmsg",
            self.kmsg_offset + 1
        );
        let out = self.sh_harness(&script)?;
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
            && each(&|| l.kallsyms.iter().map(|x| Requires { kallsyms: vec![x.clone()], ..Default::default() }).collect())
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
        let is_check = matches!(step.action, Action::Assert(_) | Action::Wait { .. });
        let before = self.records.len();
        self.step_secs = self.step_timeout(step);
        self.deadline = Instant::now() + Duration::from_secs(self.step_secs);
        let result = self.act(&step.action);
        // The step's own failure is the one reported; a log sync that fails
        // after it (the guest may be gone) only adds a note.
        let taint = match (self.sync(), &result) {
            (Ok(t), _) => t,
            (Err(e), Err(_)) => {
                self.notes.push(format!("the kernel-log sync after the failed step failed too: {}", e.message()));
                return result;
            }
            (Err(e), Ok(())) => return Err(e),
        };
        if !is_check {
            self.window_start = before;
        }
        result?;
        self.health(taint, step)
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
                        return Err(Stop::Verdict(format!("the patching transition of {module} did not finish within {t}s{}", self.stuck_hint())));
                    }
                }
                Ok(())
            }
            Action::Disable { patch, wait, refused } => {
                let out = self.sh(&format!("echo 0 > /sys/kernel/livepatch/{patch}/enabled"))?;
                expect_outcome("disable", &out, refused.as_deref())?;
                if out.status == 0 && *wait && !self.wait_guest(&format!("[ ! -d /sys/kernel/livepatch/{patch} ]"))? {
                    return Err(Stop::Verdict(format!("{patch} did not finish unpatching within {t}s{}", self.stuck_hint())));
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
                        return Err(Stop::Verdict(format!("rmmod {module}: module still in use (refcnt {}) after {t}s", n.trim())));
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
                let (word, state) = if matches!(a, Action::Park { .. }) { ("park", "parked") } else { ("release", "idle") };
                let f = format!("/proc/{module}/{function}");
                let out = self.sh(&format!("echo {word} > {f}"))?;
                expect_outcome(word, &out, None)?;
                if !self.wait_guest(&format!("[ \"$(cat {f})\" = {state} ]"))? {
                    return Err(Stop::Verdict(format!("{f} did not become `{state}` within {t}s")));
                }
                Ok(())
            }
            Action::Call { module, parked, function, prints } => {
                let f = format!("/proc/{module}/{parked}");
                let script = format!(
                    "echo {} > {f} || exit 1; while [ \"$(cat {f}.call)\" = pending ]; do usleep 10000; done; cat {f}.call",
                    sh_quote(&format!("call {function}"))
                );
                let out = self.sh(&script)?;
                if out.status != 0 {
                    let why = match errno::from_message(&out.stderr) {
                        Some("ESRCH") => format!("no worker is parked in {module}.{parked}: park it first"),
                        _ => out.stderr.trim().to_string(),
                    };
                    return Err(Stop::Verdict(format!("call {function} from the worker parked in {module}.{parked}: {why}")));
                }
                match prints.as_ref().and_then(|m| assert::match_text(m, &out.stdout)) {
                    Some(msg) => Err(Stop::Verdict(format!("{function}() called by the task parked in {module}.{parked}: {msg}"))),
                    None => Ok(()),
                }
            }
            Action::Spawn { name, program, command, count } => {
                let cmd = match (program, command) {
                    (Some(p), _) => format!("/root/{}", crate::modules::program::file(p)),
                    (None, Some(c)) => format!("sh -c {}", sh_quote(c)),
                    (None, None) => unreachable!("the case layer requires one"),
                };
                // Detached, so the SSH command returns; init reaps them.
                let script = format!("for i in $(seq {count}); do setsid {cmd} </dev/null >/dev/null 2>&1 & echo $!; done");
                let out = self.sh(&script)?;
                let pids: Vec<u32> = out.stdout.split_whitespace().filter_map(|p| p.parse().ok()).collect();
                if out.status != 0 || pids.len() != *count as usize {
                    return Err(Stop::Verdict(format!("spawn {name}: started {} of {count}: {}", pids.len(), out.stderr.trim())));
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
                let gone = format!("for p in {list}; do [ -d /proc/$p ] && ! grep -q '^State:.*Z' /proc/$p/status 2>/dev/null && exit 1; done; exit 0");
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
                if out.status != *status {
                    return Err(Stop::Verdict(format!("`{command}`: expected exit status {status}, got {}\n{}{}", out.status, out.stdout, out.stderr)));
                }
                Ok(())
            }
            // Parsed and validated by the case layer; running it is not written yet.
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
                None => return Err(Stop::Skip(format!("kernel has no entry point for syscall {sc} (none of {})", candidates.join(", ")))),
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
        let snap = "for f in $(find /sys/kernel/livepatch 2>/dev/null | sort); do if [ -f \"$f\" ]; then echo \"$f: $(cat \"$f\" 2>&1)\"; else echo \"$f/\"; fi; done";
        if let Ok(o) = self.sh_harness(snap) {
            let _ = std::fs::write(dir.join("livepatch-sysfs.txt"), o.stdout);
        }
        // Tasks not yet switched to the transition's target state, with stacks.
        let stuck = "t=''; for p in /sys/kernel/livepatch/*; do [ \"$(cat $p/transition 2>/dev/null)\" = 1 ] && t=$p; done; \
                     [ -z \"$t\" ] && { echo 'no transition in progress'; exit 0; }; \
                     target=$(cat $t/enabled); echo \"transition: ${t##*/} (target state $target)\"; \
                     for s in /proc/[0-9]*/task/[0-9]*/patch_state; do d=${s%/patch_state}; v=$(cat $s 2>/dev/null); \
                     [ -n \"$v\" ] && [ \"$v\" != \"$target\" ] && { echo; echo \"== ${d#/proc/} $(cat $d/comm) patch_state=$v\"; cat $d/stack 2>&1; }; done";
        if let Ok(o) = self.sh_harness(stuck) {
            let _ = std::fs::write(dir.join("stuck-tasks.txt"), o.stdout);
        }
        if let Some(s) = step {
            let _ = std::fs::write(dir.join("failed-step.txt"), format!("step {} (line {}): {}\n{:#?}\n", s.index + 1, s.line, s.label, s.action));
        }
    }
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
        (Some(want), 0) => Err(Stop::Verdict(format!("{what}: expected refusal with {}, but it succeeded", want.join(" or ")))),
        (Some(want), _) => match got {
            Some(g) if want.iter().any(|w| errno::same(w, g)) => Ok(()),
            Some(g) => Err(Stop::Verdict(format!("{what}: expected refusal with {}, got {g}: {}", want.join(" or "), msg.trim()))),
            None => Err(Stop::Verdict(format!("{what}: expected refusal with {}, got an error without errno: {}", want.join(" or "), msg.trim()))),
        },
    }
}

/// The guest command that loads `module` with `args`: each argument is one
/// single-quoted word, so nothing in a case's `args:` is shell syntax.
pub fn load_command(module: &str, args: &str) -> String {
    let mut cmd = format!("{INSMOD} {}", sh_quote(&format!("/root/{module}.ko")));
    for a in args.split_whitespace() {
        cmd.push(' ');
        cmd.push_str(&sh_quote(a));
    }
    cmd
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
            let want: Vec<String> = [INSMOD.to_string(), "/root/klpt_m.ko".into()].into_iter().chain(args.split_whitespace().map(String::from)).collect();
            assert_eq!(words, want, "{cmd}");
        }
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
