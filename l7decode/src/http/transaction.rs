//! The HTTP record: a [`Transaction`] of a request and its response, each a [`Message`] whose
//! head is kept as received and whose body is only counted.

use bytes::Bytes;

use crate::{Flags, Timestamp};

/// One side of a transaction.
///
/// `Debug` shows the lengths and times, never the head (its target and header values can carry
/// credentials: `Authorization`, `Cookie`, query strings); [`Message::head`] has it.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    pub(crate) head: Bytes,
    /// Decoded body bytes (chunked framing removed).
    pub body_bytes: u64,
    /// When the first byte arrived.
    pub first: Timestamp,
    /// When the last byte arrived.
    pub last: Timestamp,
}

impl core::fmt::Debug for Message {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Message")
            .field("head_len", &self.head.len())
            .field("body_bytes", &self.body_bytes)
            .field("first", &self.first)
            .field("last", &self.last)
            .finish()
    }
}

impl Message {
    /// A message whose first byte arrived at `at`; its head is filled in once read.
    pub(crate) const fn starting(at: Timestamp) -> Self {
        Self {
            head: Bytes::new(),
            body_bytes: 0,
            first: at,
            last: at,
        }
    }

    /// The head as received (start line and header fields).
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// The first value of a header (ASCII case-insensitive name), OWS-trimmed, without
    /// allocating. [`Message::header_values`] gives every one.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.header_values(name).next()
    }

    /// Every value of a header (ASCII case-insensitive name), in the order received, each
    /// OWS-trimmed, borrowed from the kept head: nothing is allocated or parsed again beyond
    /// splitting its lines. A field sent on several lines (`Set-Cookie`, `Via`, `traceparent`
    /// repeated by proxies) yields each line's value; a comma-separated list stays one value.
    ///
    /// ```
    /// use l7decode::{Direction, Event, Limits, Timestamp, http};
    ///
    /// let mut d = http::Decoder::new(Limits::default());
    /// d.feed(Direction::ClientToServer, Timestamp(1), b"GET / HTTP/1.1\r\nVia: 1.1 a\r\nHost: x\r\nvia: 1.1 b, 1.1 c\r\n\r\n")?;
    /// d.feed(Direction::ServerToClient, Timestamp(2), b"HTTP/1.1 204 No Content\r\n\r\n")?;
    /// let Some(Event::Transaction(t)) = d.poll_event() else { panic!("a transaction") };
    /// let request = t.request.as_ref().expect("its request");
    /// let via: Vec<&[u8]> = request.header_values("Via").collect();
    /// assert_eq!(via, [&b"1.1 a"[..], b"1.1 b, 1.1 c"]);
    /// assert_eq!(request.header("via"), Some(&b"1.1 a"[..]));
    /// # Ok::<(), l7decode::Error>(())
    /// ```
    pub fn header_values<'m, 'n>(
        &'m self,
        name: &'n str,
    ) -> impl Iterator<Item = &'m [u8]> + use<'m, 'n> {
        self.header_pairs()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// Every header field as `(name, value)`, in the order received, each OWS-trimmed and
    /// borrowed from the kept head (a line without a colon is skipped).
    pub fn header_pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.head.split(|b| *b == b'\n').skip(1).filter_map(|line| {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let colon = line.iter().position(|b| *b == b':')?;
            Some((
                line.get(..colon)?.trim_ascii(),
                line.get(colon + 1..)?.trim_ascii(),
            ))
        })
    }

    fn start_line(&self) -> &[u8] {
        let line = self.head.split(|b| *b == b'\n').next().unwrap_or_default();
        line.strip_suffix(b"\r").unwrap_or(line)
    }

    fn word(&self, index: usize) -> Option<&str> {
        let line = self.start_line();
        let word = if index == 2 {
            // The reason phrase is the rest of the status line.
            let mut seen = 0;
            let at = line.iter().position(|b| {
                seen += usize::from(*b == b' ');
                seen == 2
            })?;
            line.get(at + 1..)?
        } else {
            line.split(|b| *b == b' ')
                .filter(|w| !w.is_empty())
                .nth(index)?
        };
        core::str::from_utf8(word).ok()
    }
}

/// An HTTP exchange.
///
/// `Debug` shows the method, the target's length, the version, the statuses, the flags and each
/// side's lengths and times; nothing of the heads beyond that (see [`Message`]).
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Transaction {
    /// The request (absent for an orphan response).
    pub request: Option<Message>,
    /// The final response (absent when it never came).
    pub response: Option<Message>,
    /// Status codes of interim (1xx) responses, in order (at most 8 kept).
    pub interim: [u16; 8],
    /// How many of `interim` are set.
    pub interim_len: u8,
    /// Anomalies.
    pub flags: Flags,
}

impl core::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Transaction")
            .field("method", &self.method())
            .field("uri_len", &self.uri().map(str::len))
            .field("request_version", &self.request_version())
            .field("status", &self.status())
            .field("interim", &self.interim_statuses())
            .field("flags", &self.flags)
            .field("request", &self.request)
            .field("response", &self.response)
            .finish()
    }
}

impl Transaction {
    /// Request method.
    pub fn method(&self) -> Option<&str> {
        self.request.as_ref()?.word(0)
    }

    /// Request target.
    pub fn uri(&self) -> Option<&str> {
        self.request.as_ref()?.word(1)
    }

    /// Request version, `HTTP/1.x`.
    pub fn request_version(&self) -> Option<&str> {
        self.request.as_ref()?.word(2)
    }

    /// Final status code.
    pub fn status(&self) -> Option<u16> {
        self.response.as_ref()?.word(1)?.parse().ok()
    }

    /// Reason phrase.
    pub fn reason(&self) -> Option<&str> {
        self.response.as_ref()?.word(2)
    }

    /// Interim status codes.
    pub fn interim_statuses(&self) -> &[u16] {
        self.interim
            .get(..usize::from(self.interim_len))
            .unwrap_or_default()
    }

    /// Response's last byte minus request's last byte, in nanoseconds.
    pub fn latency_ns(&self) -> Option<u64> {
        Some(
            self.request
                .as_ref()?
                .last
                .nanos_until(self.response.as_ref()?.last),
        )
    }

    /// Response's first byte minus request's last byte, in nanoseconds.
    pub fn ttfb_ns(&self) -> Option<u64> {
        Some(
            self.request
                .as_ref()?
                .last
                .nanos_until(self.response.as_ref()?.first),
        )
    }
}
