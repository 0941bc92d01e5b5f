//! What the loader accepts and rejects in module-scope C and callbacks.

use super::tests::{edit, errs, rejects};
use super::*;
use std::path::Path;

/// Every key of `objects:`, callbacks and module-scope C once.
pub(super) const MODULES: &str = r#"description: callbacks and module C
targets:
  - name: tg
    log: true
    includes: [linux/kprobes.h]
    c: |
      static int tg_hits;
    init: |
      tg_hits = 1;
    exit: "tg_hits = 0;"
    functions:
      - name: fn1
livepatches:
  - name: lp1
    params: [{name: ret, type: int}, {name: flag, type: bool}]
    includes: [linux/slab.h, asm/processor.h]
    c: |
      static int lp_calls;
    init: "lp_calls = 0;"
    exit: "lp_calls = 0;"
    objects:
      vmlinux:
        callbacks: [pre_patch, post_patch, pre_unpatch, post_unpatch]
      tg:
        callbacks:
          pre_patch: {returns: ret, body: "lp_calls++;"}
          post_patch: {log: false}
          pre_unpatch: {log: "going"}
          post_unpatch: {}
      later_mod:
        callbacks:
          pre_patch: {fail: ENODEV}
    functions:
      - object: tg
        name: fn1
        marker: hi
steps:
  - load: tg
  - load: lp1
  - assert:
      patches: {lp1: {objects: {vmlinux: 1, tg: 1, later_mod: 0}}}
  - disable: lp1
  - unload: lp1
  - unload: tg
"#;

fn case(src: &str) -> Case {
    parse(Path::new("cases/t.yaml"), src).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn modules_with_callbacks_and_c_parse() {
    let c = case(MODULES);
    let lp = &c.doc.livepatches[0];
    let names: Vec<&str> = lp.objects.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["vmlinux", "tg", "later_mod"]);
    assert_eq!(lp.object_names(), ["vmlinux", "tg", "later_mod"]);
    assert_eq!(lp.objects[0].callbacks.len(), 4);
    let tg = &lp.objects[1].callbacks;
    assert_eq!(tg[0].1.returns.as_deref(), Some("ret"));
    assert_eq!(tg[0].1.body.as_ref().map(|b| (b.text.as_str(), b.line)), Some(("lp_calls++;", 26)));
    assert_eq!(tg[1].1.log, Log::Off);
    assert_eq!(tg[2].1.log, Log::Text("going".into()));
    assert_eq!(lp.objects[2].callbacks[0].1.fail.as_deref(), Some("ENODEV"));
    assert_eq!(lp.code.includes, ["linux/slab.h", "asm/processor.h"]);
    assert_eq!(lp.code.c.as_ref().map(|c| c.line), Some(18));
    let t = &c.doc.targets[0];
    assert!(t.log);
    assert_eq!(t.code.init.as_ref().map(|c| c.line), Some(9));
    assert_eq!(t.code.exit.as_ref().map(|c| c.line), Some(10));
}

#[test]
fn a_livepatch_of_callbacks_only_and_a_target_of_code_only() {
    let src = edit(MODULES, "    functions:\n      - object: tg\n        name: fn1\n        marker: hi\n", "");
    let src = edit(&src, "    functions:\n      - name: fn1\n", "");
    assert_eq!(errs(&src), "");
    rejects(
        &src,
        "    objects:\n      vmlinux:",
        "    xobjects:\n      vmlinux:",
        &["livepatch `lp1` patches nothing", "`objects:` with callbacks"],
    );
    let bare = edit(&src, "    log: true\n    includes: [linux/kprobes.h]\n    c: |\n      static int tg_hits;\n    init: |\n      tg_hits = 1;\n    exit: \"tg_hits = 0;\"\n", "");
    assert!(errs(&bare).contains("target `tg` does nothing"), "{}", errs(&bare));
    rejects(
        MODULES,
        "      - name: fn1\n",
        "      - name: tg_init\n",
        &["`tg_init` is the name of the module's own init"],
    );
}

#[test]
fn callbacks_are_checked() {
    rejects(
        MODULES,
        "[pre_patch, post_patch,",
        "[pre_path, post_patch,",
        &["unknown callback `pre_path`", "did you mean `pre_patch`"],
    );
    rejects(MODULES, "[pre_patch, post_patch,", "[pre_patch, pre_patch,", &["`pre_patch` is listed twice"]);
    rejects(
        MODULES,
        "callbacks: [pre_patch, post_patch, pre_unpatch, post_unpatch]",
        "callbacks: []",
        &["no callbacks listed"],
    );
    rejects(
        MODULES,
        "callbacks: [pre_patch, post_patch, pre_unpatch, post_unpatch]",
        "callbacks: pre_patch",
        &["must be a list of callback names or a mapping"],
    );
    rejects(
        MODULES,
        "post_patch: {log: false}",
        "post_patch: {fail: EINVAL}",
        &["`post_patch` returns nothing, so it cannot fail"],
    );
    rejects(MODULES, "post_patch: {log: false}", "post_patch: {returns: ret}", &["`post_patch` returns nothing"]);
    rejects(MODULES, "{fail: ENODEV}", "{fail: ENODEVV}", &["unknown errno `ENODEVV`", "did you mean `ENODEV`"]);
    rejects(MODULES, "{fail: ENODEV}", "{fail: -19}", &["`fail` must be a string"]);
    rejects(MODULES, "{returns: ret,", "{returns: rett,", &["no parameter `rett`", "did you mean `ret`"]);
    rejects(MODULES, "{returns: ret,", "{returns: flag,", &["`flag` is a bool, not an int"]);
    rejects(MODULES, "{returns: ret,", "{fail: EIO, returns: ret,", &["`fail:` or `returns:`, not both"]);
    rejects(MODULES, "{log: false}", "{log: 1}", &["`log` must be true, false or a line of text"]);
    rejects(MODULES, "{log: false}", "{log: ''}", &["`log` must not be empty"]);
    rejects(MODULES, "{log: false}", "{logs: false}", &["unknown key `logs`", "did you mean `log`"]);
    rejects(MODULES, "body: \"lp_calls++;\"", "body: \" \"", &["`body` must not be empty"]);
    rejects(MODULES, "      later_mod:\n", "      later-mod:\n", &["object name `later-mod` is not a C identifier"]);
    rejects(
        MODULES,
        "      later_mod:\n        callbacks:\n          pre_patch: {fail: ENODEV}\n",
        "      later_mod: {}\n",
        &["missing `callbacks:`"],
    );
    rejects(
        MODULES,
        "      later_mod:\n        callbacks:",
        "      later_mod:\n        callback:",
        &["unknown key `callback`", "did you mean `callbacks`"],
    );
    rejects(
        MODULES,
        "    objects:\n",
        "    objects: [vmlinux]\n    more:\n",
        &["`objects` must be a mapping, not a list"],
    );
}

#[test]
fn module_code_is_checked() {
    for bad in ["'/usr/include/x.h'", "'../x.h'", "'linux/slab'", "'linux//slab.h'", "'linux/slab.h>'", "'x.h; y'"] {
        rejects(
            MODULES,
            "includes: [linux/slab.h,",
            &format!("includes: [{bad},"),
            &["is not a header path", "linux/slab.h"],
        );
    }
    rejects(MODULES, "    c: |\n      static int lp_calls;\n", "    c: ''\n", &["`c` must not be empty"]);
    rejects(MODULES, "    init: \"lp_calls = 0;\"", "    init: 3", &["`init` must be a string"]);
    rejects(MODULES, "    exit: \"tg_hits = 0;\"", "    exit: [x]", &["`exit` must be a string"]);
    rejects(MODULES, "    log: true\n", "    log: 'yes'\n", &["`log` must be true or false"]);
}

/// Work functions, replacement names, syscalls, array parameters, spawned groups.
const BEHAVIOUR: &str = r#"description: target behaviours
targets:
  - name: busy
    params: [{name: block, type: bool}, {name: n, type: int}]
    functions:
      - name: work_fn
        work: {block: block}
      - name: once
        work: true
      - name: show
      - name: parked
        park: true
livepatches:
  - name: lp
    params: [{name: pids, type: int, array: 128}]
    functions:
      - object: busy
        name: work_fn
        new_name: patched_work_func
        signature: "void (struct work_struct *work)"
        body: "return;"
      - syscall: getpid
        signature: "asmlinkage long (void)"
        body: "return 0;"
steps:
  - spawn: {program: getpid, count: 2, as: callers}
  - spawn: {command: "while :; do :; done", as: spinner}
  - load: busy
  - load: {module: lp, args: "pids=${callers}"}
  - kill: callers
  - kill: spinner
  - disable: lp
  - unload: lp
  - unload: busy
"#;

#[test]
fn target_behaviours_parse() {
    let c = case(BEHAVIOUR);
    let t = &c.doc.targets[0];
    assert_eq!(t.functions[0].work.as_ref().and_then(|w| w.block.as_deref()), Some("block"));
    assert!(t.functions[1].work.as_ref().is_some_and(|w| w.block.is_none()));
    let lp = &c.doc.livepatches[0];
    assert_eq!(lp.params[0].array, Some(128));
    assert_eq!(lp.functions[0].new_name.as_deref(), Some("patched_work_func"));
    let sc = &lp.functions[1];
    assert_eq!(
        (sc.name.as_str(), sc.syscall.as_deref(), sc.object.as_str()),
        ("sys_getpid", Some("getpid"), "vmlinux")
    );
    assert_eq!(syscall_symbols("getpid")[0], "__x64_sys_getpid");
    assert!(syscall_symbols("getpid").contains(&"sys_getpid".to_string()));
    assert!(
        matches!(&c.steps[0].action, Action::Spawn { name, program: Some(p), count: 2, .. } if name == "callers" && p == "getpid")
    );
    assert!(matches!(&c.steps[1].action, Action::Spawn { command: Some(_), count: 1, .. }));
    assert!(matches!(&c.steps[4].action, Action::Kill { name } if name == "callers"));
    assert_eq!(groups("a=${x},${y} b=${z"), ["x", "y"]);
}

#[test]
fn target_behaviours_are_checked() {
    rejects(BEHAVIOUR, "work: {block: block}", "work: {block: n}", &["parameter `n` is a int, not a bool"]);
    rejects(BEHAVIOUR, "work: {block: block}", "work: {block: blok}", &["no parameter `blok`", "did you mean `block`"]);
    rejects(BEHAVIOUR, "work: {block: block}", "work: {}", &["missing `block:`"]);
    rejects(BEHAVIOUR, "work: true", "work: false", &["`work: false` declares nothing"]);
    rejects(BEHAVIOUR, "work: true", "work: 1", &["`work` must be true or a mapping"]);
    rejects(BEHAVIOUR, "work: true", "work: true\n        park: true", &["a work function neither parks nor prints"]);
    rejects(
        BEHAVIOUR,
        "new_name: patched_work_func",
        "new_name: patched-work",
        &["`patched-work` is not a C identifier"],
    );
    rejects(
        BEHAVIOUR,
        "body: \"return 0;\"",
        "body: \"return 0;\"\n        new_name: patched_work_func",
        &["two replacement functions are named `patched_work_func`"],
    );
    rejects(
        BEHAVIOUR,
        "      - syscall: getpid\n",
        "      - syscall: getpid\n        name: x\n",
        &["`name:` or `syscall:`, not both"],
    );
    rejects(
        BEHAVIOUR,
        "      - syscall: getpid\n",
        "      - syscall: getpid\n        object: busy\n",
        &["a syscall is a vmlinux function"],
    );
    rejects(
        BEHAVIOUR,
        "      - syscall: getpid\n",
        "      - syscall: get-pid\n",
        &["syscall name `get-pid` is not a C identifier"],
    );
    rejects(BEHAVIOUR, "array: 128", "array: 0", &["`array` must be in 1..=8192"]);
    rejects(BEHAVIOUR, "array: 128", "array: 128, default: 1", &["an array parameter has no default"]);
}

#[test]
fn spawned_groups_are_checked() {
    rejects(
        BEHAVIOUR,
        "program: getpid,",
        "program: getppid,",
        &["klpt builds no program `getppid`", "did you mean `getpid`"],
    );
    rejects(
        BEHAVIOUR,
        "{program: getpid, count: 2, as: callers}",
        "{count: 2, as: callers}",
        &["exactly one of `program:` or `command:`"],
    );
    rejects(
        BEHAVIOUR,
        "{program: getpid, count: 2, as: callers}",
        "{program: getpid, command: x, as: callers}",
        &["exactly one of"],
    );
    rejects(BEHAVIOUR, "count: 2,", "count: 0,", &["`count` must be in 1..=128"]);
    rejects(BEHAVIOUR, "count: 2, as: callers}", "count: 2}", &["missing `as:`"]);
    rejects(BEHAVIOUR, "as: spinner}", "as: 'spin ner'}", &["group name `spin ner` is not a C identifier"]);
    rejects(BEHAVIOUR, "command: \"while :; do :; done\"", "command: ' '", &["`command` must not be empty"]);
    rejects(BEHAVIOUR, "as: spinner}", "as: callers}", &["group `callers` is already running at this point"]);
    rejects(
        BEHAVIOUR,
        "  - kill: spinner\n",
        "  - kill: spinner\n  - kill: spinner\n",
        &["no group `spinner` is running at this point"],
    );
    rejects(
        BEHAVIOUR,
        "args: \"pids=${callers}\"",
        "args: \"pids=${spinners}\"",
        &["group `spinners` is not running at this point"],
    );
    let late = edit(BEHAVIOUR, "  - kill: callers\n", "");
    let late = edit(&late, "  - disable: lp\n", "  - kill: callers\n  - disable: lp\n");
    assert_eq!(errs(&late), "");
    rejects(
        BEHAVIOUR,
        "  - load: {module: lp, args: \"pids=${callers}\"}\n  - kill: callers\n",
        "  - kill: callers\n  - load: {module: lp, args: \"pids=${callers}\"}\n",
        &["group `callers` is not running at this point"],
    );
    rejects(BEHAVIOUR, "  - load: busy\n", "  - load: busy\n  - park: busy.parked\n  - call: {parked: busy.parked, function: once}\n  - release: busy.parked\n", &["`once` is a work function"]);
    rejects(
        BEHAVIOUR,
        "      - name: show\n",
        "      - name: show\n      - name: busy_init\n",
        &["`busy_init` is the name of the module's own init"],
    );
}

/// State data and (newer kernels') state callbacks.
const STATES: &str = r#"description: states
livepatches:
  - name: lp
    replace: true
    params: [{name: ret, type: int}]
    states:
      - id: 1
        version: 2
        data: {name: loglevel, variable: console_loglevel, set: CONSOLE_LOGLEVEL_MOTORMOUTH, migrate: true}
      - id: 2
        callbacks:
          pre_patch: {returns: ret}
          post_unpatch: {}
        is_shadow: true
        block_disable: false
    objects:
      vmlinux:
        callbacks: [pre_patch]
steps:
  - load: lp
  - disable: lp
  - unload: lp
"#;

#[test]
fn states_parse_and_imply_requirements() {
    let c = case(STATES);
    let s = &c.doc.livepatches[0].states;
    let d = s[0].data.as_ref().unwrap();
    assert_eq!(
        (d.name.as_str(), d.variable.as_str(), d.set.as_str(), d.migrate, d.object.as_str()),
        ("loglevel", "console_loglevel", "CONSOLE_LOGLEVEL_MOTORMOUTH", true, "vmlinux")
    );
    assert_eq!(s[1].callbacks.len(), 2);
    assert_eq!((s[1].is_shadow, s[1].block_disable), (Some(true), Some(false)));
    let r = &c.doc.requires;
    assert_eq!(r.klp_object, ["callbacks"]);
    assert_eq!(r.klp_state, ["data", "callbacks", "is_shadow", "block_disable"]);
    assert_eq!(r.klp_state_callbacks, ["pre_patch", "post_unpatch"]);
    // A case without these features requires nothing of them.
    assert!(case(super::tests::GOOD).doc.requires.is_empty());
}

#[test]
fn states_are_checked() {
    rejects(STATES, "name: loglevel,", "name: log-level,", &["state name `log-level` is not a C identifier"]);
    rejects(STATES, "name: loglevel, ", "", &["missing `name:`"]);
    rejects(STATES, ", set: CONSOLE_LOGLEVEL_MOTORMOUTH", "", &["missing `set:`"]);
    rejects(STATES, "migrate: true", "migrate: 'yes'", &["`migrate` must be true or false"]);
    rejects(STATES, "migrate: true}", "migrate: true, objekt: x}", &["unknown key `objekt`", "did you mean `object`"]);
    rejects(STATES, "      - id: 2\n", "      - id: 1\n", &["state id 1 is declared twice"]);
    rejects(
        STATES,
        "      - id: 2\n",
        "      - id: 3\n        data: {name: loglevel, variable: x, set: '1'}\n      - id: 2\n",
        &["two states' data have the name `loglevel`"],
    );
    rejects(
        STATES,
        "post_unpatch: {}",
        "post_unpach: {}",
        &["unknown callback `post_unpach`", "did you mean `post_unpatch`"],
    );
    rejects(STATES, "post_unpatch: {}", "post_unpatch: {fail: EIO}", &["`post_unpatch` returns nothing"]);
    rejects(STATES, "is_shadow: true", "is_shadow: 1", &["`is_shadow` must be true or false"]);
}

#[test]
fn struct_fields_are_capabilities() {
    let src = edit(
        super::tests::GOOD,
        "description: d\n",
        "description: d\nrequires: {klp_state: [callbacks], klp_state_callbacks: [setup], klp_object: [callbacks]}\n",
    );
    assert_eq!(errs(&src), "");
    rejects(
        super::tests::GOOD,
        "description: d\n",
        "description: d\nrequires: {klp_state: [callback]}\n",
        &["unknown struct klp_state field `callback`", "did you mean `callbacks`"],
    );
    rejects(
        super::tests::GOOD,
        "description: d\n",
        "description: d\nrequires: {klp_stat: [data]}\n",
        &["unknown key `klp_stat`", "did you mean `klp_state`"],
    );
}

/// Tracing steps, the `traced:` assertion, `sysctl:` and kprobes.
const TRACING: &str = r#"description: tracing
targets:
  - name: kp
    params: [{name: post, type: bool}, {name: n, type: int}]
    kprobes:
      - {symbol: cmdline_proc_show, post_handler: post}
      - {symbol: meminfo_proc_show, post_handler: true}
      - {symbol: version_proc_show}
livepatches:
  - name: lp
    functions:
      - {name: cmdline_proc_show, new_name: livepatch_cmdline_proc_show, marker: m}
steps:
  - sysctl: {name: kernel.ftrace_enabled, value: 0}
  - sysctl: {name: kernel.ftrace_enabled, value: 1, refused: EBUSY}
  - load: kp
  - trace: {function: livepatch_cmdline_proc_show}
  - wait:
      traced: [livepatch_cmdline_proc_show]
  - trace: off
  - unload: kp
"#;

#[test]
fn tracing_steps_parse_and_imply_config() {
    let c = case(TRACING);
    assert!(
        matches!(&c.steps[0].action, Action::Write { path, value, refused: None } if path == "/proc/sys/kernel/ftrace_enabled" && value == "0")
    );
    assert!(matches!(&c.steps[1].action, Action::Write { refused: Some(r), .. } if r == &["EBUSY"]));
    assert!(matches!(&c.steps[3].action, Action::Trace { function: Some(f) } if f == "livepatch_cmdline_proc_show"));
    assert!(matches!(&c.steps[5].action, Action::Trace { function: None }));
    let Action::Wait { until, .. } = &c.steps[4].action else { panic!() };
    let (path, m) = &until.files[0];
    assert_eq!(path, "/sys/kernel/tracing/trace");
    let re = m.matches.as_ref().unwrap();
    assert!(re.is_match("cat-1 [000] ..... 1.0: livepatch_cmdline_proc_show <-seq_read_iter\n"));
    assert!(!re.is_match("cat-1 [000] ..... 1.0: livepatch_cmdline_proc_show_x <-seq_read_iter\n"));
    let k = &c.doc.targets[0].kprobes;
    assert_eq!(k[0].post_handler, PostHandler::Param("post".into()));
    assert_eq!(
        (k[1].post_handler.clone(), k[2].post_handler.clone()),
        (PostHandler::Always(true), PostHandler::Always(false))
    );
    for want in ["FUNCTION_TRACER", "DYNAMIC_FTRACE", "KPROBES"] {
        assert!(c.doc.requires.config.iter().any(|x| x == want), "{want}: {:?}", c.doc.requires.config);
    }
}

#[test]
fn tracing_steps_are_checked() {
    rejects(TRACING, "  - trace: off", "  - trace: on", &["`trace` takes `off` or `{function: NAME}`"]);
    rejects(TRACING, "{function: livepatch_cmdline_proc_show}", "{function: 'a b'}", &["`a b` is not a function name"]);
    rejects(
        TRACING,
        "{function: livepatch_cmdline_proc_show}",
        "{func: x}",
        &["unknown key `func`", "missing `function:`"],
    );
    rejects(TRACING, "traced: [livepatch_cmdline_proc_show]", "traced: ['x y']", &["`x y` is not a function name"]);
    rejects(TRACING, "traced: [livepatch_cmdline_proc_show]", "traced: []", &["the list is empty"]);
    rejects(
        TRACING,
        "name: kernel.ftrace_enabled, value: 0}",
        "name: ftrace_enabled, value: 0}",
        &["`ftrace_enabled` is not a sysctl name"],
    );
    rejects(
        TRACING,
        "name: kernel.ftrace_enabled, value: 0}",
        "name: kernel/ftrace_enabled, value: 0}",
        &["is not a sysctl name"],
    );
    rejects(TRACING, "name: kernel.ftrace_enabled, value: 0}", "name: kernel.ftrace_enabled}", &["missing `value:`"]);
    rejects(TRACING, "value: 1, refused: EBUSY}", "value: 1, refused: EBUSSY}", &["unknown errno `EBUSSY`"]);
    rejects(TRACING, "post_handler: post}", "post_handler: n}", &["parameter `n` is a int, not a bool"]);
    rejects(TRACING, "post_handler: post}", "post_handler: pots}", &["no parameter `pots`", "did you mean `post`"]);
    rejects(
        TRACING,
        "post_handler: true}",
        "post_handler: 1}",
        &["`post_handler` must be true, false or a bool parameter's name"],
    );
    rejects(
        TRACING,
        "{symbol: version_proc_show}",
        "{symbol: cmdline_proc_show}",
        &["`cmdline_proc_show` is probed twice"],
    );
    rejects(TRACING, "{symbol: version_proc_show}", "{symbol: 'x;y'}", &["`x;y` is not a symbol name"]);
    rejects(TRACING, "{symbol: version_proc_show}", "{post_handler: true}", &["missing `symbol:`"]);
}
