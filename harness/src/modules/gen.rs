//! C source for the modules a case declares. Case text (bodies, `c:`,
//! `init:`, callbacks) is framed by `#line` directives: gcc reports errors
//! in it at the case file's lines, and errors in generated code at the
//! generated file's own lines.

use crate::case::{
    parse_signature, Callback, Case, Code, Livepatch, Log, ModuleCode, Param, PostHandler, StateData, Target,
};
use crate::kernel::caps::Caps;
use std::collections::BTreeSet;
use std::fmt::Write;

/// Which optional `struct klp_patch` fields the kernel under test has.
pub type KlpFields = BTreeSet<String>;

/// The optional fields of a stock upstream `struct klp_patch` (atomic
/// replace and system states, both there since 5.5): what `klpt gen`
/// assumes for a kernel it does not have yet.
pub fn stock_fields() -> KlpFields {
    ["replace", "states"].into_iter().map(String::from).collect()
}

/// Headers every generated module includes, so that case code rarely needs
/// `includes:`.
const INCLUDES: &[&str] = &[
    "module",
    "kernel",
    "livepatch",
    "seq_file",
    "proc_fs",
    "uaccess",
    "delay",
    "workqueue",
    "string",
    "slab",
    "printk",
    "completion",
];

/// A C string literal: quotes and backslashes escaped, every byte that is
/// not printable ASCII as an octal escape (no newline or control character
/// survives), and no `??` (a trigraph where trigraphs are on).
fn c_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '?' if out.ends_with('?') => out.push_str("\\?"),
            c if c.is_ascii_graphic() || c == ' ' => out.push(c),
            c => {
                let mut b = [0; 4];
                for byte in c.encode_utf8(&mut b).bytes() {
                    let _ = write!(out, "\\{byte:03o}");
                }
            }
        }
    }
    out.push('"');
    out
}

/// A module's source as it is written, with what `#line` needs.
struct Out {
    s: String,
    /// The case file, for `#line` before case text.
    case_file: String,
    /// The generated file's name, for `#line` after case text.
    c_file: String,
}

impl Out {
    fn new(case: &Case, module: &str) -> Out {
        Out { s: String::new(), case_file: case.file.display().to_string(), c_file: format!("{module}.c") }
    }

    fn line(&mut self, text: impl AsRef<str>) {
        self.s.push_str(text.as_ref());
        self.s.push('\n');
    }

    /// Case text at its case-file line, then back to the generated file's
    /// own numbering.
    fn case_text(&mut self, line: usize, text: &str) {
        let _ = writeln!(self.s, "#line {line} {}", c_str(&self.case_file));
        self.line(text.trim_end_matches('\n'));
        // The directive's own line is n + 1, so the next one is n + 2.
        let n = self.s.matches('\n').count();
        let _ = writeln!(self.s, "#line {} {}", n + 2, c_str(&self.c_file));
    }

    fn code(&mut self, c: &Code) {
        self.case_text(c.line, &c.text);
    }

    /// Case statements in a block of their own, so their declarations stay local.
    fn block(&mut self, c: &Code) {
        self.line("\t{");
        self.code(c);
        self.line("\t}");
    }
}

/// Text for inside a `/* */` comment: escaped as in a string literal (no
/// newline, no control character), and never `*/` (nor `/*`).
fn comment(s: &str) -> String {
    let quoted = c_str(s);
    quoted[1..quoted.len() - 1].replace("*/", "*\\/").replace("/*", "/\\*")
}

/// Everything gen.rs pastes into C outside a string literal is checked here
/// first, whatever the case loader already checked: identifiers are C
/// identifiers, parameter defaults are integers in range or real booleans,
/// signatures are declarations. Only `body:` is C by design.
fn check_ident(problems: &mut Vec<String>, what: &str, s: &str) {
    if !crate::case::is_c_ident(s) {
        problems.push(format!("{what} {} is not a C identifier", c_str(s)));
    }
}

/// The C initialiser of a parameter, from its validated `default:`.
fn param_init(p: &Param) -> Result<String, String> {
    use serde_norway::Value;
    let int = |v: &Value, lo: i64, hi: i64| -> Result<String, String> {
        let n = match v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse::<i64>().ok(),
            _ => None,
        };
        match n {
            Some(n) if (lo..=hi).contains(&n) => Ok(n.to_string()),
            _ => Err(format!("default of {} parameter {} must be an integer in {lo}..={hi}", p.ty, p.name)),
        }
    };
    match (p.ty.as_str(), &p.default) {
        ("int" | "uint" | "bool", None) => Ok("0".into()),
        ("charp", None) => Ok("NULL".into()),
        ("int", Some(v)) => int(v, i32::MIN.into(), i32::MAX.into()),
        ("uint", Some(v)) => int(v, 0, u32::MAX.into()),
        ("bool", Some(Value::Bool(b))) => Ok(b.to_string()),
        ("bool", Some(_)) => Err(format!("default of bool parameter {} must be true or false", p.name)),
        ("charp", Some(v)) => Ok(c_str(&crate::case::scalar(v))),
        (ty, _) => Err(format!("parameter {} has unknown type {}", p.name, c_str(ty))),
    }
}

fn check_params(problems: &mut Vec<String>, ps: &[Param]) {
    for p in ps {
        check_ident(problems, "parameter name", &p.name);
        if let Err(e) = param_init(p) {
            problems.push(e);
        }
    }
}

/// A `signature:` as (return type, parameters), if both are plain
/// declarations: identifiers, `*`, `,`, `[]`, `...` and balanced
/// parentheses; nothing that ends a declaration or starts a directive,
/// comment or literal.
pub fn checked_signature(sig: &str) -> Option<(String, String)> {
    let (ret, args) = parse_signature(sig)?;
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ' ' || c == '\t' || c == '*';
    if !ret.chars().all(word) || !ret.chars().any(|c| c.is_ascii_alphabetic() || c == '_') {
        return None;
    }
    let mut depth = 0i32;
    for c in args.chars() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' | '.' => {}
            c if word(c) => {}
            _ => return None,
        }
        if depth < 0 {
            return None;
        }
    }
    (depth == 0).then_some((ret, args))
}

/// The whole module when its description is unsafe to generate from: a
/// header and one `#error` per problem, each an escaped string literal.
fn refused(case: &Case, module: &str, what: &str, problems: &[String]) -> String {
    let mut out = Out::new(case, module);
    header(&mut out, case, what, &ModuleCode::default());
    for p in problems {
        out.line(format!("#error {}", c_str(&format!("klpt: {what}: {p}"))));
    }
    out.s
}

/// A module's source up to its header, once the checks every module shares
/// (parameters, includes) and the caller's `problems` allow it; else the
/// whole refused module.
fn begin(
    case: &Case,
    name: &str,
    what: &str,
    params: &[Param],
    code: &ModuleCode,
    mut problems: Vec<String>,
) -> Result<Out, String> {
    check_params(&mut problems, params);
    check_includes(&mut problems, code);
    if !problems.is_empty() {
        return Err(refused(case, name, what, &problems));
    }
    let mut out = Out::new(case, name);
    header(&mut out, case, what, code);
    Ok(out)
}

/// `includes:` entries are header paths and nothing else.
fn check_includes(problems: &mut Vec<String>, code: &ModuleCode) {
    for inc in &code.includes {
        let ok = !inc.is_empty()
            && inc.chars().all(|c| c.is_ascii_alphanumeric() || "_./-".contains(c))
            && !inc.contains("..");
        if !ok {
            problems.push(format!("include {} is not a header path", c_str(inc)));
        }
    }
}

fn header(out: &mut Out, case: &Case, what: &str, code: &ModuleCode) {
    out.line("// SPDX-License-Identifier: GPL-2.0");
    out.line(format!(
        "/* {} generated by klpt from {}. Do not edit: edit the case. */",
        comment(what),
        comment(&case.file.display().to_string())
    ));
    // As in the kernel's selftest modules: every line names the module.
    out.line("#define pr_fmt(fmt) KBUILD_MODNAME \": \" fmt\n");
    for inc in INCLUDES {
        out.line(format!("#include <linux/{inc}.h>"));
    }
    // Checked by the caller (`check_code`): a header path, nothing else.
    for inc in &code.includes {
        out.line(format!("#include <{inc}>"));
    }
    out.line("");
}

fn params(out: &mut Out, ps: &[Param]) {
    for p in ps {
        let (cty, mty) = match p.ty.as_str() {
            "uint" => ("unsigned int", "uint"),
            "bool" => ("bool", "bool"),
            "charp" => ("char *", "charp"),
            _ => ("int", "int"),
        };
        // Checked by the caller: an error here is already refused.
        let init = param_init(p).unwrap_or_else(|_| "0".into());
        match p.array {
            Some(n) => out.line(format!(
                "static {cty} {0}[{n}];\nstatic unsigned int {0}_count;\nmodule_param_array({0}, {mty}, &{0}_count, 0644);",
                p.name
            )),
            None => out.line(format!(
                "static {cty} {0} = {init};\nmodule_param({0}, {mty}, 0644);",
                p.name
            )),
        }
    }
    if !ps.is_empty() {
        out.line("");
    }
}

/// test_klp_shadow_vars.c's wrappers, for case code that uses shadow
/// variables: each `klpt_shadow_*()` calls `klp_shadow_*()` and logs the
/// call as the selftest does, with pointers shown as `PTR<n>` (numbered in
/// order of first appearance, NULL first) so that a transcript does not
/// depend on addresses. `klpt_shadow_ctor` stores `*ctor_data`,
/// `klpt_shadow_dtor` only logs. `klpt_free_ptr_list()` forgets the numbers.
const SHADOW_HELPERS: &str = crate::template::SHADOW_HELPERS_C.text;

/// Identifiers of [`SHADOW_HELPERS`]: a module whose case code names one gets them.
const SHADOW_NAMES: &[&str] = &["klpt_shadow_", "klpt_ptr_id", "klpt_free_ptr_list"];

/// The helpers that case code `texts` of one module uses.
fn helpers(out: &mut Out, texts: &[&str]) {
    if texts.iter().any(|t| SHADOW_NAMES.iter().any(|n| t.contains(n))) {
        out.line(SHADOW_HELPERS);
    }
}

/// Every piece of case C of livepatch `lp`.
fn livepatch_texts(lp: &Livepatch) -> Vec<&str> {
    let code = [&lp.code.c, &lp.code.init, &lp.code.exit];
    let callbacks = lp
        .objects
        .iter()
        .flat_map(|o| &o.callbacks)
        .chain(lp.states.iter().flat_map(|s| &s.callbacks))
        .filter_map(|(_, cb)| cb.body.as_ref());
    code.into_iter()
        .flatten()
        .chain(callbacks)
        .map(|c| c.text.as_str())
        .chain(lp.functions.iter().filter_map(|f| f.body.as_deref()))
        .collect()
}

/// Shorthands for case code: this patch's state `id`, and state `id` of
/// the patches already installed.
const STATE_HELPERS: &str = crate::template::STATE_HELPERS_C.text;

/// The selftest modules' `callback_info()`, word for word in what it prints.
const CALLBACK_INFO: &str = crate::template::CALLBACK_INFO_C.text;

/// One `klp_object` of a livepatch: its name, the indexes of its functions
/// in `lp.functions`, its callbacks and the state data its callbacks keep.
struct Obj<'a> {
    name: &'a str,
    funcs: Vec<usize>,
    callbacks: Vec<(String, Callback)>,
    data: Vec<&'a StateData>,
}

/// The objects of `lp`: those under `objects:` in their order, then those
/// only functions name, in first-use order, then those only state data
/// names. An object that keeps state data has all four callbacks.
fn objects(lp: &Livepatch) -> Vec<Obj<'_>> {
    let mut objs: Vec<Obj> = lp
        .objects
        .iter()
        .map(|o| Obj { name: &o.name, funcs: Vec::new(), callbacks: o.callbacks.clone(), data: Vec::new() })
        .collect();
    fn find<'a>(objs: &mut Vec<Obj<'a>>, name: &'a str) -> usize {
        objs.iter().position(|o| o.name == name).unwrap_or_else(|| {
            objs.push(Obj { name, funcs: Vec::new(), callbacks: Vec::new(), data: Vec::new() });
            objs.len() - 1
        })
    }
    for (fi, f) in lp.functions.iter().enumerate() {
        let i = find(&mut objs, &f.object);
        objs[i].funcs.push(fi);
    }
    for d in lp.states.iter().filter_map(|s| s.data.as_ref()) {
        let i = find(&mut objs, &d.object);
        let o = &mut objs[i];
        o.data.push(d);
        for cb in crate::case::OBJECT_CALLBACKS {
            if !o.callbacks.iter().any(|(n, _)| n == cb) {
                let silent = Callback { log: Log::Off, ..Callback::default() };
                o.callbacks.push((cb.to_string(), silent));
            }
        }
    }
    objs
}

/// test_klp_state*.c's helpers for the data of state `id`, named after it
/// and logging what they do in the selftest modules' words.
fn state_data_helpers(out: &mut Out, id: u64, d: &StateData) {
    let (n, v) = (&d.name, &d.variable);
    // With migrate, a previous patch's state means there is nothing to do.
    let prev = |what: &str, ret: &str| {
        if !d.migrate {
            return String::new();
        }
        format!("\tprev = klp_get_prev_state({id}UL);\n\tif (prev) {{\n\t\tpr_info(\"%s: {what}\\n\", __func__);\n{ret}\t}}\n\n")
    };
    let decl = if d.migrate { "\tstruct klp_state *state, *prev;\n\n" } else { "\tstruct klp_state *state;\n\n" };
    let get = format!("\tstate = klp_get_state(&klpt_patch, {id}UL);\n\tif (!state)\n");
    let alloc_prev = prev(&format!("space to store {v} already allocated"), "\t\treturn 0;\n");
    out.line(format!(
        "static int allocate_{n}_state(void)\n{{\n{decl}{alloc_prev}{get}\t\treturn -EINVAL;\n\n\
         \tstate->data = kzalloc(sizeof({v}), GFP_KERNEL);\n\tif (!state->data)\n\t\treturn -ENOMEM;\n\n\
         \tpr_info(\"%s: allocating space to store {v}\\n\", __func__);\n\treturn 0;\n}}\n"
    ));
    let take_over = prev(&format!("taking over the {v} change"), "\t\tstate->data = prev->data;\n\t\treturn;\n");
    out.line(format!(
        "static void fix_{v}(void)\n{{\n{decl}{get}\t\treturn;\n\n{take_over}\
         \tpr_info(\"%s: fixing {v}\\n\", __func__);\n\t*(typeof({v}) *)state->data = {v};\n\t{v} = {};\n}}\n",
        d.set
    ));
    let give_back = prev(&format!("passing the {v} change back to the old livepatch"), "\t\treturn;\n");
    out.line(format!(
        "static void restore_{v}(void)\n{{\n{decl}{give_back}{get}\t\treturn;\n\n\
         \tpr_info(\"%s: restoring {v}\\n\", __func__);\n\t{v} = *(typeof({v}) *)state->data;\n}}\n"
    ));
    let keep = prev(&format!("keeping space to store {v}"), "\t\treturn;\n");
    out.line(format!(
        "static void free_{n}_state(void)\n{{\n{decl}{keep}{get}\t\treturn;\n\n\
         \tpr_info(\"%s: freeing space for the stored {v}\\n\", __func__);\n\tkfree(state->data);\n}}\n"
    ));
}

/// What object callback `name` does for the state data its object keeps.
fn state_data_calls(name: &str, data: &[&StateData]) -> String {
    let mut s = String::new();
    for d in data {
        let _ = match name {
            "pre_patch" => {
                writeln!(s, "\t{{\n\t\tint ret = allocate_{}_state();\n\n\t\tif (ret)\n\t\t\treturn ret;\n\t}}", d.name)
            }
            "post_patch" => writeln!(s, "\tfix_{}();", d.variable),
            "pre_unpatch" => writeln!(s, "\trestore_{}();", d.variable),
            _ => writeln!(s, "\tfree_{}_state();", d.name),
        };
    }
    s
}

/// The name of the replacement for function `fi` of `lp`.
fn new_name(lp: &Livepatch, fi: usize) -> String {
    let f = &lp.functions[fi];
    f.new_name.clone().unwrap_or_else(|| format!("klpt_{fi}_{}", f.name))
}

/// A callback function: its log line (`info` for `log: true`), what klpt
/// adds (`extra`), the case's body, then its return value.
struct CallbackFn<'a> {
    func: String,
    args: &'a str,
    info: String,
    extra: String,
    returns_int: bool,
}

fn callback(out: &mut Out, f: CallbackFn, cb: &Callback) {
    let ret = if f.returns_int { "int" } else { "void" };
    out.line(format!("static {ret} {}({})\n{{", f.func, f.args));
    match &cb.log {
        Log::Info => out.line(&f.info),
        Log::Text(t) => out.line(format!("\tpr_info(\"%s\\n\", {});", c_str(t))),
        Log::Off => {}
    }
    out.s.push_str(&f.extra);
    if let Some(b) = &cb.body {
        out.block(b);
    }
    if f.returns_int {
        match (&cb.fail, &cb.returns) {
            (Some(e), _) => out.line(format!("\treturn -{e};")),
            (None, Some(p)) => out.line(format!("\treturn {p};")),
            _ => out.line("\treturn 0;"),
        }
    }
    out.line("}\n");
}

/// A work function `n` as the selftests' `busymod_work_func()`, staying
/// inside while `block` is true; its proc file reads `running` or `idle`,
/// and writing `run` queues it again.
fn work_function(out: &mut Out, n: &str, block: Option<&str>) {
    let wait = match block {
        Some(b) => format!("\twhile (READ_ONCE({b}))\n\t\tmsleep(20);\n"),
        None => String::new(),
    };
    let _ = writeln!(out.s, "{}", crate::template::WORK_FUNCTION_C.fill(&[("NAME", n), ("WAIT", &wait)]));
}

/// A target's kprobes, as test_klp_kprobe.c's: on `symbol`, with a post
/// handler that does nothing (it is what makes an ftrace-based kprobe
/// IPMODIFY) when asked for; a pre handler counts hits, which
/// `/proc/<module>/kprobe.<symbol>` shows.
fn kprobes(out: &mut Out, t: &Target) {
    if t.kprobes.is_empty() {
        return;
    }
    out.line("#include <linux/kprobes.h>\n");
    for (i, k) in t.kprobes.iter().enumerate() {
        let _ = writeln!(
            out.s,
            "{}",
            crate::template::KPROBE_C.fill(&[("INDEX", &i.to_string()), ("SYMBOL", &c_str(&k.symbol))])
        );
    }
}

/// The livepatch module `li` of `case`, for a kernel with `caps` (the
/// optional fields of livepatch.h's structs are emitted where it has them).
pub fn livepatch_c(case: &Case, li: usize, caps: &Caps) -> String {
    let fields = &caps.klp_fields;
    let lp: &Livepatch = &case.doc.livepatches[li];
    let mut problems = Vec::new();
    check_ident(&mut problems, "module name", &lp.name);
    for f in &lp.functions {
        check_ident(&mut problems, "function name", &f.name);
        if f.object != "vmlinux" {
            check_ident(&mut problems, "object name", &f.object);
        }
        if let Some(n) = &f.new_name {
            check_ident(&mut problems, "new_name", n);
        }
        if let (None, Some(sig), Some(_)) = (&f.marker, &f.signature, &f.body) {
            if checked_signature(sig).is_none() {
                problems.push(format!(
                    "signature {} is not `<return type> (<parameters>)` in plain declarations",
                    c_str(sig)
                ));
            }
        }
    }
    for o in &lp.objects {
        if o.name != "vmlinux" {
            check_ident(&mut problems, "object name", &o.name);
        }
    }
    let mut out = match begin(case, &lp.name, &format!("Livepatch module {}", lp.name), &lp.params, &lp.code, problems)
    {
        Ok(out) => out,
        Err(refused) => return refused,
    };
    // Declared first so that case code can name the patch (klp_get_state()).
    out.line("static struct klp_patch klpt_patch;\n#define KLPT_PATCH (&klpt_patch)\n");
    if !lp.states.is_empty() {
        out.line(STATE_HELPERS);
    }
    params(&mut out, &lp.params);
    for (fi, f) in lp.functions.iter().enumerate() {
        if f.syscall.is_some() {
            let p = crate::case::syscall_param(fi);
            out.line(format!("static char *{p};\nmodule_param({p}, charp, 0444);\n"));
        }
    }
    let objs = objects(lp);
    if objs.iter().flat_map(|o| &o.callbacks).any(|(_, cb)| cb.log == Log::Info) {
        out.line(CALLBACK_INFO);
    }
    helpers(&mut out, &livepatch_texts(lp));
    if let Some(c) = &lp.code.c {
        out.code(c);
        out.line("");
    }

    // Replacement functions, in declaration order.
    for (fi, f) in lp.functions.iter().enumerate() {
        let new = new_name(lp, fi);
        match (&f.marker, &f.signature, &f.body) {
            (Some(marker), ..) => {
                out.line(format!(
                    "static int {new}(struct seq_file *m, void *v)\n{{\n\tseq_printf(m, \"%s\\n\", {});\n\treturn 0;\n}}\n",
                    c_str(marker)
                ));
            }
            (None, Some(sig), Some(body)) => {
                let (ret, args) = parse_signature(sig).unwrap_or_else(|| ("int".into(), "void".into()));
                out.line(format!("static {ret} {new}({args})\n{{"));
                out.case_text(case.body_lines.get(&(li, fi)).copied().unwrap_or(1), body);
                out.line("}\n");
            }
            _ => {}
        }
    }
    for d in lp.states.iter().filter_map(|s| s.data.as_ref().map(|d| (s.id, d))) {
        state_data_helpers(&mut out, d.0, d.1);
    }
    for (oi, o) in objs.iter().enumerate() {
        for (name, cb) in &o.callbacks {
            let f = CallbackFn {
                func: format!("klpt_obj{oi}_{name}"),
                args: "struct klp_object *obj",
                info: format!("\tklpt_callback_info(\"{name}_callback\", obj);"),
                extra: state_data_calls(name, &o.data),
                returns_int: name == "pre_patch",
            };
            callback(&mut out, f, cb);
        }
    }
    // Per-state callbacks exist only in newer kernels' struct klp_state.
    let state_callbacks = caps.has_field("klp_state", "callbacks");
    for (si, st) in lp.states.iter().enumerate().filter(|_| state_callbacks) {
        for (name, cb) in &st.callbacks {
            let f = CallbackFn {
                func: format!("klpt_state{si}_{name}"),
                args: "struct klp_patch *patch, struct klp_state *state",
                info: format!("\tpr_info(\"%s: state %lu\\n\", \"{name}_callback\", state->id);"),
                extra: String::new(),
                returns_int: crate::case::STATE_CALLBACKS_RETURNING.contains(&name.as_str()),
            };
            callback(&mut out, f, cb);
        }
    }

    for (oi, o) in objs.iter().enumerate() {
        out.line(format!("static struct klp_func klpt_funcs_{oi}[] = {{"));
        for &fi in &o.funcs {
            let f = &lp.functions[fi];
            // A syscall's symbol comes with the load (module init sets it).
            let old = match &f.syscall {
                Some(_) => "NULL".to_string(),
                None => c_str(&f.name),
            };
            out.line(format!(
                "\t{{\n\t\t.old_name = {old},\n\t\t.new_func = {},\n\t\t.old_sympos = {},\n\t}},",
                new_name(lp, fi),
                f.sympos
            ));
        }
        out.line("\t{ }\n};\n");
    }
    out.line("static struct klp_object klpt_objs[] = {");
    for (oi, o) in objs.iter().enumerate() {
        let name = if o.name == "vmlinux" { "NULL".to_string() } else { c_str(o.name) };
        out.line(format!("\t{{\n\t\t.name = {name},\n\t\t.funcs = klpt_funcs_{oi},"));
        if !o.callbacks.is_empty() {
            out.line("\t\t.callbacks = {");
            for (name, _) in &o.callbacks {
                out.line(format!("\t\t\t.{name} = klpt_obj{oi}_{name},"));
            }
            out.line("\t\t},");
        }
        out.line("\t},");
    }
    out.line("\t{ }\n};\n");
    if !lp.states.is_empty() {
        out.line("static struct klp_state klpt_states[] = {");
        // A revision that dropped `version` has a struct klp_state without it.
        let versioned = caps.structs.get("klp_state").is_none_or(|f| f.is_empty() || f.contains("version"));
        for (si, st) in lp.states.iter().enumerate() {
            out.line(format!("\t{{\n\t\t.id = {},", st.id));
            if versioned {
                out.line(format!("\t\t.version = {},", st.version));
            }
            let cbs: Vec<&String> = st
                .callbacks
                .iter()
                .map(|(n, _)| n)
                .filter(|n| state_callbacks && caps.has_field("klp_state_callbacks", n))
                .collect();
            if !cbs.is_empty() {
                out.line("\t\t.callbacks = {");
                for n in cbs {
                    out.line(format!("\t\t\t.{n} = klpt_state{si}_{n},"));
                }
                out.line("\t\t},");
            }
            for (field, v) in [("is_shadow", st.is_shadow), ("block_disable", st.block_disable)] {
                if let (Some(v), true) = (v, caps.has_field("klp_state", field)) {
                    out.line(format!("\t\t.{field} = {v},"));
                }
            }
            out.line("\t},");
        }

        out.line("\t{ }\n};\n");
    }
    out.line("static struct klp_patch klpt_patch = {\n\t.mod = THIS_MODULE,\n\t.objs = klpt_objs,");
    if !lp.states.is_empty() {
        out.line("\t.states = klpt_states,");
    }
    if lp.replace && fields.contains("replace") {
        out.line("\t.replace = true,");
    }
    if let (Some(r), true) = (lp.replaceable, fields.contains("replaceable")) {
        out.line(format!("\t.replaceable = {r},"));
    }
    if let (Some(s), true) = (lp.replace_set, fields.contains("replace_set")) {
        out.line(format!("\t.replace_set = {s},"));
    }
    out.line("};\n");

    out.line(format!("static int __init {}_init(void)\n{{", lp.name));
    if let Some(c) = &lp.code.init {
        out.block(c);
    }
    for (oi, o) in objs.iter().enumerate() {
        for (k, &fi) in o.funcs.iter().enumerate() {
            let Some(sc) = &lp.functions[fi].syscall else {
                continue;
            };
            let p = crate::case::syscall_param(fi);
            out.line(format!(
                "\tif (!{p}) {{\n\t\tpr_err(\"the symbol of syscall {sc} is a load argument: {p}=<symbol>\\n\");\n\t\treturn -EINVAL;\n\t}}\n\tklpt_funcs_{oi}[{k}].old_name = {p};"
            ));
        }
    }
    // A parameter named like a klp_patch field sets it at load time, as the
    // kernel's own selftest modules do with `replace=`.
    for p in &lp.params {
        if fields.contains(&p.name) {
            out.line(format!("\tklpt_patch.{0} = {0};", p.name));
        }
    }
    out.line("\treturn klp_enable_patch(&klpt_patch);\n}\n");
    out.line(format!("static void __exit {}_exit(void)\n{{", lp.name));
    if let Some(c) = &lp.code.exit {
        out.block(c);
    }
    out.line("}\n");
    out.line(format!(
        "module_init({0}_init);\nmodule_exit({0}_exit);\nMODULE_LICENSE(\"GPL\");\nMODULE_INFO(livepatch, \"Y\");",
        lp.name
    ));
    out.s
}

/// A target module: each function is readable at `/proc/<module>/<function>`.
pub fn target_c(case: &Case, t: &Target) -> String {
    let mut problems = Vec::new();
    check_ident(&mut problems, "module name", &t.name);
    for f in &t.functions {
        check_ident(&mut problems, "function name", &f.name);
    }
    let mut out = match begin(case, &t.name, &format!("Target module {}", t.name), &t.params, &t.code, problems) {
        Ok(out) => out,
        Err(refused) => return refused,
    };
    params(&mut out, &t.params);
    let texts: Vec<&str> =
        [&t.code.c, &t.code.init, &t.code.exit].into_iter().flatten().map(|c| c.text.as_str()).collect();
    helpers(&mut out, &texts);
    if let Some(c) = &t.code.c {
        out.code(c);
        out.line("");
    }
    let proc = !t.functions.is_empty() || !t.kprobes.is_empty();
    if proc {
        out.line("static struct proc_dir_entry *klpt_dir;\n");
    }
    kprobes(&mut out, t);
    // Plain functions first: a parking function's worker may call them.
    let plain = |f: &&crate::case::TargetFunc| !f.park && f.work.is_none();
    let mut ordered: Vec<&crate::case::TargetFunc> = t.functions.iter().filter(plain).collect();
    ordered.extend(t.functions.iter().filter(|f| f.work.is_some()));
    ordered.extend(t.functions.iter().filter(|f| f.park));
    for f in ordered {
        let n = &f.name;
        if let Some(w) = &f.work {
            work_function(&mut out, n, w.block.as_deref());
        } else if f.park {
            // A worker sleeps *inside* n() until released, which keeps any
            // transition that patches n() from completing, and leaves that
            // worker unswitched: on request (`call F`) it calls the module's
            // function F from inside n() and records what F printed, which
            // shows the implementation an unswitched task runs.
            let callees: Vec<&str> = t.functions.iter().filter(plain).map(|g| g.name.as_str()).collect();
            let mut dispatch = String::new();
            for g in &callees {
                let _ = writeln!(dispatch, "\telse if (!strcmp(name, {}))\n\t\t{g}(&m, NULL);", c_str(g));
            }
            let _ =
                writeln!(out.s, "{}", crate::template::PARKED_WORKER_C.fill(&[("NAME", n), ("DISPATCH", &dispatch)]));
        } else {
            let prints = f.prints.clone().unwrap_or_else(|| format!("{}: {n} original", t.name));
            out.line(format!(
                "noinline int {n}(struct seq_file *m, void *v)\n{{\n\tseq_printf(m, \"%s\\n\", {});\n\treturn 0;\n}}\n",
                c_str(&prints)
            ));
        }
        let special = f.park || f.work.is_some();
        let show = if special { format!("{n}_show") } else { n.clone() };
        let write = if special { format!("\t.proc_write = {n}_write,\n") } else { String::new() };
        out.line(format!(
            "static int {n}_open(struct inode *inode, struct file *file)\n{{\n\treturn single_open(file, {show}, NULL);\n}}\n\n\
             static const struct proc_ops {n}_ops = {{\n\t.proc_open = {n}_open,\n\t.proc_read = seq_read,\n\t.proc_lseek = seq_lseek,\n\t.proc_release = single_release,\n{write}}};\n"
        ));
    }

    out.line(format!("static int __init {}_init(void)\n{{", t.name));
    if t.log {
        out.line("\tpr_info(\"%s\\n\", __func__);");
    }
    if let Some(c) = &t.code.init {
        out.block(c);
    }
    if proc {
        out.line(format!("\tklpt_dir = proc_mkdir({}, NULL);\n\tif (!klpt_dir)\n\t\treturn -ENOMEM;", c_str(&t.name)));
    }
    for f in &t.functions {
        out.line(format!("\tproc_create({}, 0644, klpt_dir, &{}_ops);", c_str(&f.name), f.name));
        if f.park {
            out.line(format!(
                "\tproc_create({}, 0444, klpt_dir, &{}_call_ops);",
                c_str(&format!("{}.call", f.name)),
                f.name
            ));
        }
    }
    for (i, k) in t.kprobes.iter().enumerate() {
        out.line(format!(
            "\tproc_create({}, 0444, klpt_dir, &klpt_kp{i}_ops);",
            c_str(&format!("kprobe.{}", k.symbol))
        ));
        match &k.post_handler {
            PostHandler::Always(false) => {}
            PostHandler::Always(true) => out.line(format!("\tklpt_kp{i}.post_handler = klpt_kp{i}_post;")),
            PostHandler::Param(p) => out.line(format!("\tif ({p})\n\t\tklpt_kp{i}.post_handler = klpt_kp{i}_post;")),
        }
        // Earlier kprobes are unregistered if a later one fails.
        let undo: String = (0..i).rev().map(|j| format!("\t\t\tunregister_kprobe(&klpt_kp{j});\n")).collect();
        out.line(format!(
            "\t{{\n\t\tint ret = register_kprobe(&klpt_kp{i});\n\n\t\tif (ret) {{\n{undo}\t\t\tproc_remove(klpt_dir);\n\t\t\treturn ret;\n\t\t}}\n\t}}"
        ));
    }
    for f in &t.functions {
        let Some(w) = &f.work else { continue };
        // As the selftests' busy module: wait until the function runs, and
        // unless it is told to stay, until it is done, so its lines come first.
        out.line(format!("\tschedule_work(&{0}_work);\n\twait_for_completion(&{0}_started);", f.name));
        match &w.block {
            Some(b) => out.line(format!("\tif (!READ_ONCE({b}))\n\t\tflush_work(&{}_work);", f.name)),
            None => out.line(format!("\tflush_work(&{}_work);", f.name)),
        }
    }
    out.line("\treturn 0;\n}\n");
    out.line(format!("static void __exit {}_exit(void)\n{{", t.name));
    for i in (0..t.kprobes.len()).rev() {
        out.line(format!("\tunregister_kprobe(&klpt_kp{i});"));
    }
    if proc {
        out.line("\tproc_remove(klpt_dir);");
    }
    for f in t.functions.iter().filter(|f| f.park) {
        out.line(format!("\tWRITE_ONCE({0}_released, true);\n\tflush_work(&{0}_work);", f.name));
    }
    for f in &t.functions {
        let Some(w) = &f.work else { continue };
        if let Some(b) = &w.block {
            out.line(format!("\tWRITE_ONCE({b}, false);"));
        }
        out.line(format!("\tflush_work(&{}_work);", f.name));
    }
    if let Some(c) = &t.code.exit {
        out.block(c);
    }
    if t.log {
        out.line("\tpr_info(\"%s\\n\", __func__);");
    }
    out.line("}\n");
    out.line(format!("module_init({0}_init);\nmodule_exit({0}_exit);\nMODULE_LICENSE(\"GPL\");", t.name));
    out.s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(klp_fields: KlpFields) -> Caps {
        Caps { klp_fields, ..Caps::default() }
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(c_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
    }

    #[test]
    fn fields_only_where_the_kernel_has_them() {
        let src = "description: d\nlivepatches:\n  - name: lp\n    replace: true\n    replace_set: 7\n    replaceable: true\n    functions:\n      - name: cmdline_proc_show\n        marker: m\n      - object: tgt\n        name: f\n        signature: int (struct seq_file *m, void *v)\n        body: |\n          return 0;\nsteps: [load: lp]\n";
        let case = crate::case::parse(std::path::Path::new("c.yaml"), src).unwrap();
        let stock: KlpFields = ["replace".to_string()].into();
        let c = livepatch_c(&case, 0, &with(stock));
        assert!(c.contains(".replace = true") && !c.contains("replace_set") && !c.contains("replaceable"));
        assert!(c.contains("#line 14 \"c.yaml\""), "{c}");
        assert!(c.contains(".name = \"tgt\"") && c.contains(".name = NULL"));
        let v2: KlpFields = ["replace_set".to_string()].into();
        let c = livepatch_c(&case, 0, &with(v2));
        assert!(c.contains(".replace_set = 7") && !c.contains(".replace = true"));
    }

    #[test]
    fn callbacks_objects_and_case_code() {
        let src = "description: d\ntargets:\n  - name: tg\n    log: true\n    init: |\n      pr_info(\"hi\\n\");\n    functions: [{name: f}]\nlivepatches:\n  - name: lp\n    params: [{name: ret, type: int}]\n    c: |\n      static int n;\n    objects:\n      vmlinux:\n        callbacks: [pre_patch, post_unpatch]\n      tg:\n        callbacks:\n          pre_patch: {returns: ret, log: hello}\n          pre_unpatch: {body: n++;, log: false}\n      gone:\n        callbacks: {pre_patch: {fail: ENODEV}}\n    functions:\n      - {object: tg, name: f, marker: m}\nsteps: [load: lp]\n";
        let case = crate::case::parse(std::path::Path::new("c.yaml"), src).unwrap_or_else(|e| panic!("{e}"));
        let c = livepatch_c(&case, 0, &Caps::default());
        for want in [
            "#define pr_fmt(fmt) KBUILD_MODNAME \": \" fmt",
            "static struct klp_patch klpt_patch;",
            "klpt_callback_info(\"pre_patch_callback\", obj);\n\treturn 0;",
            "klpt_callback_info(\"post_unpatch_callback\", obj);",
            "pr_info(\"%s\\n\", \"hello\");\n\treturn ret;",
            "static void klpt_obj1_pre_unpatch(struct klp_object *obj)\n{\n\t{\n#line 19 \"c.yaml\"\nn++;",
            "static int klpt_obj2_pre_patch(struct klp_object *obj)\n{\n\tklpt_callback_info(\"pre_patch_callback\", obj);\n\treturn -ENODEV;",
            ".name = NULL,\n\t\t.funcs = klpt_funcs_0,\n\t\t.callbacks = {\n\t\t\t.pre_patch = klpt_obj0_pre_patch,\n\t\t\t.post_unpatch = klpt_obj0_post_unpatch,",
            ".name = \"gone\",\n\t\t.funcs = klpt_funcs_2,",
            "#line 12 \"c.yaml\"\nstatic int n;",
            "static int __init lp_init(void)",
        ] {
            assert!(c.contains(want), "{want:?} not in\n{c}");
        }
        // After case text, gcc counts the generated file's own lines again.
        for (i, l) in c.lines().enumerate() {
            if let Some(n) = l.strip_prefix("#line ").and_then(|r| r.strip_suffix(" \"lp.c\"")) {
                assert_eq!(n.parse::<usize>().unwrap(), i + 2, "line {}: {l}", i + 1);
            }
        }
        let t = target_c(&case, &case.doc.targets[0]);
        assert!(t.contains("static int __init tg_init(void)\n{\n\tpr_info(\"%s\\n\", __func__);\n\t{\n#line 6 \"c.yaml\"\npr_info(\"hi\\n\");"), "{t}");
        assert!(t.contains("\tpr_info(\"%s\\n\", __func__);\n}\n\nmodule_init(tg_init);"), "{t}");
    }

    #[test]
    fn work_functions_syscalls_and_arrays() {
        let src = "description: d\ntargets:\n  - name: tg\n    params: [{name: block, type: bool}]\n    functions:\n      - {name: busy, work: {block: block}}\n      - {name: once, work: true}\n      - {name: p, park: true}\n      - {name: f}\nlivepatches:\n  - name: lp\n    params: [{name: pids, type: int, array: 8}]\n    functions:\n      - {object: tg, name: busy, new_name: patched_busy, signature: 'void (struct work_struct *w)', body: 'return;'}\n      - {syscall: getpid, signature: 'asmlinkage long (void)', body: 'return 0;'}\nsteps: [load: lp]\n";
        let case = crate::case::parse(std::path::Path::new("c.yaml"), src).unwrap_or_else(|e| panic!("{e}"));
        let t = target_c(&case, &case.doc.targets[0]);
        for want in [
            "noinline void busy(struct work_struct *work)\n{\n\tpr_info(\"%s enter\\n\", __func__);",
            "\twhile (READ_ONCE(block))\n\t\tmsleep(20);\n\tWRITE_ONCE(busy_running, false);\n\tpr_info(\"%s exit\\n\", __func__);",
            "static DECLARE_WORK(busy_work, busy);",
            "\tschedule_work(&busy_work);\n\twait_for_completion(&busy_started);\n\tif (!READ_ONCE(block))\n\t\tflush_work(&busy_work);",
            "\tschedule_work(&once_work);\n\twait_for_completion(&once_started);\n\tflush_work(&once_work);",
            "\tWRITE_ONCE(block, false);\n\tflush_work(&busy_work);",
            ".proc_write = busy_write,",
        ] {
            assert!(t.contains(want), "{want:?} not in\n{t}");
        }
        // The parked worker calls plain functions only.
        assert!(t.contains("else if (!strcmp(name, \"f\"))") && !t.contains("strcmp(name, \"busy\")"), "{t}");
        let c = livepatch_c(&case, 0, &Caps::default());
        for want in [
            "static int pids[8];\nstatic unsigned int pids_count;\nmodule_param_array(pids, int, &pids_count, 0644);",
            "static char *klpt_sym_1;\nmodule_param(klpt_sym_1, charp, 0444);",
            "static void patched_busy(struct work_struct *w)",
            ".new_func = patched_busy,",
            "static asmlinkage long klpt_1_sys_getpid(void)",
            ".old_name = NULL,\n\t\t.new_func = klpt_1_sys_getpid,",
            "\tif (!klpt_sym_1) {",
            "\tklpt_funcs_1[0].old_name = klpt_sym_1;\n\treturn klp_enable_patch(&klpt_patch);",
        ] {
            assert!(c.contains(want), "{want:?} not in\n{c}");
        }
    }

    #[test]
    fn state_data_and_state_callbacks_where_the_kernel_has_them() {
        let src = "description: d\nlivepatches:\n  - name: lp\n    states:\n      - id: 1\n        version: 1\n        data: {name: ll, variable: console_loglevel, set: '15'}\n      - id: 2\n        callbacks: {pre_patch: {fail: EIO}, post_unpatch: {}}\n        is_shadow: true\n    objects:\n      vmlinux: {callbacks: [post_patch]}\nsteps: [load: lp]\n";
        let case = crate::case::parse(std::path::Path::new("c.yaml"), src).unwrap_or_else(|e| panic!("{e}"));
        let classic = livepatch_c(&case, 0, &Caps::default());
        for want in [
            "static int allocate_ll_state(void)\n{\n\tstruct klp_state *state;\n\n\tstate = klp_get_state(&klpt_patch, 1UL);",
            "\tpr_info(\"%s: fixing console_loglevel\\n\", __func__);\n\t*(typeof(console_loglevel) *)state->data = console_loglevel;\n\tconsole_loglevel = 15;",
            "static int klpt_obj0_pre_patch(struct klp_object *obj)\n{\n\t{\n\t\tint ret = allocate_ll_state();",
            "static void klpt_obj0_post_patch(struct klp_object *obj)\n{\n\tklpt_callback_info(\"post_patch_callback\", obj);\n\tfix_console_loglevel();\n}",
            "static void klpt_obj0_post_unpatch(struct klp_object *obj)\n{\n\tfree_ll_state();\n}",
            "\t{\n\t\t.id = 1,\n\t\t.version = 1,\n\t},",
            "static __maybe_unused struct klp_state *klpt_prev_state(unsigned long id)",
        ] {
            assert!(classic.contains(want), "{want:?} not in\n{classic}");
        }
        assert!(
            !classic.contains("klp_get_prev_state(1UL)")
                && !classic.contains("klpt_state1_")
                && !classic.contains("is_shadow"),
            "{classic}"
        );
        // A kernel whose struct klp_state has per-state callbacks and no version.
        let mut newer = Caps::default();
        newer.structs.insert("klp_state".into(), ["id", "callbacks", "is_shadow", "data"].map(String::from).into());
        newer.structs.insert(
            "klp_state_callbacks".into(),
            ["pre_patch", "post_patch", "pre_unpatch", "post_unpatch"].map(String::from).into(),
        );
        let c = livepatch_c(&case, 0, &newer);
        for want in [
            "static int klpt_state1_pre_patch(struct klp_patch *patch, struct klp_state *state)\n{\n\tpr_info(\"%s: state %lu\\n\", \"pre_patch_callback\", state->id);\n\treturn -EIO;",
            "static void klpt_state1_post_unpatch(struct klp_patch *patch, struct klp_state *state)",
            "\t{\n\t\t.id = 2,\n\t\t.callbacks = {\n\t\t\t.pre_patch = klpt_state1_pre_patch,\n\t\t\t.post_unpatch = klpt_state1_post_unpatch,\n\t\t},\n\t\t.is_shadow = true,\n\t},",
        ] {
            assert!(c.contains(want), "{want:?} not in\n{c}");
        }
        assert!(!c.contains(".version"), "{c}");
    }

    #[test]
    fn shadow_helpers_where_case_code_uses_them() {
        let src = "description: d\ntargets:\n  - name: tg\n    init: 'klpt_ptr_id(NULL);'\n  - name: plain\n    functions: [{name: f}]\nlivepatches:\n  - name: lp\n    functions:\n      - name: cmdline_proc_show\n        signature: int (struct seq_file *m, void *v)\n        body: |\n          int *n = klpt_shadow_get_or_alloc(m, 1, sizeof(*n), GFP_KERNEL, NULL, NULL);\n          seq_printf(m, \"%d\\n\", n ? ++*n : -1);\n          return 0;\n  - name: lp2\n    functions: [{name: cmdline_proc_show, marker: m}]\nsteps: [load: lp]\n";
        let case = crate::case::parse(std::path::Path::new("c.yaml"), src).unwrap_or_else(|e| panic!("{e}"));
        let has = |c: &str| c.contains("static __maybe_unused void *klpt_shadow_get_or_alloc(");
        assert!(has(&livepatch_c(&case, 0, &Caps::default())));
        assert!(!has(&livepatch_c(&case, 1, &Caps::default())));
        assert!(has(&target_c(&case, &case.doc.targets[0])));
        assert!(!has(&target_c(&case, &case.doc.targets[1])));
        assert!(SHADOW_HELPERS.contains("pr_info(\"klp_shadow_free_all(id=0x%lx, dtor=PTR%d)\\n\""));
    }

    #[test]
    fn kprobes_of_a_target() {
        let src = "description: d\ntargets:\n  - name: kp\n    params: [{name: post, type: bool}]\n    kprobes:\n      - {symbol: cmdline_proc_show, post_handler: post}\n      - {symbol: meminfo_proc_show, post_handler: true}\nsteps: [load: kp]\n";
        let case = crate::case::parse(std::path::Path::new("c.yaml"), src).unwrap_or_else(|e| panic!("{e}"));
        let t = target_c(&case, &case.doc.targets[0]);
        for want in [
            "#include <linux/kprobes.h>",
            "static struct kprobe klpt_kp0 = {\n\t.symbol_name = \"cmdline_proc_show\",\n\t.pre_handler = klpt_kp0_pre,\n};",
            "\tproc_create(\"kprobe.cmdline_proc_show\", 0444, klpt_dir, &klpt_kp0_ops);\n\tif (post)\n\t\tklpt_kp0.post_handler = klpt_kp0_post;",
            "\tklpt_kp1.post_handler = klpt_kp1_post;\n\t{\n\t\tint ret = register_kprobe(&klpt_kp1);\n\n\t\tif (ret) {\n\t\t\tunregister_kprobe(&klpt_kp0);\n\t\t\tproc_remove(klpt_dir);\n\t\t\treturn ret;",
            "\tunregister_kprobe(&klpt_kp1);\n\tunregister_kprobe(&klpt_kp0);\n\tproc_remove(klpt_dir);",
        ] {
            assert!(t.contains(want), "{want:?} not in\n{t}");
        }
    }

    #[test]
    fn comments_never_close_early() {
        for s in ["*/", "a*/b/*c", "**//", "/*/", "*\n/", "x */ int y; /* z"] {
            let c = comment(s);
            assert!(!c.contains("*/") && !c.contains("/*") && !c.contains('\n'), "{s:?} -> {c:?}");
        }
        assert_eq!(comment("/tmp/cases/x.yaml"), "/tmp/cases/x.yaml");
        assert_eq!(c_str("what??/"), "\"what?\\?/\"");
    }

    /// Hostile text: every way out of a string literal or a comment, a
    /// directive on a line of its own, shell syntax, a trigraph, a backslash
    /// at the end, control and non-ASCII characters. `PWNED` marks it.
    const HOSTILE: &str =
        "x\"); PWNED(); (\" */ PWNED /* \n#define PWNED 1\n$(PWNED) `PWNED` '\\'' ??/\n\t\u{1}é PWNED\\";

    /// A YAML double-quoted scalar holding `s` exactly.
    fn yaml_quoted(s: &str) -> String {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\x{:02x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    /// What C sees outside string and character literals and comments, with
    /// each literal replaced by `""`; fails on a literal or comment that
    /// does not end (properly: on its own line, for literals).
    fn code_outside_literals(c: &str) -> String {
        let mut code = String::new();
        let mut it = c.chars().peekable();
        while let Some(ch) = it.next() {
            match ch {
                '"' | '\'' => {
                    loop {
                        match it.next() {
                            Some('\\') => match it.next() {
                                Some('\n') | None => panic!("line continuation inside a literal:\n{c}"),
                                Some(_) => {}
                            },
                            Some(q) if q == ch => break,
                            Some('\n') | None => panic!("literal not closed on its line:\n{c}"),
                            Some(_) => {}
                        }
                    }
                    code.push_str("\"\"");
                }
                '/' if it.peek() == Some(&'*') => {
                    it.next();
                    let mut prev = ' ';
                    loop {
                        match it.next() {
                            Some('/') if prev == '*' => break,
                            Some(x) => prev = x,
                            None => panic!("comment never closed:\n{c}"),
                        }
                    }
                    code.push(' ');
                }
                '/' if it.peek() == Some(&'/') => {
                    for x in it.by_ref() {
                        if x == '\n' {
                            code.push('\n');
                            break;
                        }
                    }
                }
                ch => code.push(ch),
            }
        }
        code
    }

    /// Nothing of HOSTILE outside properly escaped literals: no `PWNED` in
    /// the code, no directive but ours, every `#line` names `file` escaped.
    fn assert_contained(c: &str, file: &str) {
        let code = code_outside_literals(c);
        assert!(
            !code.contains("PWNED") && !code.contains("$(") && !code.contains('`') && !code.contains('\u{1}'),
            "hostile text outside literals:\n{code}\n--- from ---\n{c}"
        );
        for l in code.lines() {
            let l = l.trim_start();
            assert!(
                !l.starts_with("#")
                    || [
                        "#include <linux/",
                        "#line ",
                        "#error \"\"",
                        "#define pr_fmt(fmt) KBUILD_MODNAME",
                        "#define KLPT_PATCH (&klpt_patch)"
                    ]
                    .iter()
                    .any(|p| l.starts_with(p)),
                "unexpected directive `{l}` in:\n{c}"
            );
        }
        for l in c.lines().filter(|l| l.starts_with("#line ")) {
            let (n, f) = l["#line ".len()..].split_once(' ').unwrap();
            // Case text names the case file; generated text names the module's own `.c`.
            let own = f.strip_prefix('"').and_then(|f| f.strip_suffix(".c\"")).is_some_and(crate::case::is_c_ident);
            assert!(n.parse::<u32>().is_ok() && (f == c_str(file) || own), "bad #line `{l}`");
        }
        assert!(!c.contains("\\\n"), "a line continuation in:\n{c}");
    }

    #[test]
    fn hostile_text_never_reaches_the_compiler_unquoted() {
        let q = yaml_quoted(HOSTILE);
        // Everything the loader lets through as free text, hostile.
        let src = format!(
            "description: {q}\n\
             targets:\n  - name: klpt_tgt\n    params:\n      - {{name: s, type: charp, default: {q}}}\n      - {{name: n, type: int, default: -2147483648}}\n      - {{name: u, type: uint, default: 4294967295}}\n      - {{name: b, type: bool, default: true}}\n    functions:\n      - name: show\n        prints: {q}\n      - name: parked\n        park: true\n\
             livepatches:\n  - name: klpt_lp\n    params: [{{name: c, type: charp, default: {q}}}]\n    functions:\n      - name: cmdline_proc_show\n        marker: {q}\n      - object: klpt_tgt\n        name: show\n        signature: \"int (struct seq_file *m, void *v)\"\n        body: |\n          return BODY_OK;\n\
             steps:\n  - load: klpt_tgt\n  - load: klpt_lp\n"
        );
        // A directory name ending in `*` puts `*/` in the path; the file name
        // holds a newline, a directive, quotes, `$(...)` and backticks.
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("k*");
        std::fs::create_dir(&dir).unwrap();
        let file = dir.join(" PWNED \n#define PWNED 1\n\"q\" $(PWNED) `PWNED` \\.yaml");
        std::fs::write(&file, &src).unwrap();
        let path = file.display().to_string();
        assert!(path.contains("*/") && path.contains('\n'));
        let case =
            crate::case::parse(&file, &std::fs::read_to_string(&file).unwrap()).unwrap_or_else(|e| panic!("{e}"));
        let fields = with(["replace".to_string()].into());

        let t = target_c(&case, &case.doc.targets[0]);
        assert_contained(&t, &path);
        assert!(!t.contains("#error") && t.contains(&c_str(HOSTILE)), "{t}");
        assert!(
            t.contains("static int n = -2147483648;")
                && t.contains("static unsigned int u = 4294967295;")
                && t.contains("static bool b = true;"),
            "{t}"
        );
        let lp = livepatch_c(&case, 0, &fields);
        assert_contained(&lp, &path);
        assert!(!lp.contains("#error") && lp.contains(&c_str(HOSTILE)), "{lp}");
        // The body, and only the body, is C as written.
        assert!(lp.lines().any(|l| l == "return BODY_OK;"), "{lp}");

        // What the loader refuses today, as if it did not: gen.rs refuses it
        // too, with nothing but `#error` string literals.
        use serde_norway::Value;
        let h = HOSTILE.to_string();
        type Edit<'a> = Box<dyn Fn(&mut Case) + 'a>;
        let edits: Vec<(&str, Edit)> = vec![
            ("livepatch name", Box::new(|c| c.doc.livepatches[0].name = h.clone())),
            ("livepatch function name", Box::new(|c| c.doc.livepatches[0].functions[0].name = h.clone())),
            ("object name", Box::new(|c| c.doc.livepatches[0].functions[1].object = h.clone())),
            (
                "signature",
                Box::new(|c| {
                    c.doc.livepatches[0].functions[1].signature =
                        Some(format!("int (void) {{ PWNED(); }} static int x ({HOSTILE})"))
                }),
            ),
            (
                "signature return type",
                Box::new(|c| c.doc.livepatches[0].functions[1].signature = Some("int; PWNED x (void)".into())),
            ),
            (
                "signature parentheses",
                Box::new(|c| {
                    c.doc.livepatches[0].functions[1].signature =
                        Some("int (void) __attribute__((constructor)) PWNED (void)".into())
                }),
            ),
            ("livepatch parameter name", Box::new(|c| c.doc.livepatches[0].params[0].name = h.clone())),
            ("parameter type", Box::new(|c| c.doc.livepatches[0].params[0].ty = h.clone())),
            ("target name", Box::new(|c| c.doc.targets[0].name = h.clone())),
            ("target function name", Box::new(|c| c.doc.targets[0].functions[1].name = h.clone())),
            ("target parameter name", Box::new(|c| c.doc.targets[0].params[1].name = h.clone())),
            (
                "int default text",
                Box::new(|c| {
                    c.doc.targets[0].params[1].default = Some(Value::String(format!("1; PWNED(); {HOSTILE}")))
                }),
            ),
            (
                "int default too small",
                Box::new(|c| c.doc.targets[0].params[1].default = Some(Value::Number((-2147483649i64).into()))),
            ),
            ("int default float", Box::new(|c| c.doc.targets[0].params[1].default = Some(Value::Number(1.5.into())))),
            (
                "uint default negative",
                Box::new(|c| c.doc.targets[0].params[2].default = Some(Value::Number((-1).into()))),
            ),
            (
                "uint default too big",
                Box::new(|c| c.doc.targets[0].params[2].default = Some(Value::Number(4294967296u64.into()))),
            ),
            ("bool default number", Box::new(|c| c.doc.targets[0].params[3].default = Some(Value::Number(1.into())))),
            ("bool default text", Box::new(|c| c.doc.targets[0].params[3].default = Some(Value::String(h.clone())))),
        ];
        for (what, edit) in &edits {
            let mut c = case.clone();
            edit(&mut c);
            let (t, lp) = (target_c(&c, &c.doc.targets[0]), livepatch_c(&c, 0, &fields));
            assert_contained(&t, &path);
            assert_contained(&lp, &path);
            // The module that holds the field is refused whole.
            let refused = |out: &str| out.contains("#error") && !out.contains("MODULE_LICENSE");
            assert!(refused(&t) || refused(&lp), "{what}: not refused:\n{t}\n{lp}");
        }
    }
}
