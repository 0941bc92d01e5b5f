//! The runner: prepares an (architecture, kernel) target, and runs one
//! case on it in a fresh guest ([`run_case`]). Planning, the worker pool
//! and reporting are `crate::run`'s.

use crate::arch::Arch;
use crate::arch::PerArch;
use crate::case::Case;
use crate::error::{Error, Result};
use crate::event::{emit, Event};
use crate::kernel::{caps::Caps, Kernel};
use crate::report::{Cause, Failure, Outcome, Status};
use crate::steps::{Session, Stop};
use crate::vm::qemu::{Accel, Vm, VmConfig};
use crate::vm::ssh::Guest;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AccelChoice {
    /// KVM when a short probe boot works, else TCG.
    Auto,
    Tcg,
    Kvm,
}

/// One prepared target: kernel, its capabilities, a guest image.
pub struct Target {
    pub arch: Arch,
    pub kernel: Kernel,
    pub caps: Caps,
    pub initrd: PathBuf,
    pub accel: Accel,
    /// The saved ready guest that single-vCPU cases start from, if any.
    pub saved_state: Option<PathBuf>,
    /// Why there is no saved guest, when there is none.
    pub saved_note: Option<String>,
    /// Saved guests with more vCPUs, saved when a case first asks for one.
    saved_smp: Mutex<std::collections::BTreeMap<u32, Option<PathBuf>>>,
    /// The next case's guest, restored while the current case runs
    /// ([`Options::restore_ahead`]).
    ahead: Mutex<Option<Ahead>>,
}

/// A guest being restored, paused, for a case that has not started yet.
struct Ahead {
    smp: u32,
    /// Holds the guest's console until a case takes it.
    _dir: crate::cleanup::TempDir,
    loading: Option<std::thread::JoinHandle<Result<crate::vm::qemu::Loaded>>>,
}

impl Ahead {
    /// The loaded guest, its console moved to `console_log` (waits for the
    /// restore to finish).
    fn take(mut self, console_log: &Path) -> Result<crate::vm::qemu::Loaded> {
        let loading = self.loading.take().expect("an ahead guest is taken once");
        let mut loaded =
            loading.join().unwrap_or_else(|_| Err(Error::Vm("the thread restoring a guest panicked".into())))?;
        loaded
            .adopt(console_log)
            .map_err(|e| Error::Vm(format!("move the console to {}: {e}", console_log.display())))?;
        Ok(loaded)
    }
}

impl Drop for Ahead {
    fn drop(&mut self) {
        // An untaken guest dies here, before its directory goes, not
        // whenever its thread ends.
        if let Some(h) = self.loading.take() {
            let _ = h.join();
        }
    }
}

#[derive(Clone)]
pub struct Options {
    pub artifacts: PathBuf,
    pub keep_failed: bool,
    pub boot_timeout: Duration,
    /// Ask each guest its uptime after the steps (`klpt bench` compares
    /// it with the host's wall time): one more round trip per case.
    pub guest_time: bool,
    /// Restore the next case's guest (paused: it runs nothing until its
    /// case takes it) while the current case runs. Worth it when a core
    /// would otherwise idle: fewer guests at once than cores.
    pub restore_ahead: bool,
}

impl Options {
    /// Artifacts in `artifacts`, a 240 s boot deadline, and nothing else:
    /// no kept guests, no guest uptime, no restore ahead.
    pub fn new(artifacts: PathBuf) -> Options {
        Options {
            artifacts,
            keep_failed: false,
            boot_timeout: Duration::from_secs(240),
            guest_time: false,
            restore_ahead: false,
        }
    }
}

impl Target {
    pub fn prepare(arch: Arch, kernel_spec: Option<&str>, accel: AccelChoice) -> Result<Target> {
        let mut t = Self::prepare_with(arch, kernel_spec, accel, crate::image::build)?;
        match saved_state(&t, 1) {
            Ok(p) => t.saved_state = Some(p),
            Err(why) => t.saved_note = Some(why),
        }
        Ok(t)
    }

    /// [`Target::prepare`] with another guest image, made by `image` for the
    /// kernel, and no saved guest: its guests boot.
    pub fn prepare_with(
        arch: Arch,
        kernel_spec: Option<&str>,
        accel: AccelChoice,
        image: impl FnOnce(&Kernel) -> Result<PathBuf>,
    ) -> Result<Target> {
        crate::host::ensure(&[arch])?;
        let kernel = crate::kernel::resolve(kernel_spec, arch)?;
        let caps = Caps::probe(&kernel);
        let initrd = image(&kernel)?;
        let mut t = Target {
            arch,
            kernel,
            caps,
            initrd,
            accel: Accel::Tcg,
            saved_state: None,
            saved_note: None,
            saved_smp: Mutex::default(),
            ahead: Mutex::default(),
        };
        t.accel = match accel {
            AccelChoice::Tcg => Accel::Tcg,
            AccelChoice::Kvm => Accel::Kvm,
            AccelChoice::Auto => {
                if kvm_probe(&t)? {
                    Accel::Kvm
                } else {
                    Accel::Tcg
                }
            }
        };
        emit(Event::Note {
            msg: &format!("{}: kernel {} ({}), accel {:?}", arch.name, t.kernel.id, t.kernel.image.display(), t.accel),
        });
        Ok(t)
    }

    /// A guest with `smp` vCPUs restored ahead, if there is one, its console
    /// moved to `console_log`. A guest that failed to restore is dropped:
    /// the case then restores its own, which reports what goes wrong.
    fn take_ahead(&self, smp: u32, console_log: &Path) -> Option<crate::vm::qemu::Loaded> {
        let ahead = {
            let mut slot = self.ahead.lock().unwrap_or_else(|e| e.into_inner());
            match &*slot {
                Some(a) if a.smp == smp => slot.take(),
                _ => None,
            }
        }?;
        ahead.take(console_log).ok()
    }

    /// Starts restoring a guest from `state` with `smp` vCPUs for a later
    /// case, unless one is already there; its console waits in a directory
    /// under `artifacts` (the same file system as the case directories it
    /// is moved into).
    fn restore_ahead(&self, smp: u32, state: &Path, opts: &Options) {
        let mut slot = self.ahead.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_some() {
            return;
        }
        let Ok(dir) = crate::cleanup::TempDir::new_in(&opts.artifacts, ".klpt-ahead-") else { return };
        let cfg = self.vm_config(smp, &dir.path().join("console.log"));
        let (state, timeout) = (state.to_path_buf(), opts.boot_timeout);
        let Ok(loading) =
            std::thread::Builder::new().name("klpt-restore-ahead".into()).spawn(move || Vm::load(cfg, &state, timeout))
        else {
            return;
        };
        *slot = Some(Ahead { smp, _dir: dir, loading: Some(loading) });
    }

    /// Stops the guest restored ahead, if there is one (no more cases).
    pub fn discard_ahead(&self) {
        let ahead = self.ahead.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(ahead);
    }

    /// The saved ready guest with `smp` vCPUs, if there is (or can be) one:
    /// guests with more than one are saved the first time a case asks.
    pub fn saved_for(&self, smp: u32) -> Option<PathBuf> {
        if smp == 1 || self.saved_state.is_none() {
            return self.saved_state.clone();
        }
        let mut m = self.saved_smp.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(smp).or_insert_with(|| saved_state(self, smp).ok()).clone()
    }

    pub fn vm_config(&self, smp: u32, console_log: &Path) -> VmConfig {
        VmConfig {
            arch: self.arch,
            kernel: self.kernel.image.clone(),
            initrd: self.initrd.clone(),
            smp,
            mem_mb: 1024,
            accel: self.accel,
            console_log: console_log.to_path_buf(),
            qmp: None,
            incoming: None,
            extra_cmdline: String::new(),
        }
    }
}

/// The saved ready state guests of `t` start from, or None (each case then
/// boots) with the reason printed.
fn saved_state(t: &Target, smp: u32) -> std::result::Result<PathBuf, String> {
    if std::env::var_os("KLPT_FRESH_BOOT").is_some() {
        let why = "KLPT_FRESH_BOOT is set: every case boots its own guest".to_string();
        emit(Event::Note { msg: &format!("{}: {why}", t.arch.name) });
        return Err(why);
    }
    // The template's console and monitor live in the snapshot's own scratch dir.
    crate::vm::snapshot::saved(&t.vm_config(smp, Path::new("console.log")), Duration::from_secs(240)).map_err(|e| {
        emit(Event::Warn {
            msg: &format!(
                "{}: cannot save a ready guest with {smp} vCPU(s) ({e}); every such case boots its own",
                t.arch.name
            ),
        });
        e.to_string()
    })
}

/// Whether KVM works for `t.arch`, probed once per architecture and run: a
/// host that hangs nested KVM guests hangs them whatever the kernel.
fn kvm_probe(t: &Target) -> Result<bool> {
    static WORKS: PerArch<bool> = PerArch::new();
    WORKS.get_or_try(t.arch, || {
        let probe_dir = crate::cleanup::TempDir::new("klpt-kvm-probe-").map_err(|e| Error::Vm(e.to_string()))?;
        let ok = crate::vm::qemu::kvm_works(&t.vm_config(1, &probe_dir.path().join("console.log")));
        if ok {
            emit(Event::Note { msg: &format!("{}: KVM probe boot worked; using KVM", t.arch.name) });
        }
        Ok(ok)
    })
}

pub fn trial_name(t: &Target, case: &Case) -> String {
    name(t.arch.name, &t.kernel.id, case)
}

/// `x86_64/debian-6.1.0-50-amd64/stock/basic-enable-disable`.
pub fn name(arch: &str, kernel_id: &str, case: &Case) -> String {
    format!("{arch}/{kernel_id}/{}", case.id)
}

/// A booted guest for a case, logged in, with the case's modules on it.
pub struct Booted {
    pub vm: Vm,
    pub guest: Guest,
    /// Host seconds until the guest was ready: its readiness line after a
    /// boot, QMP's `running` after a restore.
    pub ready: f64,
    pub ssh_ready: f64,
}

/// How long a guest whose connection broke gets to exit and drain its
/// console before klpt decides what happened (a panicking guest exits
/// well within it; `panic=-1` reboots and QEMU's `-no-reboot` exits).
pub const SETTLE: Duration = Duration::from_secs(5);

pub fn boot(t: &Target, case: &Case, dir: &Path, opts: &Options) -> Result<Booted> {
    boot_smp(t, case.doc.smp, dir, opts)
}

/// A logged-in guest with `smp` vCPUs, its console in `dir/console.log`:
/// restored from the target's saved guest when it has one and `smp` is 1.
pub fn boot_smp(t: &Target, smp: u32, dir: &Path, opts: &Options) -> Result<Booted> {
    boot_from(t, smp, dir, opts, true)
}

/// [`boot_smp`]; `restore`: from the saved guest when there is one (else
/// a fresh boot, as `klpt bench` compares them).
pub fn boot_from(t: &Target, smp: u32, dir: &Path, opts: &Options, restore: bool) -> Result<Booted> {
    let cfg = t.vm_config(smp, &dir.join("console.log"));
    let (vm, ready) = match t.saved_for(smp) {
        Some(state) if restore && opts.restore_ahead => {
            let ahead = t.take_ahead(smp, &cfg.console_log);
            t.restore_ahead(smp, &state, opts);
            match ahead {
                Some(loaded) => loaded.start()?,
                None => Vm::restore(cfg, &state, opts.boot_timeout)?,
            }
        }
        Some(state) if restore => Vm::restore(cfg, &state, opts.boot_timeout)?,
        _ => {
            let vm = Vm::boot(cfg)?;
            let ready = vm.wait_ready(opts.boot_timeout)?;
            (vm, ready)
        }
    };
    let ready = ready.host_secs;
    let guest = Guest::connect(vm.ssh_port, Duration::from_secs(60)).map_err(|e| {
        let fate = vm.settle(SETTLE);
        match (fate.crash, fate.exited) {
            (Some(c), _) => Error::GuestCrash(format!("kernel crashed before SSH came up:\n{c}")),
            (None, Some(x)) => Error::Vm(format!("QEMU exited before SSH came up ({x})")),
            (None, None) => Error::Vm(format!("{e}\nconsole tail:\n{}", vm.console_tail(12))),
        }
    })?;
    let ssh_ready = vm.started.elapsed().as_secs_f64();
    Ok(Booted { vm, guest, ready, ssh_ready })
}

/// Guests kept running by `--keep-failed`, until klpt exits.
static KEPT: Mutex<Vec<crate::vm::qemu::Kept>> = Mutex::new(Vec::new());

/// Blocks while kept guests run: they die with klpt (like every guest, so
/// a killed klpt leaks none), so klpt stays until they exit or Ctrl-C.
pub fn wait_for_kept_guests() {
    let kept = std::mem::take(&mut *KEPT.lock().unwrap_or_else(|e| e.into_inner()));
    if kept.is_empty() {
        return;
    }
    emit(Event::Note { msg: &format!("{} failed guest(s) kept running (listed above); klpt stays until they stop: press Ctrl-C, or stop them with `kill PID`", kept.len()) });
    for k in &kept {
        k.wait();
    }
}

/// One step that ran (or was passed over), as it finished.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepDone {
    /// 1-based, as messages number steps.
    pub number: usize,
    /// The step's line in the case file.
    pub line: usize,
    pub kind: &'static str,
    pub label: String,
    pub secs: f64,
    pub verdict: StepVerdict,
    /// 1, or 2 in the fresh guest of a retry.
    pub attempt: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepVerdict {
    Ok,
    /// Its `when:` did not hold: it did not run.
    NotMet,
    /// It skipped the rest of the case (the kernel lacks something).
    Skip,
    /// It stopped the case: the trial's failure says why.
    Fail,
}

/// Runs one case on one target; never panics, always returns an outcome.
pub fn run_case(t: &Target, case: &Case, opts: &Options) -> Outcome {
    run_case_observed(t, case, opts, false, &|_| {})
}

/// [`run_case`], with `legacy`: steps run the way they did before one guest
/// command per step (for `klpt bench --steps` only).
pub fn run_case_steps(t: &Target, case: &Case, opts: &Options, legacy: bool) -> Outcome {
    run_case_observed(t, case, opts, legacy, &|_| {})
}

/// [`run_case_steps`], telling `on_step` about each step as it finishes.
pub fn run_case_observed(
    t: &Target,
    case: &Case,
    opts: &Options,
    legacy: bool,
    on_step: &dyn Fn(&StepDone),
) -> Outcome {
    let t0 = Instant::now();
    let mut out = Outcome::new(trial_name(t, case), case.id.clone(), t.arch.name, &t.kernel.id);
    let xfail = case.doc.xfail.iter().find(|x| {
        (x.arches.is_empty() || x.arches.iter().any(|a| a == t.arch.name))
            && regex::Regex::new(&x.kernel).is_ok_and(|r| r.is_match(&t.kernel.id))
    });
    let dir = opts.artifacts.join(t.arch.name).join(&t.kernel.id).join(&case.id);
    let mut status = attempt(t, case, opts, &mut out, &dir, (1, true), legacy, on_step);
    // Only a lost guest is retried, once, in a fresh guest: the kernel's
    // verdicts, crashes and timeouts would only repeat.
    if let Status::Fail(first) = &status {
        if first.cause == Cause::GuestLost {
            let first = first.clone();
            emit(Event::Warn { msg: &format!("{}: {}; retrying once in a fresh guest", out.name, first.first_line()) });
            out.retries = 1;
            status = attempt(t, case, opts, &mut out, &dir.join("retry"), (2, false), legacy, on_step);
            let retried = format!(
                "retried once in a fresh guest (artifacts in {}/retry); the first attempt failed with:\n{first}",
                dir.display()
            );
            match &mut status {
                Status::Fail(f) => f.message.push_str(&format!("\n{retried}")),
                _ => out.notes.push(retried),
            }
        }
    }
    if matches!((&status, xfail), (Status::Pass, Some(_)))
        || matches!((&status, xfail), (Status::Fail(f), Some(_)) if f.cause == Cause::KernelVerdict)
    {
        out.xfail_reason = xfail.map(|x| x.reason.clone());
    }
    out.status = match (status, xfail) {
        (Status::Fail(f), Some(x)) if f.cause == Cause::KernelVerdict => {
            Status::Xfail(format!("{} ({})", x.reason, f.first_line()))
        }
        (Status::Pass, Some(x)) => {
            Status::Xpass(format!("expected to fail on {} ({}), but passed", t.kernel.id, x.reason))
        }
        (s, _) => s,
    };
    out.secs = t0.elapsed().as_secs_f64();
    out.artifacts = Some(dir);
    out
}

/// One attempt (numbered from 1) at a case in a fresh guest. `may_retry`:
/// a lost guest will get another attempt, so this one's guest is never kept.
#[allow(clippy::too_many_arguments)]
fn attempt(
    t: &Target,
    case: &Case,
    opts: &Options,
    out: &mut Outcome,
    dir: &Path,
    (number, may_retry): (u32, bool),
    legacy: bool,
    on_step: &dyn Fn(&StepDone),
) -> Status {
    let fail = |cause, msg: String| Status::Fail(Failure::new(cause, msg));
    let missing = t.caps.missing(&case.doc.requires, None);
    if !missing.is_empty() {
        return Status::Skip(format!("kernel lacks {}", missing.join(", ")));
    }
    if let Err(e) = std::fs::create_dir_all(dir) {
        return fail(Cause::HarnessError, format!("cannot create artifacts dir {}: {e}", dir.display()));
    }
    let modules = match crate::modules::build_all(case, &t.kernel, &t.caps) {
        Ok(m) => m,
        Err(e @ Error::Setup(_)) => return fail(Cause::HarnessError, e.to_string()),
        Err(e) => return fail(Cause::HarnessError, e.to_string()),
    };
    let console = dir.join("console.log");
    let booted = match boot(t, case, dir, opts) {
        Ok(b) => b,
        Err(e) => {
            let cause = match e {
                Error::GuestCrash(_) => Cause::KernelCrash,
                Error::Vm(_) | Error::Ssh(_) | Error::SshTimeout(_) => Cause::GuestLost,
                _ => Cause::HarnessError,
            };
            return fail(cause, format!("boot: {e}\nconsole: {}", console.display()));
        }
    };
    out.ssh_ready_secs = Some(booted.ssh_ready);
    let mut session = match Session::start(&booted.guest, case, &t.caps, &modules) {
        Ok(s) => s,
        Err(Stop::Harness(m)) => return fail(Cause::HarnessError, format!("upload: {m}")),
        Err(stop) => {
            let (cause, msg) = lost_or_crashed(&booted.vm, stop.message());
            return fail(cause, format!("setting up the guest: {msg}\nconsole: {}", console.display()));
        }
    };
    session.legacy = legacy;
    let missing = session.missing(&case.doc.requires);
    if !missing.is_empty() {
        return Status::Skip(format!("kernel lacks {}", missing.join(", ")));
    }
    let mut status = Status::Pass;
    for step in &case.steps {
        let ran = session.step_times.len();
        let r = session.run(step);
        let done = |verdict| {
            let secs = session.step_times.get(ran).map(|s| s.1).unwrap_or(0.0);
            on_step(&StepDone {
                number: step.index + 1,
                line: step.line,
                kind: crate::steps::run::kind(&step.action),
                label: step.label.clone(),
                secs,
                verdict,
                attempt: number,
            })
        };
        let stop = match r {
            Ok(()) => {
                done(if session.step_times.len() > ran { StepVerdict::Ok } else { StepVerdict::NotMet });
                continue;
            }
            Err(Stop::Skip(r)) => {
                done(StepVerdict::Skip);
                status = Status::Skip(r);
                break;
            }
            Err(stop) => {
                done(StepVerdict::Fail);
                stop
            }
        };
        let (cause, detail) = match &stop {
            Stop::Harness(m) => (Cause::HarnessError, m.clone()),
            Stop::Lost(m) => lost_or_crashed(&booted.vm, m),
            // A verdict or a timeout may be the first sign of a crash.
            Stop::Verdict(m) | Stop::Timeout(m) => match booted.vm.fatal() {
                Some(c) => (Cause::KernelCrash, format!("the kernel crashed:\n{c}\n(the step saw: {m})")),
                None => (
                    if matches!(stop, Stop::Timeout(_)) { Cause::StepTimeout } else { Cause::KernelVerdict },
                    m.clone(),
                ),
            },
            Stop::Skip(_) => unreachable!("handled above"),
        };
        if booted.vm.exited().is_none() {
            session.collect(dir, Some(step));
        }
        let (first, rest) = detail.split_once('\n').unwrap_or((&detail, ""));
        let mut msg = format!("step {} (line {}) `{}`: {first}", step.index + 1, step.line, step.label);
        if !rest.is_empty() {
            msg.push('\n');
            msg.push_str(rest);
        }
        msg.push_str(&format!("\nartifacts: {}", dir.display()));
        status = fail(cause, msg);
        break;
    }
    out.notes.append(&mut session.notes);
    out.step_secs = std::mem::take(&mut session.step_times);
    if opts.guest_time && booted.vm.exited().is_none() {
        out.guest_secs = booted
            .guest
            .exec("cut -d' ' -f1 /proc/uptime", Duration::from_secs(10))
            .ok()
            .and_then(|o| o.stdout.trim().parse().ok());
    }
    drop(session);
    if let Status::Fail(f) = &mut status {
        if opts.keep_failed && !(may_retry && f.cause == Cause::GuestLost) {
            keep(booted, f);
        }
    }
    status
}

/// Decides what a broken connection means, once the console is drained:
/// a crash on the console, QEMU's exit, or a transport that broke alone.
fn lost_or_crashed(vm: &Vm, saw: &str) -> (Cause, String) {
    let fate = vm.settle(SETTLE);
    match (fate.crash, fate.exited) {
        (Some(c), _) => (Cause::KernelCrash, format!("the kernel crashed:\n{c}\n(the connection broke: {saw})")),
        (None, Some(x)) => {
            (Cause::GuestLost, format!("QEMU exited ({x}) with no crash on the console\n(the step saw: {saw})"))
        }
        (None, None) => (
            Cause::GuestLost,
            format!("the connection to the guest broke; QEMU is still running and the console shows no crash: {saw}"),
        ),
    }
}

/// `--keep-failed`: leaves the failed trial's guest running, or says why not.
fn keep(booted: Booted, f: &mut Failure) {
    let Booted { vm, guest, .. } = booted;
    drop(guest);
    if let Some(x) = vm.exited() {
        f.message.push_str(&format!("\nnot kept: the guest's QEMU has exited ({x})"));
        return;
    }
    let kept = vm.keep();
    f.message.push_str(&format!(
        "\nguest kept running: QEMU pid {}, SSH on 127.0.0.1:{}\n  {}\n  it stops when klpt exits (Ctrl-C), or with: kill {}",
        kept.pid,
        kept.port,
        crate::vm::ssh::ssh_command(kept.port),
        kept.pid
    ));
    KEPT.lock().unwrap_or_else(|e| e.into_inner()).push(kept);
}

/// Claims `dir` for this run's artifacts. A run holds an advisory lock on
/// it until it exits; a concurrent run that finds it taken writes to
/// `<dir>-<pid>` instead, so no two runs ever share a console log.
pub fn claim_artifacts(dir: &Path) -> Result<PathBuf> {
    use std::os::fd::AsRawFd;
    static HELD: Mutex<Vec<std::fs::File>> = Mutex::new(Vec::new());
    let try_claim = |d: &Path| -> Result<bool> {
        std::fs::create_dir_all(d).map_err(|e| Error::Io { what: format!("create {}", d.display()), source: e })?;
        let lock = d.join(".klpt-run.lock");
        let f = std::fs::File::create(&lock)
            .map_err(|e| Error::Io { what: format!("create {}", lock.display()), source: e })?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Ok(false);
        }
        HELD.lock().unwrap_or_else(|e| e.into_inner()).push(f);
        Ok(true)
    };
    if try_claim(dir)? {
        return Ok(dir.to_path_buf());
    }
    let mine = PathBuf::from(format!("{}-{}", dir.display(), std::process::id()));
    if !try_claim(&mine)? {
        return Err(Error::Other(format!("{} is in use by another klpt run", mine.display())));
    }
    emit(Event::Warn {
        msg: &format!("{} is in use by another klpt run; this run's artifacts go to {}", dir.display(), mine.display()),
    });
    Ok(mine)
}

/// Whether restoring the next case's guest ahead ([`Options::restore_ahead`])
/// pays with `guests` at once: only with a core to spare for it.
pub fn restore_ahead_pays(guests: usize) -> bool {
    guests < std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Guests run at once by default: two per core, as many as memory allows
/// with one GiB of headroom. A guest keeps its core busy only part of a
/// case (QEMU's start and exit, SSH round trips and klpt's own work happen
/// on the host while the guest idles): on 2 cores, `cases/kselftest` took
/// 28.0 s with 2 guests at a time, 21.2–23.3 s with 4 and 28.1 s with 6.
pub fn default_parallel_guests() -> usize {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let available_kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find(|l| l.starts_with("MemAvailable:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
    });
    // A guest's QEMU maps `-m 1024` and touches most of what the guest uses.
    let per_guest_kib = 1280 * 1024;
    let by_memory = available_kib.map(|k| (k.saturating_sub(1024 * 1024) / per_guest_kib) as usize).unwrap_or(cores);
    (2 * cores).min(by_memory).max(1)
}

/// The target of the integration tests (`harness/tests/`): `KLPT_ARCH`
/// (default x86_64) and `KLPT_KERNEL` (default Debian's current kernel),
/// prepared; exits with status 2 when it cannot be.
pub fn test_target() -> Arc<Target> {
    let arch = std::env::var("KLPT_ARCH").unwrap_or_else(|_| "x86_64".into());
    let Some(arch) = Arch::by_name(&arch) else {
        eprintln!("KLPT_ARCH={arch} names no architecture klpt knows");
        std::process::exit(2);
    };
    let kernel = std::env::var("KLPT_KERNEL").ok();
    match Target::prepare(arch, kernel.as_deref(), AccelChoice::Auto) {
        Ok(t) => Arc::new(t),
        Err(e) => {
            eprintln!("cannot prepare the kernel under test: {e}");
            std::process::exit(2);
        }
    }
}
