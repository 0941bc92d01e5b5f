//! A minimal QMP client (QEMU's JSON monitor on a Unix socket): enough to
//! save a running guest to a file and to learn when a restored one runs.

use crate::error::{Error, Result};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Connects (QEMU creates the socket shortly after it starts) and
    /// leaves capabilities negotiation mode.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Qmp> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() >= deadline => return Err(Error::Vm(format!("QMP {}: {e}", path.display()))),
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        stream.set_read_timeout(Some(Duration::from_secs(60))).map_err(|e| Error::Vm(format!("QMP: {e}")))?;
        let writer = stream.try_clone().map_err(|e| Error::Vm(format!("QMP: {e}")))?;
        let mut q = Qmp { reader: BufReader::new(stream), writer };
        q.read()?; // the greeting
        q.execute("qmp_capabilities", None)?;
        Ok(q)
    }

    fn read(&mut self) -> Result<Value> {
        let mut line = String::new();
        if self.reader.read_line(&mut line).map_err(|e| Error::Vm(format!("QMP read: {e}")))? == 0 {
            return Err(Error::Vm("QMP: QEMU closed the monitor".into()));
        }
        serde_json::from_str(&line).map_err(|e| Error::Vm(format!("QMP: {e}: {line}")))
    }

    /// Runs one command; its `return` value, or its error as an error.
    pub fn execute(&mut self, cmd: &str, args: Option<Value>) -> Result<Value> {
        let req = match args {
            Some(a) => json!({ "execute": cmd, "arguments": a }),
            None => json!({ "execute": cmd }),
        };
        writeln!(self.writer, "{req}").map_err(|e| Error::Vm(format!("QMP write: {e}")))?;
        loop {
            let v = self.read()?;
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                return Err(Error::Vm(format!(
                    "QMP {cmd}: {}",
                    e.get("desc").and_then(Value::as_str).unwrap_or("error")
                )));
            }
            // Anything else is an asynchronous event: not an answer.
        }
    }

    /// The run state (`running`, `paused`, `inmigrate`, ...).
    pub fn status(&mut self) -> Result<String> {
        Ok(self.execute("query-status", None)?.get("status").and_then(Value::as_str).unwrap_or("").to_string())
    }
}
