//! SSH into the guest (ssh2/libssh2 against the guest's dropbear). Emulated
//! guests flake at the banner exchange, so connecting retries with backoff.

use crate::error::{Error, Result};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The command line a user types to reach a guest from another terminal.
pub fn ssh_command(port: u16) -> String {
    let key = crate::keys::client_key().map(|(k, _)| k.display().to_string()).unwrap_or_default();
    format!("ssh -i {key} -p {port} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR root@127.0.0.1")
}

/// Output of a watched command as it arrives ([`Guest::exec_watch`]).
pub enum Chunk<'a> {
    Stdout(&'a str),
    Stderr(&'a str),
    /// Nothing arrived within the poll interval.
    Idle,
}

/// Bytes to text across chunk boundaries: a UTF-8 sequence split between
/// two reads is decoded once whole.
#[derive(Default)]
struct Utf8Carry(Vec<u8>);

impl Utf8Carry {
    fn push(&mut self, bytes: &[u8]) -> String {
        self.0.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.0) {
            Ok(_) => self.0.len(),
            // An incomplete sequence at the end waits for the next read.
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => self.0.len(),
        };
        let rest = self.0.split_off(valid);
        let text = String::from_utf8_lossy(&self.0).into_owned();
        self.0 = rest;
        text
    }
}

/// A command's first line, shortened, for messages.
fn shown(cmd: &str) -> String {
    let first = cmd.lines().next().unwrap_or("");
    match first.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &first[..i]),
        None => first.to_string(),
    }
}

/// What a streaming command's reader does next.
pub struct Flow {
    /// When the command, from now on, must have produced more output or ended.
    pub deadline: Instant,
    /// Ask the command to stop (see [`Guest::exec_stream`]).
    pub stop: bool,
}

pub struct Output {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

pub struct Guest {
    sess: ssh2::Session,
    pub port: u16,
}

impl Guest {
    /// Connects and authenticates, retrying with backoff until `timeout`.
    pub fn connect(port: u16, timeout: Duration) -> Result<Guest> {
        let deadline = Instant::now() + timeout;
        let mut delay = Duration::from_millis(100);
        let mut last = String::new();
        while Instant::now() < deadline {
            match Self::try_connect(port) {
                Ok(g) => return Ok(g),
                Err(e) => last = e,
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(2));
        }
        Err(Error::Ssh(format!("cannot log in to the guest on 127.0.0.1:{port} within {}s: {last}", timeout.as_secs())))
    }

    fn try_connect(port: u16) -> std::result::Result<Guest, String> {
        let tcp = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        // Without TCP_NODELAY a small packet written while the previous one
        // is unacknowledged waits for QEMU's delayed ACK (40 ms): a harness
        // command with output took 56 ms instead of 11.
        tcp.set_nodelay(true).map_err(|e| e.to_string())?;
        let mut sess = ssh2::Session::new().map_err(|e| e.to_string())?;
        sess.set_tcp_stream(tcp);
        sess.set_timeout(15_000);
        sess.handshake().map_err(|e| format!("handshake: {e}"))?;
        let (key, _) = crate::keys::client_key().map_err(|e| e.to_string())?;
        // klpt's key is the only way in: the image locks root's password.
        sess.userauth_pubkey_file("root", None, &key, None)
            .map_err(|e| format!("authentication with {}: {e}", key.display()))?;
        Ok(Guest { sess, port })
    }

    /// Runs a shell command in the guest.
    pub fn exec(&self, cmd: &str, timeout: Duration) -> Result<Output> {
        self.exec_with_input(cmd, None, timeout)
    }

    /// Runs `cmd` with `input` on its stdin. A command still running at
    /// `timeout` is [`Error::SshTimeout`]; any other failure means the
    /// transport broke ([`Error::Ssh`]).
    pub fn exec_with_input(&self, cmd: &str, input: Option<&[u8]>, timeout: Duration) -> Result<Output> {
        // libssh2 takes milliseconds in a c_uint, and 0 means "no timeout".
        self.sess.set_timeout(timeout.as_millis().clamp(1, u32::MAX as u128) as u32);
        let shown = shown(cmd);
        let err = |e: std::io::Error| {
            if e.kind() == std::io::ErrorKind::TimedOut {
                Error::SshTimeout(format!("`{shown}` did not finish within {:.0}s", timeout.as_secs_f64()))
            } else {
                Error::Ssh(format!("`{shown}`: {e}"))
            }
        };
        let mut ch = self.sess.channel_session().map_err(|e| err(e.into()))?;
        ch.exec(cmd).map_err(|e| err(e.into()))?;
        if let Some(data) = input {
            ch.write_all(data).map_err(err)?;
        }
        ch.send_eof().map_err(|e| err(e.into()))?;
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        ch.read_to_end(&mut stdout).map_err(err)?;
        ch.stderr().read_to_end(&mut stderr).map_err(err)?;
        ch.wait_close().map_err(|e| err(e.into()))?;
        let status = ch.exit_status().map_err(|e| err(e.into()))?;
        Ok(Output {
            status,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        })
    }

    /// Runs `cmd`, handing its stdout and stderr to `on` as they arrive, and
    /// [`Chunk::Idle`] after every `poll` without output, so the caller can
    /// watch the guest and its own deadlines. `on` returning
    /// `ControlFlow::Break` abandons the command. `Ok(Some(status))` when it
    /// exited, `Ok(None)` when abandoned; an error means the transport broke.
    /// Unlike [`Guest::exec_stream`] (stdout only, blocking reads bounded by
    /// a deadline), it polls both streams, so a silent command never blocks
    /// the watcher.
    pub fn exec_watch(
        &self,
        cmd: &str,
        poll: Duration,
        mut on: impl FnMut(Chunk<'_>) -> std::ops::ControlFlow<()>,
    ) -> Result<Option<i32>> {
        let shown = shown(cmd);
        let err = |e: std::io::Error| Error::Ssh(format!("`{shown}`: {e}"));
        self.sess.set_timeout(60_000);
        let mut ch = self.sess.channel_session().map_err(|e| err(e.into()))?;
        ch.exec(cmd).map_err(|e| err(e.into()))?;
        ch.send_eof().map_err(|e| err(e.into()))?;
        self.sess.set_blocking(false);
        let streamed = (|| -> Result<bool> {
            let mut buf = vec![0u8; 16384];
            let (mut out, mut errs) = (Utf8Carry::default(), Utf8Carry::default());
            loop {
                let mut got = false;
                for id in [0, 1] {
                    match ch.stream(id).read(&mut buf) {
                        Ok(0) => {}
                        Ok(n) => {
                            got = true;
                            let text = if id == 0 { out.push(&buf[..n]) } else { errs.push(&buf[..n]) };
                            let c = if id == 0 { Chunk::Stdout(&text) } else { Chunk::Stderr(&text) };
                            if on(c).is_break() {
                                return Ok(false);
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(err(e)),
                    }
                }
                if got {
                    continue;
                }
                if ch.eof() {
                    return Ok(true);
                }
                if on(Chunk::Idle).is_break() {
                    return Ok(false);
                }
                std::thread::sleep(poll);
            }
        })();
        if !matches!(streamed, Ok(true)) {
            // Freeing an open channel in blocking mode waits for the guest's
            // close, which a dead guest never sends: free it non-blocking.
            drop(ch);
            self.sess.set_blocking(true);
            return streamed.map(|_| None);
        }
        self.sess.set_blocking(true);
        ch.wait_close().map_err(|e| err(e.into()))?;
        Ok(Some(ch.exit_status().map_err(|e| err(e.into()))?))
    }

    /// Runs `cmd` and hands its stdout to `on` as it arrives (first with
    /// no data, for the initial [`Flow`]). Each read waits until the
    /// deadline `on` last returned: a command still running then is
    /// [`Error::SshTimeout`], a broken transport [`Error::Ssh`]. With
    /// `hold_stdin`, the command's stdin stays open until `on` asks to stop:
    /// klpt then writes `stop` and a newline and closes it.
    pub fn exec_stream(&self, cmd: &str, hold_stdin: bool, on: &mut dyn FnMut(&[u8]) -> Flow) -> Result<Output> {
        let shown = shown(cmd);
        let err = |e: std::io::Error| {
            if e.kind() == std::io::ErrorKind::TimedOut {
                Error::SshTimeout(format!("`{shown}` did not finish in time"))
            } else {
                Error::Ssh(format!("`{shown}`: {e}"))
            }
        };
        let mut flow = on(&[]);
        self.set_deadline(flow.deadline).map_err(err)?;
        let mut ch = self.sess.channel_session().map_err(|e| err(e.into()))?;
        ch.exec(cmd).map_err(|e| err(e.into()))?;
        let mut stdin_open = hold_stdin;
        if !hold_stdin {
            ch.send_eof().map_err(|e| err(e.into()))?;
        }
        let mut stdout = Vec::new();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            if flow.stop && stdin_open {
                stdin_open = false;
                // The command may have ended on its own meanwhile: a closed
                // channel shows in the next read, not here.
                let _ = ch.write_all(b"stop\n").and_then(|()| ch.flush());
                let _ = ch.send_eof();
            }
            self.set_deadline(flow.deadline).map_err(err)?;
            match ch.read(&mut buf) {
                // End of stdout (libssh2's eof() would stay false while
                // stderr data waits to be read).
                Ok(0) => break,
                Ok(n) => {
                    stdout.extend_from_slice(&buf[..n]);
                    flow = on(&buf[..n]);
                }
                Err(e) => return Err(err(e)),
            }
        }
        let mut stderr = Vec::new();
        self.set_deadline(flow.deadline).map_err(err)?;
        ch.stderr().read_to_end(&mut stderr).map_err(err)?;
        ch.wait_close().map_err(|e| err(e.into()))?;
        let status = ch.exit_status().map_err(|e| err(e.into()))?;
        Ok(Output {
            status,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        })
    }

    /// Bounds the session's next blocking call by `deadline`; one already
    /// passed is a timeout.
    fn set_deadline(&self, deadline: Instant) -> std::io::Result<()> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.sess.set_timeout(left.as_millis().clamp(1, u32::MAX as u128) as u32);
        Ok(())
    }

    /// Copies a file into the guest.
    pub fn put(&self, data: &[u8], path: &str) -> Result<()> {
        let out = self.exec_with_input(&format!("cat > '{path}'"), Some(data), Duration::from_secs(60))?;
        if out.status != 0 {
            return Err(Error::Ssh(format!("copy to {path}: {}", out.stderr.trim())));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Utf8Carry;

    #[test]
    fn a_character_split_across_reads_is_decoded_whole() {
        let mut c = Utf8Carry::default();
        let bytes = "a…b".as_bytes();
        assert_eq!(c.push(&bytes[..2]), "a");
        assert_eq!(c.push(&bytes[2..3]), "");
        assert_eq!(c.push(&bytes[3..]), "…b");
        assert_eq!(c.push(b"\xff!"), "\u{fffd}!");
    }
}
