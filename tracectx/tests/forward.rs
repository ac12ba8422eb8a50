//! What a proxy forwards: `baggage` re-encoded from the members the reader validated, within the
//! W3C limits, and `x-request-id` only when it is a bounded run of visible ASCII.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

use tracectx::{
    BAGGAGE_MAX_BYTES, BAGGAGE_MAX_MEMBERS, Config, ErrorKind, Field, REQUEST_ID_MAX_LEN,
    extract_baggage, validate_request_id, write_baggage,
};

/// The reader with the given limits, written into a `BAGGAGE_MAX_BYTES` buffer.
fn forward(headers: &[(&str, &str)], config: &Config) -> (String, tracectx::BaggageWritten) {
    let mut out = [0u8; BAGGAGE_MAX_BYTES];
    let (value, written) = extract_baggage(headers, config).write(&mut out);
    (value.to_owned(), written)
}

#[test]
fn baggage_is_re_encoded_without_ows_and_fields_combined() {
    let headers = [
        (
            "baggage",
            "SomeKey \t = \t SomeValue \t ; \t SomeProp \t , \t k2 = v2 ; p = PropVal",
        ),
        ("Baggage", "userId=Am%C3%A9lie,,  "),
        ("baggage", ""),
    ];
    let (value, written) = forward(&headers, &Config::default());
    assert_eq!(
        value,
        "SomeKey=SomeValue;SomeProp,k2=v2;p=PropVal,userId=Am%C3%A9lie"
    );
    assert_eq!(written.members, 3);
    assert_eq!(written.dropped(), 0);
    // What was written reads back as the same members.
    let again: Vec<_> = extract_baggage(&[("baggage", value.as_str())], &Config::default())
        .map(|m| {
            let m = m.unwrap();
            let props: Vec<_> = m.properties().collect();
            (
                m.key().to_owned(),
                m.raw_value().to_vec(),
                format!("{props:?}"),
            )
        })
        .collect();
    let first: Vec<_> = extract_baggage(&headers, &Config::default())
        .map(|m| {
            let m = m.unwrap();
            let props: Vec<_> = m.properties().collect();
            (
                m.key().to_owned(),
                m.raw_value().to_vec(),
                format!("{props:?}"),
            )
        })
        .collect();
    assert_eq!(again, first);
}

#[test]
fn malformed_members_are_dropped_and_counted() {
    let headers = [(
        "baggage",
        // Non-ASCII value, a bare CR in a value, a space in a key, no `=`, a CR in a property, a
        // property without a key, a control byte in a property value: all dropped.
        "ok=1,caf\u{e9}=x,v=caf\u{e9},cr=a\rb,bad key=1,noequals,p=1;x\ry,q=1;=v,r=1;k=\u{1}, last=2",
    )];
    let (value, written) = forward(&headers, &Config::default());
    assert_eq!(value, "ok=1,last=2");
    assert_eq!(written.members, 2);
    assert_eq!(written.invalid, 8);
    assert_eq!(written.over_limit, 0);
    assert!(value.bytes().all(|b| b.is_ascii_graphic()));
}

#[test]
fn malformed_properties_make_the_member_invalid() {
    for (header, offset) in [
        ("k=v;p\rq", 5),
        ("k=v; ok ;p=caf\u{e9}", 14),
        ("k=v;=x", 4),
        ("k=v;a b", 5),
    ] {
        let headers = [("baggage", header)];
        let e = extract_baggage(&headers, &Config::default())
            .next()
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(
                e.kind(),
                ErrorKind::InvalidByte {
                    field: Field::BaggageProperty
                } | ErrorKind::Missing {
                    field: Field::BaggageProperty
                }
            ),
            "{header:?}: {e}"
        );
        assert_eq!(e.offset(), offset, "{header:?}");
    }
    // Empty properties (`;;`) and OWS stay allowed.
    let headers = [("baggage", "k=v;;p \t= \t1;")];
    let ok = extract_baggage(&headers, &Config::default())
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(ok.properties().collect::<Vec<_>>(), [("p", Some("1"))]);
}

#[test]
fn a_lone_percent_is_re_encoded_so_the_next_hop_decodes_the_same() {
    let headers = [("baggage", "k=100%,j=%41%zz%4")];
    let (value, written) = forward(&headers, &Config::default());
    assert_eq!(value, "k=100%25,j=%41%25zz%254");
    assert_eq!(written.members, 2);
    let decode = |h: &[(&str, &str)]| -> Vec<String> {
        extract_baggage(h, &Config::default())
            .map(|m| {
                let m = m.unwrap();
                let mut buf = vec![0u8; m.raw_value().len() * 3];
                m.decode_value(&mut buf).unwrap().to_owned()
            })
            .collect()
    };
    assert_eq!(decode(&[("baggage", value.as_str())]), decode(&headers));
}

#[test]
fn a_megabyte_of_baggage_comes_out_within_the_limits() {
    let big: String = (0..100_000)
        .map(|i| format!("k{i}=v{i}"))
        .collect::<Vec<_>>()
        .join(",");
    assert!(big.len() > 1_000_000);
    let headers = [("baggage", big.as_str())];
    // The default reader keeps 64 members.
    let (value, written) = forward(&headers, &Config::default());
    assert_eq!(written.members, 64);
    assert_eq!(value.split(',').count(), 64);
    assert_eq!(written.over_limit, 100_000 - 64);
    assert!(value.starts_with("k0=v0,k1=v1,") && value.ends_with(",k63=v63"));
    // A reader allowed everything still yields at most 180 members and 8,192 bytes.
    let (value, written) = forward(
        &headers,
        &Config::default().baggage_limits(u16::MAX, u16::MAX),
    );
    assert_eq!(usize::from(written.members), BAGGAGE_MAX_MEMBERS);
    assert_eq!(value.split(',').count(), BAGGAGE_MAX_MEMBERS);
    assert!(value.len() <= BAGGAGE_MAX_BYTES);
    // Long members: whole ones only, up to 8,192 bytes.
    let long: String = (0..10)
        .map(|i| format!("k{i}={}", "v".repeat(2000)))
        .collect::<Vec<_>>()
        .join(",");
    let (value, written) = forward(
        &[("baggage", long.as_str())],
        &Config::default().baggage_limits(u16::MAX, u16::MAX),
    );
    assert_eq!(written.members, 4);
    assert_eq!(written.over_limit, 6);
    assert_eq!(value.len(), 4 * 2003 + 3);
}

#[test]
fn a_member_that_does_not_fit_the_buffer_leaves_room_for_later_ones() {
    let headers = [("baggage", "a=1,long=0123456789,b=2")];
    let mut out = [0u8; 10];
    let (value, written) = write_baggage(extract_baggage(&headers, &Config::default()), &mut out);
    assert_eq!(value, "a=1,b=2");
    assert_eq!(
        (written.members, written.invalid, written.over_limit),
        (2, 0, 1)
    );
    let mut none = [0u8; 0];
    let (value, written) = write_baggage(extract_baggage(&headers, &Config::default()), &mut none);
    assert_eq!(value, "");
    assert_eq!(written.over_limit, 3);
}

#[test]
fn no_baggage_writes_nothing() {
    let headers: [(&str, &str); 0] = [];
    let (value, written) = forward(&headers, &Config::default());
    assert_eq!(value, "");
    assert_eq!(written, tracectx::BaggageWritten::default());
}

#[test]
fn request_ids_are_visible_ascii_of_bounded_length() {
    let uuid = "8cda17a5-eb41-9ced-9843-acc826f95c8c";
    assert_eq!(validate_request_id(uuid.as_bytes()), Ok(uuid));
    assert_eq!(
        validate_request_id(format!(" \t{uuid}\t ").as_bytes()),
        Ok(uuid)
    );
    assert_eq!(validate_request_id(b"not-a-uuid:42"), Ok("not-a-uuid:42"));
    let max = "x".repeat(REQUEST_ID_MAX_LEN);
    assert_eq!(validate_request_id(max.as_bytes()), Ok(max.as_str()));

    let kind = |v: &[u8]| {
        let e = validate_request_id(v).unwrap_err();
        (e.kind(), e.offset())
    };
    let invalid = ErrorKind::InvalidByte {
        field: Field::RequestId,
    };
    // A bare CR, LF, NUL, DEL, an inner space, non-ASCII.
    assert_eq!(kind(b"abc\rx-admin: 1"), (invalid, 3));
    assert_eq!(kind(b"abc\nx"), (invalid, 3));
    assert_eq!(kind(b" a\0"), (invalid, 2));
    assert_eq!(kind(b"a\x7f"), (invalid, 1));
    assert_eq!(kind(b"a b"), (invalid, 1));
    assert_eq!(kind("caf\u{e9}".as_bytes()), (invalid, 3));
    let missing = ErrorKind::Missing {
        field: Field::RequestId,
    };
    assert_eq!(kind(b""), (missing, 0));
    assert_eq!(kind(b" \t "), (missing, 3));
    let long = "x".repeat(REQUEST_ID_MAX_LEN + 1);
    assert_eq!(
        kind(long.as_bytes()),
        (
            ErrorKind::TooLong {
                field: Field::RequestId,
                limit: 64,
                found: 65
            },
            0
        )
    );
    let huge = vec![b'x'; 1 << 20];
    assert!(matches!(
        kind(&huge).0,
        ErrorKind::TooLong {
            found: u16::MAX,
            ..
        }
    ));
    assert!(
        validate_request_id(b"a\rb")
            .unwrap_err()
            .to_string()
            .contains("RequestId")
    );
}
