//! What `case::parse` / `case::load` accept and reject, one rule per test.

use super::*;
use std::path::Path;

pub(super) fn errs(src: &str) -> String {
    match parse(Path::new("cases/t.yaml"), src) {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    }
}

/// `src` with `from` replaced (which must occur) by `to`.
pub(super) fn edit(src: &str, from: &str, to: &str) -> String {
    assert!(src.contains(from), "{from:?} not in the test case");
    src.replacen(from, to, 1)
}

/// Asserts that the edit is rejected with all of `needles` in the message.
pub(super) fn rejects(src: &str, from: &str, to: &str, needles: &[&str]) {
    let e = errs(&edit(src, from, to));
    assert!(!e.is_empty(), "accepted: {from:?} -> {to:?}");
    for n in needles {
        assert!(e.contains(n), "{from:?} -> {to:?}: {n:?} not in\n{e}");
    }
    assert!(e.contains("hint:"), "{from:?} -> {to:?}: no hint in\n{e}");
}

pub(super) const GOOD: &str = "description: d\nlivepatches:\n  - name: lp1\n    functions:\n      - name: cmdline_proc_show\n        marker: hi\nsteps:\n  - load: lp1\n  - assert:\n      patches: {lp1: {enabled: 1}}\n  - disable: lp1\n  - unload: lp1\n";

/// Uses every key of the format once.
const FULL: &str = r#"description: everything
requires: {config: [LIVEPATCH, CONFIG_MODULES], kallsyms: [cmdline_proc_show], sysfs: [stack_order], klp_patch: [replace]}
arches: [x86_64]
smp: 2
timeout: 20
xfail: [{kernel: 'v1-.*', reason: why}]
targets:
  - name: tg
    params: [{name: n, type: int, default: -3}, {name: u, type: uint, default: 7}, {name: b, type: bool, default: true}, {name: s, type: charp, default: x}]
    functions:
      - name: fn1
        prints: original
      - name: busy
        park: true
livepatches:
  - name: lp1
    replace: false
    replaceable: true
    replace_set: 4294967295
    params: [{name: replace, type: bool}]
    states: [{id: 18446744073709551615, version: 4294967295}]
    functions:
      - name: cmdline_proc_show
        sympos: 0
        marker: hi
      - object: tg
        name: fn1
        signature: "int (struct seq_file *m, void *v)"
        body: |
          return 0;
steps:
  - load: tg
  - name: load it
    timeout: 5
    warnings: 'sysfs: cannot create duplicate filename'
    load: {module: lp1, args: 'replace=1', wait: true}
  - assert:
      patches: {lp1: {enabled: 1, transition: 0, stack_order: 1, replace_set: 4294967295, objects: {vmlinux: 1, tg: 1}}}
      files:
        /proc/cmdline: hi
        /proc/tg/fn1: {contains: [a, b], not_contains: c, matches: '^x', equals: y}
      modes: {/sys/kernel/livepatch/lp1/enabled: '644'}
      modules: {lp1: true, tg: true}
      dmesg: {events: [a], must_not: b, ignore: [c], strict: false}
  - wait: {timeout: 3, dmesg: [x]}
  - write: {param: tg.n, value: -1}
  - write: {path: /sys/kernel/livepatch/lp1/enabled, value: '1', refused: [EINVAL, EBUSY]}
  - park: tg.busy
  - name: c
    call: {parked: tg.busy, function: fn1, prints: {contains: original}}
  - release: tg.busy
  - shell: {command: 'true', status: 255}
  - when: {has: {klp_patch: [replace_set]}, lacks: {sysfs: [replace]}}
    force: {patch: lp1, refused: EINVAL}
  - disable: {patch: lp1, wait: false}
  - unload: lp1
  - unload: tg
"#;

#[test]
fn good_cases_parse() {
    let c = parse(Path::new("/x/cases/stock/t.yaml"), GOOD).unwrap();
    assert_eq!(c.id, "stock/t");
    assert_eq!(c.steps.len(), 4);
    assert_eq!(c.steps[1].line, 9);
    let c = parse(Path::new("cases/t.yaml"), FULL).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((c.doc.smp, c.doc.timeout), (2, 20));
    assert_eq!(c.doc.livepatches[0].states[0].id, u64::MAX);
    let s = &c.steps[1];
    assert_eq!((s.timeout, s.label.as_str()), (Some(5), "load it"));
    assert!(s.warnings[0].is_match("sysfs: cannot create duplicate filename '/x'"));
    assert!(matches!(&c.steps[3].action, Action::Wait { timeout: 3, .. }));
    assert!(
        matches!(&c.steps[4].action, Action::Write { path, value, .. } if path == "/sys/module/tg/parameters/n" && value == "-1")
    );
    match &c.steps[7].action {
        Action::Call { module, parked, function, prints } => {
            assert_eq!((module.as_str(), parked.as_str(), function.as_str()), ("tg", "busy", "fn1"));
            assert_eq!(prints.as_ref().unwrap().contains, vec!["original".to_string()]);
        }
        a => panic!("{a:?}"),
    }
    assert!(matches!(c.steps[11].action, Action::Disable { wait: false, .. }));
}

#[test]
fn every_case_in_the_tree_parses() {
    let files = discover(&[crate::project_root().join("cases")]).unwrap();
    assert!(files.len() > 30);
    for f in files {
        load(&f).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn step_timeout_overrides_the_case_default_in_wait() {
    let c = parse(
        Path::new("cases/t.yaml"),
        &edit(FULL, "  - wait: {timeout: 3, dmesg: [x]}", "  - timeout: 9\n    wait: {dmesg: [x]}"),
    )
    .unwrap();
    assert!(matches!(&c.steps[3].action, Action::Wait { timeout: 9, .. }));
    let c =
        parse(Path::new("cases/t.yaml"), &edit(FULL, "  - wait: {timeout: 3, dmesg: [x]}", "  - wait: {dmesg: [x]}"))
            .unwrap();
    assert!(matches!(&c.steps[3].action, Action::Wait { timeout: 20, .. }));
    rejects(FULL, "  - wait: {timeout: 3,", "  - timeout: 4\n    wait: {timeout: 3,", &["both set `timeout:`"]);
}

#[test]
fn unknown_keys_are_located_with_a_suggestion() {
    rejects(
        GOOD,
        "description",
        "descriptoin",
        &["cases/t.yaml:1:1: unknown key `descriptoin`", "did you mean `description`"],
    );
    rejects(GOOD, "- disable: lp1", "- disabel: lp1", &["unknown step key `disabel`", "did you mean `disable`"]);
    rejects(FULL, "wait: true}", "wiat: true}", &["unknown key `wiat`", "did you mean `wait`"]);
    rejects(FULL, "{contains: original}}", "{contain: original}}", &["unknown key `contain`"]);
}

#[test]
fn undefined_module_reference() {
    rejects(GOOD, "- load: lp1", "- load: lp2", &["cases/t.yaml:8:", "no module named `lp2`", "did you mean `lp1`"]);
    rejects(FULL, "modules: {lp1: true,", "modules: {lp2: true,", &["no module named `lp2`", "did you mean `lp1`"]);
    rejects(
        FULL,
        "objects: {vmlinux: 1, tg: 1}",
        "objects: {vmlinux: 1, tgt: 1}",
        &["patch `lp1` has no object `tgt`", "did you mean `tg`"],
    );
}

#[test]
fn not_a_c_identifier() {
    rejects(GOOD, "name: cmdline_proc_show", "name: cmdline-proc", &[":5:", "not a C identifier"]);
    rejects(GOOD, "name: lp1", &format!("name: {}", "l".repeat(56)), &["limited to 55 characters"]);
}

#[test]
fn wrong_types_are_errors_not_defaults() {
    // Each of these used to be replaced by a default or coerced.
    rejects(FULL, "wait: true}", "wait: 'no'}", &[":36:", "`wait` must be true or false, not a string (\"no\")"]);
    rejects(FULL, "status: 255", "status: '1'", &["`status` must be an integer in 0..=255, not a string"]);
    rejects(FULL, "strict: false", "strict: 'yes'", &["`strict` must be true or false"]);
    rejects(FULL, "timeout: 20", "timeout: \"10\"", &[":5:", "`timeout` must be an integer in 1..=86400"]);
    rejects(FULL, "marker: hi", "marker: 5", &["`marker` must be a string, not an integer (5)", "quote it: '5'"]);
    rejects(FULL, "description: everything", "description: true", &["`description` must be a string"]);
    rejects(FULL, "smp: 2", "smp: 2.0", &["`smp` must be an integer"]);
    rejects(FULL, "park: true", "park: 1", &["`park` must be true or false"]);
    rejects(FULL, "replace: false", "replace: no", &["`replace` must be true or false"]);
    rejects(FULL, "arches: [x86_64]", "arches: x86_64", &["`arches` must be a list"]);
    rejects(FULL, "/proc/cmdline: hi", "/proc/cmdline: 1", &["must be a string, not an integer"]);
    rejects(FULL, "value: -1}", "value: true}", &["`value` must be a string, not a boolean", "quote it: 'true'"]);
    rejects(FULL, "enabled: 1,", "enabled: '1',", &["`enabled` must be an integer in 0..=1"]);
    rejects(
        FULL,
        "'644'",
        "644",
        &["`/sys/kernel/livepatch/lp1/enabled` must be a string, not an integer (644)", "quote it: '644'"],
    );
    rejects(FULL, "  - load: tg\n", "  - load: 3\n", &["`load` takes a module name or a mapping, not an integer (3)"]);
    rejects(FULL, "smp: 2", "smp: !!str 2", &["`smp` must be an integer in 1..=8, not a string (\"2\")"]);
}

#[test]
fn out_of_range_numbers() {
    for (from, to, want) in [
        ("timeout: 20", "timeout: 0", "1..=86400, not 0"),
        ("timeout: 20", "timeout: 86401", "1..=86400, not 86401"),
        ("timeout: 5", "timeout: 18446744073709551615", "1..=86400"),
        ("{timeout: 3,", "{timeout: 18446744073709551615,", "1..=86400"),
        ("status: 255", "status: 256", "0..=255, not 256"),
        ("status: 255", "status: 4294967297", "0..=255, not 4294967297"),
        ("status: 255", "status: -1", "0..=255, not -1"),
        ("smp: 2", "smp: 0", "1..=8"),
        ("smp: 2", "smp: 9", "1..=8"),
        ("sympos: 0", "sympos: -1", "0..=18446744073709551615"),
        ("id: 18446744073709551615", "id: -1", "`id` must be in 0..="),
        ("version: 4294967295", "version: 4294967296", "0..=4294967295"),
        ("replace_set: 4294967295", "replace_set: 4294967296", "0..=4294967295"),
        ("replace_set: 4294967295, objects", "replace_set: 4294967296, objects", "0..=4294967295"),
        ("enabled: 1", "enabled: 2", "0..=1"),
        ("stack_order: 1", "stack_order: -1", "0..="),
        ("vmlinux: 1", "vmlinux: 2", "0..=1"),
        ("default: -3", "default: 2147483648", "-2147483648..=2147483647"),
        ("default: 7", "default: -1", "0..=4294967295"),
    ] {
        let e = errs(&edit(FULL, from, to));
        assert!(e.contains(want), "{from} -> {to}: {e}");
    }
}

#[test]
fn unknown_capability_names_suggest_the_known_one() {
    rejects(FULL, "enabled: 1,", "enabeld: 1,", &["unknown patch attribute `enabeld`", "did you mean `enabled`"]);
    rejects(FULL, "stack_order: 1,", "force: 1,", &["`force` is write-only"]);
    rejects(
        FULL,
        "sysfs: [stack_order]",
        "sysfs: [stack_ordr]",
        &[":2:", "unknown livepatch sysfs attribute `stack_ordr`", "did you mean `stack_order`"],
    );
    rejects(
        FULL,
        "klp_patch: [replace]}",
        "klp_patch: [replce]}",
        &["unknown struct klp_patch field `replce`", "did you mean `replace`"],
    );
    rejects(
        FULL,
        "has: {klp_patch: [replace_set]}",
        "has: {klp_patch: [replace_sets]}",
        &[":53:", "`replace_sets`", "did you mean `replace_set`"],
    );
    rejects(FULL, "lacks: {sysfs: [replace]}", "lacks: {sysfs: [replaced]}", &["`replaced`", "did you mean `replace`"]);
    rejects(
        FULL,
        "lacks: {sysfs: [replace]}",
        "lack: {sysfs: [replace]}",
        &["unknown key `lack`", "did you mean `lacks`"],
    );
    rejects(
        FULL,
        "when: {has: {klp_patch: [replace_set]}, lacks: {sysfs: [replace]}}",
        "when: {}",
        &["names no capability"],
    );
}

#[test]
fn config_and_symbol_names_are_checked() {
    rejects(FULL, "config: [LIVEPATCH,", "config: [livepatch,", &["`livepatch` is not a kernel config symbol"]);
    rejects(FULL, "config: [LIVEPATCH,", "config: [CONFIG_,", &["not a kernel config symbol"]);
    rejects(FULL, "kallsyms: [cmdline_proc_show]", "kallsyms: ['x; reboot']", &["`x; reboot` is not a symbol name"]);
    rejects(FULL, "kallsyms: [cmdline_proc_show]", "kallsyms: ['$(id)']", &["is not a symbol name"]);
    assert!(errs(&edit(FULL, "kallsyms: [cmdline_proc_show]", "kallsyms: [__x86.get_pc_thunk.bx, a$b]")).is_empty());
}

#[test]
fn mappings_given_as_lists() {
    for (from, to) in [
        ("files:\n        /proc/cmdline: hi\n        /proc/tg/fn1:", "files:\n        - /proc/cmdline\n      xfiles:\n        /proc/tg/fn1:"),
        ("modules: {lp1: true, tg: true}", "modules: [lp1, tg]"),
        ("modes: {/sys/kernel/livepatch/lp1/enabled: '644'}", "modes: [/sys/kernel/livepatch/lp1/enabled]"),
        ("objects: {vmlinux: 1, tg: 1}", "objects: [vmlinux, tg]"),
        ("requires: {config: [LIVEPATCH, CONFIG_MODULES], kallsyms: [cmdline_proc_show], sysfs: [stack_order], klp_patch: [replace]}", "requires: [config: [LIVEPATCH]]"),
        ("  - when: {has:", "  - when: [has:"),
    ] {
        let src = edit(FULL, from, to).replace("when: [has: {klp_patch: [replace_set]}, lacks: {sysfs: [replace]}}", "when: [has: {klp_patch: [replace_set]}]");
        let e = errs(&src);
        assert!(e.contains("must be a mapping, not a list") && e.contains("write `key: value` entries"), "{to}: {e}");
    }
    rejects(
        FULL,
        "{module: lp1, args: 'replace=1', wait: true}",
        "[module: lp1]",
        &["`load` takes a module name or a mapping, not a list"],
    );
    // A list where one value or a list of them is expected is fine, a mapping is not.
    rejects(FULL, "{events: [a],", "{events: {a: 1},", &["`events` must be a string, not a mapping"]);
}

#[test]
fn empty_checks_and_commands() {
    rejects(FULL, "shell: {command: 'true', status: 255}", "shell: \"\"", &["must not be empty"]);
    rejects(FULL, "shell: {command: 'true', status: 255}", "shell: '  '", &["must not be empty"]);
    rejects(FULL, "shell: {command: 'true', status: 255}", "shell: {}", &["missing `command:`"]);
    rejects(FULL, "shell: {command: 'true', status: 255}", "shell: {status: 1}", &["missing `command:`"]);
    rejects(FULL, "  - wait: {timeout: 3, dmesg: [x]}", "  - wait: {timeout: 3}", &["the assertion checks nothing"]);
    rejects(FULL, "{timeout: 3, dmesg: [x]}", "{timeout: 3, dmesg: {ignore: x}}", &["`dmesg:` checks nothing"]);
    rejects(FULL, "{contains: original}", "{}", &["the matcher checks nothing"]);
    rejects(FULL, "modules: {lp1: true, tg: true}", "modules: {}", &["checks nothing"]);
    rejects(GOOD, "patches: {lp1: {enabled: 1}}", "patches:", &["`patches:` must map patch names", "patches: {}"]);
    rejects(
        GOOD,
        "steps:\n  - load: lp1\n  - assert:\n      patches: {lp1: {enabled: 1}}\n  - disable: lp1\n  - unload: lp1\n",
        "steps: []\n",
        &["without steps checks nothing"],
    );
}

#[test]
fn strings_for_shells_and_c_are_checked() {
    rejects(FULL, "args: 'replace=1'", "args: 'replace'", &["`replace` is not `name=value`"]);
    rejects(FULL, "args: 'replace=1'", "args: '1x=1'", &["`1x` is not a C identifier"]);
    rejects(
        FULL,
        "args: 'replace=1'",
        "args: 'replac=1'",
        &["module `lp1` has no parameter `replac`", "did you mean `replace`"],
    );
    rejects(FULL, "args: 'replace=1'", "args: \"replace=1\\nreboot\"", &["on one line"]);
    rejects(FULL, "args: 'replace=1'", "args: 1", &["`args` must be a string"]);
    assert!(errs(&edit(FULL, "args: 'replace=1'", "args: '  replace=\"a b\"  '")).is_empty());
    rejects(FULL, "default: true", "default: 1", &["`default` must be true or false"]);
    rejects(FULL, "default: x", "default: 3", &["`default` must be a string", "quote it"]);
    rejects(FULL, "default: -3", "default: '-3'", &["`default` must be an integer"]);
    rejects(
        FULL,
        "path: /sys/kernel/livepatch/lp1/enabled",
        "path: sys/kernel/livepatch/lp1/enabled",
        &["must be absolute"],
    );
    rejects(FULL, "path: /sys/kernel/livepatch/lp1/enabled", "path: \"/sys/x\\ny\"", &["line breaks or NUL"]);
    rejects(FULL, "path: /sys/kernel/livepatch/lp1/enabled", "path: \"/sys/x\\0\"", &["NUL"]);
    rejects(FULL, "/proc/cmdline: hi", "proc/cmdline: hi", &["must be absolute"]);
    rejects(FULL, "param: tg.n", "param: tg.nx", &["module `tg` has no parameter `nx`", "did you mean `n`"]);
}

#[test]
fn call_checks_its_functions() {
    rejects(FULL, "parked: tg.busy,", "parked: tg.fn1,", &["`tg.fn1` is not a parking function"]);
    rejects(FULL, "function: fn1,", "function: busy,", &["`busy` is a parking function"]);
    rejects(FULL, "function: fn1,", "function: fn2,", &["target `tg` has no function `fn2`", "did you mean `fn1`"]);
    rejects(FULL, "parked: tg.busy,", "parked: lp1.busy,", &["no target module named `lp1`"]);
    rejects(FULL, "{parked: tg.busy, function: fn1,", "{function: fn1,", &["missing `parked:`"]);
    rejects(FULL, "  - load: tg\n", "", &["target `tg` is not loaded at this point"]);
}

#[test]
fn impossible_steps() {
    rejects(
        GOOD,
        "  - disable: lp1\n  - unload: lp1\n",
        "  - unload: lp1\n  - unload: lp1\n",
        &[":12:", "`lp1` is not loaded at this point"],
    );
    rejects(GOOD, "  - disable: lp1\n", "  - load: lp1\n", &[":11:", "`lp1` is already loaded at this point"]);
}

/// The `when:` case from the brief: two kernel capabilities, one step that
/// only fails on some combinations of them.
const WHEN: &str = "description: d\nlivepatches:\n  - name: lp1\n    functions:\n      - name: cmdline_proc_show\n        marker: hi\nsteps:\n  - load: lp1\n  - when: {has: {klp_patch: [replace_set]}}\n    unload: lp1\n  - when: {has: {sysfs: [replace]}}\n    load: lp1\n  - disable: lp1\n  - unload: lp1\n";

#[test]
fn sequence_check_follows_when() {
    let e = errs(WHEN);
    // Step 13 (disable) fails where lp1 was unloaded and not loaded again.
    assert!(e.contains("cases/t.yaml:13:5: on kernels with klp_patch.replace_set and without sysfs.replace: patch `lp1` is not loaded at this point"), "{e}");
    // Step 12 (load) fails where lp1 was never unloaded.
    assert!(e.contains("cases/t.yaml:11:5: on kernels with sysfs.replace and without klp_patch.replace_set: `lp1` is already loaded"), "{e}");
    // With the conditions exclusive of each other, nothing is impossible.
    let fixed = WHEN.replace("has: {sysfs: [replace]}", "has: {klp_patch: [replace_set]}");
    assert_eq!(errs(&fixed), "");
}

#[test]
fn sequence_check_respects_requires_and_exclusive_capabilities() {
    // Every kernel the case runs on has replace_set: the unload always runs.
    let e = errs(&WHEN.replace("description: d\n", "description: d\nrequires: {klp_patch: [replace_set]}\n"));
    assert!(e.contains(":14:5: on kernels without sysfs.replace: patch `lp1`"), "{e}");
    // capabilities.yaml: no kernel has both replaceable (v1) and replace_set (v2).
    let both = WHEN.replace("has: {sysfs: [replace]}", "has: {klp_patch: [replaceable]}").replace("  - when: {has: {klp_patch: [replace_set]}}\n    unload: lp1\n  - when: {has: {klp_patch: [replaceable]}}\n    load: lp1\n", "  - when: {has: {klp_patch: [replace_set]}}\n    disable: lp1\n  - when: {has: {klp_patch: [replaceable]}}\n    disable: lp1\n");
    assert_eq!(errs(&both), "");
    let unconditional = WHEN.replace("  - when: {has: {sysfs: [replace]}}\n    load: lp1\n", "  - unload: lp1\n");
    let e = errs(&unconditional);
    assert!(e.contains(":11:5: on kernels with klp_patch.replace_set: `lp1` is not loaded"), "{e}");
}

#[test]
fn conditions_no_kernel_satisfies() {
    rejects(
        WHEN,
        "when: {has: {klp_patch: [replace_set]}}",
        "when: {has: {klp_patch: [replace_set]}, lacks: {klp_patch: [replace_set]}}",
        &[":9:", "no kernel both has and lacks klp_patch.replace_set"],
    );
    let src = edit(WHEN, "description: d\n", "description: d\nrequires: {config: [CONFIG_LIVEPATCH]}\n");
    rejects(
        &src,
        "when: {has: {klp_patch: [replace_set]}}",
        "when: {lacks: {config: [LIVEPATCH]}}",
        &["the case requires config.LIVEPATCH, so this step that lacks it never runs"],
    );
    let many: String =
        (0..11).map(|i| format!("  - when: {{has: {{kallsyms: [s{i}]}}}}\n    assert: {{patches: {{}}}}\n")).collect();
    rejects(GOOD, "  - disable: lp1\n", &format!("{many}  - disable: lp1\n"), &["name 11 capabilities", "at most 10"]);
}

#[test]
fn conditions_exclusive_capabilities_never_meet() {
    let src = edit(WHEN, "has: {klp_patch: [replace_set]}", "has: {klp_patch: [replace_set, replaceable]}");
    let e = errs(&src);
    assert!(e.contains(":9:") && e.contains("no kernel meets this condition"), "{e}");
    let src = edit(WHEN, "description: d\n", "description: d\nrequires: {klp_patch: [replaceable]}\n");
    let e = errs(&src);
    assert!(e.contains(":10:") && e.contains("no kernel meets this condition"), "{e}");
}

#[test]
fn timeout_and_warnings_go_on_every_step_kind() {
    let src = edit(FULL, "    timeout: 5\n    warnings: 'sysfs: cannot create duplicate filename'\n", "");
    let src = edit(&src, "{timeout: 3, dmesg", "{dmesg");
    let (head, steps) = src.split_at(src.find("steps:").unwrap());
    let src = format!("{head}{}", steps.replace("\n  - ", "\n  - timeout: 7\n    warnings: [x, 'y z']\n    "));
    let c = parse(Path::new("cases/t.yaml"), &src).unwrap_or_else(|e| panic!("{e}"));
    assert!(c.steps.len() > 10);
    for s in &c.steps {
        assert_eq!((s.timeout, s.warnings.len()), (Some(7), 2), "{s:?}");
    }
    rejects(FULL, "warnings: 'sysfs:", "warnings: '(sysfs:", &["bad regex `(sysfs:"]);
    rejects(
        FULL,
        "warnings: 'sysfs: cannot create duplicate filename'",
        "warnings: {a: b}",
        &["`warnings` must be a string, not a mapping"],
    );
}

#[test]
fn unknown_errno_and_syntax_errors() {
    rejects(GOOD, "- load: lp1", "- load: {module: lp1, refused: EFOO}", &["unknown errno `EFOO`"]);
    rejects(GOOD, "- load: lp1", "- load: {module: lp1, refused: EBUSYY}", &["did you mean `EBUSY`"]);
    let e = errs("description: [unclosed\nsteps: []\n");
    assert!(e.starts_with("cases/t.yaml:") && e.contains("YAML syntax"), "{e}");
    let e = errs("description: x\nsteps: [{load: x}]\nsteps: []\n");
    assert!(e.contains("duplicate"), "{e}");
    let e = errs("- 1\n");
    assert!(e.contains("a case file is a mapping of `description:`, `steps:` and more, not a list"), "{e}");
}

#[test]
fn arbitrary_input_never_panics() {
    for s in [
        "",
        "-",
        "[]",
        "{}",
        "~",
        "steps: 3",
        "description: x\nsteps: [1, [2], {load: {}}]",
        "\u{0}",
        "description: x\nsteps:\n - when: 3\n",
        "? [a]\n: b\n",
        "!!binary aGk=",
        "a: !x 1",
    ] {
        let _ = parse(Path::new("t.yaml"), s);
    }
}

mod files {
    use super::*;
    use std::time::{Duration, Instant};

    fn load_err(p: &Path) -> String {
        let t = Instant::now();
        let e = load(p).map(|_| ()).unwrap_err().to_string();
        assert!(t.elapsed() < Duration::from_secs(1), "{}: {:?}", p.display(), t.elapsed());
        e
    }

    #[test]
    fn special_files_are_refused_from_their_metadata() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("f.yaml");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        assert!(load_err(&fifo).contains("is a FIFO, not a case file"));
        let zero = d.path().join("zero.yaml");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        assert!(load_err(&zero).contains("is a character device"));
        let looped = d.path().join("loop.yaml");
        std::os::unix::fs::symlink(&looped, &looped).unwrap();
        assert!(load_err(&looped).contains("cannot read"));
        // Refused from metadata, so even an unreadable (root-only) device says what it is.
        let block = std::fs::read_dir("/dev").unwrap().flatten().find(|e| {
            use std::os::unix::fs::FileTypeExt;
            e.file_type().is_ok_and(|t| t.is_block_device())
        });
        if let Some(b) = block {
            let dev = d.path().join("dev.yaml");
            std::os::unix::fs::symlink(b.path(), &dev).unwrap();
            assert!(load_err(&dev).contains("is a block device"));
        }
        let dir = d.path().join("x.yaml");
        std::fs::create_dir(&dir).unwrap();
        assert!(load_err(&dir).contains("is a directory, not a case file"));
    }

    #[test]
    fn discover_lists_what_is_not_a_case_file_so_loading_reports_it() {
        let d = tempfile::tempdir().unwrap();
        let cases = d.path().join("cases");
        std::fs::create_dir_all(cases.join("sub/x.yaml")).unwrap();
        std::fs::write(cases.join("a.yaml"), GOOD).unwrap();
        std::fs::write(cases.join("capabilities.yaml"), "not a case").unwrap();
        std::os::unix::fs::symlink(&cases, cases.join("sub/back")).unwrap();
        let found = discover(std::slice::from_ref(&cases)).unwrap();
        assert_eq!(found, vec![cases.join("a.yaml"), cases.join("sub/x.yaml")]);
        // A directory named *.yaml on the command line is a file to load, not a tree.
        assert_eq!(discover(&[cases.join("sub/x.yaml")]).unwrap(), vec![cases.join("sub/x.yaml")]);
        std::fs::create_dir(d.path().join("empty")).unwrap();
        assert!(discover(&[d.path().join("empty")]).unwrap_err().to_string().contains("no case files"));
        assert!(discover(&[d.path().join("nope")]).is_err());
    }

    #[test]
    fn text_problems() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("t.yaml");
        std::fs::write(&f, b"description: x\nsteps: [\xff]\n").unwrap();
        let e = load_err(&f);
        assert!(e.contains("t.yaml:2:9: not UTF-8 text (byte 0xff)"), "{e}");
        std::fs::write(&f, format!("\u{feff}{GOOD}")).unwrap();
        load(&f).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&f, format!("{GOOD}#{}\n", "x".repeat(1 << 20))).unwrap();
        assert!(load_err(&f).contains("case files are limited to 1 MiB"));
        assert!(errs(&format!("{GOOD}#{}\n", "x".repeat(1 << 20))).contains("limited to 1 MiB"));
    }

    #[test]
    fn deep_nesting_is_refused_quickly() {
        for src in [
            format!("description: x\nsteps: {}", "[".repeat(100_000)),
            format!("description: x\nsteps:\n{}", "- ".repeat(100_000)),
            format!("steps: {}", "{a: ".repeat(100_000)),
        ] {
            let t = Instant::now();
            let e = errs(&src);
            assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
            assert!(e.contains("nests deeper than 64 levels"), "{e}");
        }
        let e = errs("description: &a x\nsteps: [*a]\n");
        assert!(e.contains("aliases"), "{e}");
    }
}

/// The `BAD` table of `harness/tests/cases.rs` (its `check/` trials need a
/// prepared kernel to start, these checks do not): every bad file is listed
/// and rejected with every expected fragment; every wrong case still loads.
#[test]
fn bad_files_match_the_bad_table() {
    let tests = crate::project_root().join("harness/tests");
    let src = std::fs::read_to_string(tests.join("cases.rs")).unwrap();
    let start = src.find("const BAD: &[(&str, &[&str])] = &[").expect("BAD table");
    let table = &src[start..start + src[start..].find("\n];").unwrap()];
    let row = regex::Regex::new(r#"(?m)^\s*\("([^"]+)", &\[(.*)\]\),$"#).unwrap();
    let lit = regex::Regex::new(r#""((?:[^"\\]|\\.)*)""#).unwrap();
    let mut listed = Vec::new();
    for r in row.captures_iter(table) {
        let name = r[1].to_string();
        let e = match load(&tests.join("bad").join(format!("{name}.yaml"))) {
            Ok(_) => panic!("{name}: accepted"),
            Err(e) => e.to_string(),
        };
        for l in lit.captures_iter(&r[2]) {
            let needle = l[1].replace("\\\"", "\"").replace("\\\\", "\\");
            assert!(e.contains(&needle), "{name}: {needle:?} not in\n{e}");
        }
        listed.push(name);
    }
    for f in discover(&[tests.join("bad")]).unwrap() {
        let stem = f.file_stem().unwrap().to_string_lossy().to_string();
        assert!(listed.contains(&stem), "{stem}.yaml is not in the BAD table");
    }
    for f in discover(&[tests.join("wrong")]).unwrap() {
        load(&f).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// The complete example in cases/README.md is a valid case.
#[test]
fn readme_example_parses() {
    let readme = std::fs::read_to_string(crate::project_root().join("cases/README.md")).unwrap();
    let ex = &readme[readme.find("## Example").unwrap()..];
    let body = &ex[ex.find("```yaml\n").unwrap() + 8..];
    let body = &body[..body.find("```").unwrap()];
    parse(Path::new("cases/example.yaml"), body).unwrap_or_else(|e| panic!("{e}"));
}
