//! The error type of every pipeline stage: what failed, with enough context
//! to act on it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Case(#[from] crate::case::CaseErrors),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("`{cmd}` failed ({status}){}", tail_of(.output))]
    Command { cmd: String, status: String, output: String },
    #[error("missing host tools: {missing}\n  install them with: {install}")]
    HostTools { missing: String, install: String },
    #[error("kernel {}: {msg}", .dir.display())]
    Kernel { dir: PathBuf, msg: String },
    #[error("module build failed for {module}:\n{output}")]
    ModuleBuild { module: String, output: String },
    /// The case's inputs do not fit the kernel under test (a prebuilt
    /// module built for another kernel): found before any guest boots.
    #[error("{0}")]
    Setup(String),
    #[error("VM: {0}")]
    Vm(String),
    /// The kernel crashed (panic, Oops, …) on the console: a kernel verdict,
    /// unlike the other VM errors, which mean the harness lost the guest.
    #[error("VM: {0}")]
    GuestCrash(String),
    #[error("SSH: {0}")]
    Ssh(String),
    /// A guest command ran past its deadline (the transport may be fine).
    #[error("{0}")]
    SshTimeout(String),
    #[error("{0}")]
    Other(String),
}

fn tail_of(out: &str) -> String {
    let lines: Vec<&str> = out.lines().collect();
    let tail = &lines[lines.len().saturating_sub(25)..];
    if tail.is_empty() {
        String::new()
    } else {
        format!(":\n{}", tail.join("\n"))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach a description to I/O errors.
pub trait IoContext<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io { what: what(), source })
    }
}

/// Runs a command to completion, failing with its output when it fails.
/// In a process group of its own, tracked for cleanup: a Ctrl-C or SIGTERM
/// kills it before the directory it writes into (a source tarball being
/// unpacked, a .deb) is removed.
pub fn run(cmd: &mut std::process::Command) -> Result<String> {
    use std::process::Stdio;
    let shown = format!("{cmd:?}").replace('"', "");
    let cannot = |e| Error::Io { what: format!("cannot run `{shown}`"), source: e };
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let (child, _group) = crate::cleanup::spawn_group(cmd).map_err(cannot)?;
    let out = child.wait_with_output().map_err(cannot)?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        return Err(Error::Command { cmd: shown, status: out.status.to_string(), output: text });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
