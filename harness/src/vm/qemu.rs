//! One QEMU guest: the process, its console (a file QEMU writes and a thread
//! tails), readiness and crash detection from the console text. QEMU's exit
//! code is never trusted: a panicked guest exits 0. A guest's fate is read
//! only once its console has been drained, so a panic is never mistaken for
//! a lost connection.

use crate::arch::Arch;
use crate::cleanup;
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Tcg,
    Kvm,
}

#[derive(Debug, Clone)]
pub struct VmConfig {
    pub arch: Arch,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub smp: u32,
    pub mem_mb: u32,
    pub accel: Accel,
    /// Where the console is written (kept as an artifact).
    pub console_log: PathBuf,
    /// A QMP monitor socket to create.
    pub qmp: Option<PathBuf>,
    /// Start from this saved state (`-incoming`) instead of booting.
    pub incoming: Option<PathBuf>,
    pub extra_cmdline: String,
}

/// Console lines that mean the kernel is dead or dying.
pub const FATAL: &[&str] = &[
    "Kernel panic",
    "Oops:",
    "BUG: ",
    "general protection fault",
    "Unable to handle kernel",
    "kernel BUG at",
    "double fault",
    "Internal error:",
];

#[derive(Default)]
struct ConsoleState {
    text: String,
    ready: Option<(Instant, f64)>,
    fatal: Option<usize>,
    /// QEMU's exit status (`exit status: 1`, `signal: 9 (SIGKILL)`).
    exited: Option<String>,
    /// QEMU exited and every byte it wrote to the console has been read.
    drained: bool,
}

struct Shared {
    state: Mutex<ConsoleState>,
    cond: Condvar,
}

pub struct Vm {
    /// Holds a restored guest's monitor socket; removed with the guest.
    _scratch: Option<cleanup::TempDir>,
    pid: i32,
    shared: Arc<Shared>,
    pub ssh_port: u16,
    pub started: Instant,
    pub cfg: VmConfig,
    kept: bool,
}

/// What the console says once the guest has settled (see [`Vm::settle`]).
#[derive(Debug, Clone, Default)]
pub struct Fate {
    /// QEMU's exit status, if it exited.
    pub exited: Option<String>,
    /// A kernel crash on the console, with the lines around it.
    pub crash: Option<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct Ready {
    /// Host seconds from QEMU start to the readiness line.
    pub host_secs: f64,
    /// The guest's own uptime when it printed the readiness line.
    pub guest_uptime: f64,
}

/// A free TCP port on 127.0.0.1 for the SSH forward.
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| Error::Vm(format!("no free port: {e}")))?;
    Ok(l.local_addr().map_err(|e| Error::Vm(e.to_string()))?.port())
}

pub fn qemu_args(cfg: &VmConfig, port: u16) -> Vec<String> {
    let a = super::arch::profile(cfg.arch);
    let mut args: Vec<String> = a.machine.iter().map(|s| s.to_string()).collect();
    let accel = match cfg.accel {
        Accel::Tcg if cfg.smp > 1 && a.tcg_one_thread => "tcg,thread=single",
        Accel::Tcg => "tcg",
        Accel::Kvm => "kvm",
    };
    if cfg.accel == Accel::Kvm {
        // `-cpu max` under nested KVM trips MSR checks; the host model is what KVM runs anyway.
        if let Some(i) = args.iter().position(|s| s == "-cpu") {
            args[i + 1] = "host".into();
        }
    }
    // Without ACPI a plain `-smp N` brings up one CPU: ask for sockets.
    let smp = if cfg.smp > 1 { format!("{0},sockets={0},cores=1,threads=1", cfg.smp) } else { "1".into() };
    let cmdline = format!("console={} panic=-1 {}", a.console, cfg.extra_cmdline).trim().to_string();
    args.extend(
        [
            "-accel",
            accel,
            "-m",
            &cfg.mem_mb.to_string(),
            "-smp",
            &smp,
            "-nodefaults",
            "-no-reboot",
            "-display",
            "none",
            "-chardev",
            &format!("file,id=con,path={}", cfg.console_log.display()),
            "-serial",
            "chardev:con",
            "-kernel",
            &cfg.kernel.display().to_string(),
            "-initrd",
            &cfg.initrd.display().to_string(),
            "-append",
            &cmdline,
            "-netdev",
            &format!("user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:22"),
            "-device",
            &format!("virtio-net-{},netdev=n0", a.virtio),
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    if a.virtio == "ccw" {
        // s390x has no serial port: the SCLP console takes the chardev.
        let i = args.iter().position(|s| s == "-serial").expect("serial arg");
        args.splice(i..i + 2, ["-device".to_string(), "sclpconsole,chardev=con".to_string()]);
    }
    if a.native_panic {
        args.extend(["-action".into(), "panic=exit-failure".into()]);
    }
    if let Some(q) = &cfg.qmp {
        args.extend(["-qmp".into(), format!("unix:{},server=on,wait=off", q.display())]);
    }
    if let Some(state) = &cfg.incoming {
        // QEMU runs `exec:` migrations through /bin/sh.
        args.extend(["-incoming".into(), format!("exec:cat {}", crate::quote::sh_quote(&state.display().to_string()))]);
        // Paused once loaded: [`Loaded::start`] runs it when its case wants it.
        args.push("-S".into());
    }
    args
}

impl Vm {
    pub fn boot(cfg: VmConfig) -> Result<Vm> {
        let port = free_port()?;
        std::fs::write(&cfg.console_log, b"").map_err(|e| Error::Vm(format!("{}: {e}", cfg.console_log.display())))?;
        let qemu_log = cfg.console_log.with_extension("qemu.log");
        let stderr = std::fs::File::create(&qemu_log).map_err(|e| Error::Vm(format!("{}: {e}", qemu_log.display())))?;
        let mut cmd = super::binary::resolve(cfg.arch)?.command();
        cmd.args(qemu_args(&cfg, port))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(stderr);
        // Own process group: a terminal's Ctrl-C reaches klpt, which stops the guest itself.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = spawner::spawn(cmd)
            .map_err(|e| Error::Vm(format!("cannot start {}: {e}", super::arch::profile(cfg.arch).qemu)))?;
        let pid = child.id() as i32;
        cleanup::track_pid(pid);
        let shared = Arc::new(Shared { state: Mutex::new(ConsoleState::default()), cond: Condvar::new() });
        let started = Instant::now();
        let s = shared.clone();
        std::thread::spawn(move || {
            let status = child.wait();
            let mut st = s.state.lock().unwrap_or_else(|e| e.into_inner());
            st.exited = Some(match status {
                Ok(s) => s.to_string(),
                Err(e) => e.to_string(),
            });
            s.cond.notify_all();
        });
        let s = shared.clone();
        // Opened here, not by the reader: the file may be moved (see [`Loaded::adopt`]).
        let log = std::fs::File::open(&cfg.console_log);
        std::thread::spawn(move || tail_console(log, &s));
        Ok(Vm { _scratch: None, pid, shared, ssh_port: port, started, cfg, kept: false })
    }

    /// Starts a guest from a saved ready state (see [`super::snapshot`]):
    /// ready as soon as QEMU has loaded the state and runs the guest.
    pub fn restore(cfg: VmConfig, state: &Path, timeout: Duration) -> Result<(Vm, Ready)> {
        Vm::load(cfg, state, timeout)?.start()
    }

    /// Loads a saved ready state into a new QEMU and leaves the guest
    /// paused before its first instruction (`-S`): [`Loaded::start`] runs it.
    pub fn load(cfg: VmConfig, state: &Path, timeout: Duration) -> Result<Loaded> {
        let scratch = cleanup::TempDir::new("klpt-qmp-").map_err(|e| Error::Vm(format!("monitor dir: {e}")))?;
        let qmp_path = scratch.path().join("qmp.sock");
        let mut vm = Vm::boot(VmConfig { qmp: Some(qmp_path.clone()), incoming: Some(state.to_path_buf()), ..cfg })?;
        vm._scratch = Some(scratch);
        let deadline = Instant::now() + timeout;
        let gone = |vm: &Vm, e: Error| match vm.settle(Duration::from_secs(2)) {
            Fate { exited: Some(x), .. } => Error::Vm(format!("QEMU exited while restoring the saved guest ({x})")),
            _ => e,
        };
        let mut qmp = super::qmp::Qmp::connect(&qmp_path, timeout).map_err(|e| gone(&vm, e))?;
        loop {
            match qmp.status().map_err(|e| gone(&vm, e))?.as_str() {
                "paused" => break,
                // Still reading the state.
                "inmigrate" | "prelaunch" if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
                "inmigrate" | "prelaunch" => {
                    return Err(Error::Vm(format!("the saved guest was not loaded after {}s", timeout.as_secs())))
                }
                other => return Err(Error::Vm(format!("the restored guest is {other}, not paused, after loading"))),
            }
        }
        Ok(Loaded { vm, qmp })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ConsoleState> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for the guest's readiness line; fails on a crash, an early exit or the deadline.
    pub fn wait_ready(&self, timeout: Duration) -> Result<Ready> {
        let deadline = Instant::now() + timeout;
        let mut st = self.state();
        loop {
            if let Some((at, up)) = st.ready {
                return Ok(Ready { host_secs: (at - self.started).as_secs_f64(), guest_uptime: up });
            }
            if let Some(i) = st.fatal {
                return Err(Error::GuestCrash(format!("kernel crashed while booting:\n{}", excerpt(&st.text, i))));
            }
            // Decide on an exit only once the console is drained: the panic
            // that caused it may still be in flight.
            if st.drained {
                let e = st.exited.clone().unwrap_or_default();
                return Err(Error::Vm(format!(
                    "QEMU exited during boot ({e}); console tail:\n{}{}",
                    tail(&st.text, 20),
                    self.qemu_stderr()
                )));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::Vm(format!(
                    "guest not ready after {}s; console tail:\n{}",
                    timeout.as_secs(),
                    tail(&st.text, 20)
                )));
            }
            st = self.shared.cond.wait_timeout(st, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    fn qemu_stderr(&self) -> String {
        let t = std::fs::read_to_string(self.cfg.console_log.with_extension("qemu.log")).unwrap_or_default();
        if t.trim().is_empty() {
            String::new()
        } else {
            format!("\nQEMU said:\n{}", t.trim())
        }
    }

    /// What happened to the guest, decided only after its console has been
    /// read to the end: waits up to `grace` for QEMU to exit and its console
    /// to drain (a panicking guest exits within it), then reports the exit
    /// status and any crash on the console.
    pub fn settle(&self, grace: Duration) -> Fate {
        let deadline = Instant::now() + grace;
        let mut st = self.state();
        while !st.drained {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            st = self.shared.cond.wait_timeout(st, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
        let mut fate = Fate { exited: st.exited.clone(), crash: st.fatal.map(|i| excerpt(&st.text, i)) };
        if let (Some(e), None) = (&fate.exited, &fate.crash) {
            let said = self.qemu_stderr();
            if !said.is_empty() {
                fate.exited = Some(format!("{e}{}", said.replace('\n', "\n  ")));
            }
        }
        fate
    }

    /// A crash seen on the console so far, with the lines around it.
    pub fn fatal(&self) -> Option<String> {
        let st = self.state();
        st.fatal.map(|i| excerpt(&st.text, i))
    }

    pub fn console_tail(&self, n: usize) -> String {
        tail(&self.state().text, n)
    }

    /// Bytes of console text read so far: a mark for [`Vm::console_since`].
    pub fn console_len(&self) -> usize {
        self.state().text.len()
    }

    /// The console text read since `mark` (from [`Vm::console_len`]).
    pub fn console_since(&self, mark: usize) -> String {
        let st = self.state();
        st.text.get(mark.min(st.text.len())..).unwrap_or_default().to_string()
    }

    pub fn exited(&self) -> Option<String> {
        self.state().exited.clone()
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Keeps the guest running until klpt exits (`--keep-failed`): it still
    /// dies with klpt, like every guest, so nothing outlives a run.
    pub fn keep(mut self) -> Kept {
        self.kept = true;
        let k = Kept { pid: self.pid, port: self.ssh_port, shared: self.shared.clone() };
        std::mem::forget(self);
        k
    }
}

/// A guest left running for inspection.
pub struct Kept {
    pub pid: i32,
    pub port: u16,
    shared: Arc<Shared>,
}

impl Kept {
    /// Blocks until the guest's QEMU exits.
    pub fn wait(&self) {
        let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        while st.exited.is_none() {
            st = self.shared.cond.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// A restored guest, loaded and paused: no guest instruction has run yet.
pub struct Loaded {
    vm: Vm,
    qmp: super::qmp::Qmp,
}

impl Loaded {
    /// Runs the guest; `Ready` counts from QEMU's start, or from
    /// [`Loaded::adopt`] for a guest loaded ahead of its case.
    pub fn start(mut self) -> Result<(Vm, Ready)> {
        self.qmp.execute("cont", None)?;
        match self.qmp.status()?.as_str() {
            "running" => {}
            other => return Err(Error::Vm(format!("the restored guest is {other} after `cont`, not running"))),
        }
        let ready = Ready { host_secs: self.vm.started.elapsed().as_secs_f64(), guest_uptime: 0.0 };
        Ok((self.vm, ready))
    }

    /// Moves the console (and QEMU's stderr log) to `console_log`, where
    /// the case that takes this guest keeps it; its clock starts now. QEMU
    /// and the console reader keep their open files, so nothing is lost.
    pub fn adopt(&mut self, console_log: &Path) -> std::io::Result<()> {
        let from = self.vm.cfg.console_log.clone();
        let (stderr_from, stderr_to) = (from.with_extension("qemu.log"), console_log.with_extension("qemu.log"));
        std::fs::rename(&stderr_from, &stderr_to)?;
        if let Err(e) = std::fs::rename(&from, console_log) {
            let _ = std::fs::rename(&stderr_to, &stderr_from);
            return Err(e);
        }
        self.vm.cfg.console_log = console_log.to_path_buf();
        self.vm.started = Instant::now();
        Ok(())
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if !self.kept && self.exited().is_none() {
            // SAFETY: signalling our own child, which has not been reaped yet.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut st = self.state();
            while st.exited.is_none() && Instant::now() < deadline {
                st = self.shared.cond.wait_timeout(st, Duration::from_millis(50)).unwrap_or_else(|e| e.into_inner()).0;
            }
        }
        cleanup::untrack_pid(self.pid);
    }
}

/// Every QEMU is forked by one thread that lives as long as klpt, with
/// `PR_SET_PDEATHSIG`: the signal fires when the *thread* that forked the
/// child exits, so a guest forked by a trial's worker thread would die with
/// that thread, and one forked without it would outlive a SIGKILLed klpt.
mod spawner {
    use std::process::{Child, Command};
    use std::sync::mpsc::{channel, Sender};
    use std::sync::{Mutex, OnceLock};

    type Request = (Command, Sender<std::io::Result<Child>>);

    pub fn spawn(cmd: Command) -> std::io::Result<Child> {
        static TX: OnceLock<Mutex<Sender<Request>>> = OnceLock::new();
        let tx = TX.get_or_init(|| {
            let (tx, rx) = channel::<Request>();
            std::thread::Builder::new()
                .name("klpt-spawner".into())
                .spawn(move || {
                    for (mut cmd, reply) in rx {
                        let _ = reply.send(guarded(&mut cmd));
                    }
                })
                .expect("spawn the guest spawner thread");
            Mutex::new(tx)
        });
        let (reply, answer) = channel();
        tx.lock()
            .unwrap_or_else(|e| e.into_inner())
            .send((cmd, reply))
            .map_err(|_| std::io::Error::other("guest spawner thread is gone"))?;
        answer.recv().map_err(|_| std::io::Error::other("guest spawner thread is gone"))?
    }

    fn guarded(cmd: &mut Command) -> std::io::Result<Child> {
        use std::os::unix::process::CommandExt;
        // SAFETY: getpid has no preconditions.
        let parent = unsafe { libc::getpid() };
        // SAFETY: prctl, getppid and _exit are async-signal-safe and touch no memory of ours.
        unsafe {
            cmd.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                // klpt died between fork and prctl: nobody will ever stop this guest.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        cmd.spawn()
    }
}

/// Reads the console file as QEMU writes it. It is drained once QEMU has
/// exited and a read that started after the exit returns nothing.
fn tail_console(file: std::io::Result<std::fs::File>, s: &Shared) {
    use std::io::Read;
    let Ok(mut f) = file else {
        s.state.lock().unwrap_or_else(|e| e.into_inner()).drained = true;
        return;
    };
    let mut buf = vec![0u8; 65536];
    let ready_re = regex::Regex::new(r"KLPT-READY uptime=([0-9.]+)").expect("static regex");
    loop {
        let exited_before = s.state.lock().unwrap_or_else(|e| e.into_inner()).exited.is_some();
        let n = f.read(&mut buf).unwrap_or(0);
        if n == 0 {
            if exited_before {
                s.state.lock().unwrap_or_else(|e| e.into_inner()).drained = true;
                s.cond.notify_all();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        let chunk = String::from_utf8_lossy(&buf[..n]).replace('\r', "");
        let mut st = s.state.lock().unwrap_or_else(|e| e.into_inner());
        let from = st.text.floor_char_boundary(st.text.len().saturating_sub(200));
        st.text.push_str(&chunk);
        if st.ready.is_none() {
            if let Some(c) = ready_re.captures(&st.text[from..]) {
                st.ready = Some((Instant::now(), c[1].parse().unwrap_or(0.0)));
            }
        }
        if st.fatal.is_none() {
            st.fatal = FATAL.iter().filter_map(|p| st.text[from..].find(p).map(|i| i + from)).min();
        }
        s.cond.notify_all();
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The console lines around byte offset `at`.
pub fn excerpt(text: &str, at: usize) -> String {
    let start_line = text[..at.min(text.len())].lines().count().saturating_sub(3);
    text.lines().skip(start_line).take(30).collect::<Vec<_>>().join("\n")
}

/// Whether KVM works here: a short real boot, not just `/dev/kvm` existing
/// (nested KVM guests hang on some hosts).
pub fn kvm_works(cfg: &VmConfig) -> bool {
    if Arch::host() != Some(cfg.arch) || !Path::new("/dev/kvm").exists() {
        return false;
    }
    let probe = VmConfig { accel: Accel::Kvm, smp: 1, ..cfg.clone() };
    match Vm::boot(probe) {
        Ok(vm) => vm.wait_ready(Duration::from_secs(8)).is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_shows_the_lines_around_a_crash() {
        let text = "a\nb\nc\nd\n[ 4.0] Kernel panic - not syncing: x\ne\nf\n";
        let at = text.find("Kernel panic").unwrap();
        let e = excerpt(text, at);
        assert!(e.starts_with("c\nd\n[ 4.0] Kernel panic") && e.ends_with("f"), "{e:?}");
    }

    /// The `-accel` value QEMU gets for a guest of `arch` with `smp` vCPUs.
    fn accel(arch: &str, smp: u32, accel: Accel) -> String {
        let cfg = VmConfig {
            arch: crate::arch::Arch::by_name(arch).unwrap(),
            kernel: "k".into(),
            initrd: "i".into(),
            smp,
            mem_mb: 512,
            accel,
            console_log: "c".into(),
            qmp: None,
            incoming: None,
            extra_cmdline: String::new(),
        };
        let args = qemu_args(&cfg, 1);
        args[args.iter().position(|a| a == "-accel").unwrap() + 1].clone()
    }

    #[test]
    fn arm64_tcg_runs_several_vcpus_on_one_thread() {
        assert_eq!(accel("arm64", 2, Accel::Tcg), "tcg,thread=single");
        assert_eq!(accel("arm64", 1, Accel::Tcg), "tcg");
        assert_eq!(accel("arm64", 2, Accel::Kvm), "kvm");
        for arch in ["x86_64", "s390x", "ppc64le"] {
            assert_eq!(accel(arch, 2, Accel::Tcg), "tcg", "{arch}");
        }
    }
}
