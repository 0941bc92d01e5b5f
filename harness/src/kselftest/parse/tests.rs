//! The parser on real transcripts: `kernel-*` are the stdout of the 7.2.13
//! tree's scripts in klpt's guest (x86_64, all passing), `made-up-*` the
//! stdout and stderr of `harness/tests/kselftest/`'s scripts (the kernel's
//! functions.sh failing in each way it can) from the same kind of run.

use super::*;
use crate::kselftest::scripts::{self, Scenario, Script};

fn script(name: &str, titles: &[&str]) -> Script {
    Script {
        name: name.into(),
        file: format!("{name}.sh"),
        scenarios: titles
            .iter()
            .enumerate()
            .map(|(i, t)| Scenario { index: i + 1, title: t.to_string(), condition: None })
            .collect(),
    }
}

/// A script of the made-up suite, read from its source as klpt reads the kernel's.
fn made_up(name: &str) -> Script {
    let path = crate::project_root().join(format!("harness/tests/kselftest/test-{name}.sh"));
    let text = std::fs::read_to_string(&path).unwrap();
    Script { name: format!("test-{name}"), file: format!("test-{name}.sh"), scenarios: scripts::scenarios(&text) }
}

fn data(name: &str) -> String {
    std::fs::read_to_string(crate::project_root().join("harness/src/kselftest/parse/testdata").join(name))
        .unwrap_or_default()
}

/// Feeds stdout in pieces of `step` bytes (a char boundary at a time), one
/// second apart, then stderr, then the exit status.
fn feed(s: &Script, out: &str, err: &str, status: Option<i32>, step: usize) -> Vec<Decided> {
    let mut p = Parser::new(s);
    let mut t = 0.0;
    let mut rest = out;
    while !rest.is_empty() {
        let mut n = step.min(rest.len());
        while !rest.is_char_boundary(n) {
            n += 1;
        }
        p.stdout(&rest[..n], t);
        rest = &rest[n..];
        t += 1.0;
    }
    p.stderr(err);
    match status {
        Some(st) => p.end(st, t),
        None => {
            p.interrupt(t);
        }
    }
    let d = p.decided().to_vec();
    assert_eq!(
        d.iter().map(|d| d.index).collect::<Vec<_>>(),
        (1..=s.scenarios.len()).collect::<Vec<_>>(),
        "every scenario decided once, in order"
    );
    d
}

fn verdicts(d: &[Decided]) -> Vec<Verdict> {
    d.iter().map(|d| d.verdict.clone()).collect()
}

const CALLBACKS: &[&str] = &[
    "target module before livepatch",
    "module_coming notifier",
    "module_going notifier",
    "module_coming and module_going notifiers",
    "target module not present",
    "pre-patch callback -ENODEV",
    "module_coming + pre-patch callback -ENODEV",
    "multiple target modules",
    "busy target module",
    "multiple livepatches",
    "atomic replace",
];

#[test]
fn a_passing_kernel_script_whole_or_streamed() {
    let s = script("test-callbacks", CALLBACKS);
    let out = data("kernel-callbacks.out");
    for step in [usize::MAX, 1, 7, 64] {
        let d = feed(&s, &out, "", Some(0), step);
        assert!(d.iter().all(|d| d.verdict == Verdict::Ok), "step {step}: {d:?}");
        assert_eq!(d[5].notes[0], "pre-patch callback -ENODEV");
    }
}

#[test]
fn a_scenario_is_decided_when_the_next_one_starts() {
    let s = script("test-callbacks", CALLBACKS);
    let mut p = Parser::new(&s);
    p.stdout("TEST: target module before livepatch ... ", 1.0);
    assert_eq!(p.running(), Some((1, "target module before livepatch")));
    p.stdout("ok\n", 4.5);
    assert!(p.take_ready().is_empty(), "01 waits: an error before 02 starts would still be its own");
    p.stdout("TEST: module_coming notifier ... ", 5.0);
    let r = p.take_ready();
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].index, &r[0].verdict, r[0].secs), (1, &Verdict::Ok, Some(3.5)));
    assert_eq!(p.running(), Some((2, "module_coming notifier")));
}

#[test]
fn the_tree_s_conditional_scenarios_that_do_not_run_are_skipped_with_their_condition() {
    let mut s = script(
        "test-sysfs",
        &[
            "sysfs test",
            "sysfs test object/patched",
            "sysfs test replace enabled",
            "sysfs test replace disabled",
            "sysfs test stack_order value",
        ],
    );
    s.scenarios[2].condition = Some("[[ \"$HAS_REPLACE_ATTR\" == \"1\" ]]".into());
    s.scenarios[3].condition = s.scenarios[2].condition.clone();
    // The real transcript, as a kernel without `replace` (the replace_set revision) prints it.
    let out: String =
        data("kernel-sysfs.out").lines().filter(|l| !l.contains("replace")).map(|l| format!("{l}\n")).collect();
    let v = verdicts(&feed(&s, &out, "", Some(0), 5));
    assert_eq!(v[0], Verdict::Ok);
    assert_eq!(v[1], Verdict::Ok);
    assert_eq!(
        v[2],
        Verdict::NotRun(
            "not run by the script: its condition `[[ \"$HAS_REPLACE_ATTR\" == \"1\" ]]` does not hold on this kernel"
                .into()
        )
    );
    assert_eq!(v[3], v[2]);
    assert_eq!(v[4], Verdict::Ok);
    // And the whole real transcript: all five.
    assert!(verdicts(&feed(&s, &data("kernel-sysfs.out"), "", Some(0), 9)).iter().all(|v| *v == Verdict::Ok));
}

#[test]
fn made_up_pass_with_a_false_if() {
    let s = made_up("pass");
    assert_eq!(s.scenarios[1].condition.as_deref(), Some("[[ \"$(uname -r)\" == \"not-this-kernel\" ]]"));
    let v = verdicts(&feed(&s, &data("made-up-pass.out"), &data("made-up-pass.err"), Some(0), 3));
    assert_eq!(v[0], Verdict::Ok);
    assert!(matches!(&v[1], Verdict::NotRun(r) if r.contains("not-this-kernel")));
    assert_eq!(v[2], Verdict::Ok);
}

#[test]
fn made_up_not_ok_keeps_the_diff_and_stops_the_script() {
    let s = made_up("notok");
    let d = feed(&s, &data("made-up-notok.out"), &data("made-up-notok.err"), Some(1), 11);
    assert_eq!(
        d[0].verdict,
        Verdict::NotOk { diff: "--- expected\n+++ result\n@@ -1 +1 @@\n-\n+livepatch: an intruder".into() }
    );
    assert_eq!(d[1].verdict, Verdict::NotRun("not run: the script stopped after test-notok/01 failed".into()));
}

#[test]
fn made_up_die_names_the_error() {
    let s = made_up("die");
    let v = verdicts(&feed(&s, &data("made-up-die.out"), &data("made-up-die.err"), Some(1), 4));
    assert_eq!(
        v[0],
        Verdict::Died {
            exit: 1,
            error: "ERROR: Can't find \"test_modules/test_klp_not_built.ko\", try \"make\"".into()
        }
    );
}

#[test]
fn made_up_skip_before_the_first_scenario() {
    let s = made_up("skip");
    let v = verdicts(&feed(&s, &data("made-up-skip.out"), &data("made-up-skip.err"), Some(4), 4));
    assert_eq!(v, [Verdict::Skipped("nothing to test on this kernel".into())]);
}

#[test]
fn has_kdir_skips_on_stdout() {
    // functions.sh's has_kdir, verbatim: stdout, exit 4, no SKIP: line.
    let s = script("test-livepatch", &["basic function patching", "multiple livepatches"]);
    let v = verdicts(&feed(
        &s,
        "skip all tests: KDIR (/lib/modules/7.2.13/build) not available to compile modules.\n",
        "",
        Some(4),
        10,
    ));
    assert!(
        v.iter().all(
            |v| *v == Verdict::Skipped("KDIR (/lib/modules/7.2.13/build) not available to compile modules.".into())
        ),
        "{v:?}"
    );
}

#[test]
fn made_up_oops_interrupts_the_running_scenario() {
    let s = made_up("oops");
    let mut p = Parser::new(&s);
    p.stdout(&data("made-up-oops.out"), 2.0);
    assert_eq!(p.interrupt(3.0), Some(2));
    let v = verdicts(p.decided());
    assert_eq!(v[0], Verdict::Ok);
    assert_eq!(v[1], Verdict::Interrupted);
    assert_eq!(v[2], Verdict::NotRun("not run: the guest died during test-oops/02".into()));
    assert_eq!(p.decided()[1].secs, Some(1.0));
}

#[test]
fn made_up_hang_in_the_only_scenario() {
    let s = made_up("hang");
    let v = verdicts(&feed(&s, &data("made-up-hang.out"), &data("made-up-hang.err"), None, 6));
    assert_eq!(v, [Verdict::Interrupted]);
}

#[test]
fn a_crash_after_an_ok_is_still_the_running_scenario_s() {
    // test-ftrace's third scenario printed `ok`; the guest died in the
    // script's exit trap (pop_config re-enables the tracer).
    let s = script(
        "test-ftrace",
        &[
            "livepatch interaction with ftrace_enabled sysctl",
            "trace livepatched function and check that the live patch remains in effect",
            "livepatch a traced function and check that the live patch remains in effect",
        ],
    );
    let mut p = Parser::new(&s);
    p.stdout(&data("kernel-ftrace.out"), 1.0);
    assert_eq!(p.interrupt(2.0), Some(3));
    let d = p.decided();
    assert_eq!(verdicts(d), [Verdict::Ok, Verdict::Ok, Verdict::Interrupted]);
    assert!(d[2].notes.iter().any(|n| n.contains("printed `ok`; the guest died after that")), "{:?}", d[2].notes);
}

#[test]
fn a_crash_before_the_first_scenario_is_the_first_scenario_s() {
    let s = script("test-livepatch", &["basic function patching", "multiple livepatches"]);
    let mut p = Parser::new(&s);
    assert_eq!(p.interrupt(1.0), Some(1));
    assert_eq!(
        verdicts(p.decided()),
        [Verdict::Interrupted, Verdict::NotRun("not run: the guest died during test-livepatch/01".into())]
    );
}

#[test]
fn setup_dying_fails_the_first_scenario() {
    // setup_config's sysctl is missing: bash reports it, then set_ftrace_enabled skips... or dies.
    let s = script("test-state", &["system state modification", "taking over system state modification"]);
    let d = feed(
        &s,
        "",
        "./test-state.sh: line 12: insmod: command not found\nERROR: failed to load module x\n",
        Some(1),
        1,
    );
    assert!(d[0].notes.iter().any(|n| n == "the script stopped before this scenario's TEST line"), "{:?}", d[0].notes);
    let v = verdicts(&d);
    assert_eq!(
        v[0],
        Verdict::Died {
            exit: 1,
            error: "./test-state.sh: line 12: insmod: command not found\nERROR: failed to load module x".into()
        }
    );
    assert_eq!(v[1], Verdict::NotRun("not run: the script stopped after test-state/01 failed".into()));
}

#[test]
fn an_exit_after_the_last_ok_is_the_last_scenario_s() {
    let s = script("test-syscall", &["patch getpid syscall while being heavily hammered"]);
    let d = feed(
        &s,
        "TEST: patch getpid syscall while being heavily hammered ... ok\n",
        "kill: (123) - No such process\n",
        Some(1),
        100,
    );
    assert_eq!(d[0].verdict, Verdict::Died { exit: 1, error: "kill: (123) - No such process".into() });
    assert!(d[0].notes.iter().any(|n| n == "its check printed `ok`; the script exited 1 after it"), "{:?}", d[0].notes);
}

#[test]
fn livepatch_transcript_streamed_in_odd_pieces() {
    let s = script(
        "test-livepatch",
        &[
            "basic function patching",
            "multiple livepatches",
            "atomic replace livepatch",
            "module function patching",
            "module function patching (livepatch first)",
        ],
    );
    let d = feed(&s, &data("kernel-livepatch.out"), "", Some(0), 13);
    assert!(d.iter().all(|d| d.verdict == Verdict::Ok && d.secs.is_some()), "{d:?}");
}

#[test]
fn a_title_the_source_does_not_spell_out_takes_the_next_scenario() {
    let s = script("test-x", &["literal one", "literal two"]);
    let v = feed(&s, "TEST: literal one ... ok\nTEST: computed $name ... ok\n", "", Some(0), 100);
    assert_eq!(verdicts(&v), [Verdict::Ok, Verdict::Ok]);
    assert!(v[1].notes.iter().any(|n| n.contains("computed $name")));
}

#[test]
fn the_kernel_log_names_the_scenario_whose_test_line_never_arrived() {
    // test-lost: 01 printed ok, then the guest was lost right after 02's
    // start_test; only the console had `===== TEST: the ssh server dies =====`.
    let s = made_up("lost");
    let mut p = Parser::new(&s);
    p.stdout("TEST: before the loss ... ok\n", 1.0);
    let console = "[    2.1] livepatch kselftest timestamp: 2026\n[    2.3] ===== TEST: the ssh server dies =====\n";
    let title = crate::kselftest::run::last_logged_start(console).unwrap();
    assert_eq!(title, "the ssh server dies");
    p.started_per_log(&title, 2.0);
    // A later TEST line for the same scenario does not start it twice.
    p.stdout("TEST: the ssh server dies ... ", 2.5);
    assert_eq!(p.interrupt(3.0), Some(2));
    let d = p.decided();
    assert_eq!(verdicts(d), [Verdict::Ok, Verdict::Interrupted]);
    assert!(d[1].notes.iter().any(|n| n.contains("never left the guest")), "{:?}", d[1].notes);
    // A title behind the running scenario changes nothing.
    let mut p = Parser::new(&s);
    p.stdout("TEST: before the loss ... ok\nTEST: the ssh server dies ... ", 1.0);
    p.started_per_log("before the loss", 2.0);
    assert_eq!(p.running(), Some((2, "the ssh server dies")));
}
