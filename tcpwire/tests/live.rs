//! This machine's own tables parse without a single malformed row, in strict mode, and the
//! counting path agrees with the full parse on the same bytes.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

use tcpwire::{Config, Event, Limits, RowOptions, StateCounter, TableReader, TcpCounts};

#[test]
fn live_proc_net_tcp_parses_cleanly() {
    let mut read_any = false;
    for path in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(table) = std::fs::read(path) else {
            eprintln!("{path} not available here, skipped");
            continue;
        };
        read_any = true;
        let mut reader =
            TableReader::new(Config::default().row(RowOptions::default().strict(true)));
        let mut counts = TcpCounts::default();
        // The kernel's own read size.
        for chunk in table.chunks(4096) {
            for event in reader.feed(chunk) {
                match event {
                    Event::Row(row) => counts.add_row(&row),
                    other => panic!("{path}: {other:?}"),
                }
            }
        }
        assert!(reader.feed_eof().is_none(), "{path} ends with a newline");
        assert_eq!(reader.stats().headers, 1, "{path}");
        let mut counter = StateCounter::new(Limits::default());
        counter.feed(&table);
        counter.feed_eof();
        assert_eq!(counter.counts(), &counts, "{path}");
    }
    if !read_any {
        eprintln!("no /proc/net/tcp on this system");
    }
}
