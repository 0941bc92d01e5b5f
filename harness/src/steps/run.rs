//! Runs a case's steps in a booted guest. Waits poll state with deadlines
//! (in the guest, against its own clock), never fixed sleeps. After every
//! step the kernel log is fetched and health-checked.

use super::assert::{self, sh_quote, Verdict};
use super::errno;
use super::health;
use super::kmsg::{self, Record};
use crate::case::{Action, Assertion, Case, Cond, Requires, Step};
use std::cell::RefCell;
use crate::kernel::caps::Caps;
use crate::vm::ssh::{Guest, Output};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a case stopped.
#[derive(Debug)]
pub enum Stop {
    Fail(String),
    /// The kernel lacks a capability the case requires.
    Skip(String),
    /// The harness lost the guest (SSH transport error or timeout), as
    /// opposed to the kernel doing something other than expected.
    Lost(String),
}

impl From<crate::error::Error> for Stop {
    fn from(e: crate::error::Error) -> Stop {
        Stop::Lost(e.to_string())
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
    pub notes: Vec<String>,
}

const SHORT: Duration = Duration::from_secs(60);

impl<'a> Session<'a> {
    /// Uploads the case's modules and takes the initial log and taint state.
    pub fn start(guest: &'a Guest, case: &'a Case, caps: &'a Caps, modules: &BTreeMap<String, PathBuf>) -> Result<Session<'a>, Stop> {
        for (name, ko) in modules {
            let data = std::fs::read(ko).map_err(|e| Stop::Fail(format!("read {}: {e}", ko.display())))?;
            guest.put(&data, &format!("/root/{name}.ko"))?;
        }
        let mut s = Session { guest, case, caps, records: Vec::new(), kmsg_offset: 0, window_start: 0, health_from: 0, taint_baseline: 0, sync_n: 0, symbols: RefCell::default(), notes: Vec::new() };
        s.taint_baseline = s.sync()?;
        s.window_start = s.records.len();
        s.health_from = s.records.len();
        Ok(s)
    }

    fn sh(&self, cmd: &str) -> Result<Output, Stop> {
        Ok(self.guest.exec(cmd, SHORT)?)
    }

    /// Waits in the guest until `cond` (a shell test) holds; false on deadline.
    fn wait_guest(&self, cond: &str, secs: u64) -> Result<bool, Stop> {
        let script = format!(
            "end=$(( $(cut -d. -f1 /proc/uptime) + {secs} )); while ! ( {cond} ); do [ $(cut -d. -f1 /proc/uptime) -ge $end ] && exit 1; usleep 20000; done; exit 0"
        );
        let out = self.guest.exec(&script, Duration::from_secs(secs + 30))?;
        Ok(out.status == 0)
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
        let out = self.sh(&script)?;
        let (taint, log) = out.stdout.split_once('\n').unwrap_or((&out.stdout, ""));
        // Only complete lines count; a partial last line is fetched next time.
        let complete = &log[..log.rfind('\n').map(|i| i + 1).unwrap_or(0)];
        self.kmsg_offset += complete.len() as u64;
        let last = self.records.last().map(|r| r.seq);
        self.records.extend(kmsg::parse(complete, last));
        Ok(taint.trim().parse().unwrap_or(0))
    }

    fn health(&mut self, taint: u64) -> StepResult {
        let bad = health::bad_lines(&self.records[self.health_from..]);
        self.health_from = self.records.len();
        if !bad.is_empty() {
            return Err(Stop::Fail(format!("kernel reported a problem:\n  {}", bad.join("\n  "))));
        }
        if let Some(t) = health::bad_taint(self.taint_baseline, taint) {
            return Err(Stop::Fail(t));
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
        let found = self.sh(&format!("grep -q ' {sym}$' /proc/kallsyms")).map(|o| o.status == 0).unwrap_or(false);
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
            && each(&|| l.klp_patch.iter().map(|x| Requires { klp_patch: vec![x.clone()], ..Default::default() }).collect())
            && each(&|| l.sysfs.iter().map(|x| Requires { sysfs: vec![x.clone()], ..Default::default() }).collect())
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
        let result = self.act(&step.action);
        let taint = self.sync()?;
        if !is_check {
            self.window_start = before;
        }
        result?;
        self.health(taint)
    }

    fn act(&mut self, a: &Action) -> StepResult {
        let t = self.case.doc.timeout;
        match a {
            Action::Load { module, args, wait, refused } => {
                let out = self.sh(&format!("{} /root/{module}.ko {args}", crate::image::INSMOD))?;
                expect_outcome("insmod", &out, refused.as_deref())?;
                let is_patch = self.case.livepatch(module).is_some();
                if out.status == 0 && *wait && is_patch {
                    let f = format!("/sys/kernel/livepatch/{module}/transition");
                    if !self.wait_guest(&format!("[ \"$(cat {f} 2>/dev/null)\" = 0 ]"), t)? {
                        return Err(Stop::Fail(format!("the patching transition of {module} did not finish within {t}s{}", self.stuck_hint())));
                    }
                }
                Ok(())
            }
            Action::Disable { patch, wait, refused } => {
                let out = self.sh(&format!("echo 0 > /sys/kernel/livepatch/{patch}/enabled"))?;
                expect_outcome("disable", &out, refused.as_deref())?;
                if out.status == 0 && *wait && !self.wait_guest(&format!("[ ! -d /sys/kernel/livepatch/{patch} ]"), t)? {
                    return Err(Stop::Fail(format!("{patch} did not finish unpatching within {t}s{}", self.stuck_hint())));
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
                    if !self.wait_guest(&format!("[ \"$(cat {f} 2>/dev/null || echo 0)\" = 0 ]"), t)? {
                        let n = self.sh(&format!("cat {f}"))?.stdout;
                        return Err(Stop::Fail(format!("rmmod {module}: module still in use (refcnt {}) after {t}s", n.trim())));
                    }
                }
                let out = self.sh(&format!("rmmod {module}"))?;
                expect_outcome("rmmod", &out, refused.as_deref())?;
                if out.status == 0 && !self.wait_guest(&format!("[ ! -d /sys/module/{module} ]"), t)? {
                    return Err(Stop::Fail(format!("{module} still present in /sys/module {t}s after rmmod")));
                }
                Ok(())
            }
            Action::Park { module, function } | Action::Release { module, function } => {
                let (word, state) = if matches!(a, Action::Park { .. }) { ("park", "parked") } else { ("release", "idle") };
                let f = format!("/proc/{module}/{function}");
                let out = self.sh(&format!("echo {word} > {f}"))?;
                expect_outcome(word, &out, None)?;
                if !self.wait_guest(&format!("[ \"$(cat {f})\" = {state} ]"), t)? {
                    return Err(Stop::Fail(format!("{f} did not become `{state}` within {t}s")));
                }
                Ok(())
            }
            Action::Shell { command, status } => {
                let out = self.sh(command)?;
                if out.status != *status {
                    return Err(Stop::Fail(format!("`{command}`: expected exit status {status}, got {}\n{}{}", out.status, out.stdout, out.stderr)));
                }
                Ok(())
            }
            Action::Assert(a) => {
                let v = self.check(a)?;
                verdict_result(v, &mut self.notes)
            }
            Action::Wait { until, timeout } => {
                let deadline = std::time::Instant::now() + Duration::from_secs(*timeout);
                loop {
                    if until.dmesg.is_some() {
                        self.sync()?;
                    }
                    let v = self.check(until)?;
                    if v.ok() || !v.missing_required.is_empty() || std::time::Instant::now() >= deadline {
                        return verdict_result(v, &mut self.notes).map_err(|e| match e {
                            Stop::Fail(m) => Stop::Fail(format!("still not true after {timeout}s:\n{m}")),
                            s => s,
                        });
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
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
    pub fn collect(&mut self, dir: &Path, step: Option<&Step>) {
        let _ = self.sync();
        let window: Vec<String> = self.window().iter().map(Record::line).collect();
        let _ = std::fs::write(dir.join("dmesg-window.txt"), window.join("\n") + "\n");
        let all: Vec<String> = self.records.iter().map(Record::line).collect();
        let _ = std::fs::write(dir.join("dmesg.txt"), all.join("\n") + "\n");
        let snap = "for f in $(find /sys/kernel/livepatch 2>/dev/null | sort); do if [ -f \"$f\" ]; then echo \"$f: $(cat \"$f\" 2>&1)\"; else echo \"$f/\"; fi; done";
        if let Ok(o) = self.sh(snap) {
            let _ = std::fs::write(dir.join("livepatch-sysfs.txt"), o.stdout);
        }
        // Tasks not yet switched to the transition's target state, with stacks.
        let stuck = "t=''; for p in /sys/kernel/livepatch/*; do [ \"$(cat $p/transition 2>/dev/null)\" = 1 ] && t=$p; done; \
                     [ -z \"$t\" ] && { echo 'no transition in progress'; exit 0; }; \
                     target=$(cat $t/enabled); echo \"transition: ${t##*/} (target state $target)\"; \
                     for s in /proc/[0-9]*/task/[0-9]*/patch_state; do d=${s%/patch_state}; v=$(cat $s 2>/dev/null); \
                     [ -n \"$v\" ] && [ \"$v\" != \"$target\" ] && { echo; echo \"== ${d#/proc/} $(cat $d/comm) patch_state=$v\"; cat $d/stack 2>&1; }; done";
        if let Ok(o) = self.sh(stuck) {
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
        Err(Stop::Fail(v.mismatches.join("\n")))
    }
}

/// Checks an operation's outcome against the expected refusal (if any).
fn expect_outcome(what: &str, out: &Output, refused: Option<&[String]>) -> StepResult {
    let msg = format!("{}{}", out.stdout, out.stderr);
    let got = errno::from_message(&msg);
    match (refused, out.status) {
        (None, 0) => Ok(()),
        (None, _) => Err(Stop::Fail(format!("{what} failed ({}): {}", got.unwrap_or("unknown errno"), msg.trim()))),
        (Some(want), 0) => Err(Stop::Fail(format!("{what}: expected refusal with {}, but it succeeded", want.join(" or ")))),
        (Some(want), _) => match got {
            Some(g) if want.iter().any(|w| errno::same(w, g)) => Ok(()),
            Some(g) => Err(Stop::Fail(format!("{what}: expected refusal with {}, got {g}: {}", want.join(" or "), msg.trim()))),
            None => Err(Stop::Fail(format!("{what}: expected refusal with {}, got an error without errno: {}", want.join(" or "), msg.trim()))),
        },
    }
}
