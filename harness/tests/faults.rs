//! Fault injection on the real kernel in QEMU: every failure gets one
//! precise cause on its first line, only a lost guest is retried, and no
//! QEMU process or temporary directory outlives a trial.
//!
//! `KLPT_KERNEL` / `KLPT_ARCH` select the kernel as in `tests/cases.rs`.

use klpt::report::{Cause, Outcome, Status};
use klpt::runner::{self, Options, Target};
use libtest_mimic::{Arguments, Failed, Trial};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn case(name: &str) -> klpt::case::Case {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/faults").join(format!("{name}.yaml"));
    klpt::case::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// PIDs of QEMU processes whose command line mentions `marker`.
fn qemus_mentioning(marker: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if (cmdline.starts_with("qemu-system") || cmdline.contains("/qemu-system")) && cmdline.contains(marker) {
            out.push(pid);
        }
    }
    out
}

/// Runs `name` in its own artifacts directory and checks what every fault
/// must leave behind: nothing running.
fn run(t: &Target, name: &str, tag: &str) -> Result<(Outcome, PathBuf), Failed> {
    let artifacts = std::env::temp_dir().join(format!("klpt-faults-{}-{tag}", std::process::id()));
    let opts = Options::new(artifacts.clone());
    let out = runner::run_case(t, &case(name), &opts);
    let left = qemus_mentioning(&artifacts.display().to_string());
    if !left.is_empty() {
        return Err(format!("QEMU still running after the trial: {left:?}").into());
    }
    Ok((out, artifacts))
}

/// klpt's own temporary directories (not this test's artifacts).
fn klpt_temp_dirs() -> Vec<String> {
    std::fs::read_dir(std::env::temp_dir())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("klpt-") && !n.starts_with("klpt-faults-") && !n.starts_with("klpt-test-artifacts-"))
        .collect()
}

/// The failure's cause and first line, or why the outcome is not a failure.
fn failure(out: &Outcome) -> Result<(Cause, String), Failed> {
    match &out.status {
        Status::Fail(f) => Ok((f.cause, f.first_line())),
        other => Err(format!("expected a failure, got {other:?}").into()),
    }
}

fn expect(cond: bool, what: &str, out: &Outcome) -> Result<(), Failed> {
    if cond {
        Ok(())
    } else {
        Err(format!("{what}; outcome: {:?}", out.status).into())
    }
}

/// A panic is a kernel crash, never a lost guest: none of 20 panics is retried.
fn panics(t: &Target) -> Result<(), Failed> {
    const RUNS: usize = 20;
    let results: Vec<Result<(Outcome, PathBuf), Failed>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|w| {
                s.spawn(move || (0..RUNS / 2).map(|i| run(t, "panic", &format!("panic-{w}-{i}"))).collect::<Vec<_>>())
            })
            .collect();
        workers.into_iter().flat_map(|h| h.join().expect("worker")).collect()
    });
    let mut retried = 0;
    for r in results {
        let (out, dir) = r?;
        let (cause, first) = failure(&out)?;
        expect(cause == Cause::KernelCrash, "a panic must be a kernel crash", &out)?;
        expect(
            first.starts_with("kernel crash: step 2 (line 4) `panic the kernel`: the kernel crashed"),
            &format!("first line: {first}"),
            &out,
        )?;
        expect(
            out.to_string_lossy().contains("Kernel panic - not syncing: sysrq triggered crash"),
            "the console excerpt must be in the message",
            &out,
        )?;
        retried += out.retries;
        let _ = std::fs::remove_dir_all(dir);
    }
    eprintln!("panic runs: {RUNS}, retried: {retried}");
    if retried != 0 {
        return Err(format!("{retried} of {RUNS} panic runs were retried as lost guests").into());
    }
    Ok(())
}

trait Lossy {
    fn to_string_lossy(&self) -> String;
}

impl Lossy for Outcome {
    fn to_string_lossy(&self) -> String {
        match &self.status {
            Status::Fail(f) => f.to_string(),
            other => format!("{other:?}"),
        }
    }
}

/// A step past its own `timeout:` is a step timeout, reported at that
/// timeout (not a hidden SSH limit) and not retried.
fn step_hangs(t: &Target) -> Result<(), Failed> {
    let t0 = Instant::now();
    let (out, dir) = run(t, "step-hangs", "hang")?;
    let (cause, first) = failure(&out)?;
    expect(cause == Cause::StepTimeout, "a hung step must be a step timeout", &out)?;
    expect(
        first == "step timeout: step 1 (line 4) `hang`: did not finish within its timeout of 5s",
        &format!("first line: {first}"),
        &out,
    )?;
    expect(out.retries == 0, "a step timeout is not retried", &out)?;
    let secs = t0.elapsed().as_secs();
    expect(secs < 40, &format!("took {secs}s for a 5 s timeout"), &out)?;
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

/// A dead SSH server with a healthy kernel is a lost guest, retried once;
/// the final message carries the whole first failure.
fn ssh_server_killed(t: &Target) -> Result<(), Failed> {
    let (out, dir) = run(t, "ssh-server-killed", "sshd")?;
    let (cause, first) = failure(&out)?;
    expect(cause == Cause::GuestLost, "a dead SSH server must be a lost guest", &out)?;
    expect(
        first.starts_with(
            "guest lost: step 1 (line 3) `kill dropbear`: the connection to the guest broke; QEMU is still running",
        ),
        &format!("first line: {first}"),
        &out,
    )?;
    expect(out.retries == 1, "a lost guest is retried once", &out)?;
    let text = out.to_string_lossy();
    expect(
        text.contains("the first attempt failed with:\nguest lost: step 1 (line 3)"),
        "the retry note must carry the first failure",
        &out,
    )?;
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

/// QEMU killed from outside mid-step: a lost guest whose message names the
/// signal, retried once (and killed again), never hidden behind an SSH error.
fn qemu_killed(t: &Target) -> Result<(), Failed> {
    let artifacts = std::env::temp_dir().join(format!("klpt-faults-{}-kill", std::process::id()));
    let marker = artifacts.display().to_string();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let killer = {
        let (marker, stop) = (marker.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut killed = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && killed.len() < 2 {
                for pid in qemus_mentioning(&marker) {
                    if killed.contains(&pid) || !waiting_in_step(&marker, pid) {
                        continue;
                    }
                    // SAFETY: kill(2) on a QEMU this test's trial started.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    killed.push(pid);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            killed.len()
        })
    };
    let result = run(t, "qemu-killed", "kill");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let kills = killer.join().expect("killer thread");
    let (out, dir) = result?;
    let (cause, first) = failure(&out)?;
    expect(kills == 2, &format!("killed {kills} guests, wanted 2"), &out)?;
    expect(cause == Cause::GuestLost, "a killed QEMU must be a lost guest", &out)?;
    expect(first.starts_with("guest lost: step 1 (line 3) `wait to be killed`: QEMU exited (signal: 9 (SIGKILL)) with no crash on the console"), &format!("first line: {first}"), &out)?;
    expect(out.retries == 1, "a lost guest is retried once", &out)?;
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

/// A wait whose condition never holds is a kernel verdict that says what
/// was seen, reported within its timeout, not a step timeout.
fn wait_never_true(t: &Target) -> Result<(), Failed> {
    let t0 = Instant::now();
    let (out, dir) = run(t, "wait-never-true", "wait")?;
    let (cause, first) = failure(&out)?;
    expect(cause == Cause::KernelVerdict, "a condition that never holds must be a verdict", &out)?;
    expect(
        first == "kernel verdict: step 1 (line 3) `wait for the impossible`: still not true after 3s:",
        &format!("first line: {first}"),
        &out,
    )?;
    expect(
        out.to_string_lossy().contains("/proc/cmdline: expected to contain \"klpt-never-there\", got"),
        "the message must say what was seen",
        &out,
    )?;
    let secs = t0.elapsed().as_secs();
    expect(secs < 30, &format!("took {secs}s for a 3 s wait"), &out)?;
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

/// Output that imitates klpt's section markers, `exit`, comments, syntax
/// errors and fake sync tags stay the step's own; a wait on a message
/// logged later sees it.
fn hostile_output(t: &Target) -> Result<(), Failed> {
    let (out, dir) = run(t, "hostile-output", "hostile")?;
    expect(matches!(out.status, Status::Pass), "the case must pass", &out)?;
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

/// Two cases started from the same saved guest share nothing: the first
/// loads a patch, logs, and crashes its kernel; the second sees none of it.
fn isolation(t: &Target) -> Result<(), Failed> {
    if t.saved_state.is_none() {
        return Err("no saved guest state to start from (see the run's warning)".into());
    }
    let (dirty, d1) = run(t, "isolation-dirty", "iso-dirty")?;
    let (cause, _) = failure(&dirty)?;
    expect(cause == Cause::KernelCrash, "the dirty case must end in its crash", &dirty)?;
    let (clean, d2) = run(t, "isolation-check", "iso-check")?;
    expect(matches!(clean.status, Status::Pass), "the next case must start pristine", &clean)?;
    let _ = std::fs::remove_dir_all(d1);
    let _ = std::fs::remove_dir_all(d2);
    isolation_ahead(t)
}

/// [`isolation`] with the next case's guest restored ahead, while the dirty
/// case ran: the clean case must be given exactly that guest (its console
/// file is the one the guest was started with) and see none of the dirt.
fn isolation_ahead(t: &Target) -> Result<(), Failed> {
    use std::os::unix::fs::MetadataExt;
    let artifacts = std::env::temp_dir().join(format!("klpt-faults-{}-iso-ahead", std::process::id()));
    let opts = Options { restore_ahead: true, ..Options::new(artifacts.clone()) };
    let result = (|| {
        let dirty = runner::run_case(t, &case("isolation-dirty"), &opts);
        let (cause, _) = failure(&dirty)?;
        expect(cause == Cause::KernelCrash, "the dirty case must end in its crash", &dirty)?;
        let ahead = qemus_mentioning(&format!("{}/.klpt-ahead-", artifacts.display()));
        let [pid] = ahead[..] else {
            return Err(format!("expected one guest restored ahead, found QEMU pids {ahead:?}").into());
        };
        let cmdline =
            String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()).into_owned();
        let console = cmdline.split('\0').find_map(|a| a.strip_prefix("file,id=con,path=")).unwrap_or_default();
        let inode = std::fs::metadata(console).map_err(|e| format!("{console}: {e}"))?.ino();
        let clean = runner::run_case(t, &case("isolation-check"), &opts);
        expect(matches!(clean.status, Status::Pass), "the next case must start pristine", &clean)?;
        let taken = clean.artifacts.as_ref().map(|d| d.join("console.log")).unwrap_or_default();
        let taken_inode = std::fs::metadata(&taken).map_err(|e| format!("{}: {e}", taken.display()))?.ino();
        expect(taken_inode == inode, "the clean case must run in the guest restored ahead", &clean)
    })();
    t.discard_ahead();
    let left = qemus_mentioning(&artifacts.display().to_string());
    if result.is_ok() && !left.is_empty() {
        return Err(format!("QEMU still running after the trial: {left:?}").into());
    }
    let _ = std::fs::remove_dir_all(&artifacts);
    result
}

/// Whether the guest of QEMU `pid` (console under `marker`) is inside the
/// step that waits to be killed.
fn waiting_in_step(marker: &str, pid: i32) -> bool {
    let cmdline =
        String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()).into_owned();
    let Some(path) = cmdline.split('\0').find_map(|a| a.strip_prefix("file,id=con,path=")) else { return false };
    path.starts_with(marker)
        && std::fs::read_to_string(Path::new(path)).unwrap_or_default().contains("klpt-fault-waiting")
}

fn main() {
    // A private TMPDIR: klpt's temporary directories of this process only,
    // so other klpt runs on the machine cannot blur the leftover check.
    let tmp = std::env::temp_dir().join(format!("klpt-faults-tmp-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("private TMPDIR");
    std::env::set_var("TMPDIR", &tmp);
    let args = Arguments::from_args();
    klpt::cleanup::install_signal_handlers();
    let target = runner::test_target();
    type Fault = fn(&Target) -> Result<(), Failed>;
    let faults: [(&str, Fault); 7] = [
        ("fault/panic-is-a-crash", panics),
        ("fault/step-timeout", step_hangs),
        ("fault/wait-never-true", wait_never_true),
        ("steps/hostile-output", hostile_output),
        ("fault/ssh-server-killed", ssh_server_killed),
        ("fault/qemu-killed", qemu_killed),
        ("snapshot/cases-share-nothing", isolation),
    ];
    let trials = faults
        .into_iter()
        .map(|(name, f)| {
            let t = target.clone();
            Trial::test(name, move || f(&t))
        })
        .collect();
    // Trials run concurrently, so leftovers are judged once all have ended.
    let before = klpt_temp_dirs();
    let conclusion = libtest_mimic::run(&args, trials);
    let left: Vec<String> = klpt_temp_dirs().into_iter().filter(|d| !before.contains(d)).collect();
    klpt::cleanup::finish();
    if !left.is_empty() {
        eprintln!("temporary directories left behind by the faults: {left:?}");
        std::process::exit(101);
    }
    let _ = std::fs::remove_dir_all(&tmp);
    conclusion.exit();
}
