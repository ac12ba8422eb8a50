//! `mxecho`: the workloads behind mxproxy's demo: an echo server, and a client that sends
//! pseudo-random bytes over several connections and checks every byte that comes back.
//!
//! ```text
//! mxecho serve --listen ADDR [--banner TEXT]
//! mxecho send --to ADDR [--connections N] [--bytes N] [--chunk N] [--banner TEXT]
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;

use examples::cli::{args_or_usage, run_async};
use examples::mxecho::{checked_echo, serve_echo};
use examples::mxproxy::listener;

const USAGE: &str = "usage: mxecho serve --listen ADDR [--banner TEXT]
       mxecho send --to ADDR [--connections N] [--bytes N] [--chunk N] [--banner TEXT]

  serve     echo every connection until the client half-closes; with --banner, greet first
            (a server-first protocol, like MySQL)
  send      open N connections at once (default 10), each sending --bytes (default 12) in
            --chunk round trips (default 4096) and checking the echo byte for byte; with
            --banner, expect that greeting first";

enum Command {
    Serve {
        listen: SocketAddr,
        banner: Option<Vec<u8>>,
    },
    Send {
        to: SocketAddr,
        connections: usize,
        bytes: usize,
        chunk: usize,
        banner: Option<Vec<u8>>,
    },
}

fn parse_args(args: &[String]) -> Result<Command, String> {
    let mode = args.first().map(String::as_str);
    let (mut listen, mut to, mut banner) = (None, None, None);
    let (mut connections, mut bytes, mut chunk) = (10usize, 12usize, 4096usize);
    let mut it = args.iter().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        let number = |text: String| text.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--listen" => listen = Some(value()?.parse().map_err(|e| format!("--listen: {e}"))?),
            "--to" => to = Some(value()?.parse().map_err(|e| format!("--to: {e}"))?),
            "--banner" => banner = Some(value()?.into_bytes()),
            "--connections" => connections = number(value()?)?,
            "--bytes" => bytes = number(value()?)?,
            "--chunk" => chunk = number(value()?)?.max(1),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    match mode {
        Some("serve") => Ok(Command::Serve {
            listen: listen.ok_or("serve needs --listen")?,
            banner,
        }),
        Some("send") => Ok(Command::Send {
            to: to.ok_or("send needs --to")?,
            connections,
            bytes,
            chunk,
            banner,
        }),
        _ => Err("expected serve or send".to_owned()),
    }
}

fn main() -> ExitCode {
    let command = match args_or_usage("mxecho", USAGE, parse_args) {
        Ok(command) => command,
        Err(code) => return code,
    };
    run_async("mxecho", async {
        match command {
            Command::Serve { listen, banner } => {
                let listener =
                    listener(listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
                let bound = listener.local_addr().map_err(|e| e.to_string())?;
                println!("mxecho listening on {bound}");
                serve_echo(listener, banner).await;
                Ok(())
            }
            Command::Send {
                to,
                connections,
                bytes,
                chunk,
                banner,
            } => send(to, connections, bytes, chunk, banner).await,
        }
    })
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
    println!("mxecho: {connections} connection(s), {total} bytes sent and echoed back exactly");
    Ok(())
}
