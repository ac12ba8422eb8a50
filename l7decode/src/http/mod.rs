//! HTTP/1.x: message heads on httparse, body framing per RFC 9112 §6.3, and a chunked-body
//! scanner that counts bytes without copying them.

pub(crate) mod chunked;
pub(crate) mod head;
