//! Running a test body in a fresh network namespace, so `lo` carries only the test's traffic
//! and packet counts are exact; and re-running a test under a command that changes its
//! privileges.
//!
//! The outer test re-executes the current test binary (`--exact NAME --include-ignored
//! --nocapture --test-threads=1`) under `unshare -rn` (a user namespace mapping the caller to
//! root, and a network namespace: unprivileged on most distributions, and as root) with
//! [`INNER`] set to the test's name. The inner run brings `lo` up and runs the body.
//!
//! When the environment cannot do this (no `unshare`, namespaces or packet sockets refused, no
//! `ip`), the test prints why and fails, unless `MESHSNIFF_SKIP_LIVE=1` is set: then it prints
//! a skip line and passes.

use std::process::{Command, ExitStatus};

/// Set, to the test's name, in the re-executed inner run.
pub const INNER: &str = "MESHSNIFF_LIVE_INNER";
/// Set to 1 to let live tests pass (with a skip line) where the environment cannot run them.
pub const SKIP: &str = "MESHSNIFF_SKIP_LIVE";
/// Exit status of an inner run whose environment could not run the test.
const UNAVAILABLE: i32 = 77;

/// Whether this process is the inner run of test `name`.
pub fn is_inner(name: &str) -> bool {
    std::env::var(INNER).is_ok_and(|inner| inner == name)
}

/// The environment cannot run a live test: in an inner run, exit with a status the outer run
/// reads as "unavailable"; in the outer run, skip (with `MESHSNIFF_SKIP_LIVE=1`) or fail.
pub fn unavailable(why: &str) {
    if std::env::var_os(INNER).is_some() {
        eprintln!("live test unavailable here: {why}");
        std::process::exit(UNAVAILABLE);
    }
    if std::env::var(SKIP).is_ok_and(|v| v == "1") {
        eprintln!("skipped (MESHSNIFF_SKIP_LIVE=1): {why}");
    } else {
        panic!("live test unavailable here: {why} (set MESHSNIFF_SKIP_LIVE=1 to skip it)");
    }
}

/// Runs a command line, for the test's set-up (`ip link …`).
pub fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `body` inside a fresh user and network namespace with `lo` up. `name` is the calling
/// test's name as libtest knows it (the function's path in the test binary).
pub fn in_netns(name: &str, body: impl FnOnce()) {
    if is_inner(name) {
        if let Err(why) = run("ip", &["link", "set", "lo", "up"]) {
            unavailable(&why);
        }
        body();
        return;
    }
    rerun(name, "unshare", &["-rn", "--"]);
}

/// Re-runs test `name` of this binary under `wrapper wrapper_args… <binary> <args>` with
/// [`INNER`] set, and checks that it ran and passed.
pub fn rerun(name: &str, wrapper: &str, wrapper_args: &[&str]) {
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new(wrapper)
        .args(wrapper_args)
        .arg(&exe)
        .args([
            "--exact",
            name,
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(INNER, name)
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) => return unavailable(&format!("cannot run {wrapper}: {e}")),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    print!("{stdout}");
    eprint!("{stderr}");
    let code = out.status.code();
    if code == Some(UNAVAILABLE) {
        let why = stderr
            .lines()
            .find_map(|line| line.strip_prefix("live test unavailable here: "))
            .unwrap_or("see the inner run's output");
        return unavailable(why);
    }
    // libtest exits 101 when a test fails; anything else non-zero comes from the wrapper.
    if code != Some(0) && code != Some(101) {
        return unavailable(&format!(
            "{wrapper} {} failed: {}: {}",
            wrapper_args.join(" "),
            describe(out.status),
            stderr.trim()
        ));
    }
    assert!(out.status.success(), "the inner run of {name} failed");
    assert!(
        stdout.contains("1 passed"),
        "the inner run did not run {name} (wrong name?)"
    );
}

fn describe(status: ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exit status {code}"),
        None => format!("{status}"),
    }
}
