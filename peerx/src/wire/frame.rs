//! The exchange frame: an 8-byte header (magic, payload length, both big-endian `u32`) and a
//! protobuf `Any` wrapping the outer `Struct`.
#![deny(clippy::indexing_slicing)]

use core::num::NonZeroUsize;

use super::pb::{Fields, Wire};
use super::structure::StructView;
use crate::error::{Error, ErrorKind};
use crate::metadata::PeerMetadata;
use crate::{Limits, Status};

/// The first four bytes of every frame, `0x3D230467`, big-endian on the wire.
pub const MAGIC: u32 = 0x3D23_0467;

/// Length of the frame header.
pub const HEADER_LEN: usize = 8;

/// The type URL Envoy writes. Any URL ending in [`STRUCT_TYPE_SUFFIX`] is accepted, as
/// protobuf's `Any::UnpackTo` (and so the reference filter) accepts it.
pub const STRUCT_TYPE_URL: &str = "type.googleapis.com/google.protobuf.Struct";

/// What a type URL must end with to be unpacked as a `Struct`.
pub const STRUCT_TYPE_SUFFIX: &str = "/google.protobuf.Struct";

/// A frame's header: the payload length it declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// `data_size`: payload bytes that follow the header.
    pub data_size: u32,
}

/// A whole, decoded frame borrowing the input.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    data_size: u32,
    payload: &'a [u8],
    type_url: &'a str,
    metadata: PeerMetadata<'a>,
}

impl<'a> Frame<'a> {
    /// The declared (and present) payload length.
    pub const fn data_size(&self) -> u32 {
        self.data_size
    }

    /// The serialized `Any`.
    pub const fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// The `Any`'s type URL (ends in `/google.protobuf.Struct`).
    pub const fn type_url(&self) -> &'a str {
        self.type_url
    }

    /// The metadata the outer `Struct` carries.
    pub const fn metadata(&self) -> PeerMetadata<'a> {
        self.metadata
    }
}

/// Reads a frame header. A buffer shorter than 8 bytes that still matches the magic is
/// `Partial`; one that cannot be the start of a frame fails at once, so a peer that sends three
/// bytes of its own protocol is recognised without waiting for five more.
///
/// # Errors
/// [`ErrorKind::BadMagic`], [`ErrorKind::PayloadTooLarge`] above [`Limits::max_payload`], and
/// [`ErrorKind::EmptyPayload`] for a zero length (an empty `Any` cannot hold a `Struct`).
///
/// # Panics
/// Never.
pub fn parse_frame_header(buf: &[u8], limits: &Limits) -> Result<Status<FrameHeader>, Error> {
    let magic = MAGIC.to_be_bytes();
    let available = buf.len().min(4);
    let (seen, expected) = (
        buf.get(..available).unwrap_or_default(),
        magic.get(..available).unwrap_or_default(),
    );
    if seen != expected {
        let mut found = [0u8; 4];
        found
            .get_mut(..available)
            .unwrap_or_default()
            .copy_from_slice(seen);
        return Err(Error::new(
            ErrorKind::BadMagic {
                found: u32::from_be_bytes(found),
            },
            0,
        ));
    }
    let Some(size) = buf.get(4..HEADER_LEN) else {
        return Ok(Status::Partial {
            needed: NonZeroUsize::new(HEADER_LEN - buf.len()),
        });
    };
    let data_size = u32::from_be_bytes(size.try_into().unwrap_or_default());
    if data_size == 0 {
        return Err(Error::new(ErrorKind::EmptyPayload, 4));
    }
    if data_size > limits.max_payload {
        let kind = ErrorKind::PayloadTooLarge {
            limit: limits.max_payload,
            declared: data_size,
        };
        return Err(Error::new(kind, 4));
    }
    Ok(Status::Complete {
        value: FrameHeader { data_size },
        consumed: HEADER_LEN,
    })
}

/// Reads one whole frame from the start of `buf` and decodes its payload. Bytes after the frame
/// are not looked at (`consumed` tells where they start).
///
/// ```
/// use peerx::{Limits, Metadata, Status, Value, encode_frame, parse_frame};
///
/// let mut me = Metadata::default();
/// me.peer.insert("NAMESPACE".into(), Value::from("default"));
/// let mut bytes = Vec::new();
/// encode_frame(&me, &mut bytes)?;
/// let limits = Limits::default();
/// // A strict prefix is `Partial`, with the exact shortfall once the header is in.
/// let Status::Partial { needed } = parse_frame(&bytes[..10], &limits)? else { panic!() };
/// assert_eq!(needed.map(|n| n.get()), Some(bytes.len() - 10));
/// bytes.extend_from_slice(b"application data");
/// let Status::Complete { value: frame, consumed } = parse_frame(&bytes, &limits)? else { panic!() };
/// assert_eq!(frame.metadata().workload().unwrap().namespace, "default");
/// assert_eq!(&bytes[consumed..], b"application data");
/// # Ok::<(), peerx::Error>(())
/// ```
///
/// # Errors
/// Those of [`parse_frame_header`], then for the payload: [`ErrorKind::Protobuf`] (not an
/// `Any`, or a malformed `Struct`), [`ErrorKind::NotUtf8`], [`ErrorKind::WrongTypeUrl`],
/// [`ErrorKind::TooDeep`]. Offsets are within `buf`.
///
/// # Panics
/// Never.
pub fn parse_frame<'a>(buf: &'a [u8], limits: &Limits) -> Result<Status<Frame<'a>>, Error> {
    let header = match parse_frame_header(buf, limits)? {
        Status::Complete { value, .. } => value,
        Status::Partial { needed } => return Ok(Status::Partial { needed }),
    };
    let end = HEADER_LEN + header.data_size as usize;
    let Some(payload) = buf.get(HEADER_LEN..end) else {
        return Ok(Status::Partial {
            needed: NonZeroUsize::new(end - buf.len()),
        });
    };
    let (type_url, metadata) = decode_payload(payload, HEADER_LEN as u64, limits)?;
    let frame = Frame {
        data_size: header.data_size,
        payload,
        type_url,
        metadata,
    };
    Ok(Status::Complete {
        value: frame,
        consumed: end,
    })
}

/// Decodes a serialized `Any` holding a `Struct` into the type URL and the metadata view.
///
/// # Errors
/// As for [`parse_frame`]'s payload.
pub(crate) fn decode_payload<'a>(
    payload: &'a [u8],
    base: u64,
    limits: &Limits,
) -> Result<(&'a str, PeerMetadata<'a>), Error> {
    let (url, outer) = locate_payload(payload, base, limits)?;
    let url = payload
        .get(url)
        .and_then(|u| core::str::from_utf8(u).ok())
        .unwrap_or_default();
    let outer = StructView::validated(
        payload.get(outer.clone()).unwrap_or_default(),
        base + outer.start as u64,
    );
    Ok((url, PeerMetadata::new(outer)))
}

/// Validates a payload and returns where, within it, the type URL and the outer struct lie, so an
/// owner of the bytes can make views later without validating again.
pub(crate) fn locate_payload(
    payload: &[u8],
    base: u64,
    limits: &Limits,
) -> Result<(core::ops::Range<usize>, core::ops::Range<usize>), Error> {
    let range = |part: &[u8], at: u64| {
        let start = (at - base) as usize;
        start..start + part.len()
    };
    let mut type_url: (&[u8], u64) = (&[], base);
    let mut value: (&[u8], u64) = (&[], base);
    let mut fields = Fields::new(payload, base);
    while let Some((number, wire, at)) = fields.next_field()? {
        match (number, wire) {
            // Protobuf checks every occurrence of the string field as it parses `Any`.
            (1, Wire::Bytes(url)) if core::str::from_utf8(url).is_err() => {
                return Err(Error::new(ErrorKind::NotUtf8, at));
            }
            (1, Wire::Bytes(url)) => type_url = (url, at),
            (2, Wire::Bytes(v)) => value = (v, at),
            (1 | 2, _) => return Err(Error::new(ErrorKind::Protobuf, at)),
            _ => {}
        }
    }
    let url = core::str::from_utf8(type_url.0).unwrap_or_default();
    if !url.ends_with(STRUCT_TYPE_SUFFIX) {
        return Err(Error::new(ErrorKind::WrongTypeUrl, type_url.1));
    }
    StructView::parse(value.0, value.1, limits)?;
    Ok((range(url.as_bytes(), type_url.1), range(value.0, value.1)))
}
