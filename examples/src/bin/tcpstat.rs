//! `tcpstat`: node_exporter's `node_tcp_connection_states`, from `/proc/net/tcp{,6}` or netlink.
//!
//! ```text
//! tcpstat [--proc-root DIR] [--source proc|netlink] [--format prom|json]
//!         [--byte-order native|little|big] [--listen ADDR]
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use examples::tcpsource::{self, Collected};
use examples::tcpstat::{render_json, render_prom};

const USAGE: &str =
    "usage: tcpstat [--proc-root DIR] [--source proc|netlink] [--format prom|json] \
[--byte-order native|little|big] [--listen ADDR]

  --proc-root DIR   read DIR/net/tcp and DIR/net/tcp6 (default /proc)
  --source          proc (default) or netlink (sock_diag of this network namespace)
  --format          prom (node_exporter's exposition, default) or json
  --byte-order      endianness of the host that wrote the files (default native). State counts
                    and queue sums do not depend on it: only addresses do, and counting never
                    decodes them; it is checked so scripts that pass it for captures keep working
  --listen ADDR     serve GET /metrics on ADDR (e.g. 127.0.0.1:9100) instead of printing once";

#[derive(Debug, Clone)]
struct Options {
    proc_root: PathBuf,
    netlink: bool,
    json: bool,
    listen: Option<String>,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        proc_root: PathBuf::from("/proc"),
        netlink: false,
        json: false,
        listen: None,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--proc-root" => o.proc_root = PathBuf::from(value()?),
            "--source" => match value()?.as_str() {
                "proc" => o.netlink = false,
                "netlink" => o.netlink = true,
                other => return Err(format!("unknown source {other:?}")),
            },
            "--format" => match value()?.as_str() {
                "prom" => o.json = false,
                "json" => o.json = true,
                other => return Err(format!("unknown format {other:?}")),
            },
            "--byte-order" => match value()?.as_str() {
                "native" | "little" | "big" => {}
                other => return Err(format!("unknown byte order {other:?}")),
            },
            "--listen" => o.listen = Some(value()?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(o)
}

fn collect(o: &Options) -> Result<Collected, String> {
    if o.netlink {
        tcpsource::collect_netlink()
    } else {
        tcpsource::collect_proc(&o.proc_root)
    }
}

fn render(o: &Options, c: &Collected) -> String {
    if o.json {
        render_json(c)
    } else {
        render_prom(c)
    }
}

fn main() -> ExitCode {
    let options = match examples::cli::args_or_usage("tcpstat", USAGE, parse_args) {
        Ok(o) => o,
        Err(code) => return code,
    };
    if let Some(addr) = &options.listen {
        return serve(addr, &options);
    }
    match collect(&options) {
        Ok(c) => {
            c.notes.iter().for_each(|n| eprintln!("tcpstat: {n}"));
            print!("{}", render(&options, &c));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tcpstat: nothing could be read: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(addr: &str, options: &Options) -> ExitCode {
    let listener = match TcpListener::bind(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tcpstat: cannot listen on {addr}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let local = listener
        .local_addr()
        .map_or_else(|_| addr.to_owned(), |a| a.to_string());
    eprintln!("tcpstat: listening on http://{local}/metrics");
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                if let Err(e) = answer(stream, options) {
                    eprintln!("tcpstat: client: {e}");
                }
            }
            Err(e) => eprintln!("tcpstat: accept: {e}"),
        }
    }
    ExitCode::SUCCESS
}

/// One HTTP/1.x exchange: a fresh collection per scrape, as node_exporter does.
fn answer(stream: TcpStream, options: &Options) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?).take(16 * 1024);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Drain the head; requests are small and bodies are not expected.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let path = target.split('?').next().unwrap_or_default();
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => match collect(options) {
            Ok(c) => {
                c.notes.iter().for_each(|n| eprintln!("tcpstat: {n}"));
                let kind = if options.json {
                    "application/json"
                } else {
                    "text/plain; version=0.0.4; charset=utf-8"
                };
                ("200 OK", kind, render(options, &c))
            }
            Err(e) => (
                "503 Service Unavailable",
                "text/plain",
                format!("nothing could be read: {e}\n"),
            ),
        },
        ("GET", _) => ("404 Not Found", "text/plain", "try /metrics\n".to_owned()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n".to_owned(),
        ),
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}
