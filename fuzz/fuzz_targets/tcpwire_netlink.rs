#![no_main]
//! Fuzz target: see `checks/tcpwire_netlink.rs` for the properties checked (the same file `cargo test`
//! replays over the committed corpus).

include!("../checks/tcpwire_netlink.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| check(data));
