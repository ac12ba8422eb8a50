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
//! 1 for I/O errors (a write error on stdout included) and undecodable header values, 2 for usage
//! errors and unusable JSON input. A closed stdout (`| head -c 1`) ends the program quietly.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use examples::metadata_json::metadata_from_json;
use peerx::{
    ErrorKind, HEADER_LEN, HEADER_PEER_METADATA, HEADER_PEER_METADATA_ID, Limits, ListView, MAGIC,
    Metadata, Status, StructView, ValueView, Workload, decode_peer_metadata_header,
    decoded_len_max, encode_base64, encode_frame, parse_frame, parse_frame_header,
};

/// Decode and build Istio peer-metadata exchange frames (ALPN istio-peer-exchange) and
/// x-envoy-peer-metadata headers.
#[derive(Debug, Parser)]
#[command(
    name = "peerx",
    version,
    arg_required_else_help = true,
    after_help = "Exit status: 0 when a result was printed (every decode outcome, malformed frames \
                  included), 1 for I/O errors and undecodable header values, 2 for usage errors \
                  and unusable JSON input."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where input comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Input {
    Stdin,
    File(PathBuf),
}

/// `-` is standard input, anything else a file.
fn input(text: &str) -> Result<Input, String> {
    Ok(match text {
        "-" => Input::Stdin,
        path => Input::File(PathBuf::from(path)),
    })
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Parse one exchange frame (8-byte header + Any(Struct)) and print one JSON object: outcome
    /// (peer, no_peer, not_exchange, incomplete, malformed), error, data_size, type_url, struct,
    /// id, peer, trailing_bytes. Reads what the header declares (at most 64 KiB) and stops at a
    /// header that cannot start a frame; bytes behind a whole frame are counted, not kept.
    Decode {
        /// The frame: a file, or - for standard input.
        #[arg(value_name = "FILE", default_value = "-", value_parser = input)]
        input: Input,
    },
    /// Read {"metadata": {...}, "id": "..."} (id optional) and write the frame bytes. The known
    /// keys are typed (NAME, NAMESPACE, ... strings; LABELS an object of strings), and a frame
    /// the receiver would refuse (over 64 KiB, nested over 32 deep) is not written.
    Encode {
        /// The JSON: a file, or - for standard input.
        #[arg(value_name = "FILE", default_value = "-", value_parser = input)]
        input: Input,
    },
    /// The HTTP variant: x-envoy-peer-metadata header values.
    #[command(subcommand, arg_required_else_help = true)]
    Header(Header),
}

#[derive(Debug, Subcommand)]
enum Header {
    /// Decode an x-envoy-peer-metadata value (base64, padding optional) and print
    /// {"struct": ..., "peer": ...}.
    Decode {
        /// The header's value, or - to read it from standard input.
        #[arg(value_name = "VALUE")]
        value: String,
    },
    /// Read the same JSON as encode and print the x-envoy-peer-metadata and
    /// x-envoy-peer-metadata-id headers.
    Encode {
        /// The JSON: a file, or - for standard input.
        #[arg(value_name = "FILE", default_value = "-", value_parser = input)]
        input: Input,
    },
}

/// Why a command failed, and so its exit status.
#[derive(Debug)]
enum Failure {
    /// Exit 2: the input cannot be used as asked (bad JSON shape).
    Usage(String),
    /// Exit 1: reading, writing or decoding failed.
    Runtime(String),
    /// Exit 0, quietly: whoever read our output has gone (`| head`).
    ClosedPipe,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Decode { input } => decode(&input),
        Command::Encode { input } => encode(&input),
        Command::Header(Header::Decode { value }) => header_decode(&value),
        Command::Header(Header::Encode { input }) => header_encode(&input),
    };
    match result {
        Ok(()) | Err(Failure::ClosedPipe) => ExitCode::SUCCESS,
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

fn open(from: &Input) -> Result<Box<dyn Read>, Failure> {
    match from {
        Input::Stdin => Ok(Box::new(std::io::stdin().lock())),
        Input::File(path) => std::fs::File::open(path)
            .map(|file| Box::new(file) as Box<dyn Read>)
            .map_err(|e| Failure::Runtime(format!("cannot read {}: {e}", path.display()))),
    }
}

fn read_error(from: &Input, e: &std::io::Error) -> Failure {
    match from {
        Input::Stdin => Failure::Runtime(format!("cannot read stdin: {e}")),
        Input::File(path) => Failure::Runtime(format!("cannot read {}: {e}", path.display())),
    }
}

/// The whole input (JSON documents and header values, which have no length of their own).
fn read_input(from: &Input) -> Result<Vec<u8>, Failure> {
    let mut bytes = Vec::new();
    open(from)?
        .read_to_end(&mut bytes)
        .map_err(|e| read_error(from, &e))?;
    Ok(bytes)
}

fn write_stdout(bytes: &[u8]) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => Failure::ClosedPipe,
            _ => Failure::Runtime(format!("cannot write stdout: {e}")),
        })
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
        ErrorKind::FedAfterEof => "fed_after_eof",
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

/// Reads what the frame needs and no more: the 8-byte header decides (a wrong magic after one
/// byte, an oversized or empty declared length after eight), then the payload it declares, within
/// the decoder's limit. Only behind a whole frame is the rest read, to count it, without keeping it.
fn decode(from: &Input) -> Result<(), Failure> {
    let limits = Limits::default();
    let mut reader = open(from)?;
    let mut bytes = Vec::with_capacity(HEADER_LEN);
    let mut read_to = |bytes: &mut Vec<u8>, len: usize| {
        let more = (len.saturating_sub(bytes.len())) as u64;
        reader
            .by_ref()
            .take(more)
            .read_to_end(bytes)
            .map_err(|e| read_error(from, &e))
    };
    // One byte first: a stream that is not a frame is told from its first byte.
    read_to(&mut bytes, 1)?;
    if parse_frame_header(&bytes, &limits).is_ok() {
        read_to(&mut bytes, HEADER_LEN)?;
    }
    if let Ok(Status::Complete { value, .. }) = parse_frame_header(&bytes, &limits) {
        read_to(&mut bytes, HEADER_LEN + value.data_size as usize)?;
    }
    let trailing = match parse_frame(&bytes, &limits) {
        Ok(Status::Complete { consumed, .. }) => {
            let rest = std::io::copy(&mut reader, &mut std::io::sink())
                .map_err(|e| read_error(from, &e))?;
            (bytes.len() - consumed) as u64 + rest
        }
        _ => 0,
    };
    let mut out = String::new();
    render_decode(&bytes, trailing, &mut out);
    out.push('\n');
    write_stdout(out.as_bytes())
}

/// Writes the `decode` JSON object for `bytes` (the frame, and `trailing` bytes after it).
fn render_decode(bytes: &[u8], trailing: u64, out: &mut String) {
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
            debug_assert_eq!(consumed, bytes.len());
            field(out, false, "trailing_bytes");
            out.push_str(&trailing.to_string());
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
    encode_frame(&metadata, &mut frame).map_err(|e| Failure::Usage(refused(e)))?;
    write_stdout(&frame)
}

/// Why the metadata cannot be sent: what a receiver would refuse.
fn refused(e: peerx::Error) -> String {
    let limits = Limits::default();
    match e.kind() {
        ErrorKind::PayloadTooLarge { limit, declared } => format!(
            "the metadata encodes to a {declared}-byte payload; receivers accept at most {limit}"
        ),
        ErrorKind::TooDeep => format!(
            "the metadata nests structs and lists deeper than receivers accept ({} levels)",
            limits.max_depth
        ),
        _ => format!("cannot encode the metadata: {e}"),
    }
}

// ---------------------------------------------------------------------------------------------
// header

fn header_decode(value: &str) -> Result<(), Failure> {
    let value = match value {
        "-" => read_input(&Input::Stdin)?,
        v => v.as_bytes().to_vec(),
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
    metadata
        .encode_peer_struct_with_limits(&Limits::default(), &mut inner)
        .map_err(|e| Failure::Usage(refused(e)))?;
    let mut text = Vec::new();
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

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
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
