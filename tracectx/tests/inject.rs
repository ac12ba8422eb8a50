//! The write side: `Injector` and the `inject_*` functions, over `http::HeaderMap`.
#![cfg(feature = "http")]

use http::HeaderMap;
use tracectx::*;

fn span(n: u64) -> SpanId {
    SpanId(n.to_be_bytes())
}

#[test]
fn each_header_is_one_call_and_replaces_what_was_there() {
    let mut headers = HeaderMap::new();
    headers.append("traceparent", "stale".parse().unwrap());
    headers.append("traceparent", "stale too".parse().unwrap());
    let tp = TraceParent::new(TraceId::from_u64(0xab), span(0xcd), TraceFlags(1));
    inject_traceparent(&tp, &mut headers);
    assert_eq!(
        headers.get_all("traceparent").iter().collect::<Vec<_>>(),
        ["00-000000000000000000000000000000ab-00000000000000cd-01"]
    );

    let b3 = B3::Context(B3Context::new(
        TraceId::from_u64(1),
        span(2),
        Sampling::Accept,
    ));
    inject_b3_single(&b3, &mut headers);
    assert_eq!(headers["b3"], "0000000000000001-0000000000000002-1");
}

#[test]
fn b3_multi_leaves_no_stale_header_behind() {
    let mut headers = HeaderMap::new();
    headers.insert("x-b3-parentspanid", "00000000000000ff".parse().unwrap());
    headers.insert("x-b3-flags", "1".parse().unwrap());
    let b3 = B3::Context(B3Context::new(
        TraceId::from_u64(1),
        span(2),
        Sampling::Deny,
    ));
    inject_b3_multi(&b3, &mut headers);
    let mut got: Vec<_> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
        .collect();
    got.sort_unstable();
    assert_eq!(
        got,
        [
            ("x-b3-sampled", "0"),
            ("x-b3-spanid", "0000000000000002"),
            ("x-b3-traceid", "0000000000000001"),
        ]
    );
}

#[test]
fn tracestate_and_baggage_are_removed_when_nothing_is_left() {
    let inbound = [
        ("tracestate", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
        ("baggage", "bad\r=1"),
    ];
    let config = Config::default();
    let mut headers = HeaderMap::new();
    headers.insert("baggage", "stale=1".parse().unwrap());
    let state = extract_tracestate(&inbound, &config).unwrap().unwrap();
    inject_tracestate(&state, &mut headers);
    assert_eq!(
        headers["tracestate"],
        "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
    );
    let written = inject_baggage(extract_baggage(&inbound, &config), &mut headers);
    assert_eq!(written.invalid, 1);
    assert!(headers.get("baggage").is_none());
}
