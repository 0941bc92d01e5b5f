//! Progress events. Pipeline stages send them and never print directly:
//! during a run they join the run's event stream (`run::events`), whose
//! human reporter prints them; outside a run they go to stderr.

use std::io::Write;
use std::sync::{OnceLock, RwLock};
use std::time::Instant;

#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event<'a> {
    /// Long work starts: downloading, building, booting.
    Begin {
        what: &'a str,
    },
    /// Long work finished, with how long it took.
    Done {
        what: &'a str,
        secs: f64,
    },
    /// Long work failed (or was interrupted) after this long.
    Failed {
        what: &'a str,
        secs: f64,
    },
    /// A cached artifact was reused.
    Cached {
        what: &'a str,
    },
    /// One line of progress inside a long stage (e.g. a build's output).
    Progress {
        what: &'a str,
        line: &'a str,
    },
    Note {
        msg: &'a str,
    },
    Warn {
        msg: &'a str,
    },
}

fn start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Where events go instead of stderr (the running run's event stream).
type Sink = Box<dyn Fn(&Event<'_>, f64) + Send + Sync>;
static SINK: RwLock<Option<Sink>> = RwLock::new(None);

/// Sends events to `sink` (with seconds since klpt started) until [`unsink`].
pub fn sink(f: impl Fn(&Event<'_>, f64) + Send + Sync + 'static) {
    *SINK.write().unwrap_or_else(|e| e.into_inner()) = Some(Box::new(f));
}

/// Events go to stderr again.
pub fn unsink() {
    *SINK.write().unwrap_or_else(|e| e.into_inner()) = None;
}

/// Sends one event to the run's stream, else to stderr.
pub fn emit(ev: Event<'_>) {
    let t = start().elapsed().as_secs_f64();
    if let Some(f) = SINK.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        return f(&ev, t);
    }
    print(&ev, t);
}

/// Prints one event to stderr: one line, with seconds since klpt started.
pub fn print(ev: &Event<'_>, t: f64) {
    let line = match *ev {
        Event::Begin { what } => format!("[{t:7.1}s] {what} ..."),
        Event::Done { what, secs } => format!("[{t:7.1}s] {what}: done in {secs:.1}s"),
        Event::Failed { what, secs } => format!("[{t:7.1}s] {what}: failed after {secs:.1}s"),
        Event::Cached { what } => format!("[{t:7.1}s] {what}: cached"),
        Event::Progress { what, line } => format!("[{t:7.1}s] {what}: {line}"),
        Event::Note { msg } => format!("[{t:7.1}s] {msg}"),
        Event::Warn { msg } => format!("[{t:7.1}s] warning: {msg}"),
    };
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Runs `f` between Begin and Done events.
pub fn stage<T>(what: &str, f: impl FnOnce() -> T) -> T {
    emit(Event::Begin { what });
    let t0 = Instant::now();
    let r = f();
    emit(Event::Done { what, secs: t0.elapsed().as_secs_f64() });
    r
}

/// `stage` for fallible work: Done when it succeeds, Failed when not.
pub fn try_stage<T, E>(what: &str, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
    emit(Event::Begin { what });
    let t0 = Instant::now();
    let r = f();
    let secs = t0.elapsed().as_secs_f64();
    emit(if r.is_ok() { Event::Done { what, secs } } else { Event::Failed { what, secs } });
    r
}
