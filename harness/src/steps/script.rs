//! One guest command per step. A step's own work (its action and the waits
//! that follow it, or an assertion's snapshot) and the kernel-log sync after
//! it are composed into one shell script; its output is a sequence of
//! sections, each ended by a marker line that carries a random nonce drawn
//! for that command, so nothing an action prints can end a section early.
//! The host parses the sections as they stream in ([`Parser`]).
//!
//! Section framing: the script prints a newline and then the marker line
//! `@@klpt-<nonce>@@ <name> <arg>` after each section, so a section's body
//! is exactly what was printed before it (the newline is the framing's, not
//! the body's), whether or not the body ended in a newline.

use super::assert::sh_quote;
use crate::template::{STEP_PRELUDE_SH, STEP_SYNC_SH, WAIT_ROUNDS_SH};

/// The guest files a script reads and writes (tests point them elsewhere).
#[derive(Debug, Clone)]
pub struct Paths {
    /// Where a sync writes its tag (the kernel log).
    pub kmsg: String,
    /// The guest's recording of the kernel log (images/init.sh).
    pub record: String,
    pub tainted: String,
}

impl Default for Paths {
    fn default() -> Paths {
        Paths { kmsg: "/dev/kmsg".into(), record: "/run/kmsg".into(), tainted: "/proc/sys/kernel/tainted".into() }
    }
}

/// A fresh 128-bit nonce, in hex.
pub fn nonce() -> String {
    let mut b = [0u8; 16];
    // SAFETY: getrandom(2) writes at most b.len() bytes into b.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        use std::io::Read;
        let ok = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)).is_ok();
        assert!(ok, "no randomness for a command nonce (getrandom and /dev/urandom both failed)");
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The marker that ends every section of the command with `nonce`.
pub fn marker(nonce: &str) -> String {
    format!("@@klpt-{nonce}@@")
}

/// One piece of a step's own work. The pieces run in order while each
/// succeeds: a failed action skips the waits after it, a wait that timed out
/// skips the action after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// A command run as `sh -c` would run it (in a subshell, so `exit` and
    /// syntax errors stay its own): its stdout is the section, its stderr
    /// the whole command's stderr, its exit status the marker's argument.
    Run(String),
    /// Polls a shell condition (builtins only, ideally) until it holds or
    /// the guest-side deadline passes (argument 0 or 1). On a timeout the
    /// section holds the output of `report`, if any.
    Wait { cond: String, report: Option<String> },
    /// A snapshot script's output (argument 0).
    Snapshot(String),
}

/// The kernel-log sync at the end of a command: write `tag` to the kernel
/// log (at KERN_DEBUG, so it is not printed on the console), wait (up to 20 s) until the recorder has it, then print the taint
/// value (section `taint`) and the recording from byte `offset` on (section
/// `log`).
#[derive(Debug, Clone)]
pub struct Sync {
    pub tag: String,
    pub offset: u64,
}

/// (`read` reads a byte at a time, which /proc/sys files answer with their
/// first byte only: the taint is read with `cat`.)
///
/// Common start of every script: the marker function, a clock in
/// centiseconds of guest uptime (builtins only), the guest-side deadline
/// `end_cs` from now, and stderr parked on fd 3 (only an action writes to
/// the command's stderr; everything else is quiet).
fn prelude(nonce: &str, what: &str, end_cs: u64) -> String {
    let what: String = what.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    STEP_PRELUDE_SH.fill(&[("WHAT", &what), ("MARKER", &marker(nonce)), ("END_CS", &end_cs.to_string())])
}

fn part_script(i: usize, p: &Part) -> String {
    match p {
        Part::Run(cmd) => format!("if [ $__s = 0 ]; then ( eval {} ) 2>&3 3>&-; __s=$?; __k p{i} $__s; fi\n", sh_quote(cmd)),
        Part::Wait { cond, report } => format!(
            "if [ $__s = 0 ]; then __s=1; while :; do if {{ {cond}\n}}; then __s=0; break; fi; __now; [ $__u -ge $__end ] && break; usleep 5000; done; \
             [ $__s = 0 ] || {{ {}\n}}; __k p{i} $__s; fi\n",
            report.as_deref().unwrap_or(":")
        ),
        Part::Snapshot(script) => format!("if [ $__s = 0 ]; then {{ {script}\n}}; cd /; __k p{i} 0; fi\n"),
    }
}

/// Reads the recording from `offset` into `__l` (with a trailing `x`, so
/// the command substitution keeps the final newline).
fn read_log(paths: &Paths, offset: u64) -> String {
    format!("__l=$(tail -c +{} {}; echo x)", offset + 1, sh_quote(&paths.record))
}

fn sync_script(s: &Sync, paths: &Paths) -> String {
    STEP_SYNC_SH.fill(&[
        ("TAG_DEBUG", &sh_quote(&format!("<7>{}", s.tag))),
        ("KMSG", &sh_quote(&paths.kmsg)),
        ("READ_LOG", &read_log(paths, s.offset)),
        ("TAG", &sh_quote(&s.tag)),
        ("TAINTED", &sh_quote(&paths.tainted)),
    ])
}

/// The one command of an action or assertion step: `parts` (sections
/// `p0`, `p1`, ...), then `work` (the step's own work is over), the sync
/// (`taint`, `log`) and `end`. `end_cs`: centiseconds the waits may take.
pub fn step_script(nonce: &str, what: &str, end_cs: u64, parts: &[Part], sync: &Sync, paths: &Paths) -> String {
    let mut s = prelude(nonce, what, end_cs);
    for (i, p) in parts.iter().enumerate() {
        s.push_str(&part_script(i, p));
    }
    s.push_str("__k work\n");
    s.push_str(&sync_script(sync, paths));
    s.push_str("__k end\n");
    s
}

/// What each round of a `wait:` step's command prints.
#[derive(Debug, Clone)]
pub struct Rounds<'a> {
    /// A snapshot script (section `snap`).
    pub snapshot: &'a str,
    /// Also the recording from the sync's offset (section `rlog`).
    pub dmesg: bool,
    /// Seconds between rounds, as `read -t` takes them.
    pub poll: &'a str,
}

/// The one command of a `wait:` step: rounds (see [`Rounds`]), each closed
/// by `round`, until the host writes a line to stdin or `end_cs` passes;
/// then `work`, the sync and `end` as in [`step_script`].
pub fn wait_script(nonce: &str, what: &str, end_cs: u64, rounds: &Rounds, sync: &Sync, paths: &Paths) -> String {
    let Rounds { snapshot, dmesg, poll } = rounds;
    let mut s = prelude(nonce, what, end_cs);
    let snapshot = if snapshot.is_empty() { String::new() } else { format!("{{ {snapshot}\n}}; cd /\n") };
    let rlog = if *dmesg {
        format!("{}; printf '%s' \"${{__l%x}}\"; __k rlog\n", read_log(paths, sync.offset))
    } else {
        String::new()
    };
    s.push_str(&WAIT_ROUNDS_SH.fill(&[("SNAPSHOT", &snapshot), ("RLOG", &rlog), ("POLL", poll)]));
    s.push_str("__k work\n");
    s.push_str(&sync_script(sync, paths));
    s.push_str("__k end\n");
    s
}

/// One parsed section: the marker line's name and argument, and the body
/// printed before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub arg: String,
    pub body: String,
}

impl Section {
    /// The marker's argument as an exit status (-1 when it is not one).
    pub fn status(&self) -> i32 {
        self.arg.trim().parse().unwrap_or(-1)
    }
}

/// Splits a command's stdout into sections as it arrives.
pub struct Parser {
    /// `\n` + marker + ` `: how every marker line starts.
    mark: Vec<u8>,
    buf: Vec<u8>,
    /// Start of the current (unfinished) section.
    pos: usize,
    /// Where to resume searching for the next marker.
    scan: usize,
    pub sections: Vec<Section>,
}

impl Parser {
    pub fn new(nonce: &str) -> Parser {
        Parser {
            mark: format!("\n{} ", marker(nonce)).into_bytes(),
            buf: Vec::new(),
            pos: 0,
            scan: 0,
            sections: Vec::new(),
        }
    }

    /// Takes more output; returns how many sections it completed.
    pub fn feed(&mut self, data: &[u8]) -> usize {
        self.buf.extend_from_slice(data);
        let before = self.sections.len();
        loop {
            let hay = &self.buf[self.scan..];
            let Some(i) = find(hay, &self.mark) else {
                // A marker may straddle the next chunk.
                self.scan = self.buf.len().saturating_sub(self.mark.len() - 1).max(self.pos);
                break;
            };
            let at = self.scan + i;
            let line_start = at + self.mark.len();
            let Some(nl) = self.buf[line_start..].iter().position(|&b| b == b'\n') else {
                // The marker line is not complete yet.
                self.scan = at;
                break;
            };
            let line = String::from_utf8_lossy(&self.buf[line_start..line_start + nl]).into_owned();
            let (name, arg) = line.split_once(' ').unwrap_or((&line, ""));
            let body = String::from_utf8_lossy(&self.buf[self.pos..at]).into_owned();
            self.sections.push(Section { name: name.to_string(), arg: arg.to_string(), body });
            self.pos = line_start + nl + 1;
            self.scan = self.pos;
        }
        self.sections.len() - before
    }

    /// Output after the last complete section (what a command printed
    /// before it ended early).
    pub fn rest(&self) -> String {
        String::from_utf8_lossy(&self.buf[self.pos..]).into_owned()
    }

    /// The last section named `name`: a command that learnt its own nonce
    /// could print a section's marker early, never after the real one.
    pub fn get(&self, name: &str) -> Option<&Section> {
        self.sections.iter().rev().find(|s| s.name == name)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The complete lines of a `log` section (a partial last line is fetched by
/// the next sync, from the offset after the complete ones).
pub fn complete_lines(log: &str) -> &str {
    &log[..log.rfind('\n').map(|i| i + 1).unwrap_or(0)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};

    const N: &str = "0123456789abcdef0123456789abcdef";

    fn out(sections: &[(&str, &str, &str)]) -> String {
        sections.iter().map(|(body, name, arg)| format!("{body}\n{} {name} {arg}\n", marker(N))).collect()
    }

    #[test]
    fn nonces_differ_and_are_hex() {
        let (a, b) = (nonce(), nonce());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn sections_with_and_without_final_newlines() {
        let text = out(&[
            ("insmod: can't insert", "p0", "1"),
            ("", "work", ""),
            ("0\n", "taint", ""),
            ("6,1,2,-;a\n6,2,3,-;b\n", "log", ""),
            ("", "end", ""),
        ]);
        let mut p = Parser::new(N);
        assert_eq!(p.feed(text.as_bytes()), 5);
        let s = &p.sections;
        assert_eq!((s[0].name.as_str(), s[0].status(), s[0].body.as_str()), ("p0", 1, "insmod: can't insert"));
        assert_eq!(s[1].name, "work");
        assert_eq!(s[2].body, "0\n");
        assert_eq!(s[3].body, "6,1,2,-;a\n6,2,3,-;b\n");
        assert_eq!(p.rest(), "");
    }

    #[test]
    fn hostile_output_cannot_end_a_section() {
        // An action that prints marker-like lines: another nonce's marker,
        // the marker prefix, a marker without its nonce, a bare nonce.
        let hostile = format!(
            "{m2} p0 0\n@@klpt-@@ p0 0\n@@klpt- work\n{N} p0 0\n\n@@klpt-{N} p0 0\nx{m} p0 0\n{m}p0 0\nno newline at the end",
            m2 = marker("ffffffffffffffffffffffffffffffff"),
            m = marker(N)
        );
        let text = out(&[(&hostile, "p0", "0"), ("", "work", "")]);
        let mut p = Parser::new(N);
        p.feed(text.as_bytes());
        assert_eq!(p.sections.len(), 2, "{:#?}", p.sections);
        assert_eq!(p.sections[0].body, hostile);
        assert_eq!(p.sections[0].status(), 0);
    }

    #[test]
    fn byte_by_byte_feeding_gives_the_same_sections() {
        let text = out(&[("a\nb", "p0", "0"), ("\n\n", "p1", "1"), ("", "work", ""), ("z", "end", "")]);
        let mut whole = Parser::new(N);
        whole.feed(text.as_bytes());
        let mut bytes = Parser::new(N);
        let mut done = 0;
        for b in text.as_bytes() {
            done += bytes.feed(&[*b]);
        }
        assert_eq!(done, 4);
        assert_eq!(whole.sections, bytes.sections);
        assert_eq!(bytes.sections[1].body, "\n\n");
    }

    #[test]
    fn an_unfinished_marker_line_waits_for_its_newline() {
        let mut p = Parser::new(N);
        assert_eq!(p.feed(format!("out\n{} p0", marker(N)).as_bytes()), 0);
        assert_eq!(p.feed(b" 3"), 0);
        assert_eq!(p.feed(b"\ntrailing"), 1);
        assert_eq!(p.sections[0].status(), 3);
        assert_eq!(p.rest(), "trailing");
    }

    #[test]
    fn complete_lines_drop_a_partial_record() {
        assert_eq!(complete_lines("6,1,0,-;a\n6,2,0,-;b"), "6,1,0,-;a\n");
        assert_eq!(complete_lines("6,1,0,-;a"), "");
    }

    #[test]
    fn scripts_have_their_parts_in_order_and_quote_commands() {
        let parts = [
            Part::Wait { cond: "[ -e /x ]".into(), report: Some("cat /x".into()) },
            Part::Run("rmmod 'm'; echo \"$HOME\"".into()),
            Part::Snapshot("echo snap".into()),
        ];
        let s =
            step_script(N, "unload m", 500, &parts, &Sync { tag: "klpt-sync 1".into(), offset: 10 }, &Paths::default());
        assert!(s.starts_with("# klpt: unload m\n"));
        let at = |needle: &str| s.find(needle).unwrap_or_else(|| panic!("{needle:?} not in\n{s}"));
        assert!(at("__k p0") < at("__k p1") && at("__k p1") < at("__k p2") && at("__k p2") < at("__k work"));
        assert!(at("__k work") < at("__k taint") && at("__k taint") < at("__k log") && at("__k log") < at("__k end"));
        assert!(s.contains(&format!("( eval {} )", sh_quote("rmmod 'm'; echo \"$HOME\""))));
        assert!(s.contains("tail -c +11 '/run/kmsg'"));
        assert!(s.contains(&marker(N)));
    }

    /// Runs a script with the host's POSIX shell, `usleep` replaced; the
    /// kernel log is a temporary file that is its own recording.
    fn run_sh(script: &str, stdin: &str) -> (String, String, i32) {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("usleep() {{ sleep 0.01; }}\n{script}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sh runs");
        child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
        let o = child.wait_with_output().expect("sh finishes");
        (
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
            o.status.code().unwrap_or(-1),
        )
    }

    fn temp_paths(dir: &std::path::Path, log: &str) -> Paths {
        let (k, t) = (dir.join("kmsg"), dir.join("tainted"));
        std::fs::write(&k, log).expect("write log");
        std::fs::write(&t, "4096\n").expect("write taint");
        Paths { kmsg: k.display().to_string(), record: k.display().to_string(), tainted: t.display().to_string() }
    }

    #[test]
    fn a_step_script_runs_in_a_shell_and_parses_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = temp_paths(dir.path(), "6,1,0,-;old\n");
        let marker_echo = format!("echo '{}' p0 0", marker(N));
        let parts = [
            Part::Run(format!("printf 'out-no-newline'; echo err >&2; echo; {marker_echo}; echo '#'; exit 3")),
            Part::Wait { cond: "false".into(), report: None },
        ];
        let sync = Sync { tag: "klpt-sync 1 t".into(), offset: 12 };
        let (stdout, stderr, _) = run_sh(&step_script(N, "x", 100, &parts, &sync, &paths), "");
        let mut p = Parser::new(N);
        p.feed(stdout.as_bytes());
        let names: Vec<&str> = p.sections.iter().map(|s| s.name.as_str()).collect();
        // The action printed a marker line with the right nonce: that one
        // it can fake (it knows the nonce here); it still cannot hide the
        // real end of its section, which comes after.
        assert_eq!(names, ["p0", "p0", "work", "taint", "log", "end"], "{stdout}");
        let act = p.get("p0").expect("the action's section");
        assert_eq!((act.status(), act.body.as_str()), (3, "#\n"));
        assert_eq!(p.sections[0].body, "out-no-newline");
        assert_eq!(stderr, "err\n");
        assert_eq!(p.get("taint").map(|s| s.body.as_str()), Some("4096\n"));
        // The log from offset 12 on: the tag, unprefixed in this fake log.
        assert_eq!(p.get("log").map(|s| s.body.as_str()), Some("<7>klpt-sync 1 t\n"));
    }

    #[test]
    fn a_failed_action_skips_its_waits_and_a_failed_wait_reports() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = temp_paths(dir.path(), "");
        let sync = Sync { tag: "klpt-sync 2 t".into(), offset: 0 };
        let parts = [Part::Run("false".into()), Part::Wait { cond: "true".into(), report: None }];
        let (stdout, _, _) = run_sh(&step_script(N, "x", 100, &parts, &sync, &paths), "");
        let mut p = Parser::new(N);
        p.feed(stdout.as_bytes());
        assert_eq!(p.get("p0").map(Section::status), Some(1));
        assert!(p.get("p1").is_none());
        let parts = [
            Part::Wait { cond: "[ -e /nonexistent/klpt ]".into(), report: Some("echo refcnt 2".into()) },
            Part::Run("echo ran".into()),
        ];
        let t0 = std::time::Instant::now();
        let (stdout, _, _) = run_sh(&step_script(N, "x", 30, &parts, &sync, &paths), "");
        assert!(t0.elapsed() < std::time::Duration::from_secs(5));
        let mut p = Parser::new(N);
        p.feed(stdout.as_bytes());
        let w = p.get("p0").expect("the wait's section");
        assert_eq!((w.status(), w.body.as_str()), (1, "refcnt 2\n"));
        assert!(p.get("p1").is_none(), "the action after a failed wait must not run");
        assert!(p.get("end").is_some());
    }

    #[test]
    fn a_syntax_error_or_exit_in_an_action_stays_in_the_action() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = temp_paths(dir.path(), "");
        let sync = Sync { tag: "klpt-sync 3 t".into(), offset: 0 };
        for cmd in ["if then fi (", "exit 7", "echo a # comment"] {
            let (stdout, _, _) = run_sh(&step_script(N, "x", 100, &[Part::Run(cmd.into())], &sync, &paths), "");
            let mut p = Parser::new(N);
            p.feed(stdout.as_bytes());
            assert!(p.get("end").is_some(), "{cmd}: {stdout}");
            assert_eq!(p.get("p0").map(Section::status).map(|s| s != 0), Some(cmd != "echo a # comment"), "{cmd}");
        }
    }

    #[test]
    fn a_wait_script_stops_when_told() {
        // `read -t` with a fraction of a second is busybox's and bash's;
        // the host's sh may lack it.
        if Command::new("bash")
            .arg("-c")
            .arg("read -t 0.01 x < /dev/null; true")
            .status()
            .map(|s| !s.success())
            .unwrap_or(true)
        {
            eprintln!("no bash: skipped");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = temp_paths(dir.path(), "6,1,0,-;a\n");
        let sync = Sync { tag: "klpt-sync 4 t".into(), offset: 0 };
        let script =
            wait_script(N, "x", 3000, &Rounds { snapshot: "echo state", dmesg: true, poll: "0.05" }, &sync, &paths);
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(format!("usleep() {{ sleep 0.01; }}\n{script}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("bash runs");
        let mut stdin = child.stdin.take().expect("stdin");
        std::thread::sleep(std::time::Duration::from_millis(300));
        stdin.write_all(b"stop\n").expect("write stop");
        drop(stdin);
        let t0 = std::time::Instant::now();
        let o = child.wait_with_output().expect("bash finishes");
        assert!(t0.elapsed() < std::time::Duration::from_secs(5));
        let mut p = Parser::new(N);
        p.feed(&o.stdout);
        let rounds = p.sections.iter().filter(|s| s.name == "round").count();
        assert!(rounds >= 2, "{rounds} rounds");
        assert_eq!(p.get("snap").map(|s| s.body.as_str()), Some("state\n"));
        assert_eq!(p.get("rlog").map(|s| s.body.as_str()), Some("6,1,0,-;a\n"));
        assert_eq!(p.get("log").map(|s| s.body.as_str()), Some("6,1,0,-;a\n<7>klpt-sync 4 t\n"));
        let names: Vec<&str> = p.sections.iter().rev().take(4).map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["end", "log", "taint", "work"]);
    }
}
