//! The per-step health check: kernel log lines that mean something broke,
//! and taint bits other than the ones livepatching itself sets.

use super::kmsg::Record;

const BAD: &[&str] = &[
    "BUG:", "WARNING:", "Oops", "Kernel panic", "soft lockup", "hard LOCKUP", "detected stall", "RCU Stall",
    "general protection fault", "Unable to handle kernel", "kernel BUG at", "Call Trace:", "INFO: task",
];

/// Taint letters by bit (kernel/panic.c taint_flags).
const TAINT: &str = "PFSRMBUDAWCIOELKXTN";

/// Bits set by loading livepatch (K), out-of-tree (O) and unsigned (E) modules.
const ALLOWED: u64 = (1 << 12) | (1 << 13) | (1 << 15);

pub fn bad_lines(records: &[Record]) -> Vec<String> {
    records.iter().filter(|r| BAD.iter().any(|b| r.text.contains(b))).map(Record::line).collect()
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

    #[test]
    fn livepatch_taints_are_fine_others_are_not() {
        assert_eq!(bad_taint(0, (1 << 15) | (1 << 12) | (1 << 13)), None);
        assert!(bad_taint(0, 1 << 9).unwrap().contains("W(bit 9)"));
        assert_eq!(bad_taint(1 << 9, 1 << 9), None);
        let r = Record { seq: 1, prio: 4, usec: 0, text: "WARNING: CPU: 0 PID: 1 at kernel/livepatch/core.c".into() };
        assert_eq!(bad_lines(&[r]).len(), 1);
    }
}
