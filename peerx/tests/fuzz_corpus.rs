//! Replays the committed cargo-fuzz corpus through the very checks the fuzz targets run.

mod parse_frame {
    include!("../../fuzz/checks/peerx_parse_frame.rs");
}
mod struct_reader {
    include!("../../fuzz/checks/peerx_struct_reader.rs");
}
mod exchange {
    include!("../../fuzz/checks/peerx_exchange.rs");
}

#[test]
fn corpus_peerx_parse_frame() {
    assert!(testkit::replay_corpus("peerx_parse_frame", parse_frame::check) > 0);
}

#[test]
fn corpus_peerx_struct_reader() {
    assert!(testkit::replay_corpus("peerx_struct_reader", struct_reader::check) > 0);
}

#[test]
fn corpus_peerx_exchange() {
    assert!(testkit::replay_corpus("peerx_exchange", exchange::check) > 0);
}
