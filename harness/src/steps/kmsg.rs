//! Kernel log records as `/dev/kmsg` gives them (`prio,seq,usec,flags;text`),
//! recorded in the guest at /run/kmsg and fetched incrementally.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub prio: u8,
    pub usec: u64,
    pub text: String,
}

impl Record {
    pub fn line(&self) -> String {
        format!("[{:5}.{:06}] {}", self.usec / 1_000_000, self.usec % 1_000_000, self.text)
    }
}

/// Parses new records, dropping sequence numbers at or below `after`
/// (the recorder restarts and repeats records after overruns).
pub fn parse(text: &str, after: Option<u64>) -> Vec<Record> {
    let mut out: Vec<Record> = Vec::new();
    let mut last = after;
    for line in text.lines() {
        let Some((head, msg)) = line.split_once(';') else { continue };
        let mut f = head.split(',');
        let (Some(p), Some(s), Some(u)) = (f.next(), f.next(), f.next()) else { continue };
        let (Ok(prio), Ok(seq), Ok(usec)) = (p.parse::<u32>(), s.parse::<u64>(), u.parse::<u64>()) else { continue };
        if last.is_some_and(|l| seq <= l) {
            continue;
        }
        last = Some(seq);
        out.push(Record { seq, prio: (prio & 7) as u8, usec, text: unescape(msg) });
    }
    out
}

/// /dev/kmsg escapes non-printable bytes as `\xNN`.
fn unescape(s: &str) -> String {
    if !s.contains("\\x") {
        return s.to_string();
    }
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("\\x") {
        out.push_str(&rest[..i]);
        match u8::from_str_radix(rest.get(i + 2..i + 4).unwrap_or(""), 16) {
            Ok(b) => {
                out.push(b as char);
                rest = &rest[i + 4..];
            }
            Err(_) => {
                out.push_str("\\x");
                rest = &rest[i + 2..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The marker klpt writes to /dev/kmsg to know the recorder caught up.
pub const SYNC_TAG: &str = "klpt-sync ";

pub fn is_sync(r: &Record) -> bool {
    r.text.starts_with(SYNC_TAG)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_dedups() {
        let t = "6,10,100,-;livepatch: enabling patch 'a'\n SUBSYSTEM=x\n6,11,200,-;x\\x20y\n6,10,100,-;livepatch: enabling patch 'a'\n6,12,300,c;later\n";
        let r = parse(t, None);
        assert_eq!(r.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![10, 11, 12]);
        assert_eq!(r[1].text, "x y");
        assert_eq!(parse(t, Some(11)).len(), 1);
    }
}
