//! klpt: a QEMU-driven integration test harness for Linux kernel livepatching.
//!
//! The modules follow the pipeline: [`case`] (YAML → typed cases) →
//! [`modules`] (C + Kbuild) → [`kernel`] (artifacts and capabilities) →
//! [`image`] (guest initramfs) → [`vm`] (QEMU + SSH) → [`steps`] (actions and
//! assertions in the guest) → [`report`] (KTAP, JUnit, results). [`runner`]
//! runs one case on one target; [`run`] plans a command's trials, runs
//! them on a pool of workers and streams their events to the reporters.

pub mod apt;
pub mod arch;
pub mod bench;
pub mod cache;
pub mod case;
pub mod cleanup;
pub mod commands;
pub mod error;
pub mod event;
pub mod explore;
pub mod host;
pub mod image;
pub mod kernel;
pub mod keys;
pub mod kselftest;
pub mod model;
pub mod modules;
pub mod quote;
pub mod report;
pub mod run;
pub mod runner;
pub mod shell;
pub mod steps;
pub mod template;
pub mod vm;

use std::path::PathBuf;

/// The project tree (cases/, images/): `$KLPT_ROOT`, else the source checkout.
pub fn project_root() -> PathBuf {
    std::env::var_os("KLPT_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."))
}
