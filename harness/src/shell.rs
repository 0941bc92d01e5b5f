//! `klpt shell`: reproduce a case locally and get a shell in the guest.

use crate::arch::Arch;
use crate::error::{Error, Result};
use crate::runner::{self, AccelChoice, Options, Target};
use crate::steps::Session;
use std::path::Path;
use std::process::ExitCode;

pub fn shell(
    case_path: &Path,
    until: Option<&str>,
    kernel: Option<&str>,
    arch: Arch,
    accel: AccelChoice,
) -> Result<ExitCode> {
    let case = crate::case::load(case_path)?;
    let last = match until {
        None => None,
        Some(u) => Some(
            case.steps.iter().position(|s| s.label == u || u.parse::<usize>().ok() == Some(s.index + 1)).ok_or_else(
                || {
                    Error::Other(format!(
                        "{}: no step numbered or named `{u}` (steps are 1..={})",
                        case_path.display(),
                        case.steps.len()
                    ))
                },
            )?,
        ),
    };
    // The one command that runs the `ssh` client: check for it before booting.
    crate::host::ensure_shell()?;
    let t = Target::prepare(arch, kernel, accel)?;
    let dir = crate::cleanup::TempDir::new("klpt-shell-").map_err(|e| Error::Other(e.to_string()))?;
    let modules = crate::modules::build_all(&case, &t.kernel, &t.caps)?;
    let opts = Options::new(dir.path().to_path_buf());
    let b = runner::boot(&t, &case, dir.path(), &opts)?;
    let mut session = Session::start(&b.guest, &case, &t.caps, &modules).map_err(|e| Error::Other(format!("{e:?}")))?;
    if let Some(last) = last {
        for step in &case.steps[..=last] {
            eprintln!("klpt: step {} (line {}): {}", step.index + 1, step.line, step.label);
            match session.run(step) {
                Ok(()) => {}
                Err(stop) => {
                    eprintln!(
                        "klpt: step {} failed:\n{}\nklpt: opening the shell anyway",
                        step.index + 1,
                        stop.message()
                    );
                    break;
                }
            }
        }
    }
    drop(session);
    let cmd = crate::vm::ssh::ssh_command(b.vm.ssh_port);
    eprintln!("klpt: modules are in /root; console log: {}\nklpt: from another terminal: {cmd}\nklpt: exit the shell to stop the guest", dir.path().join("console.log").display());
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(&cmd)
        .status()
        .map_err(|e| Error::Other(format!("cannot run ssh: {e}")))?;
    Ok(if status.success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
