//! Replays the committed cargo-fuzz corpus through the very checks the fuzz targets run.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

mod parse_row {
    include!("../../fuzz/checks/tcpwire_parse_row.rs");
}
mod table_reader {
    include!("../../fuzz/checks/tcpwire_table_reader.rs");
}
mod netlink {
    include!("../../fuzz/checks/tcpwire_netlink.rs");
}
mod sockstat {
    include!("../../fuzz/checks/tcpwire_sockstat.rs");
}

#[test]
fn corpus_tcpwire_parse_row() {
    assert!(testkit::replay_corpus("tcpwire_parse_row", parse_row::check) > 0);
}

#[test]
fn corpus_tcpwire_table_reader() {
    assert!(testkit::replay_corpus("tcpwire_table_reader", table_reader::check) > 0);
}

#[test]
fn corpus_tcpwire_netlink() {
    assert!(testkit::replay_corpus("tcpwire_netlink", netlink::check) > 0);
}

#[test]
fn corpus_tcpwire_sockstat() {
    assert!(testkit::replay_corpus("tcpwire_sockstat", sockstat::check) > 0);
}
