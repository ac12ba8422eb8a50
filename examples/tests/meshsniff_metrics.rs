//! The per-endpoint aggregate behind the table and `/metrics`: exact counts, bounded series,
//! and the exposition in both formats.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

mod common;

use std::process::Command;
use std::sync::{Arc, Mutex};

use examples::capture::open;
use examples::exposition::Format;
use examples::meshsniff::analyze;
use examples::meshsniff::metrics::{AgentCounters, Exposition, MetricsState};
use examples::meshsniff::series::{OTHER, SeriesTable, Server};

fn demo_table(max_series: usize) -> SeriesTable {
    let mut table = SeriesTable::new(max_series);
    let capture = open(&common::data("data/mesh_demo.pcap.gz")).unwrap();
    let (_, failure) = analyze(capture, |r| table.add(&r));
    assert!(failure.is_none());
    table
}

fn exposition(table: SeriesTable) -> Exposition {
    Exposition::new(Arc::new(Mutex::new(MetricsState {
        series: table,
        agent: AgentCounters::default(),
    })))
}

#[test]
fn every_record_counts_once_in_exactly_one_series() {
    let table = demo_table(10_000);
    assert_eq!(table.records(), 63);
    assert_eq!(table.refused(), 0);
    let total: u64 = table.iter().map(|(_, _, _, s)| s.requests()).sum();
    assert_eq!(total, 63);
    let items = table
        .iter()
        .find(|(p, s, e, _)| {
            p.label() == "http" && s.to_string() == "127.0.0.1:8080" && *e == "GET /api/items/{id}"
        })
        .unwrap();
    assert_eq!(items.3.requests(), 2);
}

#[test]
fn max_series_bounds_the_table_and_counts_what_it_refused() {
    let all = demo_table(10_000).len();
    assert!(all > 8, "{all} series");
    let table = demo_table(3);
    let own: Vec<_> = table.iter().filter(|(_, _, e, _)| *e != OTHER).collect();
    assert_eq!(own.len(), 3);
    let other: u64 = table
        .iter()
        .filter(|(_, _, e, _)| *e == OTHER)
        .map(|(_, _, _, s)| s.requests())
        .sum();
    // Nothing lost: what had no room is in `other` series, and counted as refused.
    let total: u64 = table.iter().map(|(_, _, _, s)| s.requests()).sum();
    assert_eq!(total, 63);
    assert_eq!(other, table.refused());
    assert!(table.refused() > 0);
    assert!(table.iter().all(|(_, s, _, _)| s != Server::Other));
}

#[test]
fn max_series_on_the_command_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_meshsniff"))
        .args(["--max-series", "2", "--top", "100"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains(" other "), "{table}");
    assert!(
        table.contains("records counted in `other` series"),
        "{table}"
    );
    assert!(table.contains("63 transactions"), "{table}");
}

#[test]
fn the_exposition_in_both_formats() {
    let metrics = exposition(demo_table(10_000));
    let open_metrics = metrics.encode(Format::OpenMetrics);
    let line = r#"meshsniff_requests_total{protocol="http",server="127.0.0.1:8080",endpoint="GET /api/items",outcome="2xx"} 7"#;
    assert!(open_metrics.contains(line), "{open_metrics}");
    assert!(open_metrics.contains(
        r#"meshsniff_requests_total{protocol="mongodb",server="127.0.0.1:27017",endpoint="insert shop.orders",outcome="error"} 1"#
    ));
    assert!(open_metrics.contains(
        r#"meshsniff_request_duration_seconds_count{protocol="http",server="127.0.0.1:8080",endpoint="GET /api/items"} 7"#
    ));
    assert!(open_metrics.contains(r#"meshsniff_records_total 63"#));
    assert!(open_metrics.ends_with("# EOF\n"));
    // Requests with a W3C or B3 context leave an exemplar on their bucket.
    assert!(open_metrics.contains(r#" # {trace_id=""#), "{open_metrics}");

    let text = metrics.encode(Format::Prometheus);
    assert!(text.contains(line));
    assert!(text.contains("# TYPE meshsniff_requests_total counter"));
    assert!(!text.contains("# EOF"));
    assert!(!text.contains("trace_id"));
    // Buckets are cumulative and end with +Inf = count.
    let buckets: Vec<u64> = text
        .lines()
        .filter(|l| {
            l.starts_with("meshsniff_request_duration_seconds_bucket{le=")
                && l.contains(
                    r#",protocol="http",server="127.0.0.1:8080",endpoint="GET /api/items"}"#,
                )
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(buckets.len(), 21, "{text}");
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(buckets.last(), Some(&7));
}

#[test]
fn a_scrape_through_the_server() {
    use examples::serve::{ServeLimits, get_only, serve};
    use std::io::{Read, Write};

    let metrics = exposition(demo_table(10_000));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let handler = get_only("/metrics", move |request| {
        let accept = request.headers.get("accept").and_then(|v| v.to_str().ok());
        let format = Format::from_accept(accept);
        (format.content_type(), metrics.encode(format))
    });
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let server = std::thread::spawn(move || {
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            serve(listener, handler, ServeLimits::default(), stopped).await;
        });
    });
    let request = |head: &str| {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.write_all(head.as_bytes()).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    };
    let plain = request("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(plain.starts_with("HTTP/1.1 200"), "{plain}");
    assert!(plain.contains("text/plain; version=0.0.4"));
    assert!(plain.contains("meshsniff_records_total 63"));
    let om = request(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text; version=1.0.0\r\nConnection: close\r\n\r\n",
    );
    assert!(om.contains("application/openmetrics-text"), "{om}");
    assert!(om.contains("# EOF"));
    let post = request(
        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    let missing = request("GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    stop.send(true).unwrap();
    server.join().unwrap();
}
