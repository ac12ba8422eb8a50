//! What one record says about its endpoint: the labels the table and `/metrics` group by
//! (protocol, server, endpoint, outcome) and the values they add up (latency, bytes).
//!
//! Endpoint labels are bounded so that a peer choosing URLs or statements cannot grow one label
//! without limit: path segments that are identifiers become `{id}`, statements lose their
//! literals, and every endpoint is cut at [`MAX_ENDPOINT_CHARS`] characters.

use std::fmt::Write as _;

use l7decode::mongo::Operation;
use l7decode::mysql::{Command, Outcome as MysqlOutcome};
use l7decode::{Transaction, mongo};

use super::{Exchange, Record, sql_shape};

/// Longest endpoint label, in characters (longer ones end in `…`).
pub const MAX_ENDPOINT_CHARS: usize = 120;

/// The protocol label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// HTTP/1.x.
    Http,
    /// MySQL or MariaDB.
    Mysql,
    /// MongoDB.
    Mongodb,
}

impl Protocol {
    /// `http`, `mysql` or `mongodb`.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Mysql => "mysql",
            Self::Mongodb => "mongodb",
        }
    }
}

/// How an exchange ended: the status class for HTTP, `ok`/`error` for the databases, `missing`
/// when no (final) response was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// HTTP 1xx as the final status.
    Http1xx,
    /// HTTP 2xx.
    Http2xx,
    /// HTTP 3xx.
    Http3xx,
    /// HTTP 4xx.
    Http4xx,
    /// HTTP 5xx.
    Http5xx,
    /// An HTTP status outside 100–599.
    HttpOther,
    /// A database command that succeeded.
    Ok,
    /// A database command that failed.
    Error,
    /// No response.
    Missing,
}

impl Outcome {
    /// Every outcome, in label order.
    pub const ALL: [Self; 9] = [
        Self::Http1xx,
        Self::Http2xx,
        Self::Http3xx,
        Self::Http4xx,
        Self::Http5xx,
        Self::HttpOther,
        Self::Ok,
        Self::Error,
        Self::Missing,
    ];

    /// The `outcome` label.
    pub const fn label(self) -> &'static str {
        match self {
            Self::Http1xx => "1xx",
            Self::Http2xx => "2xx",
            Self::Http3xx => "3xx",
            Self::Http4xx => "4xx",
            Self::Http5xx => "5xx",
            Self::HttpOther => "other",
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Missing => "missing",
        }
    }

    /// Counted as an error in the table: 4xx, 5xx, a database error, or no response.
    pub const fn is_error(self) -> bool {
        matches!(
            self,
            Self::Http4xx | Self::Http5xx | Self::Error | Self::Missing
        )
    }

    /// Position in [`Outcome::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The outcome of an HTTP final status (`None`: no response).
    pub const fn of_http_status(status: Option<u16>) -> Self {
        match status {
            None => Self::Missing,
            Some(100..=199) => Self::Http1xx,
            Some(200..=299) => Self::Http2xx,
            Some(300..=399) => Self::Http3xx,
            Some(400..=499) => Self::Http4xx,
            Some(500..=599) => Self::Http5xx,
            Some(_) => Self::HttpOther,
        }
    }
}

/// One record reduced to what is counted.
#[derive(Debug, Clone, Copy)]
pub struct Observation {
    /// The protocol.
    pub protocol: Protocol,
    /// How it ended.
    pub outcome: Outcome,
    /// Request to last response byte, when both were seen.
    pub latency_ns: Option<u64>,
    /// Request bytes on the wire (HTTP: head and body).
    pub request_bytes: u64,
    /// Response bytes on the wire.
    pub response_bytes: u64,
}

/// Reduces `record` to its observation and writes its endpoint label into `endpoint` (cleared
/// first; reused across records so a known endpoint allocates nothing).
pub fn observe(record: &Record, endpoint: &mut String) -> Observation {
    endpoint.clear();
    let observation = match &record.exchange {
        Exchange::Http(t) => http(t, endpoint),
        Exchange::Mysql(c) => mysql(c, endpoint),
        Exchange::Mongo(o) => mongodb(o, endpoint),
    };
    cut(endpoint, MAX_ENDPOINT_CHARS);
    observation
}

fn http(t: &Transaction, endpoint: &mut String) -> Observation {
    http_endpoint(t.method().unwrap_or("?"), t.uri().unwrap_or("?"), endpoint);
    let wire =
        |m: Option<&l7decode::Message>| m.map_or(0, |m| m.head().len() as u64 + m.body_bytes);
    Observation {
        protocol: Protocol::Http,
        outcome: Outcome::of_http_status(t.status()),
        latency_ns: t.latency_ns(),
        request_bytes: wire(t.request.as_ref()),
        response_bytes: wire(t.response.as_ref()),
    }
}

/// `METHOD /path/template`: the query and fragment dropped, the target's scheme and authority
/// dropped (absolute form), and each path segment that is an identifier replaced by `{id}`.
pub fn http_endpoint(method: &str, uri: &str, out: &mut String) {
    out.push_str(method);
    out.push(' ');
    let path = uri.split(['?', '#']).next().unwrap_or(uri);
    // Absolute form (`http://host/path`, proxies): the path part only.
    let path = match path.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |at| &rest[at..]),
        None => path,
    };
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(if is_identifier(segment) {
            "{id}"
        } else {
            segment
        });
    }
}

/// A path segment naming one resource among many: a number, a UUID, or 16 or more hex digits
/// (object ids, hashes).
pub fn is_identifier(segment: &str) -> bool {
    let bytes = segment.as_bytes();
    if bytes.is_empty() {
        return false;
    }
    if bytes.iter().all(u8::is_ascii_digit) {
        return true;
    }
    let uuid = bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    uuid || (bytes.len() >= 16 && bytes.iter().all(u8::is_ascii_hexdigit))
}

fn mysql(c: &Command, endpoint: &mut String) -> Observation {
    let name = c.name().unwrap_or("COM_?");
    let _ = match c.query() {
        Some(q) => write!(
            endpoint,
            "{} {}",
            name.trim_start_matches("COM_"),
            sql_shape(q)
        ),
        None => write!(endpoint, "{name}"),
    };
    let outcome = match c.outcome {
        MysqlOutcome::Err => Outcome::Error,
        MysqlOutcome::Missing => Outcome::Missing,
        _ => Outcome::Ok,
    };
    Observation {
        protocol: Protocol::Mysql,
        outcome,
        latency_ns: c.latency_ns(),
        request_bytes: c.request.map_or(0, |s| s.bytes),
        response_bytes: c.response.map_or(0, |s| s.bytes),
    }
}

fn mongodb(o: &Operation, endpoint: &mut String) -> Observation {
    let _ = write!(endpoint, "{}", o.command().unwrap_or("?"));
    let _ = match (o.db(), o.target_collection()) {
        (Some(db), Some(coll)) => write!(endpoint, " {db}.{coll}"),
        (Some(db), None) => write!(endpoint, " {db}"),
        _ => Ok(()),
    };
    let outcome = match o.outcome {
        mongo::Outcome::Ok | mongo::Outcome::NoResponseExpected => Outcome::Ok,
        mongo::Outcome::Missing => Outcome::Missing,
        _ => Outcome::Error,
    };
    Observation {
        protocol: Protocol::Mongodb,
        outcome,
        latency_ns: o.latency_ns(),
        request_bytes: o.request.map_or(0, |s| s.bytes),
        response_bytes: o.response.map_or(0, |s| s.bytes),
    }
}

/// Cuts `s` to `max` characters, the last one `…`.
fn cut(s: &mut String, max: usize) {
    // Only when there is a character past `max`.
    if s.char_indices().nth(max).is_some() {
        let keep = s
            .char_indices()
            .nth(max.saturating_sub(1))
            .map_or(0, |(at, _)| at);
        s.truncate(keep);
        s.push('…');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(method: &str, uri: &str) -> String {
        let mut out = String::new();
        http_endpoint(method, uri, &mut out);
        out
    }

    #[test]
    fn paths_become_templates() {
        assert_eq!(endpoint("GET", "/api/items/42"), "GET /api/items/{id}");
        assert_eq!(
            endpoint("GET", "/api/items/42?x=1#f"),
            "GET /api/items/{id}"
        );
        assert_eq!(
            endpoint(
                "DELETE",
                "/u/3f2504e0-4f89-11d3-9a0c-0305e82c3301/keys/5f1b2c3d4e5f60718293a4b5"
            ),
            "DELETE /u/{id}/keys/{id}"
        );
        // Short hex and words are names, not identifiers.
        assert_eq!(endpoint("GET", "/cafe/v2/items"), "GET /cafe/v2/items");
        assert_eq!(endpoint("GET", "/"), "GET /");
        assert_eq!(endpoint("GET", "http://example.com/a/7?q"), "GET /a/{id}");
        assert_eq!(endpoint("GET", "http://example.com"), "GET /");
        assert_eq!(endpoint("OPTIONS", "*"), "OPTIONS *");
        assert_eq!(
            endpoint("CONNECT", "example.com:443"),
            "CONNECT example.com:443"
        );
    }

    #[test]
    fn long_endpoints_are_cut() {
        let mut s = "x".repeat(500);
        cut(&mut s, MAX_ENDPOINT_CHARS);
        assert_eq!(s.chars().count(), MAX_ENDPOINT_CHARS);
        assert!(s.ends_with('…'));
        let mut short = "GET /a".to_owned();
        cut(&mut short, MAX_ENDPOINT_CHARS);
        assert_eq!(short, "GET /a");
        let mut exact = "é".repeat(MAX_ENDPOINT_CHARS);
        cut(&mut exact, MAX_ENDPOINT_CHARS);
        assert_eq!(exact, "é".repeat(MAX_ENDPOINT_CHARS));
    }

    #[test]
    fn outcomes_of_statuses() {
        assert_eq!(Outcome::of_http_status(Some(204)).label(), "2xx");
        assert_eq!(Outcome::of_http_status(Some(404)).label(), "4xx");
        assert_eq!(Outcome::of_http_status(Some(503)).label(), "5xx");
        assert_eq!(Outcome::of_http_status(Some(700)).label(), "other");
        assert_eq!(Outcome::of_http_status(None).label(), "missing");
        for (i, o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(o.index(), i);
        }
    }
}
