//! `/proc/net/sockstat` and `/proc/net/sockstat6`: O(1) socket totals.
#![deny(clippy::indexing_slicing)]

use super::token::{Tokens, dec_u64, trim_blanks};
use crate::error::{Error, ErrorKind};

/// Every `(protocol, key, value)` triple of a sockstat file, in order: `TCP: inuse 5 orphan 0`
/// gives `(b"TCP", b"inuse", 5)` and `(b"TCP", b"orphan", 0)`.
///
/// # Errors
/// Each item is an [`ErrorKind::BadSockstat`] error (offset within `text`) for a line that does
/// not read `PROTO: key value …`; the following lines are still read.
pub fn sockstat_counters(text: &[u8]) -> SockstatCounters<'_> {
    SockstatCounters {
        text,
        line_start: 0,
        protocol: &[],
        pairs: Tokens::new(&[]),
        pairs_at: 0,
    }
}

/// See [`sockstat_counters`].
#[derive(Debug, Clone)]
pub struct SockstatCounters<'a> {
    text: &'a [u8],
    line_start: usize,
    protocol: &'a [u8],
    pairs: Tokens<'a>,
    pairs_at: usize,
}

impl<'a> Iterator for SockstatCounters<'a> {
    type Item = Result<(&'a [u8], &'a [u8], u64), Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((at, key)) = self.pairs.next() {
                let bad = Error::new(ErrorKind::BadSockstat, (self.pairs_at + at) as u64);
                let value = self.pairs.next().and_then(|(_, v)| dec_u64(v));
                // A broken pair spoils the rest of its line, not the file.
                return Some(match value {
                    Some(value) => Ok((self.protocol, key, value)),
                    None => {
                        self.pairs = Tokens::new(&[]);
                        Err(bad)
                    }
                });
            }
            let rest = self.text.get(self.line_start..).filter(|r| !r.is_empty())?;
            let len = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
            let line = rest.get(..len).unwrap_or_default();
            let line_at = self.line_start;
            self.line_start += len + 1;
            if Tokens::new(line).next().is_none() {
                continue;
            }
            let Some(colon) = memchr::memchr(b':', line) else {
                return Some(Err(Error::new(ErrorKind::BadSockstat, line_at as u64)));
            };
            self.protocol = trim_blanks(line.get(..colon).unwrap_or_default());
            self.pairs = Tokens::new(line.get(colon + 1..).unwrap_or_default());
            self.pairs_at = line_at + colon + 1;
        }
    }
}

/// The TCP line of `/proc/net/sockstat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct TcpSockstat {
    /// Sockets in use (every state but TIME_WAIT minisockets and request sockets).
    pub inuse: u64,
    /// Orphaned sockets (closed by the application, still in the TCP state machine).
    pub orphan: u64,
    /// TIME_WAIT minisockets.
    pub time_wait: u64,
    /// Allocated sockets.
    pub alloc: u64,
    /// Pages of memory TCP uses.
    pub mem_pages: u64,
}

/// The totals of `/proc/net/sockstat` and `/proc/net/sockstat6` that concern TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Sockstat {
    /// `sockets: used N`: sockets of every protocol.
    pub sockets_used: Option<u64>,
    /// The `TCP:` line.
    pub tcp: Option<TcpSockstat>,
    /// `TCP6: inuse N` (from sockstat6).
    pub tcp6_inuse: Option<u64>,
    /// Counters present but not named above (other protocols, newer keys), counted.
    pub other_counters: u32,
}

/// Reads the TCP totals of a sockstat file (or of both files concatenated).
///
/// # Errors
/// The first [`ErrorKind::BadSockstat`] line.
///
/// # Panics
/// Never.
pub fn parse_sockstat(text: &[u8]) -> Result<Sockstat, Error> {
    let mut out = Sockstat::default();
    for counter in sockstat_counters(text) {
        let (protocol, key, value) = counter?;
        let tcp = || out.tcp.unwrap_or_default();
        match (protocol, key) {
            (b"sockets", b"used") => out.sockets_used = Some(value),
            (b"TCP", b"inuse") => {
                out.tcp = Some(TcpSockstat {
                    inuse: value,
                    ..tcp()
                })
            }
            (b"TCP", b"orphan") => {
                out.tcp = Some(TcpSockstat {
                    orphan: value,
                    ..tcp()
                })
            }
            (b"TCP", b"tw") => {
                out.tcp = Some(TcpSockstat {
                    time_wait: value,
                    ..tcp()
                })
            }
            (b"TCP", b"alloc") => {
                out.tcp = Some(TcpSockstat {
                    alloc: value,
                    ..tcp()
                })
            }
            (b"TCP", b"mem") => {
                out.tcp = Some(TcpSockstat {
                    mem_pages: value,
                    ..tcp()
                })
            }
            (b"TCP6", b"inuse") => out.tcp6_inuse = Some(value),
            _ => out.other_counters = out.other_counters.saturating_add(1),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOCKSTAT: &[u8] = b"sockets: used 291\nTCP: inuse 11 orphan 0 tw 2 alloc 16 mem 3\nUDP: inuse 4 mem 2\nUDPLITE: inuse 0\nRAW: inuse 0\nFRAG: inuse 0 memory 0\n";

    #[test]
    fn reads_a_real_sockstat() {
        let s = parse_sockstat(SOCKSTAT).unwrap();
        assert_eq!(s.sockets_used, Some(291));
        let tcp = s.tcp.unwrap();
        assert_eq!(
            (
                tcp.inuse,
                tcp.orphan,
                tcp.time_wait,
                tcp.alloc,
                tcp.mem_pages
            ),
            (11, 0, 2, 16, 3)
        );
        assert_eq!(s.other_counters, 6);
        assert_eq!(
            parse_sockstat(b"TCP6: inuse 7\n").unwrap().tcp6_inuse,
            Some(7)
        );
    }

    #[test]
    fn a_bad_line_is_located_and_does_not_hide_the_next() {
        let text = b"garbage\nTCP: inuse x\nTCP: tw 4\n";
        let items: Vec<_> = sockstat_counters(text).collect();
        assert_eq!(items[0], Err(Error::new(ErrorKind::BadSockstat, 0)));
        assert_eq!(items[1], Err(Error::new(ErrorKind::BadSockstat, 13)));
        assert_eq!(items[2], Ok((&b"TCP"[..], &b"tw"[..], 4)));
        assert_eq!(parse_sockstat(text).unwrap_err().offset(), 0);
    }
}
