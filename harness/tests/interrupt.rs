//! Interrupting klpt leaves nothing behind. Each test runs the real `klpt`
//! binary on a fresh private artifacts and temporary directory (the shared
//! cache, as users have it), interrupts it at a chosen moment and looks at
//! what is left in `/proc` and in the cache:
//!
//! * SIGINT (as a terminal's Ctrl-C, to klpt's process group) and SIGTERM
//!   during a module build: exit 130 / 143, no `make`/`gcc`/`cc1` left, no
//!   `.build-*` directory, no cache entry for the module.
//! * SIGKILL during a module build: `make` dies with klpt; the next run
//!   removes the leftover build directory (and whatever still runs in it),
//!   and the module was never published.
//! * SIGINT during a boot: exit 130, no QEMU left, no temporary directory.
//! * SIGINT mid-run: every requested report is written, the finished
//!   trial with its verdict and the others unfinished; so does a run that
//!   reaches its `--timeout` (exit 1).
//!
//! The module builds are of a case generated with a unique module name and
//! marker, so nothing is cached for it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One test at a time: a klpt that starts sweeps the cache of other runs'
/// leftovers, which would race the SIGKILL test; and the machine is small.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// One klpt process under test, killed (SIGKILL) if the test gives up on it.
struct Klpt {
    child: Option<Child>,
    pid: i32,
    stderr: Arc<Mutex<String>>,
}

impl Klpt {
    /// `klpt ARGS` with `TMPDIR` in `scratch`; klpt leads its own process
    /// group, as a shell job does.
    fn start(scratch: &Scratch, args: &[&str]) -> Klpt {
        let mut child = Command::new(env!("CARGO_BIN_EXE_klpt"))
            .args(args)
            .env("TMPDIR", scratch.tmp())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("start klpt");
        let pid = child.id() as i32;
        let stderr = Arc::new(Mutex::new(String::new()));
        let (pipe, sink) = (child.stderr.take().expect("piped"), stderr.clone());
        std::thread::spawn(move || {
            for l in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&l);
                s.push('\n');
            }
        });
        Klpt { child: Some(child), pid, stderr }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until stderr contains `needle`.
    fn wait_stderr(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.stderr().contains(needle) {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("klpt exited ({st}) before printing {needle:?}; stderr:\n{}", self.stderr());
            }
            assert!(Instant::now() < deadline, "no {needle:?} on klpt's stderr after {timeout:?}:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn signal(&self, sig: i32, group: bool) {
        // SAFETY: kill(2) on the child (or its group) we spawned.
        assert_eq!(
            unsafe { libc::kill(if group { -self.pid } else { self.pid }, sig) },
            0,
            "kill: {}",
            std::io::Error::last_os_error()
        );
    }

    fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().unwrap();
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                self.child = None;
                // Let the reader thread take the last lines.
                std::thread::sleep(Duration::from_millis(50));
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "klpt still running {timeout:?} after the signal; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Klpt {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A private directory for one test: case file, artifacts, `TMPDIR`.
struct Scratch(tempfile::TempDir);

impl Scratch {
    fn new() -> Scratch {
        let s = Scratch(tempfile::Builder::new().prefix("klpt-interrupt-").tempdir().expect("scratch dir"));
        std::fs::create_dir(s.tmp()).unwrap();
        s
    }
    fn path(&self) -> &Path {
        self.0.path()
    }
    fn tmp(&self) -> PathBuf {
        self.path().join("tmp")
    }
    fn artifacts(&self) -> PathBuf {
        self.path().join("artifacts")
    }
    /// Whatever klpt left in its `TMPDIR`.
    fn tmp_leftovers(&self) -> Vec<String> {
        std::fs::read_dir(self.tmp()).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()
    }
}

/// A case whose one livepatch module has a name and marker no other run has
/// used, so its build is never a cache hit. Returns (case path, module name).
fn fresh_case(s: &Scratch) -> (String, String) {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    let name = format!("klpt_intr_{}_{nanos}", std::process::id());
    let path = s.path().join("interrupt.yaml");
    std::fs::write(
        &path,
        format!(
            "description: interrupted module build\nrequires:\n  config: [LIVEPATCH]\n  kallsyms: [cmdline_proc_show]\nlivepatches:\n  - name: {name}\n    functions:\n      - name: cmdline_proc_show\n        marker: \"{name} marker\"\nsteps:\n  - load: {name}\n"
        ),
    )
    .unwrap();
    (path.to_string_lossy().into_owned(), name)
}

fn run_args<'a>(case: &'a str, artifacts: &'a str) -> Vec<&'a str> {
    vec!["run", case, "--accel", "tcg", "--artifacts", artifacts]
}

/// One process, from `/proc/PID/stat` and `cmdline`.
#[derive(Clone, Debug)]
struct Proc {
    ppid: i32,
    state: char,
    comm: String,
    /// Start time in clock ticks since boot: with the pid, names one process.
    start: u64,
    cmdline: String,
}

fn proc_of(pid: i32) -> Option<Proc> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()?
        .split(|&b| b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    Some(Proc {
        ppid: f.get(1)?.parse().ok()?,
        state: f.first()?.chars().next()?,
        comm: stat[open + 1..close].to_string(),
        start: f.get(19)?.parse().ok()?,
        cmdline,
    })
}

fn all_procs() -> BTreeMap<i32, Proc> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter_map(|pid| Some((pid, proc_of(pid)?)))
        .collect()
}

/// Every process descended from `root`, now.
fn descendants(root: i32) -> BTreeMap<i32, Proc> {
    let procs = all_procs();
    let mut out = BTreeMap::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for (pid, pr) in procs.iter().filter(|(_, pr)| pr.ppid == p) {
            if out.insert(*pid, pr.clone()).is_none() {
                frontier.push(*pid);
            }
        }
    }
    out
}

/// Whether the process recorded as `pid`/`p` still runs (a zombie is dead).
fn still_running(pid: i32, p: &Proc) -> bool {
    proc_of(pid).is_some_and(|now| now.start == p.start && now.state != 'Z')
}

/// Live processes whose command line mentions `needle`.
fn running_with(needle: &str) -> Vec<(i32, Proc)> {
    all_procs()
        .into_iter()
        .filter(|(pid, p)| *pid as u32 != std::process::id() && p.state != 'Z' && p.cmdline.contains(needle))
        .collect()
}

/// The build in progress: everything below klpt seen until a compiler of
/// the module runs, and the build directory (make's `M=`).
struct Build {
    seen: BTreeMap<i32, Proc>,
    dir: String,
}

fn wait_for_compiler(k: &mut Klpt, module: &str) -> Build {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = BTreeMap::new();
    loop {
        seen.extend(descendants(k.pid));
        // Any make of the build: pids wrap, so the top one need not come first.
        let dir = seen
            .values()
            .filter(|p| p.comm == "make")
            .find_map(|p| p.cmdline.split(' ').find_map(|a| a.strip_prefix("M=")).map(str::to_string));
        // The compile of the module's own source (not of NAME.mod.c after
        // modpost): the .ko is still far off, so make's death shows.
        let compiling = seen
            .values()
            .any(|p| (p.comm == "cc1" || p.comm.contains("gcc")) && p.cmdline.contains(&format!("{module}.c")));
        if let (Some(dir), true) = (dir, compiling) {
            return Build { seen, dir };
        }
        if let Some(st) = k.child.as_mut().unwrap().try_wait().unwrap() {
            panic!("klpt exited ({st}) before the compiler of {module} was seen; stderr:\n{}", k.stderr());
        }
        assert!(Instant::now() < deadline, "no compiler of {module} below klpt within 30s; seen: {seen:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn cache_entries(module: &str) -> Vec<String> {
    let dir = klpt::cache::root().join("modules");
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&format!("{module}-")))
                .collect()
        })
        .unwrap_or_default()
}

/// After klpt exited: none of its build processes, build directory or module remains.
fn assert_build_gone(b: &Build, module: &str) {
    let left: Vec<String> = b
        .seen
        .iter()
        .filter(|(pid, p)| still_running(**pid, p))
        .map(|(pid, p)| format!("{pid} {} {}", p.comm, p.cmdline))
        .collect();
    assert!(left.is_empty(), "processes of the interrupted build still run:\n{}", left.join("\n"));
    let left = running_with(&b.dir);
    assert!(left.is_empty(), "processes still work in {}: {left:?}", b.dir);
    assert!(!Path::new(&b.dir).exists(), "the build directory {} is still there", b.dir);
    assert_eq!(cache_entries(module), Vec::<String>::new(), "an interrupted build reached the cache");
}

fn interrupted_build(sig: i32, to_group: bool, code: i32) {
    let _g = serial();
    let s = Scratch::new();
    let (case, module) = fresh_case(&s);
    let art = s.artifacts().to_string_lossy().into_owned();
    let t0 = Instant::now();
    let mut k = Klpt::start(&s, &run_args(&case, &art));
    k.wait_stderr(&format!("modules: building {module} for "), Duration::from_secs(45));
    let b = wait_for_compiler(&mut k, &module);
    k.signal(sig, to_group);
    let st = k.wait(Duration::from_secs(20));
    assert_eq!(st.code(), Some(code), "exit status after signal {sig}; stderr:\n{}", k.stderr());
    assert_build_gone(&b, &module);
    assert_eq!(s.tmp_leftovers(), Vec::<String>::new(), "temporary directories left in TMPDIR");
    eprintln!("signal {sig} during the build of {module}: clean in {:.1}s", t0.elapsed().as_secs_f64());
}

#[test]
fn sigint_during_module_build() {
    interrupted_build(libc::SIGINT, true, 130);
}

#[test]
fn sigterm_during_module_build() {
    interrupted_build(libc::SIGTERM, false, 143);
}

#[test]
fn sigkill_during_module_build_is_cleaned_by_the_next_run() {
    let _g = serial();
    let s = Scratch::new();
    let (case, module) = fresh_case(&s);
    let art = s.artifacts().to_string_lossy().into_owned();
    let t0 = Instant::now();
    let mut k = Klpt::start(&s, &run_args(&case, &art));
    k.wait_stderr(&format!("modules: building {module} for "), Duration::from_secs(45));
    let b = wait_for_compiler(&mut k, &module);
    k.signal(libc::SIGKILL, false);
    let st = k.wait(Duration::from_secs(10));
    assert_eq!(st.code(), None, "klpt survived SIGKILL");
    // make dies with klpt (PR_SET_PDEATHSIG); its compilers may finish their file.
    let makes: Vec<(i32, Proc)> =
        b.seen.iter().filter(|(_, p)| p.comm == "make").map(|(pid, p)| (*pid, p.clone())).collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while makes.iter().any(|(pid, p)| still_running(*pid, p)) {
        assert!(Instant::now() < deadline, "make outlived a SIGKILLed klpt: {makes:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(Path::new(&b.dir).exists(), "expected the killed build's directory {} to be left for the next run", b.dir);
    // A make that had lived on would have linked the module.
    let ko = Path::new(&b.dir).join(format!("{module}.ko"));
    assert!(!ko.exists(), "{} was linked after klpt died: make outlived it", ko.display());
    // The next run removes the leftover before it plans; its filter
    // matches no trial, so it builds and boots nothing and says so.
    let mut next = Klpt::start(&s, &["run", &case, "no-such-trial", "--accel", "tcg", "--artifacts", &art]);
    let st = next.wait(Duration::from_secs(60));
    assert_eq!(st.code(), Some(2), "an empty selection is an error ({st}):\n{}", next.stderr());
    assert!(next.stderr().contains("no trial selected"), "no word on the empty selection:\n{}", next.stderr());
    assert!(
        next.stderr().contains(&format!("removed {}", b.dir)),
        "the next run did not report removing {}:\n{}",
        b.dir,
        next.stderr()
    );
    assert_build_gone(&b, &module);
    assert_eq!(s.tmp_leftovers(), Vec::<String>::new(), "temporary directories left in TMPDIR");
    eprintln!(
        "SIGKILL during the build of {module}: removed by the next run, {:.1}s in all",
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn sigint_during_boot() {
    let _g = serial();
    let s = Scratch::new();
    let case = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../cases/stock/basic-enable-disable.yaml");
    let case = case.to_string_lossy().into_owned();
    let art = s.artifacts().to_string_lossy().into_owned();
    let t0 = Instant::now();
    let mut k = Klpt::start(&s, &run_args(&case, &art));
    // QEMU writes the console under our private artifacts directory.
    let deadline = Instant::now() + Duration::from_secs(50);
    let qemu = loop {
        let q: Vec<(i32, Proc)> =
            running_with(&art).into_iter().filter(|(_, p)| p.comm.starts_with("qemu-system")).collect();
        if let Some(q) = q.into_iter().next() {
            break q;
        }
        if let Some(st) = k.child.as_mut().unwrap().try_wait().unwrap() {
            panic!("klpt exited ({st}) before booting; stderr:\n{}", k.stderr());
        }
        assert!(Instant::now() < deadline, "no QEMU started within 50s; stderr:\n{}", k.stderr());
        std::thread::sleep(Duration::from_millis(5));
    };
    // Into the boot, not just the exec.
    std::thread::sleep(Duration::from_millis(300));
    k.signal(libc::SIGINT, true);
    let st = k.wait(Duration::from_secs(20));
    assert_eq!(st.code(), Some(130), "exit status after SIGINT; stderr:\n{}", k.stderr());
    assert!(!still_running(qemu.0, &qemu.1), "QEMU {} still runs after klpt exited", qemu.0);
    let left = running_with(&art);
    assert!(left.is_empty(), "processes of the interrupted run remain: {left:?}");
    assert_eq!(s.tmp_leftovers(), Vec::<String>::new(), "temporary directories left in TMPDIR");
    eprintln!("SIGINT during a boot: clean in {:.1}s", t0.elapsed().as_secs_f64());
}

/// Reads a file klpt wrote, or says which is missing.
fn read(p: &Path, stderr: &str) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}; klpt's stderr:\n{stderr}", p.display()))
}

#[test]
fn sigint_mid_run_writes_every_report() {
    let _g = serial();
    let s = Scratch::new();
    let stock = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../cases/stock");
    let cases = [stock.join("basic-enable-disable.yaml"), stock.join("refusal-logged-once.yaml")]
        .map(|p| p.to_string_lossy().into_owned());
    let art = s.artifacts().to_string_lossy().into_owned();
    let out = |f: &str| s.path().join(f);
    let (ktap, junit, results, events) = (out("r.ktap"), out("r.xml"), out("r.json"), out("r.jsonl"));
    let mut args: Vec<String> =
        ["run", &cases[0], &cases[1], "--accel", "tcg", "--test-threads", "1", "--artifacts", &art]
            .map(String::from)
            .to_vec();
    for (flag, p) in [("--ktap", &ktap), ("--junit", &junit), ("--results", &results), ("--jsonl", &events)] {
        args.extend([flag.to_string(), p.to_string_lossy().into_owned()]);
    }
    let mut k = Klpt::start(&s, &args.iter().map(String::as_str).collect::<Vec<_>>());
    // The event stream says when the first trial is done: one guest at a
    // time, so the second is about to start or running.
    let deadline = Instant::now() + Duration::from_secs(120);
    while !std::fs::read_to_string(&events).unwrap_or_default().contains("\"event\":\"trial_finished\"") {
        if let Some(st) = k.child.as_mut().unwrap().try_wait().unwrap() {
            panic!("klpt exited ({st}) before its first trial finished; stderr:\n{}", k.stderr());
        }
        assert!(Instant::now() < deadline, "no trial finished within 120s; stderr:\n{}", k.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    k.signal(libc::SIGINT, true);
    let st = k.wait(Duration::from_secs(20));
    assert_eq!(st.code(), Some(130), "exit status after SIGINT; stderr:\n{}", k.stderr());
    let err = k.stderr();
    let r: serde_json::Value = serde_json::from_str(&read(&results, &err)).expect("results are JSON");
    assert_eq!(r["cancelled"], true, "{r}");
    let verdicts: Vec<(&str, &str)> = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["case_id"].as_str().unwrap(), t["verdict"].as_str().unwrap()))
        .collect();
    assert_eq!(verdicts, [("stock/basic-enable-disable", "pass"), ("stock/refusal-logged-once", "unfinished")], "{r}");
    let k = read(&ktap, &err);
    assert!(
        k.contains("\nok 1 ")
            && k.contains("# unfinished: the run was interrupted (SIGINT)")
            && k.contains("\nnot ok 2 "),
        "{k}"
    );
    assert!(k.ends_with("# Totals: pass:1 fail:0 xfail:0 xpass:0 skip:0 error:1\n"), "{k}");
    let j = read(&junit, &err);
    assert!(
        j.contains("tests=\"2\" failures=\"0\" errors=\"1\"")
            && j.contains("<error message=\"unfinished: the run was interrupted (SIGINT)"),
        "{j}"
    );
    let last = read(&events, &err).lines().last().unwrap_or_default().to_string();
    assert!(last.contains("\"event\":\"run_finished\"") && last.contains("\"cancelled\":true"), "last event: {last}");
    let left = running_with(&art);
    assert!(left.is_empty(), "processes of the interrupted run remain: {left:?}");
    assert_eq!(s.tmp_leftovers(), Vec::<String>::new(), "temporary directories left in TMPDIR");
}

#[test]
fn run_timeout_writes_every_report() {
    let _g = serial();
    let s = Scratch::new();
    let case = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../cases/stock/basic-enable-disable.yaml");
    let art = s.artifacts().to_string_lossy().into_owned();
    let ktap = s.path().join("r.ktap");
    let mut k = Klpt::start(
        &s,
        &[
            "run",
            &case.to_string_lossy(),
            "--accel",
            "tcg",
            "--artifacts",
            &art,
            "--timeout",
            "2",
            "--ktap",
            &ktap.to_string_lossy(),
        ],
    );
    let st = k.wait(Duration::from_secs(90));
    assert_eq!(st.code(), Some(1), "exit status after --timeout; stderr:\n{}", k.stderr());
    let r = read(&ktap, &k.stderr());
    assert!(r.contains("# unfinished: the run timed out after 2s (--timeout)") && r.contains("\nnot ok 1 "), "{r}");
    let left = running_with(&art);
    assert!(left.is_empty(), "processes of the timed-out run remain: {left:?}");
    assert_eq!(s.tmp_leftovers(), Vec::<String>::new(), "temporary directories left in TMPDIR");
}
