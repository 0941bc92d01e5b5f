//! `cargo test` over real kernels: the stock cases must pass (or skip with a
//! reason) on the default kernel, every deliberately wrong case must fail
//! with the right diagnosis, every bad case file must be refused by the
//! checker at the right line, and a guest must let in klpt's key and nothing
//! else. No mocked kernel or QEMU: each trial boots one.
//!
//! `KLPT_KERNEL` selects the kernel (default: Debian's current), `KLPT_ARCH`
//! the architecture (default x86_64).

use klpt::report::Status;
use klpt::runner::{self, Options, Target};
use klpt::vm::qemu::Vm;
use klpt::vm::ssh::Guest;
use libtest_mimic::{Arguments, Failed, Trial};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Deliberately wrong cases, the cause their failure's first line must
/// start with, and what the message must say.
const WRONG: &[(&str, &str, &[&str])] = &[
    ("wrong-sysfs-value", "kernel verdict: step ", &["klpt_w_sysfs/enabled: expected 0, got 1"]),
    ("wrong-errno", "kernel verdict: step ", &["expected refusal with EBUSY, got EINVAL"]),
    (
        "missing-dmesg-event",
        "kernel verdict: step ",
        &["dmesg: expected event", "unpatching complete", "not found after"],
    ),
    ("patch-without-effect", "kernel verdict: step ", &["/proc/cmdline: expected to contain \"klpt_w_effect\""]),
    ("transition-never-ends", "kernel verdict: step ", &["transition of klpt_w_stuck did not finish within 5s"]),
    (
        "compile-error",
        "harness error: module build failed for klpt_w_cc",
        &["compile-error.yaml:9:", "undeclared_variable"],
    ),
    ("kernel-warning", "kernel verdict: step ", &["kernel reported a problem", "WARNING:"]),
];

/// Bad case files and what `klpt check` must report.
const BAD: &[(&str, &[&str])] = &[
    ("typo-field", &["typo-field.yaml:8:5: unknown step key `lod`", "did you mean `load`"]),
    ("undefined-module", &["undefined-module.yaml:8:", "no module named `klpt_b3`", "did you mean `klpt_b2`"]),
    ("impossible-unload", &["impossible-unload.yaml:5:", "not a C identifier", "impossible-unload.yaml:8:", "not loaded at this point"]),
    ("yaml-syntax", &["yaml-syntax.yaml:"]),
    ("wrong-type", &["wrong-type.yaml:9:31: `wait` must be true or false, not a string (\"no\")"]),
    ("unknown-attribute", &["unknown-attribute.yaml:10:27: unknown patch attribute `enabeld`", "did you mean `enabled`"]),
    ("unknown-capability", &["unknown-capability.yaml:9:30: unknown struct klp_patch field `replace_sets`", "did you mean `replace_set`"]),
    ("when-impossible", &["when-impossible.yaml:13:5: on kernels with klp_patch.replace_set and without sysfs.replace: patch `klpt_b8` is not loaded at this point"]),
    ("empty-shell", &["empty-shell.yaml:3:5: missing `command:`", "empty-shell.yaml:4:5: `shell` must not be empty"]),
    ("out-of-range", &["out-of-range.yaml:2:1: `smp` must be in 1..=8", "`timeout` must be in 1..=86400, not 18446744073709551615", "`status` must be in 0..=255"]),
    ("list-for-mapping", &["list-for-mapping.yaml:4:7: `files` must be a mapping, not a list"]),
    ("deep-nesting", &["deep-nesting.yaml:2:", "nests deeper than 64 levels"]),
    ("bad-call", &["bad-call.yaml:11:12: `klpt_b9.b9_fn` is not a parking function", "`b9_busy` is a parking function"]),
    ("bad-args", &["bad-args.yaml:4:41: `default` must be an integer", "module argument `verbose;` is not `name=value`"]),
    ("bad-callbacks", &["bad-callbacks.yaml:5:16: `../secret.h` is not a header path", "bad-callbacks.yaml:8:9: missing `set:`", "bad-callbacks.yaml:11:32: unknown callback `post_pach`", "did you mean `post_patch`", "bad-callbacks.yaml:14:24: `post_patch` returns nothing", "bad-callbacks.yaml:15:23: parameter `ret` is a bool, not an int", "bad-callbacks.yaml:19:5: `trace` takes `off`"]),
];

fn tests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests")
}

fn expect_all(text: &str, needles: &[&str]) -> Result<(), Failed> {
    for n in needles {
        if !text.contains(n) {
            return Err(format!("diagnosis lacks {n:?}; got:\n{text}").into());
        }
    }
    Ok(())
}

fn bad_trials() -> Vec<Trial> {
    BAD.iter()
        .map(|(name, needles)| {
            Trial::test(format!("check/{name}"), move || {
                let path = tests_dir().join("bad").join(format!("{name}.yaml"));
                match klpt::case::load(&path) {
                    Ok(_) => Err("the checker accepted a bad case".into()),
                    Err(e) => expect_all(&e.to_string(), needles),
                }
            })
        })
        .collect()
}

/// What a client without klpt's key gets from the guest as root.
#[derive(Debug, PartialEq)]
enum Keyless {
    /// Both refused: the `none` method and the password.
    Refused,
    /// The server let the client in with the `none` method (what dropbear
    /// `-B` does for an account with an empty password).
    NoneAccepted,
    PasswordAccepted,
}

/// On a fresh SSH connection as root: the `none` method (libssh2 asks for
/// the method list with it; an OpenSSH client without a key tries it first),
/// then `password`.
fn keyless_login(port: u16, password: &str) -> Result<Keyless, String> {
    let mut last = String::new();
    // Emulated guests flake at the banner exchange: retry the connection, never a login.
    for _ in 0..5 {
        let tcp = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        let mut sess = ssh2::Session::new().map_err(|e| e.to_string())?;
        sess.set_tcp_stream(tcp);
        sess.set_timeout(15_000);
        if let Err(e) = sess.handshake() {
            last = format!("handshake: {e}");
            std::thread::sleep(Duration::from_millis(500));
            continue;
        }
        let methods = sess.auth_methods("root").map(str::to_string);
        if sess.authenticated() {
            return Ok(Keyless::NoneAccepted);
        }
        let methods = methods.map_err(|e| format!("the `none` request failed: {e}"))?;
        if !methods.split(',').any(|m| m == "password") {
            // Not even offered: refused.
            return Ok(Keyless::Refused);
        }
        return match sess.userauth_password("root", password) {
            // LIBSSH2_ERROR_AUTHENTICATION_FAILED: the server said no.
            Err(e) if e.code() == ssh2::ErrorCode::Session(-18) => Ok(Keyless::Refused),
            Err(e) => Err(format!("password login neither accepted nor refused: {e}")),
            Ok(()) => Ok(Keyless::PasswordAccepted),
        };
    }
    Err(format!("no SSH session with the guest on port {port}: {last}"))
}

/// Boots a bare guest: klpt's key logs in as root; without it, neither the
/// `none` method nor an empty password does.
fn key_only_login(t: &Target, dir: &Path) -> Result<(), Failed> {
    std::fs::create_dir_all(dir).map_err(|e| Failed::from(format!("{}: {e}", dir.display())))?;
    let vm = Vm::boot(t.vm_config(1, &dir.join("console.log"))).map_err(|e| Failed::from(e.to_string()))?;
    vm.wait_ready(Duration::from_secs(240)).map_err(|e| Failed::from(e.to_string()))?;
    let guest = Guest::connect(vm.ssh_port, Duration::from_secs(60))
        .map_err(|e| Failed::from(format!("klpt's key was refused: {e}")))?;
    let uid = guest.exec("id -u", Duration::from_secs(30)).map_err(|e| Failed::from(e.to_string()))?;
    if uid.stdout.trim() != "0" {
        return Err(format!("key login is not root: id -u said {:?}", uid.stdout).into());
    }
    let got = keyless_login(vm.ssh_port, "")?;
    if got != Keyless::Refused {
        return Err(format!("root logged in without klpt's key: {got:?}").into());
    }
    // dropbear checked and refused the password (not, say, a dropped connection).
    let log =
        guest.exec("cat /run/dropbear.log", Duration::from_secs(30)).map_err(|e| Failed::from(e.to_string()))?.stdout;
    if !log.contains("Bad password attempt for 'root'") {
        return Err(format!("dropbear did not log a refused password attempt; its log:\n{log}").into());
    }
    Ok(())
}

fn main() {
    let args = Arguments::from_args();
    klpt::cleanup::install_signal_handlers();
    let target = runner::test_target();
    let artifacts = std::env::temp_dir().join(format!("klpt-test-artifacts-{}", std::process::id()));
    let opts = Arc::new(Options::new(artifacts.clone()));
    let mut trials = bad_trials();

    let stock = klpt::case::discover(&[klpt::project_root().join("cases/stock")]).expect("cases/stock exists");
    for file in stock {
        let case = Arc::new(klpt::case::load(&file).unwrap_or_else(|e| panic!("{e}")));
        let (t, o) = (target.clone(), opts.clone());
        trials.push(Trial::ignorable_test(
            format!("stock/{}", file.file_stem().unwrap_or_default().to_string_lossy()),
            move || {
                let out = runner::run_case(&t, &case, &o);
                match out.status {
                    Status::Pass | Status::Xfail(_) => Ok(libtest_mimic::Completion::Completed),
                    Status::Skip(r) => Ok(libtest_mimic::Completion::ignored_with(r)),
                    Status::Fail(f) => Err(f.to_string().into()),
                    Status::Xpass(r) => Err(format!("XPASS: {r}").into()),
                }
            },
        ));
    }
    for (name, cause, needles) in WRONG {
        let path = tests_dir().join("wrong").join(format!("{name}.yaml"));
        let (t, o) = (target.clone(), opts.clone());
        trials.push(Trial::test(format!("wrong/{name}"), move || {
            let case = klpt::case::load(&path).map_err(|e| Failed::from(e.to_string()))?;
            let out = runner::run_case(&t, &case, &o);
            match out.status {
                Status::Fail(f) if f.to_string().starts_with(cause) => expect_all(&f.to_string(), needles),
                Status::Fail(f) => Err(format!("the first line should start with {cause:?}:\n{f}").into()),
                other => Err(format!("a deliberately wrong case did not fail: {other:?}").into()),
            }
        }));
    }
    {
        let (t, dir) = (target.clone(), artifacts.join("guest-key-only-login"));
        trials.push(Trial::test("guest/key-only-login", move || key_only_login(&t, &dir)));
    }
    let conclusion = libtest_mimic::run(&args, trials);
    klpt::cleanup::finish();
    if !conclusion.has_failed() {
        let _ = std::fs::remove_dir_all(&artifacts);
    } else {
        eprintln!("artifacts of failed cases: {}", artifacts.display());
    }
    conclusion.exit();
}
