//! TEMP instrumentation (not to be committed).
use std::cell::Cell;
use std::time::Instant;
thread_local!(static T0: Cell<Option<Instant>> = const { Cell::new(None) });
pub fn reset() { T0.with(|t| t.set(Some(Instant::now()))); }
pub fn mark(what: &str) {
    if std::env::var_os("KLPT_PHASES").is_none() { return; }
    T0.with(|t| { let t0 = t.get().unwrap_or_else(Instant::now); eprintln!("PHASE {:7.1} ms {what}", t0.elapsed().as_secs_f64()*1000.0); });
}
