//! Side-by-side timing harness: each case runs our code and the anchor's on the same input,
//! interleaved in one process, and reports both times and their ratio.

pub mod harness;
pub mod peerx_cases;
pub mod tcpwire_cases;
