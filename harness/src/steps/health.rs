//! The per-step health check: kernel log lines that mean something broke,
//! and taint bits other than the ones livepatching itself sets. A step may
//! declare the warnings it expects (`warnings:`): exactly those headlines,
//! and the stack dump each one prints, are accepted for that step.

use super::kmsg::Record;

const BAD: &[&str] = &[
    "BUG:",
    "WARNING:",
    "Oops",
    "Kernel panic",
    "soft lockup",
    "hard LOCKUP",
    "detected stall",
    "RCU Stall",
    "general protection fault",
    "Unable to handle kernel",
    "kernel BUG at",
    "Call Trace:",
    "INFO: task",
];

/// Taint letters by bit (kernel/panic.c taint_flags).
const TAINT: &str = "PFSRMBUDAWCIOELKXTN";

/// Bits set by loading livepatch (K), out-of-tree (O) and unsigned (E) modules.
const ALLOWED: u64 = (1 << 12) | (1 << 13) | (1 << 15);

/// TAINT_WARN: set by every WARN().
pub const TAINT_WARN: u64 = 1 << 9;

/// What the health check found in one step's records.
#[derive(Debug, Default)]
pub struct Report {
    /// Lines that mean trouble and that no declared warning accounts for.
    pub bad: Vec<String>,
    /// Declared warnings that no line matched.
    pub missing: Vec<regex::Regex>,
    /// A declared warning was a `WARNING:` (which taints with W).
    pub warned: bool,
}

/// Lines of a stack dump or register dump that follow a warning's headline
/// (`dump_stack()`, `__warn()`), on every architecture klpt runs.
fn is_dump_line(text: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "CPU: ",
        "Hardware name:",
        "Call Trace:",
        "Call trace:",
        "Workqueue:",
        "Tainted:",
        "Modules linked in:",
        "Code: ",
        "RIP:",
        "RSP:",
        "RAX:",
        "RDX:",
        "RBP:",
        "R10:",
        "R13:",
        "FS:",
        "CS:",
        "CR2:",
        "DR0:",
        "DR3:",
        "PKRU:",
        "pc :",
        "lr :",
        "sp :",
        "pstate:",
        "Krnl ",
        "Last Breaking",
        "NIP",
        "LR ",
        "REGS:",
        "MSR:",
        "GPR",
        "CFAR:",
        "IRQMASK:",
        "Stack:",
        "Backtrace:",
        "---[ end trace",
        "Instruction dump:",
    ];
    text.starts_with([' ', '\t', '['])
        || PREFIXES.iter().any(|p| text.starts_with(p))
        || (text.starts_with('x') && text.as_bytes().get(1).is_some_and(u8::is_ascii_digit))
}

fn is_bad(text: &str) -> bool {
    BAD.iter().any(|b| text.contains(b))
}

/// Checks `records` (one step's new kernel log) against the warnings the
/// step expects: a record matching one of `expected` opens an accepted
/// report that lasts until the first record that is not part of its dump.
pub fn check(records: &[Record], expected: &[regex::Regex]) -> Report {
    let mut report = Report::default();
    let mut seen = vec![false; expected.len()];
    let mut in_report = false;
    for r in records {
        if let Some(i) = expected.iter().position(|e| e.is_match(&r.text)) {
            seen[i] = true;
            in_report = true;
            report.warned |= r.text.contains("WARNING:");
            continue;
        }
        in_report = in_report && is_dump_line(&r.text);
        if !in_report && is_bad(&r.text) {
            report.bad.push(r.line());
        }
    }
    report.missing = expected.iter().zip(seen).filter(|(_, s)| !s).map(|(e, _)| e.clone()).collect();
    report
}

/// New taint bits outside the allowed ones, as letters with their bit numbers.
pub fn bad_taint(baseline: u64, now: u64) -> Option<String> {
    let new = now & !baseline & !ALLOWED;
    if new == 0 {
        return None;
    }
    let letters: Vec<String> = (0..64)
        .filter(|b| new & (1 << b) != 0)
        .map(|b| format!("{}(bit {b})", TAINT.chars().nth(b).unwrap_or('?')))
        .collect();
    Some(format!("kernel tainted: {} (tainted={now})", letters.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64, text: &str) -> Record {
        Record { seq, prio: 4, usec: seq, text: text.into() }
    }

    /// 6.1's dump for a duplicate function's sysfs entry, as /dev/kmsg gives it.
    fn duplicate_dump() -> Vec<Record> {
        [
            "livepatch: enabling patch 'klpt_dupfn'",
            "sysfs: cannot create duplicate filename '/kernel/livepatch/klpt_dupfn/vmlinux/cmdline_proc_show,1'",
            "CPU: 0 PID: 97 Comm: insmod Tainted: G           OE K    6.1.0-50-amd64 #1  Debian 6.1.158-1",
            "Hardware name: QEMU Standard PC (Q35 + ICH9, 2009), BIOS 1.16.2-debian-1.16.2-1 04/01/2014",
            "Call Trace:",
            " <TASK>",
            " dump_stack_lvl+0x44/0x5c",
            " sysfs_warn_dup.cold+0x17/0x24",
            " </TASK>",
            "kobject_add_internal failed for cmdline_proc_show,1 with -EEXIST, don't try to register things with the same name in the same directory.",
            "livepatch: failed to initialize patch 'klpt_dupfn'",
        ]
        .iter()
        .enumerate()
        .map(|(i, t)| rec(i as u64, t))
        .collect()
    }

    #[test]
    fn an_undeclared_dump_fails_a_declared_one_passes() {
        let dump = duplicate_dump();
        let r = check(&dump, &[]);
        assert_eq!(r.bad.len(), 1, "{:?}", r.bad);
        assert!(r.bad[0].contains("Call Trace:"));
        let r = check(&dump, &[regex::Regex::new("cannot create duplicate filename").unwrap()]);
        assert!(r.bad.is_empty() && r.missing.is_empty() && !r.warned, "{r:?}");
    }

    #[test]
    fn a_declared_warning_covers_only_its_own_dump() {
        let mut recs = duplicate_dump();
        recs.push(rec(50, "BUG: kernel NULL pointer dereference, address: 0000000000000000"));
        let r = check(&recs, &[regex::Regex::new("cannot create duplicate filename").unwrap()]);
        assert_eq!(r.bad.len(), 1);
        assert!(r.bad[0].contains("NULL pointer"));
    }

    #[test]
    fn a_declared_warning_that_never_came_is_missing() {
        let r = check(&[rec(1, "livepatch: enabling patch 'a'")], &[regex::Regex::new("duplicate").unwrap()]);
        assert_eq!(r.missing.len(), 1);
    }

    #[test]
    fn livepatch_taints_are_fine_others_are_not() {
        assert_eq!(bad_taint(0, (1 << 15) | (1 << 12) | (1 << 13)), None);
        assert!(bad_taint(0, 1 << 9).unwrap().contains("W(bit 9)"));
        assert_eq!(bad_taint(1 << 9, 1 << 9), None);
        let r = rec(1, "WARNING: CPU: 0 PID: 1 at kernel/livepatch/core.c");
        assert_eq!(check(&[r], &[]).bad.len(), 1);
    }
}
