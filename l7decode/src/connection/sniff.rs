//! Recognising a connection's protocol from each direction's first bytes (TLS, a MySQL greeting,
//! handshake response or command, a MongoDB header, or anything else, looked at as HTTP), the
//! port hint breaking ties, and handing both directions to the session recognised.

#![deny(clippy::indexing_slicing)]

use super::{Active, Connection, Event};
use crate::held::Held;
use crate::mysql::Session as Mysql;
use crate::session::Session as _;
use crate::{Direction, Protocol, Timestamp};

/// What a direction's first bytes are.
enum FirstBytes {
    Tls,
    MysqlGreeting,
    MysqlCommand,
    MysqlCompressedCommand,
    MysqlHello,
    /// A MongoDB message header: the side is given by the direction it came from.
    Mongo,
    Other,
}

/// Judges the first bytes of `dir` once enough have come (`None` until then, 8 bytes at most).
/// MySQL is only considered while the connection's protocol is unknown.
fn first_bytes(dir: Direction, b: &[u8], known: Option<Protocol>) -> Option<FirstBytes> {
    use crate::mongo::wire::{plausible_header, plausible_length};
    let verdict = first_bytes_before_mongo(dir, b, known);
    // A MongoDB header (16 bytes, checked on every field) is stronger evidence than a MySQL
    // command's first bytes, which a MongoDB message can look like: a MySQL candidate long
    // enough to be one waits for the header to be judged first.
    let mysql_candidate = matches!(
        verdict,
        Some(FirstBytes::MysqlCommand | FirstBytes::MysqlCompressedCommand)
    );
    if !(matches!(verdict, Some(FirstBytes::Other)) || mysql_candidate) || known.is_some() {
        return verdict;
    }
    // A MongoDB header needs 16 bytes; a first word that cannot be a length decides sooner.
    if b.len() >= 4 && !plausible_length(b) {
        return verdict;
    }
    let request = dir == Direction::ClientToServer;
    match b.get(..16) {
        Some(header) if plausible_header(header, request) => Some(FirstBytes::Mongo),
        Some(_) => verdict,
        None => None,
    }
}

/// Whether a client's first bytes start an HTTP request line (`METHOD /`).
fn request_line(dir: Direction, first: &[u8]) -> bool {
    dir == Direction::ClientToServer
        && crate::http::head::starts_message_mid_line(first, true) == Some(true)
}

/// TLS, MySQL, or neither (before MongoDB is considered).
fn first_bytes_before_mongo(
    dir: Direction,
    b: &[u8],
    known: Option<Protocol>,
) -> Option<FirstBytes> {
    const PROBE: usize = 8;
    if let [first, second, third, ..] = *b {
        let tls = matches!(
            [first, second, third],
            [0x16 | 0x17, 0x03, 0..=4] | [0x15 | 0x14, 0x03, _]
        );
        if tls {
            return Some(FirstBytes::Tls);
        }
    }
    let mysql = known.is_none();
    match dir {
        Direction::ServerToClient if b.len() >= PROBE => {
            Some(if mysql && crate::mysql::wire::greeting_start(b) {
                FirstBytes::MysqlGreeting
            } else {
                FirstBytes::Other
            })
        }
        Direction::ClientToServer if mysql && b.len() >= 5 => {
            use crate::mysql::wire::{
                COMPRESSED_COMMAND_PROBE, command_start, compressed_command_start, hello_start,
            };
            // Sequence id 1 can only start a handshake response (commands start at 0).
            if b.get(3) == Some(&1) {
                return (b.len() >= PROBE).then(|| {
                    if hello_start(b) {
                        FirstBytes::MysqlHello
                    } else {
                        FirstBytes::Other
                    }
                });
            }
            match (command_start(b), compressed_command_start(b)) {
                (Some(true), _) => Some(FirstBytes::MysqlCommand),
                (_, Some(true)) => Some(FirstBytes::MysqlCompressedCommand),
                (Some(false), Some(false)) => Some(FirstBytes::Other),
                _ if b.len() >= COMPRESSED_COMMAND_PROBE => Some(FirstBytes::Other),
                _ => None,
            }
        }
        _ if b.len() >= PROBE => Some(FirstBytes::Other),
        _ => None,
    }
}

impl Connection {
    /// Bytes of a direction whose first bytes are still being judged (the HTTP session is active
    /// and has been handed nothing of `dir`): they are judged byte by byte (so a short first
    /// chunk is judged like a long one), then what follows the verdict goes to the session it
    /// chose.
    pub(super) fn feed_first_bytes(&mut self, dir: Direction, now: Timestamp, bytes: &[u8]) {
        let Active::Http(http) = &mut self.session else {
            return;
        };
        // Judging may change the other direction's state: what the fast path counted is
        // committed first, as any stepwise call does.
        http.commit_in_place();
        let take = self.judge(dir, now, bytes);
        let rest = bytes.get(take..).unwrap_or_default();
        match &mut self.session {
            Active::Http(http) => {
                if !http.at_start(dir) {
                    http.run(dir, now, rest, &mut self.events);
                }
                http.arm_in_place();
            }
            session if !rest.is_empty() => session.feed(dir, now, rest, &mut self.events),
            _ => {}
        }
    }

    /// Judges `dir`'s first bytes: a TLS record header; a MySQL greeting (server), handshake
    /// response or command (client); a MongoDB header; anything else is looked at as HTTP from a
    /// line start, the way a mid-stream start is (or, on a port that says MySQL or MongoDB,
    /// searched for that protocol's messages). Returns the bytes of `input` taken.
    fn judge(&mut self, dir: Direction, now: Timestamp, input: &[u8]) -> usize {
        let Active::Http(http) = &mut self.session else {
            return 0;
        };
        let known = http.protocol();
        let mut take = 0;
        let mut verdict = None;
        while verdict.is_none()
            && let Some(byte) = input.get(take)
        {
            let held = http.first_bytes(dir);
            held.extend(&[*byte], now);
            take += 1;
            verdict = first_bytes(dir, held, known);
        }
        let Some(verdict) = verdict else {
            return take;
        };
        // A MySQL command guessed from a mid-stream start is 5 bytes of evidence, which the
        // inside of another protocol's message can match (a BSON string's NUL, then a type
        // byte): a port naming another protocol outweighs it. Greetings and handshake responses
        // are judged on far more and keep their verdict.
        let verdict = match verdict {
            FirstBytes::MysqlCommand | FirstBytes::MysqlCompressedCommand
                if self.hint.is_some_and(|hint| hint != Protocol::Mysql) =>
            {
                FirstBytes::Other
            }
            verdict => verdict,
        };
        // The bytes judged, each with the time it arrived.
        let probe = core::mem::take(http.first_bytes(dir));
        let limits = &self.limits;
        match verdict {
            FirstBytes::Tls => {
                if known.is_none() {
                    http.recognise(Protocol::Tls);
                    self.events.push_back(Event::Protocol(Protocol::Tls));
                }
                http.settle(dir.reverse(), now, &mut self.events);
                http.go_opaque();
            }
            FirstBytes::MysqlGreeting => {
                self.enter_mysql(Mysql::from_greeting(limits), dir, &probe)
            }
            FirstBytes::MysqlCommand => self.enter_mysql(Mysql::mid_stream(limits), dir, &probe),
            FirstBytes::MysqlHello => self.enter_mysql(Mysql::from_hello(limits), dir, &probe),
            FirstBytes::MysqlCompressedCommand => {
                self.enter_mysql(Mysql::mid_stream_compressed(limits), dir, &probe);
            }
            FirstBytes::Mongo => {
                // The other side starts at a message too, unless it already spoke.
                let other = dir.reverse();
                let other_spoke = !http.at_start(other) || http.first_bytes_held(other) > 0;
                let lost = match dir {
                    Direction::ClientToServer => [false, other_spoke],
                    Direction::ServerToClient => [other_spoke, false],
                };
                self.enter_mongo(lost, dir, &probe);
            }
            // HTTP on any port is HTTP: a request line outweighs a MySQL or MongoDB port.
            FirstBytes::Other
                if known.is_none()
                    && self.hint == Some(Protocol::Mongo)
                    && !request_line(dir, &probe) =>
            {
                self.enter_mongo([true, true], dir, &probe);
            }
            FirstBytes::Other
                if known.is_none()
                    && self.hint == Some(Protocol::Mysql)
                    && !request_line(dir, &probe) =>
            {
                self.enter_mysql(Mysql::searching(limits), dir, &probe);
            }
            FirstBytes::Other => {
                *http.first_bytes(dir) = probe;
                http.hand_over(dir);
            }
        }
        take
    }

    /// MongoDB from here on; `lost` says which sides must first find a message start.
    fn enter_mongo(&mut self, lost: [bool; 2], dir: Direction, probe: &Held) {
        let session = crate::mongo::Session::new(&self.limits, lost);
        self.enter(
            Active::Mongo(Box::new(session)),
            Protocol::Mongo,
            dir,
            probe,
        );
    }

    fn enter_mysql(&mut self, session: Mysql, dir: Direction, probe: &Held) {
        self.enter(
            Active::Mysql(Box::new(session)),
            Protocol::Mysql,
            dir,
            probe,
        );
    }

    /// From here on both directions go to `session`, which `dir`'s judged first bytes are handed
    /// to, each at the time it arrived; bytes the HTTP session held are counted as skipped.
    fn enter(&mut self, mut session: Active, protocol: Protocol, dir: Direction, probe: &Held) {
        self.events.push_back(Event::Protocol(protocol));
        if let Active::Http(http) = &mut self.session {
            for (d, skipped) in [Direction::ClientToServer, Direction::ServerToClient]
                .into_iter()
                .zip(http.abandon())
            {
                if skipped > 0 {
                    self.events.push_back(Event::Resynced {
                        direction: d,
                        skipped,
                    });
                }
            }
            self.earlier = Some(Box::new(http.stats()));
        }
        for (bytes, at) in probe.runs() {
            session.feed(dir, at, bytes, &mut self.events);
        }
        self.session = session;
    }
}
