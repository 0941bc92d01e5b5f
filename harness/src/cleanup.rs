//! Nothing outlives a run: every QEMU process, build process group and
//! temporary directory is registered here, and Ctrl-C, SIGTERM or SIGHUP
//! kill and remove them all before klpt exits. Normal paths clean up
//! through `Drop`.

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static PIDS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());
static GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());
static DIRS: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

pub fn track_pid(pid: i32) {
    PIDS.lock().unwrap_or_else(|e| e.into_inner()).insert(pid);
}
pub fn untrack_pid(pid: i32) {
    PIDS.lock().unwrap_or_else(|e| e.into_inner()).remove(&pid);
}

/// A process group klpt started (a build's `make` and everything it runs);
/// `cleanup_all` kills the whole group.
pub fn track_group(pgid: i32) {
    GROUPS.lock().unwrap_or_else(|e| e.into_inner()).insert(pgid);
}
pub fn untrack_group(pgid: i32) {
    GROUPS.lock().unwrap_or_else(|e| e.into_inner()).remove(&pgid);
}

/// How long `cleanup_all` waits for killed processes and groups to go away.
const GROUP_GRACE: Duration = Duration::from_secs(3);

/// Kills every tracked process and process group, waits briefly for them to
/// die (a guest's memory is freed, no compiler still writes into a directory
/// about to be removed), then removes every tracked directory.
pub fn cleanup_all() {
    let pids = std::mem::take(&mut *PIDS.lock().unwrap_or_else(|e| e.into_inner()));
    for &pid in &pids {
        // SAFETY: kill(2) with a pid we spawned; no memory is involved.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let groups = std::mem::take(&mut *GROUPS.lock().unwrap_or_else(|e| e.into_inner()));
    for &g in &groups {
        // SAFETY: kill(2) on a process group whose leader we spawned.
        unsafe { libc::kill(-g, libc::SIGKILL) };
    }
    let deadline = Instant::now() + GROUP_GRACE;
    let running = |pid: i32| proc_stat(pid).is_some_and(|(state, _)| state != 'Z');
    while (pids.iter().any(|&p| running(p)) || groups.iter().any(|&g| group_alive(g))) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    for d in std::mem::take(&mut *DIRS.lock().unwrap_or_else(|e| e.into_inner())) {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// Whether any process of group `pgid` still runs. Zombies do not count:
/// the compilers `make` ran are reparented when it dies, and whoever reaps
/// them (init, or a reaper that never does) is none of klpt's business.
pub fn group_alive(pgid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    if unsafe { libc::kill(-pgid, 0) } != 0 {
        return false;
    }
    let Ok(procs) = std::fs::read_dir("/proc") else { return false };
    procs
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .any(|pid| matches!(proc_stat(pid), Some((state, pg)) if pg == pgid && state != 'Z'))
}

/// (state, process group) of a process, from `/proc/PID/stat`.
pub fn proc_stat(pid: i32) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields follow the last ')'.
    let mut f = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = f.next()?.chars().next()?;
    let _ppid = f.next()?;
    Some((state, f.next()?.parse().ok()?))
}

/// A running process group started by `spawn_group`; untracked on drop.
pub struct Group(i32);

impl Group {
    pub fn pgid(&self) -> i32 {
        self.0
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        untrack_group(self.0);
    }
}

/// Spawns `cmd` as the leader of a new process group, tracked for
/// `cleanup_all`, that dies with klpt.
///
/// * Its own group: a terminal's Ctrl-C reaches klpt only, and klpt's
///   handler kills the group, children included (a SIGTERM sent to klpt
///   alone would otherwise leave them running).
/// * `PR_SET_PDEATHSIG`: a SIGKILLed klpt runs no handler, but the kernel
///   still kills the leader. Its children (gcc, cc1, …) are not killed: the
///   death signal is per process and cleared on fork, so make's compilers
///   are orphaned and finish their one file, writing only into the build's
///   own temporary directory; they never publish (only klpt renames a
///   finished build into the cache). The next run's `cache::sweep` removes
///   that directory and kills whatever still runs in it.
pub fn spawn_group(cmd: &mut Command) -> std::io::Result<(Child, Group)> {
    let parent = std::process::id() as libc::pid_t;
    cmd.process_group(0);
    // SAFETY: prctl, getppid and _exit are async-signal-safe and touch no memory of ours.
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            // klpt died between fork and prctl: the signal will never come.
            if libc::getppid() != parent {
                libc::_exit(137);
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let pgid = child.id() as i32;
    track_group(pgid);
    // A signal whose handler already took the list of groups: this one is
    // not on it, so it goes now (the handler marks the run first).
    if INTERRUPTED.load(Ordering::SeqCst) != 0 {
        // SAFETY: kill(2) on the group we just started.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = child.wait();
        untrack_group(pgid);
        return Err(std::io::Error::new(std::io::ErrorKind::Interrupted, "klpt is being interrupted"));
    }
    Ok((child, Group(pgid)))
}

/// The exit code of the signal that interrupted klpt (0: none).
static INTERRUPTED: AtomicI32 = AtomicI32::new(0);
/// Taken by whoever does the final cleanup: the signal handler or `finish`.
static EXITING: Mutex<()> = Mutex::new(());

/// The last thing a program using the signal handlers does: cleans up, and
/// if a signal interrupted the run, exits with its code (130, 143, 129)
/// rather than with whatever failure the interruption caused, and only
/// once the handler's cleanup is complete.
pub fn finish() {
    let _exiting = EXITING.lock().unwrap_or_else(|e| e.into_inner());
    cleanup_all();
    let code = INTERRUPTED.load(Ordering::SeqCst);
    if code != 0 {
        std::process::exit(code);
    }
}

/// Work the signal handler does before it kills anything: a run writes its
/// reports (its running trials marked unfinished). Given what stopped klpt
/// (`SIGINT`, or the run's timeout).
type Hook = Box<dyn FnOnce(&str) + Send>;
static HOOKS: Mutex<Vec<Hook>> = Mutex::new(Vec::new());

/// Runs `f` when a signal interrupts klpt, before guests are killed (so no
/// trial fails for its killed guest first).
pub fn on_interrupt(f: impl FnOnce(&str) + Send + 'static) {
    HOOKS.lock().unwrap_or_else(|e| e.into_inner()).push(Box::new(f));
}

/// Whether a signal is interrupting klpt: start no new work.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst) != 0
}

/// Stops klpt as a signal would, from klpt itself (a run's `--timeout`):
/// the interrupt hooks run (reports), everything is killed and removed, and
/// klpt exits with `code`.
pub fn abort(code: i32, why: &str) -> ! {
    if INTERRUPTED.compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst).is_err() {
        // A signal got there first and is exiting: wait for it.
        let _exiting = EXITING.lock().unwrap_or_else(|e| e.into_inner());
        std::process::exit(INTERRUPTED.load(Ordering::SeqCst));
    }
    eprintln!("\nklpt: {why}; writing reports, stopping guests and removing temporary files");
    for hook in std::mem::take(&mut *HOOKS.lock().unwrap_or_else(|e| e.into_inner())) {
        hook(why);
    }
    let _exiting = EXITING.lock().unwrap_or_else(|e| e.into_inner());
    cleanup_all();
    std::process::exit(code);
}

thread_local! {
    /// This thread holds `EXITING` (see `holding_off`).
    static HOLDS_OFF: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with the signal handler's cleanup held off: the handler waits
/// (and exits) only after `f`, so it never removes a directory klpt is still
/// writing, creating or removing, nor exits halfway through a removal.
/// Reentrant on one thread.
pub fn holding_off<T>(f: impl FnOnce() -> T) -> T {
    if HOLDS_OFF.get() {
        return f();
    }
    let _exiting = EXITING.lock().unwrap_or_else(|e| e.into_inner());
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            HOLDS_OFF.set(false);
        }
    }
    HOLDS_OFF.set(true);
    let _reset = Reset;
    f()
}

/// Runs `f`, a short write of klpt's own into a tracked directory, with the
/// signal handler's cleanup held off; None, without running `f`, once a
/// signal has arrived (the caller stops and drops its directory).
pub fn unless_interrupted<T>(f: impl FnOnce() -> T) -> Option<T> {
    holding_off(|| if interrupted() { None } else { Some(f()) })
}

/// Installs the signal handlers once; call at startup.
pub fn install_signal_handlers() {
    std::thread::spawn(|| {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        rt.block_on(async {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term), Ok(mut hup)) =
                (signal(SignalKind::interrupt()), signal(SignalKind::terminate()), signal(SignalKind::hangup()))
            else {
                return;
            };
            let (code, name) = tokio::select! {
                _ = int.recv() => (130, "SIGINT"),
                _ = term.recv() => (143, "SIGTERM"),
                _ = hup.recv() => (129, "SIGHUP"),
            };
            INTERRUPTED.store(code, Ordering::SeqCst);
            eprintln!("\nklpt: interrupted; writing reports, stopping guests and removing temporary files");
            for hook in std::mem::take(&mut *HOOKS.lock().unwrap_or_else(|e| e.into_inner())) {
                hook(name);
            }
            // Held until the exit: `finish` on the main thread waits here
            // instead of exiting with the failure the interruption caused.
            let _exiting = EXITING.lock().unwrap_or_else(|e| e.into_inner());
            cleanup_all();
            std::process::exit(code);
        });
    });
}

/// A temporary directory that is removed on drop and on interruption.
pub struct TempDir(Option<tempfile::TempDir>);

impl TempDir {
    pub fn new_in(parent: &Path, prefix: &str) -> std::io::Result<TempDir> {
        std::fs::create_dir_all(parent)?;
        // Created and registered at once: a handler never misses it.
        holding_off(|| {
            let t = tempfile::Builder::new().prefix(prefix).tempdir_in(parent)?;
            DIRS.lock().unwrap_or_else(|e| e.into_inner()).insert(t.path().to_path_buf());
            // Too late for the handler's cleanup: do not start anything new.
            if interrupted() {
                drop(TempDir(Some(t)));
                return Err(std::io::Error::new(std::io::ErrorKind::Interrupted, "klpt is being interrupted"));
            }
            Ok(TempDir(Some(t)))
        })
    }
    pub fn new(prefix: &str) -> std::io::Result<TempDir> {
        Self::new_in(&std::env::temp_dir(), prefix)
    }
    pub fn path(&self) -> &Path {
        self.0.as_ref().expect("live tempdir").path()
    }
    /// Keeps the directory (it becomes a cache entry); returns its path.
    pub fn keep(mut self) -> PathBuf {
        let t = self.0.take().expect("live tempdir");
        DIRS.lock().unwrap_or_else(|e| e.into_inner()).remove(t.path());
        t.keep()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            // Untracked and removed at once: a handler that exits meanwhile
            // would leave it half removed.
            holding_off(|| {
                DIRS.lock().unwrap_or_else(|e| e.into_inner()).remove(t.path());
                drop(t);
            });
        }
    }
}
