//! Pristine guests without a boot per case: a template guest boots once to
//! its readiness line and is saved with QEMU's migration to a file; every
//! case then starts a new QEMU from that file (`-incoming`). Each case still
//! gets its own process and its own copy of the untouched kernel (clean log,
//! no taint, no modules), at a fraction of a boot's cost.
//!
//! Why migration to a file rather than a disk snapshot (`savevm`): klpt's
//! guests have no disk to hold one, and a file migration needs no support
//! from the guest's devices beyond what live migration already requires.
//! The saved state is cached by everything that shapes it: the kernel, the
//! initramfs, the QEMU binary and the exact QEMU arguments.

use super::qemu::{qemu_args, Vm, VmConfig};
use super::qmp::Qmp;
use crate::cache::Hasher;
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The cache key of the state `cfg`'s guests would be saved in.
fn key(cfg: &VmConfig) -> Result<String> {
    let qemu = super::binary::resolve(cfg.arch)?;
    let version =
        std::process::Command::new(&qemu.path).arg("--version").output().map(|o| o.stdout).unwrap_or_default();
    // Everything but the per-guest parts (port, console, monitor) of the command line.
    let shape = VmConfig { console_log: PathBuf::from("console"), qmp: None, incoming: None, ..cfg.clone() };
    let mut h = Hasher::new();
    // The probe's version: a better probe re-checks states an older one passed.
    h.part("probe", "usleep")
        .part("qemu", qemu.path.display().to_string())
        .part("version", version)
        .part("args", qemu_args(&shape, 0).join("\0"));
    for f in [&cfg.kernel, &cfg.initrd] {
        let m = std::fs::metadata(f).map_err(|e| Error::Vm(format!("{}: {e}", f.display())))?;
        let mtime = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        h.part("file", f.display().to_string()).part("size", m.len().to_le_bytes()).part("mtime", mtime.to_le_bytes());
    }
    Ok(h.hex())
}

/// The saved ready state for guests like `cfg`, booting and saving a
/// template when the cache has none.
pub fn saved(cfg: &VmConfig, boot_timeout: Duration) -> Result<PathBuf> {
    let dir = crate::cache::dir("snapshots");
    let dest = dir.join(format!("{}-{}.state", cfg.arch.name, key(cfg)?));
    // A state that did not restore into a working guest is remembered, so
    // later runs boot at once and say why.
    let unusable = dest.with_extension("unusable");
    if dest.exists() {
        crate::event::emit(crate::event::Event::Cached { what: &format!("{}: saved guest state", cfg.arch.name) });
        return Ok(dest);
    }
    if let Ok(why) = std::fs::read_to_string(&unusable) {
        return Err(Error::Vm(format!("{why} (remembered in {})", unusable.display())));
    }
    let unverified = dest.with_extension("unverified");
    crate::event::stage(&format!("{}: booting a template guest and saving its ready state", cfg.arch.name), || {
        save(cfg, &unverified, boot_timeout)
    })?;
    let checked = crate::event::stage(&format!("{}: checking that the saved state restores", cfg.arch.name), || {
        probe(cfg, &unverified, boot_timeout)
    });
    match checked {
        Ok(()) => {
            std::fs::rename(&unverified, &dest).map_err(|e| Error::Vm(format!("store {}: {e}", dest.display())))?
        }
        Err(e) => {
            let _ = std::fs::remove_file(&unverified);
            let why = format!("a guest restored from the saved state did not work: {e}");
            let _ = std::fs::write(&unusable, &why);
            return Err(Error::Vm(why));
        }
    }
    Ok(dest)
}

/// Restores `state` once and runs a command over SSH: only a state that
/// gives a working guest is ever used for cases.
fn probe(cfg: &VmConfig, state: &Path, timeout: Duration) -> Result<()> {
    let scratch = crate::cleanup::TempDir::new("klpt-probe-").map_err(|e| Error::Vm(format!("probe dir: {e}")))?;
    let (vm, _) =
        Vm::restore(VmConfig { console_log: scratch.path().join("console.log"), ..cfg.clone() }, state, timeout)?;
    let guest = super::ssh::Guest::connect(vm.ssh_port, Duration::from_secs(30))?;
    // Timers too: a restored pseries guest under TCG answered at once but
    // never woke from a sleep (its first case then hung).
    let out = guest.exec("usleep 20000 && cat /proc/sys/kernel/tainted", Duration::from_secs(10))?;
    if let Some(crash) = vm.fatal() {
        return Err(Error::GuestCrash(crash));
    }
    if out.status != 0 {
        return Err(Error::Vm(format!("a command in the restored guest failed: {}", out.stderr.trim())));
    }
    Ok(())
}

fn save(cfg: &VmConfig, dest: &Path, boot_timeout: Duration) -> Result<()> {
    let scratch =
        crate::cleanup::TempDir::new("klpt-template-").map_err(|e| Error::Vm(format!("template dir: {e}")))?;
    let qmp_path = scratch.path().join("qmp.sock");
    let template = VmConfig {
        console_log: scratch.path().join("console.log"),
        qmp: Some(qmp_path.clone()),
        incoming: None,
        ..cfg.clone()
    };
    let vm = Vm::boot(template)?;
    vm.wait_ready(boot_timeout)?;
    let mut qmp = Qmp::connect(&qmp_path, Duration::from_secs(10))?;
    // The shell renames the file only once `cat` has written all of it, so
    // no reader ever sees a partial state, even if klpt dies meanwhile.
    let partial = dest.with_extension(format!("partial-{}", std::process::id()));
    let q = |p: &Path| crate::quote::sh_quote(&p.display().to_string());
    let uri = format!("exec:cat > {} && mv {} {}", q(&partial), q(&partial), q(dest));
    qmp.execute("migrate", Some(serde_json::json!({ "uri": uri })))?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let result = loop {
        let st = qmp.execute("query-migrate", None)?;
        match st.get("status").and_then(|s| s.as_str()).unwrap_or("") {
            "completed" => break Ok(()),
            "failed" | "cancelled" => {
                break Err(Error::Vm(format!(
                    "saving the guest failed: {}",
                    st.get("error-desc").and_then(|s| s.as_str()).unwrap_or("no reason given")
                )));
            }
            _ if Instant::now() >= deadline => break Err(Error::Vm("saving the guest took over 120 s".into())),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    if result.is_ok() {
        // `completed` means QEMU sent everything; the rename follows `cat`'s exit.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !dest.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    drop(vm);
    let _ = std::fs::remove_file(&partial);
    result?;
    if !dest.exists() {
        return Err(Error::Vm(format!("the saved state never appeared at {}", dest.display())));
    }
    Ok(())
}
