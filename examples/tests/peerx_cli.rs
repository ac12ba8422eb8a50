//! `peerx` end to end: `decode` on every shared vector checked against its truth file, stdin
//! against file input, `encode` byte-identical to the realistic vector, the HTTP header variant
//! both ways, JSON details (wire key order, duplicate keys, non-finite numbers) and exit codes.

#![allow(clippy::unwrap_used)] // a panic is how a test reports failure

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../peerx/tests/data")
}

fn data(name: &str) -> PathBuf {
    data_dir().join(name)
}

fn peerx(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_peerx"))
        .args(args)
        .output()
        .unwrap()
}

fn peerx_stdin(args: &[&str], input: &[u8]) -> Output {
    testkit::run_with_stdin(env!("CARGO_BIN_EXE_peerx"), args, input)
}

fn stdout_json(out: &Output) -> Value {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn truth(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(data(name)).unwrap()).unwrap()
}

/// JSON equality with numbers compared as values (`3` and `3.0` are the same double).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fn vectors() -> Vec<PathBuf> {
    let mut bins: Vec<PathBuf> = std::fs::read_dir(data_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .collect();
    bins.sort();
    bins
}

#[test]
fn decode_every_vector_matches_its_truth() {
    let bins = vectors();
    assert!(bins.len() >= 23, "vectors found: {}", bins.len());
    for bin in bins {
        let name = bin.file_stem().unwrap().to_str().unwrap().to_owned();
        let truth: Value =
            serde_json::from_slice(&std::fs::read(bin.with_extension("json")).unwrap()).unwrap();
        let out = peerx(&["decode", bin.to_str().unwrap()]);
        let got = stdout_json(&out);
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(text.lines().count(), 1, "{name}: one JSON object per line");

        let outcome = testkit::peerx_vector_outcome(&name);
        assert_eq!(got["outcome"], outcome, "{name}: {got}");
        let keys = [
            "outcome",
            "error",
            "data_size",
            "type_url",
            "struct",
            "id",
            "peer",
            "trailing_bytes",
        ];
        assert_eq!(got.as_object().unwrap().len(), keys.len(), "{name}");
        for key in keys {
            assert!(got.get(key).is_some(), "{name}: {key} missing");
        }

        let complete = matches!(outcome, "peer" | "no_peer");
        match outcome {
            "peer" | "no_peer" | "incomplete" => assert!(got["error"].is_null(), "{name}"),
            "not_exchange" => assert_eq!(got["error"], "bad_magic", "{name}"),
            _ => assert!(got["error"].is_string(), "{name}"),
        }

        if complete {
            let payload = &truth["payload"];
            if let Some(expected) = payload.get("struct_json") {
                assert!(same(&got["struct"], expected), "{name}: {}", got["struct"]);
            }
            assert_eq!(got["type_url"], payload["any_type_url"], "{name}");
            assert_eq!(got["trailing_bytes"], truth["trailing_bytes_len"], "{name}");
            // Keys come out in wire order.
            if let Some(order) = payload["struct_key_order_on_wire"].as_array() {
                let positions: Vec<usize> = order
                    .iter()
                    .map(|k| text.find(&format!("{k}: ")).unwrap())
                    .collect();
                assert!(positions.is_sorted(), "{name}: key order {positions:?}");
            }
            let id = got["struct"].get("x-envoy-peer-metadata-id");
            assert_eq!(got["id"], id.cloned().unwrap_or(Value::Null), "{name}");
        } else {
            for key in ["type_url", "struct", "id", "peer"] {
                assert!(got[key].is_null(), "{name}: {key}");
            }
            assert_eq!(got["trailing_bytes"], 0, "{name}");
        }

        match truth.get("header") {
            Some(header) if header["magic_ok"] == true => {
                assert_eq!(got["data_size"], header["data_size"], "{name}");
            }
            _ => assert!(got["data_size"].is_null(), "{name}"),
        }

        match truth.get("expected_peer_reference_mapping") {
            Some(expected) => {
                let mut expected = expected.clone();
                expected
                    .as_object_mut()
                    .unwrap()
                    .remove("additional_labels");
                assert_eq!(got["peer"], expected, "{name}");
            }
            None => assert_eq!(got["peer"].is_object(), outcome == "peer", "{name}"),
        }
    }
}

#[test]
fn malformed_vectors_name_their_error() {
    for (file, error, data_size) in [
        (
            "14_oversize_length.bin",
            "payload_too_large",
            json!(4_294_967_295_u32),
        ),
        ("15_zero_length_payload.bin", "empty_payload", json!(0)),
        ("16_payload_not_protobuf.bin", "protobuf", json!(4)),
        (
            "17b_payload_raw_struct_not_any_large.bin",
            "not_utf8",
            json!(584),
        ),
        ("18_any_wrong_type_url.bin", "wrong_type_url", json!(518)),
    ] {
        let got = stdout_json(&peerx(&["decode", data(file).to_str().unwrap()]));
        assert_eq!(got["error"], error, "{file}");
        assert_eq!(got["data_size"], data_size, "{file}");
    }
}

#[test]
fn stdin_gives_the_same_output_as_the_file() {
    for bin in vectors() {
        let path = bin.to_str().unwrap();
        let from_file = peerx(&["decode", path]);
        let bytes = std::fs::read(&bin).unwrap();
        let from_dash = peerx_stdin(&["decode", "-"], &bytes);
        let from_default = peerx_stdin(&["decode"], &bytes);
        assert_eq!(from_dash.status.code(), Some(0), "{path}");
        assert_eq!(from_file.stdout, from_dash.stdout, "{path}");
        assert_eq!(from_file.stdout, from_default.stdout, "{path}");
    }
}

/// `{"metadata": <vector 02's inner struct>, "id": <its id>}`.
fn vector_02_input() -> Value {
    let truth = truth("02_modern_sender_realistic.json");
    let outer = &truth["payload"]["struct_json"];
    json!({
        "metadata": outer["x-envoy-peer-metadata"],
        "id": outer["x-envoy-peer-metadata-id"],
    })
}

#[test]
fn encode_is_byte_identical_to_the_realistic_vector() {
    let input = serde_json::to_vec(&vector_02_input()).unwrap();
    let out = peerx_stdin(&["encode"], &input);
    assert_eq!(out.status.code(), Some(0));
    let expected = std::fs::read(data("02_modern_sender_realistic.bin")).unwrap();
    assert_eq!(out.stdout.len(), 639);
    assert_eq!(out.stdout, expected[..639]);

    // From a file, too.
    let path = std::env::temp_dir().join(format!("peerx-encode-{}.json", std::process::id()));
    std::fs::write(&path, &input).unwrap();
    let from_file = peerx(&["encode", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    assert_eq!(from_file.stdout, out.stdout);
}

#[test]
fn encode_then_decode_round_trips_every_value_kind() {
    let metadata = json!({
        "NAMESPACE": "ns",
        "LABELS": {"app": "a", "version": "v"},
        "LIST": [1.5, "x", true, null, {"k": []}],
        "NULL": null,
        "FLAG": false,
        "NUMBER": -2.25,
    });
    let out = peerx_stdin(
        &["encode"],
        json!({ "metadata": metadata }).to_string().as_bytes(),
    );
    assert_eq!(out.status.code(), Some(0));
    let got = stdout_json(&peerx_stdin(&["decode"], &out.stdout));
    assert_eq!(got["outcome"], "peer");
    assert!(got["id"].is_null());
    assert!(same(
        &got["struct"],
        &json!({ "x-envoy-peer-metadata": metadata })
    ));
    assert_eq!(got["peer"]["namespace"], "ns");
    assert_eq!(got["peer"]["app_name"], "a");
    assert_eq!(got["peer"]["app_version"], "v");
    assert_eq!(got["peer"]["workload_type"], "unknown");

    // An empty id is not written, as Envoy does.
    let out = peerx_stdin(&["encode"], br#"{"metadata": {}, "id": ""}"#);
    let got = stdout_json(&peerx_stdin(&["decode"], &out.stdout));
    assert_eq!(got["struct"], json!({"x-envoy-peer-metadata": {}}));
}

#[test]
fn non_finite_numbers_are_strings() {
    let out = peerx_stdin(
        &["encode"],
        br#"{"metadata": {"A": 1.5, "B": 2.5, "C": 3.5}}"#,
    );
    let mut frame = out.stdout;
    for (from, to) in [
        (1.5_f64, f64::NAN),
        (2.5, f64::INFINITY),
        (3.5, f64::NEG_INFINITY),
    ] {
        let mut needle = vec![0x11];
        needle.extend_from_slice(&from.to_le_bytes());
        let at = frame.windows(9).position(|w| w == needle).unwrap();
        frame[at + 1..at + 9].copy_from_slice(&to.to_le_bytes());
    }
    let got = stdout_json(&peerx_stdin(&["decode"], &frame));
    assert_eq!(
        got["struct"]["x-envoy-peer-metadata"],
        json!({"A": "NaN", "B": "Infinity", "C": "-Infinity"})
    );
}

/// Splits a frame built by `encode` (one-byte lengths) into its parts before the outer struct
/// and the outer struct itself.
fn outer_struct(frame: &[u8]) -> &[u8] {
    let url_len = usize::from(frame[9]);
    let value_at = 10 + url_len;
    assert_eq!(frame[value_at], 0x12);
    let len = usize::from(frame[value_at + 1]);
    assert!(len < 0x80);
    &frame[value_at + 2..value_at + 2 + len]
}

#[test]
fn duplicate_keys_keep_their_first_position_and_last_value() {
    let first = peerx_stdin(
        &["encode"],
        br#"{"metadata": {"NAMESPACE": "first"}, "id": "node"}"#,
    );
    let second = peerx_stdin(&["encode"], br#"{"metadata": {"NAMESPACE": "second"}}"#);
    // Outer struct: peer, id, peer again.
    let mut outer = outer_struct(&first.stdout).to_vec();
    outer.extend_from_slice(outer_struct(&second.stdout));
    let url = b"type.googleapis.com/google.protobuf.Struct";
    let mut any = vec![0x0a, u8::try_from(url.len()).unwrap()];
    any.extend_from_slice(url);
    any.push(0x12);
    let mut len = outer.len();
    while len >= 0x80 {
        any.push(u8::try_from(len & 0x7f).unwrap() | 0x80);
        len >>= 7;
    }
    any.push(u8::try_from(len).unwrap());
    any.extend_from_slice(&outer);
    let mut frame = 0x3D23_0467_u32.to_be_bytes().to_vec();
    frame.extend_from_slice(&u32::try_from(any.len()).unwrap().to_be_bytes());
    frame.extend_from_slice(&any);

    let out = peerx_stdin(&["decode"], &frame);
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert!(
        text.contains(
            r#""struct": {"x-envoy-peer-metadata": {"NAMESPACE": "second"}, "x-envoy-peer-metadata-id": "node"}"#
        ),
        "{text}"
    );
    let got = stdout_json(&out);
    assert_eq!(got["peer"]["namespace"], "second");
    assert_eq!(got["id"], "node");
}

#[test]
fn header_decode_gives_vector_02s_peer() {
    let text = std::fs::read_to_string(data("http_header_x-envoy-peer-metadata.txt")).unwrap();
    let truth = truth("02_modern_sender_realistic.json");
    for value in [text.trim(), text.trim().trim_end_matches('=')] {
        let got = stdout_json(&peerx(&["header", "decode", value]));
        assert_eq!(got["peer"], truth["expected_peer_reference_mapping"]);
        assert_eq!(
            got["struct"],
            truth["payload"]["struct_json"]["x-envoy-peer-metadata"]
        );
    }
    let from_stdin = peerx_stdin(&["header", "decode", "-"], text.as_bytes());
    assert_eq!(
        stdout_json(&from_stdin)["peer"],
        truth["expected_peer_reference_mapping"]
    );
}

#[test]
fn header_decode_rejects_invalid_values() {
    for bad in ["not*base64", "A", "/w=="] {
        let out = peerx(&["header", "decode", bad]);
        assert_eq!(out.status.code(), Some(1), "{bad}");
        assert!(out.stdout.is_empty(), "{bad}");
        assert!(!out.stderr.is_empty(), "{bad}");
    }
}

#[test]
fn header_encode_round_trips_the_header_text() {
    let text = std::fs::read_to_string(data("http_header_x-envoy-peer-metadata.txt")).unwrap();
    let id = std::fs::read_to_string(data("http_header_x-envoy-peer-metadata-id.txt")).unwrap();
    let path = std::env::temp_dir().join(format!("peerx-header-{}.json", std::process::id()));
    std::fs::write(&path, serde_json::to_vec(&vector_02_input()).unwrap()).unwrap();
    let out = peerx(&["header", "encode", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    assert_eq!(out.status.code(), Some(0));
    let expected = format!(
        "x-envoy-peer-metadata: {}\nx-envoy-peer-metadata-id: {}\n",
        text.trim(),
        id.trim()
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), expected);

    // No id line without an id.
    let out = peerx_stdin(
        &["header", "encode"],
        br#"{"metadata": {"NAMESPACE": "x"}}"#,
    );
    let lines = String::from_utf8(out.stdout).unwrap();
    assert_eq!(lines.lines().count(), 1);
    let value = lines
        .trim()
        .strip_prefix("x-envoy-peer-metadata: ")
        .unwrap();
    let got = stdout_json(&peerx(&["header", "decode", value]));
    assert_eq!(got["struct"], json!({"NAMESPACE": "x"}));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["frob"],
        &["decode", "--frob"],
        &["decode", "a", "b"],
        &["encode", "a", "b"],
        &["header"],
        &["header", "frob"],
        &["header", "decode"],
        &["header", "decode", "a", "b"],
        &["header", "encode", "a", "b"],
    ] {
        let out = peerx(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Usage: peerx"),
            "{args:?}"
        );
    }
    // A bad argument is named.
    for (args, named) in [
        (&["frob"][..], "frob"),
        (&["decode", "--frob"], "--frob"),
        (&["decode", "a", "b"], "'b'"),
        (&["header", "decode"], "<VALUE>"),
    ] {
        let stderr = String::from_utf8(peerx(args).stderr).unwrap();
        assert!(stderr.contains(named), "{args:?}: {stderr}");
    }
    for input in [
        &b"not json"[..],
        b"[]",
        b"{}",
        br#"{"metadata": 3}"#,
        br#"{"metadata": {}, "id": 7}"#,
    ] {
        for args in [&["encode"][..], &["header", "encode"]] {
            let out = peerx_stdin(args, input);
            assert_eq!(out.status.code(), Some(2), "{args:?}");
            assert!(out.stdout.is_empty(), "{args:?}");
            assert!(!out.stderr.is_empty(), "{args:?}");
        }
    }
}

#[test]
fn unreadable_files_exit_1() {
    let missing = data_dir().join("does-not-exist.bin");
    for args in [
        &["decode", missing.to_str().unwrap()][..],
        &["encode", missing.to_str().unwrap()],
        &["header", "encode", missing.to_str().unwrap()],
        &["decode", data_dir().to_str().unwrap()],
    ] {
        let out = peerx(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}");
    }
}

#[test]
fn help_describes_every_command_and_version_works() {
    let out = peerx(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    for command in ["decode", "encode", "header", "Exit status"] {
        assert!(text.contains(command), "{command}: {text}");
    }
    let out = peerx(&["header", "--help"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("decode") && text.contains("encode"), "{text}");
    for command in ["decode", "encode"] {
        let out = peerx(&[command, "--help"]);
        assert_eq!(out.status.code(), Some(0));
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.contains("[FILE]") && text.contains("standard input"),
            "{text}"
        );
    }
    let out = peerx(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8(out.stdout).unwrap().starts_with("peerx "));
}

#[test]
fn encode_refuses_known_keys_of_the_wrong_type() {
    // Used to give a frame whose workload the receiver reads as empty, silently.
    for (input, named) in [
        (
            &br#"{"metadata": {"LABELS": 5, "NAME": 7}}"#[..],
            "\"LABELS\" is a number",
        ),
        (
            br#"{"metadata": {"NAME": 7}}"#,
            "\"NAME\" is a number, not a string",
        ),
        (
            br#"{"metadata": {"NAMESPACE": null}}"#,
            "\"NAMESPACE\" is null",
        ),
        (
            br#"{"metadata": {"LABELS": {"app": ["a"]}}}"#,
            "\"LABELS\".\"app\" is an array, not a string",
        ),
        (br#"{"metadata": {}, "ids": "x"}"#, "unknown key \"ids\""),
    ] {
        for args in [&["encode"][..], &["header", "encode"]] {
            let out = peerx_stdin(args, input);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
            assert!(out.stdout.is_empty(), "{args:?}");
            assert!(stderr.contains(named), "{args:?}: {stderr}");
        }
    }
    // Keys of their own take any value.
    let out = peerx_stdin(
        &["encode"],
        br#"{"metadata": {"NAME": "n", "MY_KEY": [1, {"x": null}], "LABELS": {}}}"#,
    );
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn encode_refuses_what_decode_would_reject() {
    // 1.49 MB of metadata, and lists nested 100 deep: frames no receiver reads.
    let labels: serde_json::Map<String, Value> = (0..75)
        .map(|i| (format!("label-{i}"), Value::from("x".repeat(20_000))))
        .collect();
    let mut deep = json!("leaf");
    for _ in 0..100 {
        deep = json!([deep]);
    }
    for (input, why) in [
        (
            json!({"metadata": {"LABELS": labels}}),
            "receivers accept at most 65536",
        ),
        (
            json!({"metadata": {"LIST": deep}}),
            "deeper than receivers accept",
        ),
    ] {
        let input = serde_json::to_vec(&input).unwrap();
        let out = peerx_stdin(&["encode"], &input);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(out.stdout.is_empty());
        assert!(stderr.contains(why), "{stderr}");
    }
    // The header variant has no size limit but the same depth.
    let mut deep = json!("leaf");
    for _ in 0..40 {
        deep = json!([deep]);
    }
    let out = peerx_stdin(
        &["header", "encode"],
        json!({"metadata": {"LIST": deep}}).to_string().as_bytes(),
    );
    assert_eq!(out.status.code(), Some(2));
    // And what is written decodes.
    let mut deep = json!("leaf");
    for _ in 0..31 {
        deep = json!([deep]);
    }
    let out = peerx_stdin(
        &["encode"],
        json!({"metadata": {"LIST": deep}}).to_string().as_bytes(),
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stdout_json(&peerx_stdin(&["decode"], &out.stdout))["outcome"],
        "peer"
    );
}

/// Runs `peerx decode -` on `total` bytes of `head` then zeros, generated as they are written;
/// returns the output, how many bytes the writer got through, and how long it took.
fn decode_stream(head: &[u8], total: u64) -> (Output, u64, std::time::Duration) {
    use std::io::Write;
    let started = std::time::Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_peerx"))
        .args(["decode", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let head = head.to_vec();
    let writer = std::thread::spawn(move || {
        let zeros = vec![0u8; 1 << 16];
        let mut written = 0u64;
        let mut chunk = head;
        while written < total {
            if chunk.is_empty() {
                let n = zeros.len().min(usize::try_from(total - written).unwrap());
                chunk = zeros[..n].to_vec();
            }
            // Fails once the reader has exited (EPIPE).
            if stdin.write_all(&chunk).is_err() {
                break;
            }
            written += chunk.len() as u64;
            chunk.clear();
        }
        written
    });
    let out = child.wait_with_output().unwrap();
    let written = writer.join().unwrap();
    (out, written, started.elapsed())
}

#[test]
fn decode_reads_what_the_frame_needs_not_all_of_stdin() {
    const GIB: u64 = 1 << 30;
    // 1 GB of zeros: the first byte decides (it used to read, and keep, all of it).
    let (out, written, took) = decode_stream(b"", GIB);
    let got = stdout_json(&out);
    assert_eq!(got["outcome"], "not_exchange");
    assert!(written < 16 << 20, "{written} bytes read");
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");

    // A header declaring a payload over the limit: the 8 bytes decide.
    let mut oversize = 0x3D23_0467_u32.to_be_bytes().to_vec();
    oversize.extend_from_slice(&u32::MAX.to_be_bytes());
    let (out, written, _) = decode_stream(&oversize, GIB);
    let got = stdout_json(&out);
    assert_eq!(got["error"], "payload_too_large");
    assert_eq!(got["data_size"], json!(u32::MAX));
    assert!(written < 16 << 20, "{written} bytes read");

    // A header declaring 60,000 bytes followed by zeros: the payload is read, no more.
    let mut within = 0x3D23_0467_u32.to_be_bytes().to_vec();
    within.extend_from_slice(&60_000_u32.to_be_bytes());
    let (out, written, _) = decode_stream(&within, GIB);
    let got = stdout_json(&out);
    assert_eq!(got["outcome"], "malformed");
    assert_eq!(got["data_size"], 60_000);
    assert!(written < 16 << 20, "{written} bytes read");

    // Behind a whole frame the rest is counted (not kept), as the file input counts it.
    let frame = std::fs::read(data("02_modern_sender_realistic.bin")).unwrap();
    let frame = &frame[..639];
    let (out, written, _) = decode_stream(frame, 64 << 20);
    assert_eq!(written, 64 << 20);
    let got = stdout_json(&out);
    assert_eq!(got["outcome"], "peer");
    assert_eq!(got["trailing_bytes"], (64 << 20) - 639);
}

fn dev_full() -> std::process::Stdio {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap()
        .into()
}

#[test]
fn a_full_stdout_is_an_error_and_a_closed_one_ends_quietly() {
    let frame = data("02_modern_sender_realistic.bin");
    let frame = frame.to_str().unwrap();
    let header = std::fs::read_to_string(data("http_header_x-envoy-peer-metadata.txt")).unwrap();
    let encode_input = concat!(env!("CARGO_MANIFEST_DIR"), "/data/mxproxy/sleep.json");
    for args in [
        &["decode", frame][..],
        &["encode", encode_input],
        &["header", "decode", header.trim()],
        &["header", "encode", encode_input],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_peerx"))
            .args(args)
            .stdout(dev_full())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("cannot write stdout") && stderr.contains("No space left"),
            "{args:?}: {stderr}"
        );

        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_peerx"))
            .args(args)
            .stdout(writer)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(
            out.stderr.is_empty(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
