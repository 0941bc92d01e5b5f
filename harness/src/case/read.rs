//! Finding and reading case files. Only regular files are read, never more
//! than [`MAX_BYTES`], and a FIFO or device is refused from its metadata, so
//! a bad path costs an error message, not a hang or all memory.

use super::positions::Pos;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub const MAX_BYTES: usize = 1 << 20;
pub const TOO_BIG: &str = "case files are limited to 1 MiB";
const REGULAR: &str = "a case file is a regular file of YAML text";
/// The file of known capabilities next to the cases (see `known`): not a case.
pub const CAPABILITIES: &str = "capabilities.yaml";

/// A reading problem: where, what, how to fix it.
pub type Problem = (Pos, String, Option<String>);

/// All `*.yaml` case files below each path (a path may also name one file),
/// sorted. Anything named `*.yaml` that is not a regular file (a directory,
/// a FIFO, a symlink loop) is listed too, so that loading it reports it.
pub fn discover(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() && !is_yaml(p) => {
                let before = out.len();
                walk(p, &mut out, &mut Vec::new())?;
                if out.len() == before {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("{}: no case files (*.yaml) below", p.display()),
                    ));
                }
            }
            Ok(_) => out.push(p.clone()),
            // A dangling link or a loop: it exists, loading it says why it cannot be read.
            Err(_) if p.symlink_metadata().is_ok() => out.push(p.clone()),
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("{}: no such case file or directory", p.display()),
                ))
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn is_yaml(p: &Path) -> bool {
    p.extension().is_some_and(|x| x == "yaml" || x == "yml")
}

/// `seen` holds the (device, inode) of the directories on the way down, so a
/// symlink back to an ancestor is not followed forever.
fn walk(dir: &Path, out: &mut Vec<PathBuf>, seen: &mut Vec<(u64, u64)>) -> std::io::Result<()> {
    let m = std::fs::metadata(dir)?;
    if seen.contains(&(m.dev(), m.ino())) {
        return Ok(());
    }
    seen.push((m.dev(), m.ino()));
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        let name = p.file_name().unwrap_or_default();
        // Reference kernel series and the explorer's planted-bug series
        // live next to the cases; they are not cases, nor is the list of
        // known capabilities.
        if name == "series" || name == "planted" || name == CAPABILITIES {
            continue;
        }
        match std::fs::metadata(&p) {
            Ok(m) if m.is_dir() && !is_yaml(&p) => walk(&p, out, seen)?,
            _ if is_yaml(&p) => out.push(p),
            _ => {}
        }
    }
    seen.pop();
    Ok(())
}

/// The text of a case file, or why it cannot be one.
pub fn read_text(file: &Path) -> Result<String, Problem> {
    let start = Pos { line: 1, col: 1 };
    let fail = |msg: String, hint: &str| (start, msg, Some(hint.to_string()));
    let unreadable = "check the path and its permissions";
    let meta = std::fs::metadata(file).map_err(|e| fail(format!("cannot read: {e}"), unreadable))?;
    check_type(&meta).map_err(|m| fail(m, REGULAR))?;
    if meta.len() > MAX_BYTES as u64 {
        return Err(fail(format!("{TOO_BIG} (this one has {} bytes)", meta.len()), "split it into several cases"));
    }
    // O_NONBLOCK: if the path became a FIFO since the check, open does not wait for a writer.
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(file)
        .map_err(|e| fail(format!("cannot read: {e}"), unreadable))?;
    let meta = f.metadata().map_err(|e| fail(format!("cannot read: {e}"), unreadable))?;
    check_type(&meta).map_err(|m| fail(m, REGULAR))?;
    let mut bytes = Vec::new();
    f.take(MAX_BYTES as u64 + 1).read_to_end(&mut bytes).map_err(|e| fail(format!("cannot read: {e}"), unreadable))?;
    if bytes.len() > MAX_BYTES {
        return Err(fail(TOO_BIG.into(), "split it into several cases"));
    }
    String::from_utf8(bytes).map_err(|e| {
        let ok = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = ok.iter().filter(|&&b| b == b'\n').count() + 1;
        let col = ok.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
        let bad = e.as_bytes()[ok.len()];
        (
            Pos { line, col },
            format!("not UTF-8 text (byte 0x{bad:02x})"),
            Some("case files are UTF-8; convert the file (e.g. with iconv)".into()),
        )
    })
}

fn check_type(m: &std::fs::Metadata) -> Result<(), String> {
    let t = m.file_type();
    let what = if t.is_file() {
        return Ok(());
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    };
    Err(format!("is {what}, not a case file"))
}
