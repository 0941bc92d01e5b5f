//! `klpt selftests` on a real kernel in QEMU. Both trials boot guests and
//! take minutes, so they are ignored by default; run them with
//!
//! ```sh
//! cargo test --release --test kselftest -- --ignored
//! ```
//!
//! * `kselftest/made-up-suite`: `tests/kselftest/`, a suite in the
//!   selftests' layout (functions.sh from the kernel's tree) whose scripts
//!   end every way a scenario can: pass, a false `if`, `not ok` with a
//!   diff, `die`, skip, an Oops, a hang. Each scenario must get its cause,
//!   a crash or hang must cost only its own script (the next runs in a
//!   fresh guest), and no QEMU or temporary directory may outlive the run.
//! * `kselftest/kernel-tree`: the kernel tree's own 32 scenarios pass.
//!
//! `KLPT_KERNEL` selects the kernel (default `source`), `KLPT_ARCH` the
//! architecture (default x86_64).

use klpt::kselftest::{self, Suite};
use klpt::report::{Cause, Outcome, Status};
use klpt::runner::AccelChoice;
use libtest_mimic::{Arguments, Failed, Trial};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

fn arch() -> klpt::arch::Arch {
    klpt::arch::Arch::by_name(&std::env::var("KLPT_ARCH").unwrap_or_else(|_| "x86_64".into()))
        .expect("KLPT_ARCH names a known architecture")
}

fn kernel() -> String {
    std::env::var("KLPT_KERNEL").unwrap_or_else(|_| "source".into())
}

/// PIDs of QEMU processes whose command line mentions `marker`.
fn qemus_mentioning(marker: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let cmdline =
            String::from_utf8_lossy(&std::fs::read(e.path().join("cmdline")).unwrap_or_default()).into_owned();
        if cmdline.contains("qemu-system") && cmdline.contains(marker) {
            out.push(pid);
        }
    }
    out
}

/// klpt's temporary directories: the trial runs with its own TMPDIR, so
/// other runs on the machine cannot show up here.
fn klpt_temp_dirs() -> Vec<String> {
    std::fs::read_dir(std::env::temp_dir())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("klpt-"))
        .collect()
}

/// The made-up suite, with functions.sh and test_klp_livepatch.c from the kernel's tree.
fn made_up_suite(dir: &Path) -> Result<(), Failed> {
    let k = klpt::kernel::resolve(Some(&kernel()), arch()).map_err(|e| e.to_string())?;
    let tree = kselftest::build::source_tree(&k).map_err(|e| e.to_string())?;
    let real = tree.join("tools/testing/selftests/livepatch");
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/kselftest");
    std::fs::create_dir_all(dir.join("test_modules")).map_err(|e| e.to_string())?;
    for e in std::fs::read_dir(&src).map_err(|e| e.to_string())?.flatten() {
        if e.path().is_file() {
            std::fs::copy(e.path(), dir.join(e.file_name())).map_err(|e| e.to_string())?;
        }
    }
    for e in std::fs::read_dir(src.join("test_modules")).map_err(|e| e.to_string())?.flatten() {
        std::fs::copy(e.path(), dir.join("test_modules").join(e.file_name())).map_err(|e| e.to_string())?;
    }
    std::fs::copy(real.join("functions.sh"), dir.join("functions.sh")).map_err(|e| e.to_string())?;
    std::fs::copy(real.join("test_modules/test_klp_livepatch.c"), dir.join("test_modules/test_klp_livepatch.c"))
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn find<'a>(all: &'a [Outcome], id: &str) -> Result<&'a Outcome, Failed> {
    all.iter().find(|o| o.case_id == id).ok_or_else(|| {
        Failed::from(format!("no outcome for {id}; have {:?}", all.iter().map(|o| &o.case_id).collect::<Vec<_>>()))
    })
}

fn expect(all: &[Outcome], id: &str, want: &str, needles: &[&str]) -> Result<(), Failed> {
    let o = find(all, id)?;
    let (word, text) = match &o.status {
        Status::Pass => ("pass".to_string(), String::new()),
        Status::Skip(r) => ("skip".to_string(), r.clone()),
        Status::Xfail(r) => ("xfail".to_string(), r.clone()),
        Status::Fail(f) => (format!("fail:{}", f.cause.as_str()), f.to_string()),
        Status::Xpass(r) => ("xpass".to_string(), r.clone()),
    };
    if word != want {
        return Err(format!("{id}: expected {want}, got {word}: {text}").into());
    }
    for n in needles {
        if !text.contains(n) {
            return Err(format!("{id}: the report lacks {n:?}:\n{text}").into());
        }
    }
    Ok(())
}

fn made_up() -> Result<(), Failed> {
    let work = std::env::temp_dir().join("made-up");
    let _ = std::fs::remove_dir_all(&work);
    let suite_dir = work.join("livepatch");
    made_up_suite(&suite_dir)?;
    let before = klpt_temp_dirs();
    let (target, built) = kselftest::run::prepare_suite(arch(), Some(&kernel()), AccelChoice::Auto, Some(&suite_dir))
        .map_err(|e| e.to_string())?;
    let artifacts = work.join("artifacts");
    let suite = Suite::new(Arc::new(target), built, &artifacts, Duration::from_secs(20));
    let (all, _) = suite.run_all();
    let left = qemus_mentioning(&artifacts.display().to_string());
    if !left.is_empty() {
        return Err(format!("QEMU still running after the run: {left:?}").into());
    }
    let new: Vec<String> = klpt_temp_dirs().into_iter().filter(|d| !before.contains(d)).collect();
    if !new.is_empty() {
        return Err(format!("temporary directories left behind: {new:?}").into());
    }
    for o in &all {
        let detail = match &o.status {
            Status::Fail(f) => f.to_string(),
            Status::Skip(r) => r.clone(),
            _ => String::new(),
        };
        eprintln!("{} {} {:.1}s {detail}", o.case_id, o.word(), o.secs);
    }
    expect(&all, "kselftest/test-pass/01", "pass", &[])?;
    expect(
        &all,
        "kselftest/test-pass/02",
        "skip",
        &["not run by the script: its condition `[[ \"$(uname -r)\" == \"not-this-kernel\" ]]` does not hold"],
    )?;
    expect(&all, "kselftest/test-pass/03", "pass", &[])?;
    expect(
        &all,
        "kselftest/test-notok/01",
        "fail:kernel verdict",
        &["check_result: the kernel log differs", "+livepatch: an intruder"],
    )?;
    expect(&all, "kselftest/test-notok/02", "skip", &["not run: the script stopped after test-notok/01 failed"])?;
    expect(
        &all,
        "kselftest/test-die/01",
        "fail:kernel verdict",
        &["the script stopped (exit 1): ERROR: Can't find \"test_modules/test_klp_not_built.ko\""],
    )?;
    expect(&all, "kselftest/test-skip/01", "skip", &["nothing to test on this kernel"])?;
    expect(&all, "kselftest/test-oops/01", "pass", &[])?;
    expect(&all, "kselftest/test-oops/02", "fail:kernel crash", &["the kernel crashed:", "Oops", "klpt_oops_init"])?;
    expect(&all, "kselftest/test-oops/03", "skip", &["not run: the guest died during test-oops/02"])?;
    expect(&all, "kselftest/test-after-oops/01", "pass", &[])?;
    expect(&all, "kselftest/test-hang/01", "fail:kernel crash", &["the kernel hung: no verdict within 20s"])?;
    expect(&all, "kselftest/test-after-hang/01", "pass", &[])?;
    expect(&all, "kselftest/test-lost/01", "pass", &[])?;
    expect(
        &all,
        "kselftest/test-lost/02",
        "fail:guest lost",
        &[
            "the connection to the guest broke",
            "retried once in a fresh guest; the first attempt failed with:\nguest lost: ",
        ],
    )?;
    expect(&all, "kselftest/test-after-lost/01", "pass", &[])?;
    if find(&all, "kselftest/test-lost/02")?.retries != 1 {
        return Err("test-lost/02 does not count its retry".into());
    }
    // The first guest; after the oops; after the hang; the rerun after the loss; after the second loss.
    if suite.boots() != 5 {
        return Err(format!("expected 5 guests, booted {}", suite.boots()).into());
    }
    // Cause names stay what the README promises.
    assert_eq!(Cause::KernelCrash.as_str(), "kernel crash");
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

fn kernel_tree() -> Result<(), Failed> {
    let work = std::env::temp_dir().join("kernel-tree");
    let (target, built) = kselftest::prepare(arch(), Some(&kernel()), AccelChoice::Auto).map_err(|e| e.to_string())?;
    let suite = Suite::new(Arc::new(target), built, &work, kselftest::run::SCENARIO_TIMEOUT);
    let (all, _) = suite.run_all();
    let bad: Vec<String> = all
        .iter()
        .filter(|o| matches!(o.status, Status::Fail(_)))
        .map(|o| format!("{}: {}", o.case_id, o.word()))
        .collect();
    let _ = std::fs::remove_dir_all(&work);
    if all.len() < 32 || !bad.is_empty() {
        return Err(format!("{} scenarios, failures: {bad:?}", all.len()).into());
    }
    Ok(())
}

fn main() {
    let mut args = Arguments::from_args();
    // One guest at a time: the hang's 20 s timeout must not race another guest for the CPUs.
    args.test_threads = Some(args.test_threads.unwrap_or(1));
    // A private TMPDIR: the leftover check must not see other runs' directories.
    let tmp = std::env::temp_dir().join(format!("kselftest-test-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("create the test's TMPDIR");
    // SAFETY (edition 2021): no other thread exists yet.
    std::env::set_var("TMPDIR", &tmp);
    klpt::cleanup::install_signal_handlers();
    let trials = vec![
        Trial::test("kselftest/made-up-suite", made_up).with_ignored_flag(true),
        Trial::test("kselftest/kernel-tree", kernel_tree).with_ignored_flag(true),
    ];
    let c = libtest_mimic::run(&args, trials);
    klpt::cleanup::cleanup_all();
    let _ = std::fs::remove_dir_all(&tmp);
    c.exit();
}
