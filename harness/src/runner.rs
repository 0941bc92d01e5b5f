//! The runner: prepares each (architecture, kernel) once, then runs every
//! (case, arch, kernel) as a libtest-mimic trial in a fresh guest.

use crate::case::Case;
use crate::error::{Error, Result};
use crate::event::{emit, Event};
use crate::kernel::{caps::Caps, Kernel};
use crate::report::{Outcome, Status};
use crate::steps::{Session, Stop};
use crate::vm::qemu::{Accel, Vm, VmConfig};
use crate::vm::ssh::Guest;
use crate::vm::arch::PerArch;
use crate::vm::Arch;
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
}

pub struct Options {
    pub artifacts: PathBuf,
    pub keep_failed: bool,
    pub boot_timeout: Duration,
}

impl Target {
    pub fn prepare(arch: Arch, kernel_spec: Option<&str>, accel: AccelChoice) -> Result<Target> {
        crate::host::ensure(&[arch])?;
        let kernel = crate::kernel::resolve(kernel_spec, arch)?;
        let caps = Caps::probe(&kernel);
        let initrd = crate::image::build(&kernel)?;
        let mut t = Target { arch, kernel, caps, initrd, accel: Accel::Tcg };
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
        emit(Event::Note { msg: &format!("{}: kernel {} ({}), accel {:?}", arch.name, t.kernel.id, t.kernel.image.display(), t.accel) });
        Ok(t)
    }

    pub fn vm_config(&self, smp: u32, console_log: &Path, die_with_parent: bool) -> VmConfig {
        VmConfig {
            arch: self.arch,
            kernel: self.kernel.image.clone(),
            initrd: self.initrd.clone(),
            smp,
            mem_mb: 1024,
            accel: self.accel,
            console_log: console_log.to_path_buf(),
            die_with_parent,
            extra_cmdline: String::new(),
        }
    }
}

/// Whether KVM works for `t.arch`, probed once per architecture and run: a
/// host that hangs nested KVM guests hangs them whatever the kernel.
fn kvm_probe(t: &Target) -> Result<bool> {
    static WORKS: PerArch<bool> = PerArch::new();
    WORKS.get_or_try(t.arch, || {
        let probe_dir = crate::vm::cleanup::TempDir::new("klpt-kvm-probe-").map_err(|e| Error::Vm(e.to_string()))?;
        let ok = crate::vm::qemu::kvm_works(&t.vm_config(1, &probe_dir.path().join("console.log"), true));
        if ok {
            emit(Event::Note { msg: &format!("{}: KVM probe boot worked; using KVM", t.arch.name) });
        }
        Ok(ok)
    })
}

pub fn trial_name(t: &Target, case: &Case) -> String {
    name(t.arch.name, &t.kernel.id, case)
}

fn name(arch: &str, kernel_id: &str, case: &Case) -> String {
    format!("{arch}/{kernel_id}/{}", case.id)
}

/// The trials of `cases` on (architecture, kernel id) pairs for `--list`:
/// named as [`trials`] names them, without a prepared target; their bodies
/// never run.
pub fn listing(kernels: &[(Arch, String)], cases: &[Arc<Case>]) -> Vec<libtest_mimic::Trial> {
    let mut v = Vec::new();
    for (arch, id) in kernels {
        for c in cases.iter().filter(|c| c.runs_on(arch.name)) {
            v.push(libtest_mimic::Trial::test(name(arch.name, id, c), || Err("listed, not prepared".into())));
        }
    }
    v
}

/// A booted guest for a case, logged in, with the case's modules on it.
pub struct Booted {
    pub vm: Vm,
    pub guest: Guest,
    pub ssh_ready: f64,
}

pub fn boot(t: &Target, case: &Case, dir: &Path, opts: &Options) -> Result<Booted> {
    let vm = Vm::boot(t.vm_config(case.doc.smp, &dir.join("console.log"), !opts.keep_failed))?;
    vm.wait_ready(opts.boot_timeout)?;
    let guest = Guest::connect(vm.ssh_port, Duration::from_secs(60)).map_err(|e| match vm.fatal() {
        Some(f) => Error::GuestCrash(format!("{e}\nkernel crashed:\n{f}")),
        None => Error::Vm(format!("{e}\nconsole tail:\n{}", vm.console_tail(12))),
    })?;
    let ssh_ready = vm.started.elapsed().as_secs_f64();
    Ok(Booted { vm, guest, ssh_ready })
}

/// Runs one case on one target; never panics, always returns an outcome.
pub fn run_case(t: &Target, case: &Case, opts: &Options) -> Outcome {
    let t0 = Instant::now();
    let mut out = Outcome {
        name: trial_name(t, case),
        case_id: case.id.clone(),
        arch: t.arch.name.into(),
        kernel: t.kernel.id.clone(),
        status: Status::Pass,
        secs: 0.0,
        guest_secs: None,
        ssh_ready_secs: None,
        notes: Vec::new(),
        lost: false,
    };
    let xfail = case.doc.xfail.iter().find(|x| regex::Regex::new(&x.kernel).is_ok_and(|r| r.is_match(&t.kernel.id)));
    let mut status = run_inner(t, case, opts, &mut out);
    // A lost guest (SSH transport error, boot that never reached SSH) is
    // retried once in a fresh guest; a kernel that really hangs or panics
    // fails again, and the note keeps the first failure visible.
    if let (Status::Fail(m), true) = (&status, out.lost) {
        let first = m.clone();
        out.lost = false;
        emit(Event::Warn { msg: &format!("{}: lost the guest, retrying once in a fresh one: {}", out.name, first.lines().next().unwrap_or("")) });
        status = run_inner(t, case, opts, &mut out);
        out.notes.push(format!("retried after losing the guest: {}", first.replace('\n', " | ")));
    }
    out.status = match (status, xfail) {
        (Status::Fail(m), Some(x)) => Status::Xfail(format!("{} ({})", x.reason, m.lines().next().unwrap_or(""))),
        (Status::Pass, Some(x)) => Status::Fail(format!("XPASS: expected to fail on {} ({}), but passed", t.kernel.id, x.reason)),
        (s, _) => s,
    };
    out.secs = t0.elapsed().as_secs_f64();
    out
}

fn run_inner(t: &Target, case: &Case, opts: &Options, out: &mut Outcome) -> Status {
    let missing = t.caps.missing(&case.doc.requires, None);
    if !missing.is_empty() {
        return Status::Skip(format!("kernel lacks {}", missing.join(", ")));
    }
    let dir = opts.artifacts.join(t.arch.name).join(&t.kernel.id).join(&case.id);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return Status::Fail(format!("cannot create artifacts dir {}: {e}", dir.display()));
    }
    let modules = match crate::modules::build::build_all(case, &t.kernel, &t.caps.klp_fields) {
        Ok(m) => m,
        Err(e) => return Status::Fail(e.to_string()),
    };
    let booted = match boot(t, case, &dir, opts) {
        Ok(b) => b,
        Err(e) => {
            out.lost = !matches!(e, Error::GuestCrash(_));
            return Status::Fail(format!("{e}\n(console: {})", dir.join("console.log").display()));
        }
    };
    out.ssh_ready_secs = Some(booted.ssh_ready);
    let mut session = match Session::start(&booted.guest, case, &t.caps, &modules) {
        Ok(s) => s,
        Err(Stop::Lost(m)) => {
            out.lost = true;
            return Status::Fail(m);
        }
        Err(Stop::Fail(m)) | Err(Stop::Skip(m)) => return Status::Fail(m),
    };
    let missing = session.missing(&case.doc.requires);
    if !missing.is_empty() {
        return Status::Skip(format!("kernel lacks {}", missing.join(", ")));
    }
    let mut status = Status::Pass;
    for step in &case.steps {
        match session.run(step) {
            Ok(()) => {}
            Err(Stop::Skip(r)) => {
                status = Status::Skip(r);
                break;
            }
            Err(stop @ (Stop::Fail(_) | Stop::Lost(_))) => {
                let (m, lost) = match stop {
                    Stop::Lost(m) => (m, true),
                    Stop::Fail(m) | Stop::Skip(m) => (m, false),
                };
                out.lost = lost && booted.vm.fatal().is_none();
                let mut msg = format!("step {} (line {}) `{}` failed:\n{m}", step.index + 1, step.line, step.label);
                if let Some(f) = booted.vm.fatal() {
                    msg.push_str(&format!("\nkernel crash on the console:\n{f}"));
                }
                session.collect(&dir, Some(step));
                msg.push_str(&format!("\nartifacts: {}", dir.display()));
                status = Status::Fail(msg);
                break;
            }
        }
    }
    out.notes = std::mem::take(&mut session.notes);
    out.guest_secs = booted.guest.exec("cut -d' ' -f1 /proc/uptime", Duration::from_secs(10)).ok().and_then(|o| o.stdout.trim().parse().ok());
    drop(session);
    if matches!(status, Status::Fail(_)) && opts.keep_failed {
        let port = booted.vm.ssh_port;
        let pid = booted.vm.pid();
        booted.vm.detach();
        if let Status::Fail(m) = &mut status {
            m.push_str(&format!("\nguest kept running: {}\nstop it with: kill {pid}", crate::vm::ssh::ssh_command(port)));
        }
    }
    status
}

/// Shared outcome list the trials append to.
pub type Outcomes = Arc<Mutex<Vec<Outcome>>>;

pub fn trials(targets: &[Arc<Target>], cases: &[Arc<Case>], opts: Arc<Options>, outcomes: Outcomes) -> Vec<libtest_mimic::Trial> {
    let mut v = Vec::new();
    for t in targets {
        for c in cases.iter().filter(|c| c.runs_on(t.arch.name)) {
            let (t, c, opts, outcomes) = (t.clone(), c.clone(), opts.clone(), outcomes.clone());
            v.push(libtest_mimic::Trial::ignorable_test(trial_name(&t, &c), move || {
                let o = run_case(&t, &c, &opts);
                let r = match &o.status {
                    Status::Pass => Ok(libtest_mimic::Completion::Completed),
                    Status::Skip(r) => Ok(libtest_mimic::Completion::ignored_with(r)),
                    Status::Xfail(r) => {
                        eprintln!("{}: expected failure: {r}", o.name);
                        Ok(libtest_mimic::Completion::Completed)
                    }
                    Status::Fail(m) => Err(libtest_mimic::Failed::from(m.as_str())),
                };
                outcomes.lock().unwrap_or_else(|e| e.into_inner()).push(o);
                r
            }));
        }
    }
    v
}

/// Writes the requested reports, in trial-name order.
pub fn write_reports(outcomes: &Outcomes, ktap: Option<&Path>, junit: Option<&Path>) -> Result<Vec<Outcome>> {
    let mut all = outcomes.lock().unwrap_or_else(|e| e.into_inner()).clone();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    let write = |p: &Path, s: String| std::fs::write(p, s).map_err(|e| Error::Io { what: format!("write {}", p.display()), source: e });
    if let Some(p) = ktap {
        write(p, crate::report::ktap(&all))?;
    }
    if let Some(p) = junit {
        write(p, crate::report::junit(&all))?;
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_names_trials_as_a_run_does() {
        let dir = crate::project_root().join("cases/stock");
        let mut only_arm = crate::case::load(&dir.join("basic-enable-disable.yaml")).unwrap();
        only_arm.doc.arches = vec!["arm64".into()];
        let cases = vec![Arc::new(crate::case::load(&dir.join("refusal-logged-once.yaml")).unwrap()), Arc::new(only_arm)];
        let kernels = [(crate::vm::arch::X86_64, "debian-6.1.0-50-amd64".to_string()), (crate::vm::arch::ARM64, "src-7.2.13".to_string())];
        let names: Vec<String> = listing(&kernels, &cases).iter().map(|t| t.name().to_string()).collect();
        assert_eq!(
            names,
            [
                "x86_64/debian-6.1.0-50-amd64/stock/refusal-logged-once",
                "arm64/src-7.2.13/stock/refusal-logged-once",
                "arm64/src-7.2.13/stock/basic-enable-disable",
            ]
        );
    }
}
