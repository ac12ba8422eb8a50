//! HTTP/1.x: message heads on httparse, body framing per RFC 9112 §6.3, a chunked-body scanner
//! that counts bytes without copying them, and the session that pairs requests with responses
//! ([`Transaction`] records, [`Event::Transaction`](crate::Event::Transaction)).
//!
//! A [`Connection`](crate::Connection) recognises HTTP by itself; a caller that knows a
//! connection is HTTP can use its session directly, as a [`Decoder`].

pub(crate) mod chunked;
pub(crate) mod head;
mod session;
mod transaction;

pub use session::Session;
pub use transaction::{Message, Transaction};

/// One HTTP/1.x connection decoded without sniffing: both directions are searched for a message
/// start from their first byte (so a capture joined mid-stream resynchronises), and never given
/// up on. See [`crate::Decoder`] for the run loop.
///
/// ```
/// use l7decode::{Direction, Event, Limits, Timestamp};
///
/// let mut http = l7decode::http::Decoder::new(Limits::default());
/// http.feed(Direction::ClientToServer, Timestamp(1_000), b"GET /items HTTP/1.1\r\nHost: shop\r\n\r\n")?;
/// http.feed(Direction::ServerToClient, Timestamp(5_000), b"HTTP/1.1 204 No Content\r\n\r\n")?;
/// let Some(Event::Transaction(t)) = http.poll_event() else { panic!("a transaction") };
/// assert_eq!((t.method(), t.status(), t.latency_ns()), (Some("GET"), Some(204), Some(4_000)));
/// # Ok::<(), l7decode::Error>(())
/// ```
pub type Decoder = crate::Decoder<Session>;
