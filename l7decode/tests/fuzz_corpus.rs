//! Replays the committed cargo-fuzz corpus through the very checks the fuzz targets run.

#![allow(clippy::unwrap_used, clippy::expect_used)] // the checks report failures by panicking

mod flows {
    include!("../../fuzz/checks/l7decode_flows.rs");
}
mod reassembly {
    include!("../../fuzz/checks/l7decode_reassembly.rs");
}
mod http {
    include!("../../fuzz/checks/l7decode_http.rs");
}
mod mysql {
    include!("../../fuzz/checks/l7decode_mysql.rs");
}
mod bson {
    include!("../../fuzz/checks/l7decode_bson.rs");
}
mod mongo {
    include!("../../fuzz/checks/l7decode_mongo.rs");
}

#[test]
fn corpus_l7decode() {
    assert!(testkit::replay_corpus("l7decode_reassembly", reassembly::check) > 0);
    assert!(testkit::replay_corpus("l7decode_flows", flows::check) > 0);
    assert!(testkit::replay_corpus("l7decode_http", http::check) > 0);
    assert!(testkit::replay_corpus("l7decode_mysql", mysql::check) > 0);
    assert!(testkit::replay_corpus("l7decode_bson", bson::check) > 0);
    assert!(testkit::replay_corpus("l7decode_mongo", mongo::check) > 0);
}
