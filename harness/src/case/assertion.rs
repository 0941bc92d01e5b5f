//! `assert:` and `wait:` bodies: patches, files, modes, dmesg, modules.

use super::known::Values;
use super::model::*;
use super::value::{describe, suggest, Checker};
use serde_norway::Value;

const KEYS: &[&str] = &["patches", "files", "modes", "dmesg", "modules", "traced"];
/// The function tracer's buffer (the guest mounts tracefs here).
pub const TRACE: &str = "/sys/kernel/tracing/trace";
const MATCHER: &[&str] = &["equals", "contains", "not_contains", "matches"];

impl Checker<'_> {
    pub fn assertion(&mut self, d: &CaseDoc, p: &str, v: &Value, extra: &[&str]) -> Option<Assertion> {
        let allowed: Vec<&str> = KEYS.iter().chain(extra).copied().collect();
        let m = self.map(p, v, &allowed)?;
        if !KEYS.iter().any(|k| m.contains_key(*k)) {
            self.err(p, "the assertion checks nothing", format!("give at least one of {}", KEYS.join(", ")));
        }
        let mut a = Assertion::default();
        if let Some(x) = m.get("patches") {
            a.patches = self.patches(d, &format!("{p}.patches"), x);
        }
        if let Some(x) = m.get("files") {
            let fp = format!("{p}.files");
            for (path, mv) in self.entries(&fp, x, "`/proc/cmdline: \"text\"`") {
                let ep = format!("{fp}.{path}");
                self.guest_path(&ep, &path);
                if let Some(mt) = self.matcher(&ep, mv) {
                    a.files.push((path, mt));
                }
            }
        }
        if let Some(x) = m.get("modes") {
            let mp = format!("{p}.modes");
            for (path, mode) in self.entries(&mp, x, "`/sys/kernel/livepatch/lp/enabled: '644'`") {
                let ep = format!("{mp}.{path}");
                self.guest_path(&ep, &path);
                let Some(mode) = self.string(&ep, mode) else {
                    continue;
                };
                if !(3..=4).contains(&mode.len()) || !mode.chars().all(|c| ('0'..='7').contains(&c)) {
                    self.err(
                        &ep,
                        format!("`{mode}` is not an octal mode"),
                        "three or four octal digits, quoted: '644'",
                    );
                }
                a.modes.push((path, mode));
            }
        }
        if let Some(x) = m.get("dmesg") {
            a.dmesg = self.dmesg(&format!("{p}.dmesg"), x);
        }
        if let Some(x) = m.get("traced") {
            // Sugar for a word match on the trace buffer, as functions.sh's
            // check_traced_functions() greps it.
            let tp = format!("{p}.traced");
            let names = self.one_or_more(&tp, x);
            for (ip, f) in names {
                if !super::is_symbol(&f) {
                    self.err(&ip, format!("`{f}` is not a function name"), "a symbol name: letters, digits, `_`, `.`");
                    continue;
                }
                let word = format!(r"(?m)(^|[^A-Za-z0-9_.]){}([^A-Za-z0-9_.]|$)", regex::escape(&f));
                let matcher = Matcher { matches: self.regex(&ip, &word), ..Matcher::default() };
                a.files.push((TRACE.to_string(), matcher));
            }
        }
        if let Some(x) = m.get("modules") {
            let mp = format!("{p}.modules");
            for (name, loaded) in self.entries(&mp, x, "`klpt_lp1: true`") {
                let ep = format!("{mp}.{name}");
                self.module_ref(d, &ep, &name, false);
                if let Some(b) = self.boolean(&ep, loaded) {
                    a.modules.insert(name, b);
                }
            }
        }
        Some(a)
    }

    /// The entries of a non-empty mapping with string keys.
    fn entries<'v>(&mut self, p: &str, v: &'v Value, example: &str) -> Vec<(String, &'v Value)> {
        let Some(m) = self.any_map(p, v, &format!("e.g. {example}")) else {
            return Vec::new();
        };
        if m.is_empty() {
            self.err(p, "the mapping is empty, so it checks nothing", format!("e.g. {example}, or drop the key"));
        }
        m.iter().filter_map(|(k, v)| Some((k.as_str()?.to_string(), v))).collect()
    }

    /// `patches:` maps every active patch to its expected attributes.
    fn patches(&mut self, d: &CaseDoc, p: &str, v: &Value) -> Option<std::collections::BTreeMap<String, PatchExpect>> {
        let Some(pm) = v.as_mapping() else {
            self.err(
                p,
                format!("`patches:` must map patch names to their attributes, not {}", describe(v)),
                "use `patches: {}` for \"no patch active\"",
            );
            return None;
        };
        let mut set = std::collections::BTreeMap::new();
        for (name, exp) in pm {
            let Some(name) = self.string(p, name) else {
                continue;
            };
            let np = format!("{p}.{name}");
            self.module_ref(d, &np, &name, true);
            let Some(em) = exp.as_mapping() else {
                let hint = "e.g. `{enabled: 1, transition: 0}`, or `{}` to assert only that it is active";
                self.err(&np, format!("expected the patch's attribute values, not {}", describe(exp)), hint);
                continue;
            };
            let mut pe = PatchExpect::default();
            for (k, val) in em {
                let Some(k) = self.string(&np, k) else {
                    continue;
                };
                let kp = format!("{np}.{k}");
                if k == "objects" {
                    // A prebuilt patch's objects are whatever it was built with.
                    let objects =
                        d.livepatches.iter().find(|l| l.name == name && l.ko.is_none()).map(Livepatch::object_names);
                    for (o, ov) in self.entries(&kp, val, "`objects: {vmlinux: 1}`") {
                        let op = format!("{kp}.{o}");
                        match &objects {
                            Some(objs) if !objs.contains(&o.as_str()) => self.err(
                                &op,
                                format!("patch `{name}` has no object `{o}`"),
                                format!("it patches {}{}", objs.join(", "), suggest(&o, objs)),
                            ),
                            _ => {}
                        }
                        if let Some(n) = self.integer(&op, ov, 0..=1) {
                            pe.objects.insert(o, n.to_string());
                        }
                    }
                    continue;
                }
                let known = self.known;
                let Some(kind) = known.patch_attributes.get(&k) else {
                    let names: Vec<&str> =
                        known.patch_attributes.keys().map(String::as_str).chain(["objects"]).collect();
                    let hint = format!(
                        "known attributes: {} (cases/capabilities.yaml){}",
                        names.join(", "),
                        suggest(&k, &names)
                    );
                    self.err(&kp, format!("unknown patch attribute `{k}`"), hint);
                    continue;
                };
                let range = match kind {
                    Values::Flag => 0..=1,
                    Values::Count => 0..=i128::from(u64::MAX),
                    Values::U32 => 0..=i128::from(u32::MAX),
                    Values::WriteOnly => {
                        self.err(
                            &kp,
                            format!("`{k}` is write-only, it cannot be asserted"),
                            format!("use a `{k}:` step to write it"),
                        );
                        continue;
                    }
                };
                if let Some(n) = self.integer(&kp, val, range) {
                    pe.attrs.insert(k, n.to_string());
                }
            }
            set.insert(name, pe);
        }
        Some(set)
    }

    fn dmesg(&mut self, p: &str, v: &Value) -> Option<DmesgExpect> {
        if v.is_sequence() {
            let events = self.regexes(p, v);
            return Some(DmesgExpect { events, ..Default::default() });
        }
        let m = self.map(p, v, &["events", "must_not", "ignore", "strict"])?;
        let mut re = |k: &str| m.get(k).map(|x| self.regexes(&format!("{p}.{k}"), x)).unwrap_or_default();
        let (events, must_not, ignore) = (re("events"), re("must_not"), re("ignore"));
        let strict = m.get("strict").and_then(|x| self.boolean(&format!("{p}.strict"), x)).unwrap_or(false);
        if !m.contains_key("events") && !m.contains_key("must_not") && !strict {
            self.err(p, "`dmesg:` checks nothing", "give `events:`, `must_not:` or `strict: true`");
        }
        Some(DmesgExpect { events, must_not, ignore, strict })
    }

    /// A file's expected content: a string (exact) or a matcher mapping.
    pub fn matcher(&mut self, p: &str, v: &Value) -> Option<Matcher> {
        if !v.is_mapping() {
            return self.string(p, v).map(|s| Matcher { equals: Some(s), ..Default::default() });
        }
        let m = self.map(p, v, MATCHER)?;
        if m.is_empty() {
            self.err(p, "the matcher checks nothing", format!("give one of {}", MATCHER.join(", ")));
        }
        let equals = m.get("equals").and_then(|x| self.string(&format!("{p}.equals"), x));
        let mut list = |k: &str| m.get(k).map(|x| self.one_or_more(&format!("{p}.{k}"), x)).unwrap_or_default();
        let (contains, not_contains) = (list("contains"), list("not_contains"));
        let mp = format!("{p}.matches");
        let matches = m.get("matches").and_then(|x| self.string(&mp, x)).and_then(|s| self.regex(&mp, &s));
        let strings = |l: Vec<(String, String)>| l.into_iter().map(|(_, s)| s).collect();
        Some(Matcher { equals, contains: strings(contains), not_contains: strings(not_contains), matches })
    }
}
