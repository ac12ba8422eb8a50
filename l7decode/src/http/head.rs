//! Request and response heads, parsed in place by httparse with the lenient settings sniffed
//! traffic needs, and the body framing they imply.
#![deny(clippy::indexing_slicing)]

use crate::Status;
use crate::error::{Error, ErrorKind};

/// Most headers a head may carry (httparse needs a fixed array).
pub const MAX_HEADERS: usize = 128;

/// The shortest head there is, request (`A / HTTP/1.1`) or response (`HTTP/1.1 200`), with bare
/// LFs: fewer bytes cannot hold a whole message.
pub(crate) const MIN_HEAD: u64 = 14;

/// How a message body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BodyFraming {
    /// No body (HEAD responses, 1xx, 204, 304, requests without length).
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the connection closes (a response with neither length nor chunked).
    UntilClose,
    /// The connection becomes a tunnel (`101 Switching Protocols`, a 2xx answer to CONNECT).
    Tunnel,
}

/// Framing anomalies worth reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub struct FramingFlags {
    /// Both `Transfer-Encoding` and `Content-Length`: TE wins, and this is a request-smuggling sign.
    pub te_and_cl: bool,
    /// `Connection: close` (or HTTP/1.0 without keep-alive): the last exchange on the connection.
    pub close: bool,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
}

/// A parsed head; everything borrows the input.
///
/// `Debug` shows the method, status and framing, and only the lengths of the target and the
/// header block: header values (`Authorization`, `Cookie`) and query strings can carry secrets.
#[derive(Clone, Copy)]
pub struct Head<'a> {
    /// Request method, for requests.
    pub method: Option<&'a str>,
    /// Request target, for requests.
    pub uri: Option<&'a str>,
    /// Status code, for responses.
    pub status: Option<u16>,
    /// Reason phrase, for responses.
    pub reason: Option<&'a str>,
    /// Minor version: 0 or 1.
    pub version: u8,
    /// Length of the head, CRLFCRLF included (and any empty lines before the start line, which
    /// the parsers skip, as RFC 9112 §2.2 allows).
    pub len: usize,
    /// Raw header block (lines after the start line), for lookups.
    pub headers: &'a [u8],
    /// `Content-Length`, when present and valid.
    pub content_length: Option<u64>,
    /// `Transfer-Encoding` ends in `chunked`.
    pub chunked: bool,
    /// `Transfer-Encoding` present without `chunked`.
    pub other_transfer_encoding: bool,
    /// Anomalies and connection semantics.
    pub flags: FramingFlags,
}

impl core::fmt::Debug for Head<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Head")
            .field("method", &self.method)
            .field("uri_len", &self.uri.map(str::len))
            .field("status", &self.status)
            .field("reason", &self.reason)
            .field("version", &self.version)
            .field("len", &self.len)
            .field("headers_len", &self.headers.len())
            .field("content_length", &self.content_length)
            .field("chunked", &self.chunked)
            .field("other_transfer_encoding", &self.other_transfer_encoding)
            .field("flags", &self.flags)
            .finish()
    }
}

impl<'a> Head<'a> {
    /// The first value of `name` (ASCII case-insensitive), OWS-trimmed, without allocating.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        header_lines(self.headers)
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// Every `(name, value)` pair in order.
    pub fn header_pairs(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        header_lines(self.headers)
    }

    /// Body framing of a request (a request without length or chunked has no body).
    pub fn request_framing(&self) -> BodyFraming {
        if self.chunked {
            BodyFraming::Chunked
        } else if self.method == Some("CONNECT") {
            BodyFraming::Empty
        } else {
            self.content_length
                .map_or(BodyFraming::Empty, BodyFraming::Length)
        }
    }

    /// Body framing of a response to a request with `method` (RFC 9112 §6.3, in order).
    pub fn response_framing(&self, method: Option<&str>) -> BodyFraming {
        let status = self.status.unwrap_or(0);
        if status == 101 || (method == Some("CONNECT") && (200..300).contains(&status)) {
            return BodyFraming::Tunnel;
        }
        if method == Some("HEAD") || (100..200).contains(&status) || status == 204 || status == 304
        {
            return BodyFraming::Empty;
        }
        if self.chunked {
            return BodyFraming::Chunked;
        }
        if self.other_transfer_encoding {
            return BodyFraming::UntilClose;
        }
        self.content_length
            .map_or(BodyFraming::UntilClose, BodyFraming::Length)
    }
}

fn header_lines(block: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    block.split(|b| *b == b'\n').filter_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|b| *b == b':')?;
        Some((
            line.get(..colon)?.trim_ascii(),
            line.get(colon + 1..)?.trim_ascii(),
        ))
    })
}

const METHODS: [&[u8]; 9] = [
    b"GET ",
    b"POST ",
    b"PUT ",
    b"HEAD ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
];

/// Whether `buf` starts like a request line (a token method, a space, a target).
pub fn looks_like_request(buf: &[u8]) -> bool {
    METHODS
        .iter()
        .any(|m| buf.starts_with(m) || m.starts_with(buf))
}

/// Whether a message may start at `buf` when it does not follow a line end (a body without a
/// final newline, then the next message): a stronger pattern than at a line start, a request's
/// `METHOD /` or a status line's `HTTP/1.x NNN` followed by a space or CR. `None` while `buf` is
/// too short to tell; the pattern is at most 13 bytes long.
pub fn starts_message_mid_line(buf: &[u8], request: bool) -> Option<bool> {
    if !request {
        return matches_pattern(buf, b"HTTP/1.x ###_".iter().copied());
    }
    let mut undecided = false;
    for method in METHODS {
        match matches_pattern(buf, method.iter().copied().chain([b'/'])) {
            Some(true) => return Some(true),
            None => undecided = true,
            Some(false) => {}
        }
    }
    if undecided { None } else { Some(false) }
}

/// Compares the start of `buf` with `pattern`, where `#` is any digit, `x` is `0` or `1`, and
/// `_` is a space or CR (methods and versions use none of them); `None` if `buf` ends first.
fn matches_pattern(buf: &[u8], pattern: impl Iterator<Item = u8>) -> Option<bool> {
    for (i, want) in pattern.enumerate() {
        let got = *buf.get(i)?;
        let ok = match want {
            b'#' => got.is_ascii_digit(),
            b'x' => got == b'0' || got == b'1',
            b'_' => got == b' ' || got == b'\r',
            _ => got == want,
        };
        if !ok {
            return Some(false);
        }
    }
    Some(true)
}

/// Whether `buf` starts like a status line.
pub fn looks_like_response(buf: &[u8]) -> bool {
    const START: &[u8] = b"HTTP/1.";
    buf.starts_with(START) || START.starts_with(buf)
}

fn config() -> httparse::ParserConfig {
    let mut c = httparse::ParserConfig::default();
    c.allow_spaces_after_header_name_in_responses(true)
        .allow_obsolete_multiline_headers_in_responses(true)
        .allow_multiple_spaces_in_request_line_delimiters(true)
        .allow_multiple_spaces_in_response_status_delimiters(true)
        .ignore_invalid_headers_in_requests(true)
        .ignore_invalid_headers_in_responses(true);
    c
}

/// Parses a request head at the start of `buf`: [`Status::Complete`] with the head and its length
/// (the body, if any, starts at `consumed`), or [`Status::Partial`] while the head's empty line
/// has not come; a strict prefix of a head is never an error.
///
/// ```
/// use l7decode::{BodyFraming, Status, parse_request};
///
/// let buf = b"POST /orders HTTP/1.1\r\nHost: shop\r\nContent-Length: 5\r\n\r\nhello";
/// let Status::Complete { value: head, consumed } = parse_request(buf)? else { panic!("a whole head") };
/// assert_eq!((head.method, head.uri, head.header("host")), (Some("POST"), Some("/orders"), Some(&b"shop"[..])));
/// assert_eq!((head.request_framing(), &buf[consumed..]), (BodyFraming::Length(5), &b"hello"[..]));
/// assert!(parse_request(&buf[..20])?.is_partial());
/// # Ok::<(), l7decode::Error>(())
/// ```
///
/// # Errors
/// [`ErrorKind::Malformed`] with httparse's offset-free verdict mapped to offset 0.
pub fn parse_request(buf: &[u8]) -> Result<Status<Head<'_>>, Error> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match config().parse_request(&mut req, buf) {
        Ok(httparse::Status::Complete(len)) => {
            let mut head = summarize(req.headers, buf, len)?;
            head.method = req.method.map(|m| trimmed_str(buf, m));
            head.uri = req.path.map(|p| trimmed_str(buf, p));
            head.version = req.version.unwrap_or(1);
            if head.version == 0 && !keep_alive(&head) {
                head.flags.close = true;
            }
            Ok(Status::Complete {
                consumed: head.len,
                value: head,
            })
        }
        Ok(httparse::Status::Partial) => Ok(Status::Partial { needed: None }),
        Err(_) => Err(Error::new(ErrorKind::Malformed, 0)),
    }
}

/// Parses a response head at the start of `buf`, as [`parse_request`] does a request's. How its
/// body is framed depends on the request's method: [`Head::response_framing`].
///
/// ```
/// use l7decode::{BodyFraming, Status, parse_response};
///
/// let buf = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n";
/// let Status::Complete { value: head, .. } = parse_response(buf)? else { panic!("a whole head") };
/// assert_eq!((head.status, head.reason), (Some(404), Some("Not Found")));
/// assert_eq!(head.response_framing(Some("GET")), BodyFraming::Chunked);
/// assert_eq!(head.response_framing(Some("HEAD")), BodyFraming::Empty);
/// # Ok::<(), l7decode::Error>(())
/// ```
///
/// # Errors
/// [`ErrorKind::Malformed`].
pub fn parse_response(buf: &[u8]) -> Result<Status<Head<'_>>, Error> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    match config().parse_response(&mut resp, buf) {
        Ok(httparse::Status::Complete(len)) => {
            let mut head = summarize(resp.headers, buf, len)?;
            head.status = resp.code;
            head.reason = resp.reason.map(|r| trimmed_str(buf, r));
            head.version = resp.version.unwrap_or(1);
            if head.version == 0 && !keep_alive(&head) {
                head.flags.close = true;
            }
            Ok(Status::Complete {
                consumed: head.len,
                value: head,
            })
        }
        Ok(httparse::Status::Partial) => Ok(Status::Partial { needed: None }),
        Err(_) => Err(Error::new(ErrorKind::Malformed, 0)),
    }
}

/// The same `&str` re-borrowed from `buf` (httparse's strings borrow the parser's headers array
/// lifetime; ours must borrow the input).
fn trimmed_str<'a>(buf: &'a [u8], s: &str) -> &'a str {
    let start = (s.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
    buf.get(start..start + s.len())
        .and_then(|b| core::str::from_utf8(b).ok())
        .unwrap_or_default()
}

fn keep_alive(head: &Head<'_>) -> bool {
    head.header("connection").is_some_and(|v| {
        v.split(|b| *b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"keep-alive"))
    })
}

fn summarize<'a>(
    headers: &[httparse::Header<'_>],
    buf: &'a [u8],
    len: usize,
) -> Result<Head<'a>, Error> {
    // httparse skips empty lines before the start line (RFC 9112 §2.2): they count in `len`, but
    // the header block starts after the start line, not after the first of them.
    let start_line = buf
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .unwrap_or(0);
    let start_line_end = buf
        .get(start_line..)
        .and_then(|line| line.iter().position(|b| *b == b'\n'))
        .map_or(0, |i| start_line + i + 1);
    let mut head = Head {
        method: None,
        uri: None,
        status: None,
        reason: None,
        version: 1,
        len,
        headers: buf.get(start_line_end..len).unwrap_or_default(),
        content_length: None,
        chunked: false,
        other_transfer_encoding: false,
        flags: FramingFlags::default(),
    };
    let mut has_te = false;
    for h in headers {
        let value = h.value.trim_ascii();
        if h.name.eq_ignore_ascii_case("content-length") {
            let parsed = core::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse::<u64>().ok());
            match (head.content_length, parsed) {
                (_, None) => return Err(Error::new(ErrorKind::Malformed, 0)),
                (Some(previous), Some(n)) if previous != n => {
                    return Err(Error::new(ErrorKind::Malformed, 0));
                }
                (_, Some(n)) => head.content_length = Some(n),
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            has_te = true;
            let last = value
                .rsplit(|b| *b == b',')
                .next()
                .unwrap_or_default()
                .trim_ascii();
            head.chunked = last.eq_ignore_ascii_case(b"chunked");
            head.other_transfer_encoding = !head.chunked;
        } else if h.name.eq_ignore_ascii_case("connection") {
            if value
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"))
            {
                head.flags.close = true;
            }
        } else if h.name.eq_ignore_ascii_case("expect")
            && value.eq_ignore_ascii_case(b"100-continue")
        {
            head.flags.expect_continue = true;
        }
    }
    if has_te && head.content_length.is_some() {
        head.flags.te_and_cl = true;
    }
    Ok(head)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)] // a panic is how a test reports failure

    use super::{parse_request, parse_response};
    use crate::Status;

    #[test]
    fn empty_lines_before_a_start_line_are_not_part_of_the_header_block() {
        let Ok(Status::Complete { value: head, .. }) =
            parse_response(b"\r\n\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        else {
            panic!("a response head")
        };
        assert_eq!(
            (head.status, head.reason, head.len),
            (Some(200), Some("OK"), 41)
        );
        assert_eq!(head.headers, b"Content-Length: 2\r\n\r\n");
        assert_eq!(head.content_length, Some(2));
        let Ok(Status::Complete { value: head, .. }) =
            parse_request(b"\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        else {
            panic!("a request head")
        };
        assert_eq!((head.method, head.uri), (Some("GET"), Some("/a")));
        assert_eq!(head.header("host"), Some(&b"x"[..]));
        assert_eq!(head.headers, b"Host: x\r\n\r\n");
        // A CR that ends no line is not an empty line.
        assert!(parse_response(b"\rHTTP/1.1 200 OK\r\n\r\n").is_err());
    }
}
