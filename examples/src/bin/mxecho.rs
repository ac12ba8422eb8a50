//! `mxecho`: the workloads behind mxproxy's demo: an echo server, and a client that sends
//! pseudo-random bytes over several connections and checks every byte that comes back.
//!
//! ```text
//! mxecho serve --listen ADDR [--banner TEXT]
//! mxecho send --to ADDR [--connections N] [--bytes N] [--chunk N] [--banner TEXT]
//! ```

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use examples::mxecho::{checked_echo, serve_echo};
use examples::mxproxy::listener;

/// The workloads behind mxproxy's demo: an echo server, and a client checking every echoed byte.
#[derive(Debug, Parser)]
#[command(name = "mxecho", version, arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Echo every connection until the client half-closes.
    Serve {
        /// Where to listen (port 0 picks one; the first line of output tells which).
        #[arg(long, value_name = "ADDR")]
        listen: SocketAddr,
        /// Greet every connection with this first, before reading (a server-first protocol,
        /// like MySQL).
        #[arg(long, value_name = "TEXT")]
        banner: Option<String>,
    },
    /// Open connections at once, each sending pseudo-random bytes in round trips and checking
    /// the echo byte for byte.
    Send {
        /// The echo server (or a proxy in front of it).
        #[arg(long, value_name = "ADDR")]
        to: SocketAddr,
        /// Connections, all open at once.
        #[arg(long, value_name = "N", default_value_t = 10)]
        connections: usize,
        /// Bytes each connection sends (and checks back).
        #[arg(long, value_name = "N", default_value_t = 12)]
        bytes: usize,
        /// Bytes per round trip.
        #[arg(long, value_name = "N", default_value = "4096", value_parser = positive)]
        chunk: usize,
        /// Expect this greeting first on every connection.
        #[arg(long, value_name = "TEXT")]
        banner: Option<String>,
    },
}

/// A count above zero.
fn positive(text: &str) -> Result<usize, String> {
    match text.parse::<usize>().map_err(|e| e.to_string())? {
        0 => Err("must be above zero".to_owned()),
        n => Ok(n),
    }
}

/// Writes one line on stdout and flushes it. A closed pipe ends the program quietly (exit 0).
fn say(line: &str) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{line}").and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => Err(format!("cannot write stdout: {e}")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
        .and_then(|runtime| {
            runtime.block_on(async {
                match cli.command {
                    Command::Serve { listen, banner } => {
                        let listener = listener(listen)
                            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
                        let bound = listener.local_addr().map_err(|e| e.to_string())?;
                        say(&format!("mxecho listening on {bound}"))?;
                        serve_echo(listener, banner.map(String::into_bytes)).await;
                        Ok(())
                    }
                    Command::Send {
                        to,
                        connections,
                        bytes,
                        chunk,
                        banner,
                    } => {
                        send(
                            to,
                            connections,
                            bytes,
                            chunk,
                            banner.map(String::into_bytes),
                        )
                        .await
                    }
                }
            })
        });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("mxecho: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn send(
    to: SocketAddr,
    connections: usize,
    bytes: usize,
    chunk: usize,
    banner: Option<Vec<u8>>,
) -> Result<(), String> {
    let tasks: Vec<_> = (0..connections as u64)
        .map(|seed| {
            let banner = banner.clone();
            tokio::spawn(
                async move { checked_echo(to, bytes, chunk, seed, banner.as_deref()).await },
            )
        })
        .collect();
    let mut total = 0;
    for (n, task) in tasks.into_iter().enumerate() {
        let transfer = task
            .await
            .map_err(|e| format!("connection {n}: {e}"))?
            .map_err(|e| format!("connection {n}: {e}"))?;
        total += transfer.bytes;
    }
    say(&format!(
        "mxecho: {connections} connection(s), {total} bytes sent and echoed back exactly"
    ))
}
