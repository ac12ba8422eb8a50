//! Where `tcpstat` gets its counts: the `/proc` files (streamed, bounded memory) or a live
//! sock_diag dump over netlink. The only I/O in the family lives here, in the examples.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use tcpwire::{
    AF_NETLINK, DiagCounter, DumpProgress, Family, Limits, NETLINK_SOCK_DIAG,
    SOCK_DIAG_REQUEST_LEN, SockDiagRequest, StateCounter, TcpCounts, encode_sock_diag_request,
};

/// What one collection found.
#[derive(Debug, Default, Clone)]
pub struct Collected {
    /// The counts over every table read.
    pub counts: TcpCounts,
    /// Lines that were not valid rows.
    pub malformed_rows: u64,
    /// Tables that could be read.
    pub tables_read: usize,
    /// Remarks for stderr (a missing tcp6, the first malformed row).
    pub notes: Vec<String>,
}

/// Chunk size for file reads; memory use does not depend on the file's size.
const CHUNK: usize = 64 * 1024;

/// Reads `ROOT/net/tcp` and `ROOT/net/tcp6` through the counting path, each table with a
/// counter of its own (so a malformed row's note names its file and its offset in it).
///
/// # Errors
/// Only when neither table could be read; a missing or unreadable tcp6 (or tcp) is a note.
pub fn collect_proc(root: &Path) -> Result<Collected, String> {
    let mut out = Collected::default();
    let mut buf = vec![0u8; CHUNK];
    let mut failures = Vec::new();
    for name in ["tcp", "tcp6"] {
        let path = root.join("net").join(name);
        let mut counter = StateCounter::new(Limits::default());
        // Rows counted before a read error still count, as they did with one counter.
        let read = stream_file(&path, &mut counter, &mut buf);
        out.counts.merge(counter.counts());
        let malformed = counter.stats().malformed;
        out.malformed_rows += malformed;
        if let Some(e) = counter.first_error() {
            out.notes.push(format!(
                "{}: {malformed} malformed row(s), first: {e}",
                path.display()
            ));
        }
        match read {
            Ok(()) => out.tables_read += 1,
            Err(e) => {
                let note = format!("{}: {e}", path.display());
                if name == "tcp6" && e.kind() == io::ErrorKind::NotFound {
                    out.notes
                        .push(format!("{note} (no IPv6 table; counting IPv4 only)"));
                } else {
                    out.notes.push(note.clone());
                }
                failures.push(note);
            }
        }
    }
    if out.tables_read == 0 {
        return Err(failures.join("; "));
    }
    Ok(out)
}

fn stream_file(path: &Path, counter: &mut StateCounter, buf: &mut [u8]) -> io::Result<()> {
    let mut file = File::open(path)?;
    loop {
        let n = match file.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                counter.feed_eof();
                return Err(e);
            }
        };
        counter.feed(buf.get(..n).unwrap_or_default());
    }
    counter.feed_eof();
    Ok(())
}

/// Dumps every TCP socket of this network namespace over `NETLINK_SOCK_DIAG`, IPv4 then IPv6.
///
/// # Errors
/// Socket errors, and the kernel's refusal (as `io::Error` with its message).
pub fn collect_netlink() -> Result<Collected, String> {
    let mut out = Collected::default();
    for family in [Family::Inet, Family::Inet6] {
        match dump_family(family) {
            Ok(counts) => {
                out.counts.merge(&counts);
                out.tables_read += 1;
            }
            Err(e) => out.notes.push(format!("sock_diag {family:?}: {e}")),
        }
    }
    if out.tables_read == 0 {
        return Err(out.notes.join("; "));
    }
    Ok(out)
}

fn dump_family(family: Family) -> io::Result<TcpCounts> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(
        Domain::from(AF_NETLINK),
        Type::RAW,
        Some(Protocol::from(NETLINK_SOCK_DIAG)),
    )?;
    socket.set_recv_buffer_size(1 << 20)?;
    socket.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut request = [0u8; SOCK_DIAG_REQUEST_LEN];
    encode_sock_diag_request(&SockDiagRequest::new(family).sequence(1), &mut request)
        .map_err(|e| io::Error::other(e.to_string()))?;
    // An unconnected netlink socket sends to the kernel (port id 0).
    socket.send(&request)?;
    let mut counter = DiagCounter::new();
    // Dump datagrams are at most 32 KiB; a larger buffer never truncates one.
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = (&socket).read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "netlink socket closed mid-dump",
            ));
        }
        let datagram = buf.get(..n).unwrap_or_default();
        match counter
            .feed_datagram(datagram)
            .map_err(|e| io::Error::other(e.to_string()))?
        {
            DumpProgress::Done => return Ok(*counter.counts()),
            DumpProgress::More => {}
        }
    }
}
