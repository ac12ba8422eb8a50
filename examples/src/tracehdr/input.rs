//! Headers on standard input: `Name: value` lines (split at the first `:`, one optional space
//! after it stripped, the rest kept byte-exact; repeated names allowed; blank lines ignored; CRLF
//! tolerated), or a JSON array of `[name, value]` pairs.

use std::io::Read;

use serde_json::Value;

/// Owned header fields, in order.
pub type Headers = Vec<(Vec<u8>, Vec<u8>)>;

/// The most standard input read: one request's headers, with room for a hostile one.
pub const MAX_INPUT: u64 = 16 << 20;

/// Why the input could not be used.
#[derive(Debug)]
pub enum InputError {
    /// Reading failed.
    Read(std::io::Error),
    /// More than [`MAX_INPUT`] bytes.
    TooLarge,
    /// Not headers in the expected form.
    Unusable(String),
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Read(e) => write!(f, "cannot read standard input: {e}"),
            Self::TooLarge => write!(f, "standard input is over {} MiB", MAX_INPUT >> 20),
            Self::Unusable(why) => write!(f, "unusable input: {why}"),
        }
    }
}

/// Reads `input` (at most [`MAX_INPUT`] bytes) and parses it as lines or, with `json`, as JSON.
///
/// # Errors
/// When reading fails, the input is too large, or it is not headers.
pub fn read_headers(input: impl Read, json: bool) -> Result<Headers, InputError> {
    let mut bytes = Vec::new();
    input
        .take(MAX_INPUT + 1)
        .read_to_end(&mut bytes)
        .map_err(InputError::Read)?;
    if bytes.len() as u64 > MAX_INPUT {
        return Err(InputError::TooLarge);
    }
    if json {
        parse_json_headers(&bytes)
    } else {
        parse_header_lines(&bytes)
    }
    .map_err(InputError::Unusable)
}

/// The headers as the `(name, value)` slices `tracectx` reads.
pub fn borrow(headers: &Headers) -> Vec<(&[u8], &[u8])> {
    headers
        .iter()
        .map(|(n, v)| (n.as_slice(), v.as_slice()))
        .collect()
}

/// `bytes` without ASCII whitespace at either end.
pub fn trim_ascii(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

/// `Name: value` lines: split at the first `:`, one optional space after it stripped, the value
/// otherwise byte-exact; blank lines ignored; a trailing CR dropped.
///
/// # Errors
/// A line without `:` or with an empty name.
pub fn parse_header_lines(input: &[u8]) -> Result<Headers, String> {
    let mut headers = Vec::new();
    for (n, line) in input.split(|b| *b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            return Err(format!("line {} has no ':'", n + 1));
        };
        let (name, value) = line.split_at(colon);
        let name = trim_ascii(name);
        if name.is_empty() {
            return Err(format!("line {} has an empty name", n + 1));
        }
        let value = value.get(1..).unwrap_or_default();
        let value = value.strip_prefix(b" ").unwrap_or(value);
        headers.push((name.to_vec(), value.to_vec()));
    }
    Ok(headers)
}

/// A JSON array of `[name, value]` string pairs, kept byte-exact.
///
/// # Errors
/// Not JSON, or not an array of string pairs.
pub fn parse_json_headers(input: &[u8]) -> Result<Headers, String> {
    let doc: Value = serde_json::from_slice(input).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Array(pairs) = doc else {
        return Err("expected a JSON array of [name, value] pairs".to_owned());
    };
    pairs
        .iter()
        .enumerate()
        .map(|(i, pair)| match pair.as_array().map(Vec::as_slice) {
            Some([Value::String(n), Value::String(v)]) => {
                Ok((n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            }
            _ => Err(format!(
                "element {i} is not a [name, value] pair of strings"
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_values_byte_exact() {
        let h = parse_header_lines(b"a:b\r\n\r\nB:  c \n   \nc: d:e\n").unwrap_or_default();
        assert_eq!(
            h,
            vec![
                (b"a".to_vec(), b"b".to_vec()),
                (b"B".to_vec(), b" c ".to_vec()),
                (b"c".to_vec(), b"d:e".to_vec()),
            ]
        );
        assert!(parse_header_lines(b"no colon\n").is_err());
    }

    #[test]
    fn input_is_bounded() {
        let big = std::io::repeat(b'x').take(MAX_INPUT + 10);
        assert!(matches!(
            read_headers(big, false),
            Err(InputError::TooLarge)
        ));
    }
}
