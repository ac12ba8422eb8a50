//! Which side of a flow opened it: the handshake when it was captured, else the protocol's own
//! evidence in the first bytes, else the ports.

use std::net::SocketAddr;

use crate::Protocol;
use crate::reassembly::TcpFlags;

/// How a flow's client and server were told apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Evidence {
    /// A SYN (sent by the client) or SYN-ACK (sent by the server) was captured.
    Handshake,
    /// The first payload looked like a request or a response (an HTTP start line, a MySQL
    /// greeting or command, a MongoDB header).
    Payload,
    /// Only the ports: the side on a well-known server port ([`Protocol::for_port`]) is the
    /// server, else the higher port is the client (ephemeral ports are high). A guess.
    Ports,
}

impl Evidence {
    /// Whether the direction is a guess from the ports alone.
    pub const fn is_guess(self) -> bool {
        matches!(self, Self::Ports)
    }
}

/// Whether the sender of a segment with these flags and payload opened the connection, and on
/// what evidence; `None` when the segment tells nothing (no SYN and no payload).
///
/// `carries_data` says whether the segment had payload on the wire (the capture may have kept
/// none of it): such a segment with no evidence in what was kept falls back to the ports.
pub(super) fn sender_is_client(
    src: SocketAddr,
    dst: SocketAddr,
    flags: TcpFlags,
    payload: &[u8],
    carries_data: bool,
) -> Option<(bool, Evidence)> {
    if flags.syn() {
        return Some((!flags.ack(), Evidence::Handshake));
    }
    if !carries_data {
        return None;
    }
    if let Some(client) = payload_says_client(payload).filter(|_| !payload.is_empty()) {
        return Some((client, Evidence::Payload));
    }
    // A MySQL command's first bytes are weak evidence (the inside of another protocol's message
    // can match them): they say "client" unless the sender is on a port naming another protocol.
    let other_protocols_server =
        Protocol::for_port(src.port()).is_some_and(|p| p != Protocol::Mysql);
    if looks_like_mysql_command(payload) && !other_protocols_server {
        return Some((true, Evidence::Payload));
    }
    let known = |addr: SocketAddr| Protocol::for_port(addr.port()).is_some();
    let client = match (known(src), known(dst)) {
        (true, false) => false,
        (false, true) => true,
        _ => src.port() > dst.port(),
    };
    Some((client, Evidence::Ports))
}

/// Whether first bytes read as a request (`Some(true)`) or a response (`Some(false)`), on
/// strong evidence (a request or status line, a MongoDB header, a MySQL greeting).
fn payload_says_client(payload: &[u8]) -> Option<bool> {
    use crate::mysql::wire;
    // Empty lines before an HTTP start line are allowed (RFC 9112 §2.2) and do happen.
    let lines = payload
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .and_then(|at| payload.get(at..))
        .unwrap_or(payload);
    let start = lines.get(..8).unwrap_or(lines);
    // Strong evidence first (a whole MongoDB header outweighs a MySQL command's first bytes,
    // which a MongoDB message can look like).
    let mongo = |request| crate::mongo::wire::plausible_header(payload, request);
    if crate::looks_like_request(start) || mongo(true) {
        return Some(true);
    }
    if crate::looks_like_response(start) || mongo(false) || wire::greeting_start(payload) {
        return Some(false);
    }
    None
}

/// Whether first bytes could start a MySQL command (plain or compressed).
fn looks_like_mysql_command(payload: &[u8]) -> bool {
    use crate::mysql::wire;
    wire::command_start(payload) == Some(true)
        || wire::compressed_command_start(payload) == Some(true)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn handshake_then_payload_then_ports() {
        let a: SocketAddr = "10.0.0.1:40000".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:80".parse().unwrap();
        let c: SocketAddr = "10.0.0.2:5555".parse().unwrap();
        let syn_ack = TcpFlags::SYN | TcpFlags::ACK;
        assert_eq!(
            sender_is_client(b, a, syn_ack, b"", false),
            Some((false, Evidence::Handshake))
        );
        assert_eq!(
            sender_is_client(b, a, TcpFlags::ACK, b"GET / HTTP/1.1\r\n", true),
            Some((true, Evidence::Payload))
        );
        assert_eq!(
            sender_is_client(a, b, TcpFlags::ACK, b"HTTP/1.1 200 OK\r\n", true),
            Some((false, Evidence::Payload))
        );
        assert_eq!(
            sender_is_client(b, a, TcpFlags::ACK, b"\x00\x01", true),
            Some((false, Evidence::Ports))
        );
        assert_eq!(
            sender_is_client(c, a, TcpFlags::ACK, b"\x00\x01", true),
            Some((false, Evidence::Ports))
        );
        assert_eq!(sender_is_client(a, b, TcpFlags::ACK, b"", false), None);
        // Payload the capture did not keep: the ports decide.
        assert_eq!(
            sender_is_client(a, b, TcpFlags::ACK, b"", true),
            Some((true, Evidence::Ports))
        );
        assert!(Evidence::Ports.is_guess() && !Evidence::Payload.is_guess());
        // Empty lines before a start line.
        assert_eq!(
            sender_is_client(a, c, TcpFlags::ACK, b"\r\nHTTP/1.1 200 OK\r\n", true),
            Some((false, Evidence::Payload))
        );
    }

    #[test]
    fn a_mysql_command_guess_yields_to_another_protocols_port() {
        let client: SocketAddr = "10.0.0.1:40000".parse().unwrap();
        let mongod: SocketAddr = "10.0.0.2:27017".parse().unwrap();
        let mysqld: SocketAddr = "10.0.0.2:3306".parse().unwrap();
        // Inside a BSON document: "r s\0" then a type byte reads as a COM_FIELD_LIST header.
        let bson = b"r s\0\x04tags\0\x1a\0\0\0";
        assert!(looks_like_mysql_command(bson));
        assert_eq!(
            sender_is_client(mongod, client, TcpFlags::ACK, bson, true),
            Some((false, Evidence::Ports))
        );
        // The same bytes from a client to MySQL's port, or between unknown ports, are a command.
        assert_eq!(
            sender_is_client(client, mysqld, TcpFlags::ACK, bson, true),
            Some((true, Evidence::Payload))
        );
    }
}
