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
    assert_eq!(
        tg[0].1.body.as_ref().map(|b| (b.text.as_str(), b.line)),
        Some(("lp_calls++;", 26))
    );
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
    let src = edit(
        MODULES,
        "    functions:\n      - object: tg\n        name: fn1\n        marker: hi\n",
        "",
    );
    let src = edit(&src, "    functions:\n      - name: fn1\n", "");
    assert_eq!(errs(&src), "");
    rejects(
        &src,
        "    objects:\n      vmlinux:",
        "    xobjects:\n      vmlinux:",
        &[
            "livepatch `lp1` patches nothing",
            "`objects:` with callbacks",
        ],
    );
    let bare = edit(&src, "    log: true\n    includes: [linux/kprobes.h]\n    c: |\n      static int tg_hits;\n    init: |\n      tg_hits = 1;\n    exit: \"tg_hits = 0;\"\n", "");
    assert!(
        errs(&bare).contains("target `tg` does nothing"),
        "{}",
        errs(&bare)
    );
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
    rejects(
        MODULES,
        "[pre_patch, post_patch,",
        "[pre_patch, pre_patch,",
        &["`pre_patch` is listed twice"],
    );
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
    rejects(
        MODULES,
        "post_patch: {log: false}",
        "post_patch: {returns: ret}",
        &["`post_patch` returns nothing"],
    );
    rejects(
        MODULES,
        "{fail: ENODEV}",
        "{fail: ENODEVV}",
        &["unknown errno `ENODEVV`", "did you mean `ENODEV`"],
    );
    rejects(
        MODULES,
        "{fail: ENODEV}",
        "{fail: -19}",
        &["`fail` must be a string"],
    );
    rejects(
        MODULES,
        "{returns: ret,",
        "{returns: rett,",
        &["no parameter `rett`", "did you mean `ret`"],
    );
    rejects(
        MODULES,
        "{returns: ret,",
        "{returns: flag,",
        &["`flag` is a bool, not an int"],
    );
    rejects(
        MODULES,
        "{returns: ret,",
        "{fail: EIO, returns: ret,",
        &["`fail:` or `returns:`, not both"],
    );
    rejects(
        MODULES,
        "{log: false}",
        "{log: 1}",
        &["`log` must be true, false or a line of text"],
    );
    rejects(
        MODULES,
        "{log: false}",
        "{log: ''}",
        &["`log` must not be empty"],
    );
    rejects(
        MODULES,
        "{log: false}",
        "{logs: false}",
        &["unknown key `logs`", "did you mean `log`"],
    );
    rejects(
        MODULES,
        "body: \"lp_calls++;\"",
        "body: \" \"",
        &["`body` must not be empty"],
    );
    rejects(
        MODULES,
        "      later_mod:\n",
        "      later-mod:\n",
        &["object name `later-mod` is not a C identifier"],
    );
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
    for bad in [
        "'/usr/include/x.h'",
        "'../x.h'",
        "'linux/slab'",
        "'linux//slab.h'",
        "'linux/slab.h>'",
        "'x.h; y'",
    ] {
        rejects(
            MODULES,
            "includes: [linux/slab.h,",
            &format!("includes: [{bad},"),
            &["is not a header path", "linux/slab.h"],
        );
    }
    rejects(
        MODULES,
        "    c: |\n      static int lp_calls;\n",
        "    c: ''\n",
        &["`c` must not be empty"],
    );
    rejects(
        MODULES,
        "    init: \"lp_calls = 0;\"",
        "    init: 3",
        &["`init` must be a string"],
    );
    rejects(
        MODULES,
        "    exit: \"tg_hits = 0;\"",
        "    exit: [x]",
        &["`exit` must be a string"],
    );
    rejects(
        MODULES,
        "    log: true\n",
        "    log: 'yes'\n",
        &["`log` must be true or false"],
    );
}
