//! W3C Trace Context: `traceparent` and `tracestate`.
#![deny(clippy::indexing_slicing)]

use crate::carrier::Carrier;
use crate::config::{Config, KeyGrammar};
use crate::error::{Error, ErrorKind, Field};
use crate::ids::{SpanId, TraceFlags, TraceId, bad_length, decode_hex, encode_hex};

/// Length of a version-00 `traceparent`.
pub const TRACEPARENT_LEN: usize = 55;

/// Most members a `tracestate` may carry.
pub const TRACESTATE_MAX_MEMBERS: usize = 32;

/// A parsed `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct TraceParent {
    /// The version received (re-emitted as `00`).
    pub version: u8,
    /// The trace id (always 128 bits here).
    pub trace_id: TraceId,
    /// The caller's span id.
    pub parent_id: SpanId,
    /// Flags as received (unknown bits kept; zeroed on output).
    pub flags: TraceFlags,
}

impl TraceParent {
    /// A version-00 traceparent.
    pub const fn new(trace_id: TraceId, parent_id: SpanId, flags: TraceFlags) -> Self {
        Self {
            version: 0,
            trace_id: trace_id.widened(),
            parent_id,
            flags,
        }
    }
}

/// OWS as RFC 9110 defines it: spaces and horizontal tabs.
pub(crate) fn trim_ows(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

/// Number of leading OWS bytes.
pub(crate) fn ows_prefix(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .position(|b| *b != b' ' && *b != b'\t')
        .unwrap_or(bytes.len())
}

/// Parses one `traceparent` value (surrounding OWS allowed).
///
/// Version `00` must be exactly 55 characters. A higher version is read at the same offsets and
/// may carry more after a `-`; `ff` is invalid. Ids must be lowercase hex and non-zero.
///
/// ```
/// use tracectx::{Config, TraceId, parse_traceparent};
///
/// let tp = parse_traceparent(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", &Config::default())?;
/// assert_eq!(tp.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert_eq!(tp.parent_id.to_string(), "00f067aa0ba902b7");
/// assert!(tp.flags.is_sampled());
/// # Ok::<(), tracectx::Error>(())
/// ```
///
/// # Errors
/// A typed reason naming the field and the byte.
///
/// # Panics
/// Never.
pub fn parse_traceparent(value: &[u8], config: &Config) -> Result<TraceParent, Error> {
    let v = trim_ows(value);
    let lead = ows_prefix(value);
    let err = |kind, at: usize| Error::at(kind, lead + at);
    let dash = |at: usize| -> Result<(), Error> {
        if v.get(at) == Some(&b'-') {
            Ok(())
        } else {
            Err(err(
                ErrorKind::InvalidByte {
                    field: Field::TraceParent,
                },
                at,
            ))
        }
    };
    if v.len() < TRACEPARENT_LEN {
        return Err(bad_length(
            Field::TraceParent,
            TRACEPARENT_LEN as u16,
            v.len(),
        ));
    }
    let mut version = [0u8; 1];
    // The version is always lowercase hex, whatever the leniency for ids.
    decode_hex(
        v.get(..2).unwrap_or_default(),
        &mut version,
        Field::Version,
        &Config::default(),
    )
    .map_err(|e| err(e.kind(), e.offset() as usize))?;
    let version = version[0];
    if version == 0xFF {
        return Err(err(
            ErrorKind::InvalidByte {
                field: Field::Version,
            },
            0,
        ));
    }
    dash(2)?;
    let trace_id = TraceId::parse(v.get(3..35).unwrap_or_default(), config)
        .map_err(|e| err(e.kind(), 3 + e.offset() as usize))?;
    dash(35)?;
    let parent_id = SpanId::parse(v.get(36..52).unwrap_or_default(), Field::SpanId, config)
        .map_err(|e| err(e.kind(), 36 + e.offset() as usize))?;
    dash(52)?;
    let mut flags = [0u8; 1];
    decode_hex(
        v.get(53..55).unwrap_or_default(),
        &mut flags,
        Field::Flags,
        &Config::default(),
    )
    .map_err(|e| err(e.kind(), 53 + e.offset() as usize))?;
    if v.len() > TRACEPARENT_LEN && (version == 0 || v.get(TRACEPARENT_LEN) != Some(&b'-')) {
        return Err(bad_length(
            Field::TraceParent,
            TRACEPARENT_LEN as u16,
            v.len(),
        ));
    }
    Ok(TraceParent {
        version,
        trace_id,
        parent_id,
        flags: TraceFlags(flags[0]),
    })
}

/// Writes `00-<trace-id>-<parent-id>-<flags>` (defined flag bits only) and returns it.
pub fn write_traceparent<'o>(tp: &TraceParent, out: &'o mut [u8; TRACEPARENT_LEN]) -> &'o str {
    out.fill(b'-');
    let bytes = tp.trace_id.bytes();
    if let Some(o) = out.get_mut(..2) {
        o.copy_from_slice(b"00");
    }
    encode_hex(&bytes, out.get_mut(3..35).unwrap_or_default());
    encode_hex(&tp.parent_id.0, out.get_mut(36..52).unwrap_or_default());
    encode_hex(
        &[tp.flags.defined().0],
        out.get_mut(53..55).unwrap_or_default(),
    );
    core::str::from_utf8(out).unwrap_or_default()
}

/// Reads `traceparent` from the carrier: `Ok(None)` when absent; more than one field is invalid
/// (the W3C test suite expects a restart).
///
/// # Errors
/// [`ErrorKind::Duplicate`] and those of [`parse_traceparent`].
pub fn extract_traceparent<C: Carrier + ?Sized>(
    carrier: &C,
    config: &Config,
) -> Result<Option<TraceParent>, Error> {
    let mut values = carrier.get_all("traceparent");
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Error::at(
            ErrorKind::Duplicate {
                field: Field::TraceParent,
            },
            0,
        ));
    }
    parse_traceparent(first, config).map(Some)
}

/// A `tracestate` list: up to 32 `(key, value)` members borrowing the header bytes (or the
/// caller's, for inserted members), leftmost first. Editing never allocates.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TraceState<'a> {
    members: [(&'a [u8], &'a [u8]); TRACESTATE_MAX_MEMBERS],
    len: usize,
}

impl Default for TraceState<'_> {
    fn default() -> Self {
        Self {
            members: [(&[], &[]); TRACESTATE_MAX_MEMBERS],
            len: 0,
        }
    }
}

impl core::fmt::Debug for TraceState<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut list = f.debug_list();
        for (k, v) in self.iter() {
            list.entry(&(
                core::str::from_utf8(k).unwrap_or("?"),
                core::str::from_utf8(v).unwrap_or("?"),
            ));
        }
        list.finish()
    }
}

impl<'a> TraceState<'a> {
    /// Members, leftmost (most recent) first.
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + '_ {
        self.members.iter().take(self.len).copied()
    }

    /// Number of members.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&'a [u8]> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Parses and appends the members of one header field (after those already read).
    ///
    /// # Errors
    /// An invalid key or value, or more than 32 members; the list is left as it was.
    pub fn push_field(&mut self, field: &'a [u8], config: &Config) -> Result<(), Error> {
        let before = self.len;
        let mut at = 0;
        for raw in field.split(|b| *b == b',') {
            let member = trim_ows(raw);
            let member_at = at + ows_prefix(raw);
            at += raw.len() + 1;
            if member.is_empty() {
                continue;
            }
            let result = parse_member(member, config.tracestate_keys)
                .map_err(|e| Error::new(e.kind(), e.offset() + member_at as u64));
            let (key, value) = match result {
                Ok(kv) => kv,
                Err(e) => {
                    self.len = before;
                    return Err(e);
                }
            };
            let Some(slot) = self.members.get_mut(self.len) else {
                self.len = before;
                let kind = ErrorKind::TooManyMembers {
                    field: Field::TraceState,
                    limit: TRACESTATE_MAX_MEMBERS as u16,
                };
                return Err(Error::at(kind, member_at));
            };
            *slot = (key, value);
            self.len += 1;
        }
        Ok(())
    }

    /// Inserts or updates `key` at the front (the spec's mutation rule); the previous entry for the
    /// key is removed; when 32 members are already there, the rightmost is dropped.
    ///
    /// # Errors
    /// When `key` or `value` breaks the grammar (nothing changes then).
    pub fn insert(&mut self, key: &'a [u8], value: &'a [u8], config: &Config) -> Result<(), Error> {
        check_key(key, config.tracestate_keys)?;
        check_value(value).map_err(|e| Error::new(e.kind(), e.offset() + key.len() as u64 + 1))?;
        self.remove(key);
        let keep = self.len.min(TRACESTATE_MAX_MEMBERS - 1);
        self.members.copy_within(0..keep, 1);
        if let Some(first) = self.members.first_mut() {
            *first = (key, value);
        }
        self.len = keep + 1;
        Ok(())
    }

    /// Removes every entry of `key` (a received list may repeat a key).
    pub fn remove(&mut self, key: &[u8]) {
        let mut kept = 0;
        for i in 0..self.len {
            let Some(&member) = self.members.get(i) else {
                break;
            };
            if member.0 != key {
                if let Some(slot) = self.members.get_mut(kept) {
                    *slot = member;
                }
                kept += 1;
            }
        }
        self.len = kept;
    }

    /// Writes `k=v,k=v` into `out`, keeping at most `max_len` bytes: whole members only, dropping
    /// first those longer than 128 bytes, then from the right, as the spec says, and returns the value
    /// written (empty when no member fits).
    pub fn write<'o>(&self, out: &'o mut [u8], max_len: usize) -> &'o str {
        let member_len = |(k, v): (&[u8], &[u8])| k.len() + 1 + v.len();
        let total = |skip_long: bool, count: usize| -> usize {
            let kept = self
                .iter()
                .take(count)
                .filter(|m| !(skip_long && member_len(*m) > 128));
            kept.map(|m| member_len(m) + 1)
                .sum::<usize>()
                .saturating_sub(1)
        };
        let limit = max_len.min(out.len());
        let skip_long = total(false, self.len) > limit;
        let mut count = self.len;
        while count > 0 && total(skip_long, count) > limit {
            count -= 1;
        }
        let mut at = 0;
        for member in self
            .iter()
            .take(count)
            .filter(|m| !(skip_long && member_len(*m) > 128))
        {
            let (k, v) = member;
            if at > 0 {
                put(out, &mut at, b",");
            }
            put(out, &mut at, k);
            put(out, &mut at, b"=");
            put(out, &mut at, v);
        }
        // Members were validated against the W3C grammar: printable ASCII.
        core::str::from_utf8(out.get(..at).unwrap_or_default()).unwrap_or_default()
    }
}

fn put(out: &mut [u8], at: &mut usize, bytes: &[u8]) {
    if let Some(dst) = out.get_mut(*at..*at + bytes.len()) {
        dst.copy_from_slice(bytes);
        *at += bytes.len();
    }
}

/// Reads every `tracestate` field after a valid traceparent. `Ok(None)` when there is none.
///
/// # Errors
/// The first invalid member or the 33rd member: the whole list is then to be discarded (the
/// traceparent stays valid).
pub fn extract_tracestate<'a, C: Carrier + ?Sized>(
    carrier: &'a C,
    config: &Config,
) -> Result<Option<TraceState<'a>>, Error> {
    let mut state = TraceState::default();
    Ok(extract_tracestate_into(carrier, config, &mut state)?.then_some(state))
}

/// [`extract_tracestate`] into a list the caller owns (cleared first), sparing the copies of a
/// 1 KiB value; returns whether any `tracestate` field was present.
///
/// # Errors
/// As for [`extract_tracestate`]; the list is left empty then.
pub fn extract_tracestate_into<'a, C: Carrier + ?Sized>(
    carrier: &'a C,
    config: &Config,
    state: &mut TraceState<'a>,
) -> Result<bool, Error> {
    state.len = 0;
    let mut any = false;
    for field in carrier.get_all("tracestate") {
        any = true;
        if let Err(e) = state.push_field(field, config) {
            state.len = 0;
            return Err(e);
        }
    }
    Ok(any)
}

fn parse_member(member: &[u8], grammar: KeyGrammar) -> Result<(&[u8], &[u8]), Error> {
    let eq = member.iter().position(|b| *b == b'=').ok_or_else(|| {
        Error::at(
            ErrorKind::Missing {
                field: Field::TraceStateValue,
            },
            member.len(),
        )
    })?;
    let (key, value) = (
        member.get(..eq).unwrap_or_default(),
        member.get(eq + 1..).unwrap_or_default(),
    );
    check_key(key, grammar)?;
    check_value(value).map_err(|e| Error::new(e.kind(), e.offset() + eq as u64 + 1))?;
    Ok((key, value))
}

const fn key_char(b: u8) -> bool {
    matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/')
}

fn check_key(key: &[u8], grammar: KeyGrammar) -> Result<(), Error> {
    let bad = |at: usize| {
        Error::at(
            ErrorKind::InvalidByte {
                field: Field::TraceStateKey,
            },
            at,
        )
    };
    let Some(&first) = key.first() else {
        return Err(Error::at(
            ErrorKind::Missing {
                field: Field::TraceStateKey,
            },
            0,
        ));
    };
    match grammar {
        KeyGrammar::Level3 => {
            if key.len() > 256 {
                return Err(bad_length(Field::TraceStateKey, 256, key.len()));
            }
            if !matches!(first, b'a'..=b'z' | b'0'..=b'9') {
                return Err(bad(0));
            }
            match key.iter().position(|&b| !(key_char(b) || b == b'@')) {
                Some(i) => Err(bad(i)),
                None => Ok(()),
            }
        }
        KeyGrammar::Level1 => match key.iter().position(|b| *b == b'@') {
            None => {
                if key.len() > 256 {
                    return Err(bad_length(Field::TraceStateKey, 256, key.len()));
                }
                if !first.is_ascii_lowercase() {
                    return Err(bad(0));
                }
                key.iter()
                    .position(|&b| !key_char(b))
                    .map_or(Ok(()), |i| Err(bad(i)))
            }
            Some(at) => {
                let (tenant, system) = (
                    key.get(..at).unwrap_or_default(),
                    key.get(at + 1..).unwrap_or_default(),
                );
                let tenant_ok = !tenant.is_empty()
                    && tenant.len() <= 241
                    && matches!(first, b'a'..=b'z' | b'0'..=b'9')
                    && tenant.iter().all(|&b| key_char(b));
                let system_ok = !system.is_empty()
                    && system.len() <= 14
                    && system.first().is_some_and(u8::is_ascii_lowercase)
                    && system.iter().all(|&b| key_char(b));
                if tenant_ok && system_ok {
                    Ok(())
                } else {
                    Err(bad(at))
                }
            }
        },
    }
}

/// A value: 1–256 printable ASCII except `,` and `=`, not ending in a space.
fn check_value(value: &[u8]) -> Result<(), Error> {
    let bad = |at: usize| {
        Error::at(
            ErrorKind::InvalidByte {
                field: Field::TraceStateValue,
            },
            at,
        )
    };
    if value.is_empty() {
        return Err(Error::at(
            ErrorKind::Missing {
                field: Field::TraceStateValue,
            },
            0,
        ));
    }
    if value.len() > 256 {
        return Err(bad_length(Field::TraceStateValue, 256, value.len()));
    }
    if let Some(i) = value
        .iter()
        .position(|&b| !(0x20..=0x7E).contains(&b) || b == b',' || b == b'=')
    {
        return Err(bad(i));
    }
    if value.last() == Some(&b' ') {
        return Err(bad(value.len() - 1));
    }
    Ok(())
}
