//! `peerx`: decode and build Istio peer-metadata exchange frames and `x-envoy-peer-metadata`
//! headers.
//!
//! ```text
//! peerx decode [FILE|-]           one frame -> one JSON object (outcome, header, struct, peer)
//! peerx encode [FILE|-]           {"metadata": {...}, "id": "..."} -> frame bytes on stdout
//! peerx header decode VALUE|-     base64 header value -> {"struct": ..., "peer": ...}
//! peerx header encode [FILE|-]    {"metadata": {...}, "id": "..."} -> the two HTTP headers
//! ```
//!
//! Exit status: 0 when a result was printed (every `decode` outcome, malformed frames included),
//! 1 for I/O errors and undecodable header values, 2 for usage errors and unusable JSON input.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use examples::metadata_json::metadata_from_json;
use peerx::{
    ErrorKind, HEADER_LEN, HEADER_PEER_METADATA, HEADER_PEER_METADATA_ID, Limits, ListView, MAGIC,
    Metadata, Status, StructView, ValueView, Workload, decode_peer_metadata_header,
    decoded_len_max, encode_base64, encode_frame, parse_frame,
};

const USAGE: &str = "usage: peerx decode [FILE|-]
       peerx encode [FILE|-]
       peerx header decode VALUE|-
       peerx header encode [FILE|-]

  decode          parse one exchange frame (8-byte header + Any<Struct>) and print one JSON object:
                  outcome (peer, no_peer, not_exchange, incomplete, malformed), error, data_size,
                  type_url, struct, id, peer, trailing_bytes
  encode          read {\"metadata\": {...}, \"id\": \"...\"} (id optional) and write the frame bytes
  header decode   decode an x-envoy-peer-metadata value (base64, padding optional; - reads stdin)
  header encode   read the same JSON as encode and print the x-envoy-peer-metadata and
                  x-envoy-peer-metadata-id headers
  FILE            - (the default) reads stdin";

/// Where input comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Input {
    Stdin,
    File(PathBuf),
}

/// One parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Command {
    Decode(Input),
    Encode(Input),
    HeaderDecode(Option<String>),
    HeaderEncode(Input),
}

/// Why a command failed, and so its exit status.
#[derive(Debug)]
enum Failure {
    /// Exit 2: the input cannot be used as asked (bad JSON shape).
    Usage(String),
    /// Exit 1: reading, writing or decoding failed.
    Runtime(String),
}

fn input(arg: Option<&str>) -> Result<Input, String> {
    match arg {
        None | Some("-") => Ok(Input::Stdin),
        Some(flag) if flag.starts_with('-') => Err(format!("unknown argument {flag:?}")),
        Some(path) => Ok(Input::File(PathBuf::from(path))),
    }
}

fn parse_args(args: &[String]) -> Result<Command, String> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    if args.iter().any(|a| matches!(*a, "-h" | "--help")) {
        return Err(String::new());
    }
    match args.as_slice() {
        ["decode", rest @ ..] if rest.len() <= 1 => {
            Ok(Command::Decode(input(rest.first().copied())?))
        }
        ["encode", rest @ ..] if rest.len() <= 1 => {
            Ok(Command::Encode(input(rest.first().copied())?))
        }
        ["header", "decode", "-"] => Ok(Command::HeaderDecode(None)),
        ["header", "decode", value] if !value.starts_with('-') => {
            Ok(Command::HeaderDecode(Some((*value).to_owned())))
        }
        ["header", "encode", rest @ ..] if rest.len() <= 1 => {
            Ok(Command::HeaderEncode(input(rest.first().copied())?))
        }
        [] => Err("missing command".to_owned()),
        ["decode" | "encode", ..] => Err(format!("unexpected arguments {:?}", &args[1..])),
        ["header", "decode"] => Err("header decode needs a VALUE".to_owned()),
        ["header", "decode" | "encode", ..] => {
            Err(format!("unexpected arguments {:?}", &args[2..]))
        }
        ["header", other, ..] => Err(format!("unknown header command {other:?}")),
        ["header"] => Err("header needs decode or encode".to_owned()),
        [other, ..] => Err(format!("unknown command {other:?}")),
    }
}

fn main() -> ExitCode {
    let command = match examples::cli::args_or_usage("peerx", USAGE, parse_args) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let result = match command {
        Command::Decode(from) => decode(&from),
        Command::Encode(from) => encode(&from),
        Command::HeaderDecode(value) => header_decode(value.as_deref()),
        Command::HeaderEncode(from) => header_encode(&from),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("peerx: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(message)) => {
            eprintln!("peerx: {message}");
            ExitCode::FAILURE
        }
    }
}

fn read_input(from: &Input) -> Result<Vec<u8>, Failure> {
    match from {
        Input::Stdin => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .lock()
                .read_to_end(&mut bytes)
                .map_err(|e| Failure::Runtime(format!("cannot read stdin: {e}")))?;
            Ok(bytes)
        }
        Input::File(path) => std::fs::read(path)
            .map_err(|e| Failure::Runtime(format!("cannot read {}: {e}", path.display()))),
    }
}

fn write_stdout(bytes: &[u8]) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| Failure::Runtime(format!("cannot write stdout: {e}")))
}

// ---------------------------------------------------------------------------------------------
// decode

/// The snake_case name of an error kind.
fn kind_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::BadMagic { .. } => "bad_magic",
        ErrorKind::PayloadTooLarge { .. } => "payload_too_large",
        ErrorKind::EmptyPayload => "empty_payload",
        ErrorKind::Protobuf => "protobuf",
        ErrorKind::NotUtf8 => "not_utf8",
        ErrorKind::WrongTypeUrl => "wrong_type_url",
        ErrorKind::TooDeep => "too_deep",
        ErrorKind::Base64 => "base64",
        ErrorKind::BufferTooSmall { .. } => "buffer_too_small",
        ErrorKind::AlpnNotSet => "alpn_not_set",
        ErrorKind::Closed => "closed",
        _ => "other",
    }
}

/// The header's declared payload size, whenever all 8 header bytes are there with the right
/// magic (read directly, so malformed sizes such as 0 or `u32::MAX` are reported too).
fn declared_size(bytes: &[u8]) -> Option<u32> {
    let header: [u8; HEADER_LEN] = bytes.get(..HEADER_LEN)?.try_into().ok()?;
    let [m0, m1, m2, m3, s0, s1, s2, s3] = header;
    (u32::from_be_bytes([m0, m1, m2, m3]) == MAGIC).then_some(u32::from_be_bytes([s0, s1, s2, s3]))
}

fn decode(from: &Input) -> Result<(), Failure> {
    let bytes = read_input(from)?;
    let mut out = String::new();
    render_decode(&bytes, &mut out);
    out.push('\n');
    write_stdout(out.as_bytes())
}

/// Writes the `decode` JSON object for `bytes`.
fn render_decode(bytes: &[u8], out: &mut String) {
    let data_size = declared_size(bytes);
    fn field(out: &mut String, first: bool, key: &str) {
        if !first {
            out.push_str(", ");
        }
        json_str(out, key);
        out.push_str(": ");
    }
    out.push('{');
    match parse_frame(bytes, &Limits::default()) {
        Ok(Status::Complete { value, consumed }) => {
            let metadata = value.metadata();
            let workload = metadata.workload();
            field(out, true, "outcome");
            json_str(
                out,
                if workload.is_some() {
                    "peer"
                } else {
                    "no_peer"
                },
            );
            field(out, false, "error");
            out.push_str("null");
            field(out, false, "data_size");
            out.push_str(&value.data_size().to_string());
            field(out, false, "type_url");
            json_str(out, value.type_url());
            field(out, false, "struct");
            json_struct(out, metadata.outer());
            field(out, false, "id");
            match metadata.id() {
                Some(id) => json_str(out, id),
                None => out.push_str("null"),
            }
            field(out, false, "peer");
            match workload {
                Some(w) => json_peer(out, &w),
                None => out.push_str("null"),
            }
            field(out, false, "trailing_bytes");
            out.push_str(&(bytes.len() - consumed).to_string());
        }
        outcome => {
            let (name, error) = match outcome {
                Ok(_) => ("incomplete", None),
                Err(e) if matches!(e.kind(), ErrorKind::BadMagic { .. }) => {
                    ("not_exchange", Some(e.kind()))
                }
                Err(e) => ("malformed", Some(e.kind())),
            };
            field(out, true, "outcome");
            json_str(out, name);
            field(out, false, "error");
            match error {
                Some(kind) => json_str(out, kind_name(kind)),
                None => out.push_str("null"),
            }
            field(out, false, "data_size");
            match data_size {
                Some(n) => out.push_str(&n.to_string()),
                None => out.push_str("null"),
            }
            for key in ["type_url", "struct", "id", "peer"] {
                field(out, false, key);
                out.push_str("null");
            }
            field(out, false, "trailing_bytes");
            out.push('0');
        }
    }
    out.push('}');
}

// ---------------------------------------------------------------------------------------------
// JSON output (protobuf's JSON mapping of Struct/Value, keys in wire order)

fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_number(out: &mut String, n: f64) {
    if n.is_nan() {
        out.push_str("\"NaN\"");
    } else if n.is_infinite() {
        out.push_str(if n > 0.0 {
            "\"Infinity\""
        } else {
            "\"-Infinity\""
        });
    } else {
        match serde_json::Number::from_f64(n) {
            Some(number) => out.push_str(&number.to_string()),
            None => out.push_str("null"),
        }
    }
}

fn json_value(out: &mut String, value: ValueView<'_>) {
    match value {
        ValueView::Null => out.push_str("null"),
        ValueView::Number(n) => json_number(out, n),
        ValueView::String(s) => json_str(out, s),
        ValueView::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        ValueView::Struct(s) => json_struct(out, s),
        ValueView::List(l) => json_list(out, l),
        _ => out.push_str("null"),
    }
}

/// A struct as a JSON object: keys in wire order; a repeated key keeps its first position and
/// takes its last value, as a protobuf map does.
fn json_struct(out: &mut String, view: StructView<'_>) {
    let mut entries: Vec<(&str, ValueView<'_>)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (key, value) in view.iter() {
        match index.get(key) {
            Some(&i) => {
                if let Some(slot) = entries.get_mut(i) {
                    slot.1 = value;
                }
            }
            None => {
                index.insert(key, entries.len());
                entries.push((key, value));
            }
        }
    }
    out.push('{');
    for (i, (key, value)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        json_str(out, key);
        out.push_str(": ");
        json_value(out, value);
    }
    out.push('}');
}

fn json_list(out: &mut String, view: ListView<'_>) {
    out.push('[');
    for (i, value) in view.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        json_value(out, value);
    }
    out.push(']');
}

/// The workload view Istio's receiver derives, as a JSON object.
fn json_peer(out: &mut String, w: &Workload<'_>) {
    let fields = [
        ("instance_name", w.instance_name),
        ("namespace", w.namespace),
        ("workload_name", w.workload_name),
        ("cluster", w.cluster),
        ("identity", w.identity),
        ("region", w.region),
        ("zone", w.zone),
        ("canonical_name", w.canonical_name),
        ("canonical_revision", w.canonical_revision),
        ("app_name", w.app_name),
        ("app_version", w.app_version),
        ("workload_type", w.workload_type.as_str()),
    ];
    out.push('{');
    for (i, (key, value)) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        json_str(out, key);
        out.push_str(": ");
        json_str(out, value);
    }
    out.push('}');
}

// ---------------------------------------------------------------------------------------------
// encode

/// Reads `{"metadata": {...}, "id": "..."}`.
fn read_metadata(from: &Input) -> Result<Metadata, Failure> {
    metadata_from_json(&read_input(from)?).map_err(Failure::Usage)
}

fn encode(from: &Input) -> Result<(), Failure> {
    let metadata = read_metadata(from)?;
    let mut frame = Vec::new();
    encode_frame(&metadata, &mut frame)
        .map_err(|e| Failure::Runtime(format!("cannot encode the frame: {e}")))?;
    write_stdout(&frame)
}

// ---------------------------------------------------------------------------------------------
// header

fn header_decode(value: Option<&str>) -> Result<(), Failure> {
    let value = match value {
        Some(v) => v.as_bytes().to_vec(),
        None => read_input(&Input::Stdin)?,
    };
    let mut scratch = vec![0; decoded_len_max(value.len())];
    let inner = decode_peer_metadata_header(&value, &mut scratch, &Limits::default())
        .map_err(|e| Failure::Runtime(format!("invalid {HEADER_PEER_METADATA} value: {e}")))?;
    let mut out = String::from("{");
    json_str(&mut out, "struct");
    out.push_str(": ");
    json_struct(&mut out, inner);
    out.push_str(", ");
    json_str(&mut out, "peer");
    out.push_str(": ");
    json_peer(&mut out, &Workload::from_struct(inner));
    out.push_str("}\n");
    write_stdout(out.as_bytes())
}

fn header_encode(from: &Input) -> Result<(), Failure> {
    let metadata = read_metadata(from)?;
    let mut inner = Vec::new();
    metadata.encode_peer_struct(&mut inner);
    let mut text = vec![0; inner.len().div_ceil(3) * 4];
    let len = encode_base64(&inner, &mut text)
        .map_err(|e| Failure::Runtime(format!("cannot encode base64: {e}")))?;
    let mut out = format!("{HEADER_PEER_METADATA}: ");
    out.push_str(&String::from_utf8_lossy(
        text.get(..len).unwrap_or_default(),
    ));
    out.push('\n');
    if let Some(id) = metadata.id.as_deref().filter(|id| !id.is_empty()) {
        out.push_str(&format!("{HEADER_PEER_METADATA_ID}: {id}\n"));
    }
    write_stdout(out.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn command_lines() {
        assert_eq!(
            parse_args(&args(&["decode"])),
            Ok(Command::Decode(Input::Stdin))
        );
        assert_eq!(
            parse_args(&args(&["decode", "f.bin"])),
            Ok(Command::Decode(Input::File("f.bin".into())))
        );
        assert_eq!(
            parse_args(&args(&["header", "decode", "AAAA"])),
            Ok(Command::HeaderDecode(Some("AAAA".into())))
        );
        for bad in [
            &[][..],
            &["decode", "a", "b"],
            &["decode", "--x"],
            &["header"],
            &["header", "decode"],
            &["header", "frob"],
            &["frob"],
            &["--help"],
        ] {
            assert!(parse_args(&args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn header_size_is_read_directly() {
        let mut frame = MAGIC.to_be_bytes().to_vec();
        assert_eq!(declared_size(&frame), None);
        frame.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(declared_size(&frame), Some(u32::MAX));
        frame[0] = 0;
        assert_eq!(declared_size(&frame), None);
    }

    #[test]
    fn numbers_and_strings() {
        let mut out = String::new();
        for n in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 3.0, 0.5] {
            json_number(&mut out, n);
            out.push(' ');
        }
        assert_eq!(out, "\"NaN\" \"Infinity\" \"-Infinity\" 3.0 0.5 ");
        let mut out = String::new();
        json_str(&mut out, "a\"\\\n\u{1}é");
        assert_eq!(out, "\"a\\\"\\\\\\n\\u0001é\"");
    }
}
