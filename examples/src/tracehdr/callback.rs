//! The service's outbound calls: a small HTTP/1.1 POST to a loopback URL over a tokio
//! `TcpStream`, with a connect timeout and a bounded response (the caller bounds the whole call in
//! time). Hyper's client is not enabled in this crate, and the calls need no more than this.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest URL called.
pub const MAX_URL_LEN: usize = 2048;
/// The largest response head read.
const MAX_RESPONSE_HEAD: usize = 16 << 10;
/// The most response body read (and discarded).
const MAX_RESPONSE_BODY: u64 = 1 << 20;

/// An `http://127.0.0.1:PORT/...` or `http://localhost:PORT/...` url.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopbackUrl {
    /// `127.0.0.1` or `localhost` (as written).
    pub host: String,
    /// The port, never 0.
    pub port: u16,
    /// The path and query: visible ASCII, starting with `/`.
    pub path: String,
}

impl LoopbackUrl {
    /// Parses `url`; `None` unless it is a loopback `http` URL with a port, of at most
    /// [`MAX_URL_LEN`] bytes, with no userinfo and a path of visible ASCII.
    pub fn parse(url: &str) -> Option<Self> {
        if url.len() > MAX_URL_LEN {
            return None;
        }
        let scheme = url.get(..7)?;
        if !scheme.eq_ignore_ascii_case("http://") {
            return None;
        }
        let rest = url.get(7..)?;
        let rest = rest.split('#').next().unwrap_or_default();
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        let (host, port) = authority.rsplit_once(':')?;
        if !(host == "127.0.0.1" || host.eq_ignore_ascii_case("localhost")) {
            return None;
        }
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
        let path = match path {
            "" => "/".to_owned(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_owned(),
        };
        if !path.bytes().all(|b| b.is_ascii_graphic()) {
            return None;
        }
        Some(Self {
            host: host.to_owned(),
            port,
            path,
        })
    }
}

impl std::fmt::Display for LoopbackUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}:{}{}", self.host, self.port, self.path)
    }
}

fn invalid_data(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// POSTs `body` (JSON) with `headers` to `target` and reads the response (its body discarded, at
/// most 1 MiB); returns the status line. `headers` must be values `tracectx` wrote.
///
/// # Errors
/// When the connection cannot be made within `connect_timeout`, fails, or the response is not
/// HTTP.
pub async fn post(
    target: &LoopbackUrl,
    headers: &[(&str, String)],
    body: &[u8],
    connect_timeout: Duration,
) -> io::Result<String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, target.port));
    let mut stream = tokio::time::timeout(connect_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    let mut request = format!(
        "POST {} HTTP/1.1\r\nHost: {}:{}\r\n",
        target.path, target.host, target.port
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body);
    stream.write_all(&bytes).await?;
    stream.flush().await?;

    // The head, up to CRLFCRLF.
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let (status, head_len, content_length) = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "closed before the end of the response head",
            ));
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        let mut fields = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut fields);
        match response.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let status = format!(
                    "HTTP/1.{} {} {}",
                    response.version.unwrap_or(1),
                    response.code.unwrap_or(0),
                    response.reason.unwrap_or_default()
                );
                let content_length = response
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                    .and_then(|h| std::str::from_utf8(h.value).ok())
                    .and_then(|v| v.trim().parse::<u64>().ok());
                break (status, len, content_length);
            }
            Ok(httparse::Status::Partial) if buf.len() <= MAX_RESPONSE_HEAD => {}
            Ok(httparse::Status::Partial) => return Err(invalid_data("response head too long")),
            Err(e) => return Err(invalid_data(format!("response: {e}"))),
        }
    };
    // The body: its length, else up to EOF (we asked for `Connection: close`); bounded either way.
    let limit = content_length
        .unwrap_or(MAX_RESPONSE_BODY)
        .min(MAX_RESPONSE_BODY);
    let already = (buf.len() - head_len) as u64;
    if already < limit {
        tokio::io::copy(
            &mut (&mut stream).take(limit - already),
            &mut tokio::io::sink(),
        )
        .await?;
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_only() {
        let u = LoopbackUrl::parse("http://127.0.0.1:7777/callback");
        assert_eq!(
            u,
            Some(LoopbackUrl {
                host: "127.0.0.1".to_owned(),
                port: 7777,
                path: "/callback".to_owned()
            })
        );
        assert!(LoopbackUrl::parse("http://localhost:80").is_some());
        assert!(LoopbackUrl::parse("http://example.com:80/").is_none());
        assert!(LoopbackUrl::parse("https://127.0.0.1:443/").is_none());
        assert!(LoopbackUrl::parse("http://127.0.0.1/").is_none());
        assert!(LoopbackUrl::parse("http://user@127.0.0.1:80/").is_none());
        assert!(LoopbackUrl::parse("http://127.0.0.1:80@evil:80/").is_none());
        assert!(LoopbackUrl::parse("http://127.0.0.1:80/a b").is_none());
        assert!(LoopbackUrl::parse("http://127.0.0.1:80/caf\u{e9}").is_none());
        assert!(LoopbackUrl::parse("http://127.0.0.1:80/x\r\nHost: evil").is_none());
        let long = format!("http://127.0.0.1:80/{}", "x".repeat(MAX_URL_LEN));
        assert!(LoopbackUrl::parse(&long).is_none());
    }
}
