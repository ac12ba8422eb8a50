//! The command-line convention the example programs share.

use std::process::ExitCode;

/// Parses this process's arguments with `parse`. On a usage error, prints `program: message`
/// (unless the message is empty, as for `--help`) and `usage` to stderr, and returns the exit
/// code 2 for `main` to return.
///
/// # Errors
/// The exit code, when `parse` rejected the arguments.
pub fn args_or_usage<T>(
    program: &str,
    usage: &str,
    parse: impl FnOnce(&[String]) -> Result<T, String>,
) -> Result<T, ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    parse(&args).map_err(|message| {
        if !message.is_empty() {
            eprintln!("{program}: {message}");
        }
        eprintln!("{usage}");
        ExitCode::from(2)
    })
}

/// Runs `main` on a multi-threaded tokio runtime and turns its outcome into the exit code,
/// printing `program: message` on failure.
pub fn run_async(
    program: &str,
    main: impl std::future::Future<Output = Result<(), String>>,
) -> ExitCode {
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
        .and_then(|runtime| runtime.block_on(main));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{program}: {message}");
            ExitCode::FAILURE
        }
    }
}
