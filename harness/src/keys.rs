//! klpt's SSH client key, shared by the guest image (which authorizes its
//! public half) and the SSH client (which logs in with it): a layer of its
//! own so neither depends on the other.

use crate::error::{run, Error, Result};
use std::path::PathBuf;

/// klpt's client key (generated once into the cache) and its public line.
/// RSA: the guest verifies a login's signature with a public exponent of
/// 65537, a few multiplications; dropbear's Ed25519 verification is two
/// scalar multiplications in portable C, which under TCG cost every case's
/// login about 30 ms more.
pub fn client_key() -> Result<(PathBuf, String)> {
    let dir = crate::cache::dir("ssh");
    let key = dir.join("id_rsa");
    if !key.exists() {
        let tmp = dir.join(format!(".id_rsa.{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        run(std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "rsa", "-b", "2048", "-N", "", "-C", "klpt", "-f"])
            .arg(&tmp))?;
        std::fs::rename(format!("{}.pub", tmp.display()), key.with_extension("pub"))
            .map_err(|e| Error::Ssh(e.to_string()))?;
        std::fs::rename(&tmp, &key).map_err(|e| Error::Ssh(e.to_string()))?;
    }
    let public =
        std::fs::read_to_string(key.with_extension("pub")).map_err(|e| Error::Ssh(format!("read public key: {e}")))?;
    Ok((key, public))
}
