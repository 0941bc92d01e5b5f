//! An uncompressed, PVH-bootable `vmlinux` from an XZ-compressed x86 bzImage:
//! QEMU boots it directly and TCG skips ~3.7 s of decompression per boot.

use crate::error::{run, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// `boot/vmlinux-<release>` next to the bzImage, extracted once. None when
/// the image is not XZ or the result has no PVH entry note.
pub fn vmlinux_for(bzimage: &Path) -> Option<PathBuf> {
    let name = bzimage.file_name()?.to_string_lossy().replace("vmlinuz", "vmlinux-pvh");
    let out = bzimage.with_file_name(name);
    if out.exists() {
        return Some(out);
    }
    extract(bzimage, &out).ok().filter(|_| out.exists()).map(|_| out)
}

/// Whether an ELF kernel has the PVH entry note.
pub fn is_pvh(vmlinux: &Path) -> bool {
    run(Command::new("readelf").arg("-n").arg(vmlinux)).is_ok_and(|n| n.contains("0x00000012"))
}

fn extract(bzimage: &Path, out: &Path) -> Result<()> {
    let data = std::fs::read(bzimage).map_err(|e| crate::error::Error::Other(e.to_string()))?;
    let magic = b"\xfd7zXZ\x00";
    let Some(at) = data.windows(magic.len()).position(|w| w == magic) else { return Ok(()) };
    let tmp = out.with_extension("tmp");
    let file = std::fs::File::create(&tmp).map_err(|e| crate::error::Error::Other(e.to_string()))?;
    let mut child = Command::new("xz")
        .args(["-dc", "--single-stream"])
        .stdin(Stdio::piped())
        .stdout(file)
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| crate::error::Error::Other(format!("xz: {e}")))?;
    // The payload is followed by other data; --single-stream stops at its end.
    let _ = child.stdin.take().map(|mut s| s.write_all(&data[at..]));
    let _ = child.wait();
    let notes = run(Command::new("readelf").arg("-n").arg(&tmp)).unwrap_or_default();
    // XEN_ELFNOTE_PHYS32_ENTRY (18) is the PVH entry point QEMU needs.
    let elf = std::fs::read(&tmp).map(|d| d.starts_with(b"\x7fELF")).unwrap_or(false);
    if elf && notes.contains("0x00000012") {
        std::fs::rename(&tmp, out).map_err(|e| crate::error::Error::Other(e.to_string()))?;
    } else {
        let _ = std::fs::remove_file(&tmp);
    }
    Ok(())
}
