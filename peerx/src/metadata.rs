//! What a frame carries: the outer `Struct` with the peer's workload metadata and node id, the
//! typed workload view the reference derives from it, and an owned form for building frames.

use alloc::borrow::ToOwned;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use bytes::BufMut;

use crate::Limits;
use crate::error::{Error, ErrorKind};
use crate::wire::frame::{HEADER_LEN, MAGIC, STRUCT_TYPE_URL};
use crate::wire::pb::{put_varint, varint_len};
use crate::wire::structure::{StructView, ValueView};

/// Outer key holding the peer's workload metadata (a `struct_value`).
pub const PEER_METADATA_KEY: &str = "x-envoy-peer-metadata";
/// Outer key holding the peer's Envoy node id (a `string_value`).
pub const PEER_METADATA_ID_KEY: &str = "x-envoy-peer-metadata-id";

/// The outer `Struct` of a frame, borrowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeerMetadata<'a> {
    outer: StructView<'a>,
}

impl<'a> PeerMetadata<'a> {
    pub(crate) const fn new(outer: StructView<'a>) -> Self {
        Self { outer }
    }

    /// The whole outer struct, unknown keys included.
    pub const fn outer(&self) -> StructView<'a> {
        self.outer
    }

    /// The peer's workload metadata (`x-envoy-peer-metadata`), when present as a struct. A frame
    /// without it completes the exchange with no peer, as the reference does.
    pub fn peer(&self) -> Option<StructView<'a>> {
        self.outer.get(PEER_METADATA_KEY)?.as_struct()
    }

    /// The peer's node id (`x-envoy-peer-metadata-id`), when present as a string.
    pub fn id(&self) -> Option<&'a str> {
        self.outer.get_str(PEER_METADATA_ID_KEY)
    }

    /// The typed workload view, when the frame names a peer.
    pub fn workload(&self) -> Option<Workload<'a>> {
        self.peer().map(Workload::from_struct)
    }
}

/// The workload type parsed from `OWNER`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WorkloadType {
    /// `…/pods/<name>`.
    Pod,
    /// `…/deployments/<name>`.
    Deployment,
    /// `…/jobs/<name>`.
    Job,
    /// `…/cronjobs/<name>`.
    CronJob,
    /// Anything else, or no `OWNER`.
    Unknown,
}

impl WorkloadType {
    /// The lowercase name Istio's stats use.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pod => "pod",
            Self::Deployment => "deployment",
            Self::Job => "job",
            Self::CronJob => "cronjob",
            Self::Unknown => "unknown",
        }
    }
}

/// The workload view Istio's receiver derives from the inner struct (1.30+ rules). Keys that are
/// absent or not strings read as `""`, as in the reference.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Workload<'a> {
    /// `NAME`: the pod (instance) name.
    pub instance_name: &'a str,
    /// `NAMESPACE`.
    pub namespace: &'a str,
    /// `WORKLOAD_NAME`.
    pub workload_name: &'a str,
    /// `CLUSTER_ID`.
    pub cluster: &'a str,
    /// `IDENTITY` (1.30+ senders).
    pub identity: &'a str,
    /// `REGION`.
    pub region: &'a str,
    /// `AVAILABILITY_ZONE`.
    pub zone: &'a str,
    /// `LABELS["service.istio.io/canonical-name"]`.
    pub canonical_name: &'a str,
    /// `LABELS["service.istio.io/canonical-revision"]`.
    pub canonical_revision: &'a str,
    /// `LABELS["app.kubernetes.io/name"]` when present, else `LABELS["app"]`.
    pub app_name: &'a str,
    /// `LABELS["app.kubernetes.io/version"]` when present, else `LABELS["version"]`.
    pub app_version: &'a str,
    /// `OWNER`, e.g. `kubernetes://apis/apps/v1/namespaces/default/deployments/productpage-v1`.
    pub owner: &'a str,
    /// The workload type parsed from `OWNER`.
    pub workload_type: WorkloadType,
    /// `LABELS`, for labels beyond the well-known ones.
    pub labels: StructView<'a>,
    /// The whole inner struct, unknown keys included.
    pub raw: StructView<'a>,
}

impl<'a> Workload<'a> {
    /// Derives the view from an inner struct (`x-envoy-peer-metadata`, or the HTTP header's), in
    /// one walk over its entries and one over its labels; a repeated key's last entry wins, as in a
    /// protobuf map.
    pub fn from_struct(inner: StructView<'a>) -> Self {
        let mut w = Self {
            instance_name: "",
            namespace: "",
            workload_name: "",
            cluster: "",
            identity: "",
            region: "",
            zone: "",
            canonical_name: "",
            canonical_revision: "",
            app_name: "",
            app_version: "",
            owner: "",
            workload_type: WorkloadType::Unknown,
            labels: StructView::empty(),
            raw: inner,
        };
        // Keys are matched as bytes, and only the values used are decoded.
        let text =
            |e: &crate::wire::structure::RawEntry<'a>| e.value().as_str().unwrap_or_default();
        for entry in inner.raw_entries() {
            match entry.key {
                b"NAME" => w.instance_name = text(&entry),
                b"NAMESPACE" => w.namespace = text(&entry),
                b"WORKLOAD_NAME" => w.workload_name = text(&entry),
                b"CLUSTER_ID" => w.cluster = text(&entry),
                b"IDENTITY" => w.identity = text(&entry),
                b"REGION" => w.region = text(&entry),
                b"AVAILABILITY_ZONE" => w.zone = text(&entry),
                b"OWNER" => w.owner = text(&entry),
                b"LABELS" => w.labels = entry.value().as_struct().unwrap_or(StructView::empty()),
                _ => {}
            }
        }
        // A qualified label wins whenever it is present, even empty or not a string.
        let (mut app, mut version, mut app_q, mut version_q) = (None, None, None, None);
        for entry in w.labels.raw_entries() {
            match entry.key {
                b"service.istio.io/canonical-name" => w.canonical_name = text(&entry),
                b"service.istio.io/canonical-revision" => w.canonical_revision = text(&entry),
                b"app.kubernetes.io/name" => app_q = Some(text(&entry)),
                b"app.kubernetes.io/version" => version_q = Some(text(&entry)),
                b"app" => app = Some(text(&entry)),
                b"version" => version = Some(text(&entry)),
                _ => {}
            }
        }
        w.app_name = app_q.or(app).unwrap_or_default();
        w.app_version = version_q.or(version).unwrap_or_default();
        w.workload_type = workload_type(w.owner, w.workload_name);
        w
    }

    /// String labels named in `keys` (Istio's `additional_labels`), in `keys` order.
    pub fn additional_labels<'k>(
        &self,
        keys: &'k [&'k str],
    ) -> impl Iterator<Item = (&'k str, &'a str)> + 'k
    where
        'a: 'k,
    {
        let labels = self.labels;
        keys.iter()
            .filter_map(move |k| Some((*k, labels.get(k)?.as_str().unwrap_or_default())))
    }
}

/// Istio's parse: drop `len(workload) + 2` trailing characters (`s/<workload>`), then take the
/// text after the last `/`.
fn workload_type(owner: &str, workload: &str) -> WorkloadType {
    let Some(head) = owner
        .len()
        .checked_sub(workload.len() + 2)
        .filter(|n| *n > 0)
        .and_then(|n| owner.get(..n))
    else {
        return WorkloadType::Unknown;
    };
    match head.rsplit_once('/').map(|(_, kind)| kind) {
        Some("pod") => WorkloadType::Pod,
        Some("deployment") => WorkloadType::Deployment,
        Some("job") => WorkloadType::Job,
        Some("cronjob") => WorkloadType::CronJob,
        _ => WorkloadType::Unknown,
    }
}

/// An owned `google.protobuf.Value`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// `null_value`.
    Null,
    /// `number_value`.
    Number(f64),
    /// `string_value`.
    String(String),
    /// `bool_value`.
    Bool(bool),
    /// `struct_value`; keys in bytewise order, as Envoy serializes them.
    Struct(BTreeMap<String, Self>),
    /// `list_value`.
    List(Vec<Self>),
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Self::String(s.to_owned())
    }
}

impl Value {
    /// Copies a borrowed value (duplicate keys: the last wins).
    pub fn from_view(view: ValueView<'_>) -> Self {
        match view {
            ValueView::Null => Self::Null,
            ValueView::Number(n) => Self::Number(n),
            ValueView::String(s) => Self::String(s.to_owned()),
            ValueView::Bool(b) => Self::Bool(b),
            ValueView::Struct(s) => Self::Struct(struct_from_view(s)),
            ValueView::List(l) => Self::List(l.iter().map(Self::from_view).collect()),
        }
    }
}

/// Copies a borrowed struct into an owned map.
pub fn struct_from_view(view: StructView<'_>) -> BTreeMap<String, Value> {
    view.iter()
        .map(|(k, v)| (k.to_owned(), Value::from_view(v)))
        .collect()
}

/// Metadata to send: the inner workload struct and the node id.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct Metadata {
    /// The workload metadata (`x-envoy-peer-metadata`): `NAME`, `NAMESPACE`, `LABELS`, ….
    pub peer: BTreeMap<String, Value>,
    /// The node id (`x-envoy-peer-metadata-id`), written only when non-empty, as Envoy does.
    pub id: Option<String>,
}

impl Metadata {
    /// Metadata with these workload keys and node id.
    pub fn new(peer: BTreeMap<String, Value>, id: Option<String>) -> Self {
        Self { peer, id }
    }

    /// Copies received metadata into owned form. When the frame named no peer
    /// ([`PeerMetadata::peer`] is `None`), [`Metadata::peer`] is an empty map; the node id is
    /// kept either way.
    pub fn from_view(view: &PeerMetadata<'_>) -> Self {
        Self {
            peer: view.peer().map(struct_from_view).unwrap_or_default(),
            id: view.id().map(ToOwned::to_owned),
        }
    }

    fn id(&self) -> Option<&str> {
        self.id.as_deref().filter(|id| !id.is_empty())
    }

    /// Length of the outer struct's serialization.
    fn outer_len(&self) -> usize {
        let mut len = entry_len(PEER_METADATA_KEY, &StructRef::Map(&self.peer));
        if let Some(id) = self.id() {
            len += entry_len(PEER_METADATA_ID_KEY, &StructRef::Str(id));
        }
        len
    }

    /// Writes the outer struct deterministically: keys in plain bytewise order (a prefix first,
    /// so `x-envoy-peer-metadata` before `x-envoy-peer-metadata-id`), as Envoy's C++ does.
    fn write_outer(&self, out: &mut impl BufMut) {
        write_entry(out, PEER_METADATA_KEY, &StructRef::Map(&self.peer));
        if let Some(id) = self.id() {
            write_entry(out, PEER_METADATA_ID_KEY, &StructRef::Str(id));
        }
    }

    /// The inner struct serialized deterministically (the HTTP header's payload). Nothing is
    /// checked: [`Metadata::encode_peer_struct_with_limits`] refuses what a receiver would.
    pub fn encode_peer_struct(&self, out: &mut impl BufMut) -> usize {
        let len = struct_len(&self.peer);
        write_struct(out, &self.peer);
        len
    }

    /// [`Metadata::encode_peer_struct`], refusing a struct that
    /// [`decode_peer_metadata_header`](crate::decode_peer_metadata_header) would reject under
    /// `limits`: nested deeper than [`Limits::max_depth`], counting the inner struct itself as
    /// the top level, as the header's receiver does.
    ///
    /// # Errors
    /// [`ErrorKind::TooDeep`] (offset 0; nothing is written then).
    ///
    /// # Panics
    /// Never.
    pub fn encode_peer_struct_with_limits(
        &self,
        limits: &Limits,
        out: &mut impl BufMut,
    ) -> Result<usize, Error> {
        if !map_within(&self.peer, limits.max_depth) {
            return Err(Error::new(ErrorKind::TooDeep, 0));
        }
        Ok(self.encode_peer_struct(out))
    }
}

/// Writes a whole frame, byte-identical to Envoy's deterministic serialization, and returns its
/// length. The frame is refused when a receiver with the default [`Limits`] would refuse it; see
/// [`encode_frame_with_limits`] for other limits.
///
/// # Errors
/// Those of [`encode_frame_with_limits`] under [`Limits::default`].
///
/// # Panics
/// Never.
pub fn encode_frame(metadata: &Metadata, out: &mut impl BufMut) -> Result<usize, Error> {
    encode_frame_with_limits(metadata, &Limits::default(), out)
}

/// Writes a whole frame, as [`encode_frame`], refusing one that [`parse_frame`](crate::parse_frame)
/// (and so an [`Exchange`](crate::Exchange)) would reject under `limits`: a frame we could write
/// but our peer could not read would only make every connection fail. Nothing is written when an
/// error is returned.
///
/// # Errors
/// - [`ErrorKind::TooDeep`] (offset 0) when structs and lists nest deeper than
///   [`Limits::max_depth`] (the outer struct is the top level, the workload struct the first);
/// - [`ErrorKind::PayloadTooLarge`] (offset 4, where the header's length lies) when the payload
///   would exceed [`Limits::max_payload`] (`declared` is its size, saturated at `u32::MAX`);
/// - [`ErrorKind::BufferTooSmall`] when `out` has less room than the frame needs.
///
/// # Panics
/// Never.
pub fn encode_frame_with_limits(
    metadata: &Metadata,
    limits: &Limits,
    out: &mut impl BufMut,
) -> Result<usize, Error> {
    // The outer struct is the top level; the workload struct, one of its values, the first.
    let Some(depth_left) = limits.max_depth.checked_sub(1) else {
        return Err(Error::new(ErrorKind::TooDeep, 0));
    };
    if !map_within(&metadata.peer, depth_left) {
        return Err(Error::new(ErrorKind::TooDeep, 0));
    }
    let value_len = metadata.outer_len();
    let any_len = field_len(1, STRUCT_TYPE_URL.len()) + field_len(2, value_len);
    let declared = u32::try_from(any_len).unwrap_or(u32::MAX);
    if any_len > limits.max_payload as usize {
        let kind = ErrorKind::PayloadTooLarge {
            limit: limits.max_payload,
            declared,
        };
        return Err(Error::new(kind, 4));
    }
    let total = HEADER_LEN + any_len;
    if out.remaining_mut() < total {
        let kind = ErrorKind::BufferTooSmall { needed: total };
        return Err(Error::new(kind, 0));
    }
    out.put_u32(MAGIC);
    out.put_u32(declared);
    put_bytes_field(out, 1, STRUCT_TYPE_URL.as_bytes());
    put_tag(out, 2, 2);
    put_varint(out, value_len as u64);
    metadata.write_outer(out);
    Ok(total)
}

/// Whether the values of `map` nest at most `depth_left` structs and lists deep (the receiver's
/// rule: every struct or list value below this map takes one level). Recurses at most
/// `depth_left + 1` levels, however deep the value is.
fn map_within(map: &BTreeMap<String, Value>, depth_left: u16) -> bool {
    map.values().all(|v| value_within(v, depth_left))
}

fn value_within(value: &Value, depth_left: u16) -> bool {
    match value {
        Value::Struct(m) => depth_left
            .checked_sub(1)
            .is_some_and(|left| map_within(m, left)),
        Value::List(items) => depth_left
            .checked_sub(1)
            .is_some_and(|left| items.iter().all(|v| value_within(v, left))),
        Value::Null | Value::Number(_) | Value::String(_) | Value::Bool(_) => true,
    }
}

/// A value to write without building an owned [`Value`] for the outer struct's two entries.
enum StructRef<'v> {
    Map(&'v BTreeMap<String, Value>),
    Str(&'v str),
}

const fn field_len(number: u32, len: usize) -> usize {
    varint_len((number as u64) << 3) + varint_len(len as u64) + len
}

fn put_tag(out: &mut impl BufMut, number: u32, wire: u8) {
    put_varint(out, (u64::from(number) << 3) | u64::from(wire));
}

fn put_bytes_field(out: &mut impl BufMut, number: u32, bytes: &[u8]) {
    put_tag(out, number, 2);
    put_varint(out, bytes.len() as u64);
    out.put_slice(bytes);
}

fn value_body_len(value: &StructRef<'_>) -> usize {
    match value {
        StructRef::Map(m) => field_len(5, struct_len(m)),
        StructRef::Str(s) => field_len(3, s.len()),
    }
}

/// A map entry always carries its key (field 1) and value (field 2), as C++ writes them.
fn entry_len(key: &str, value: &StructRef<'_>) -> usize {
    let body = field_len(1, key.len()) + field_len(2, value_body_len(value));
    field_len(1, body)
}

fn write_entry(out: &mut impl BufMut, key: &str, value: &StructRef<'_>) {
    let body = field_len(1, key.len()) + field_len(2, value_body_len(value));
    put_tag(out, 1, 2);
    put_varint(out, body as u64);
    put_bytes_field(out, 1, key.as_bytes());
    put_tag(out, 2, 2);
    put_varint(out, value_body_len(value) as u64);
    match value {
        StructRef::Map(m) => {
            put_tag(out, 5, 2);
            put_varint(out, struct_len(m) as u64);
            write_struct(out, m);
        }
        StructRef::Str(s) => put_bytes_field(out, 3, s.as_bytes()),
    }
}

fn struct_len(map: &BTreeMap<String, Value>) -> usize {
    map.iter()
        .map(|(k, v)| field_len(1, field_len(1, k.len()) + field_len(2, value_len(v))))
        .sum()
}

fn write_struct(out: &mut impl BufMut, map: &BTreeMap<String, Value>) {
    for (k, v) in map {
        put_tag(out, 1, 2);
        put_varint(
            out,
            (field_len(1, k.len()) + field_len(2, value_len(v))) as u64,
        );
        put_bytes_field(out, 1, k.as_bytes());
        put_tag(out, 2, 2);
        put_varint(out, value_len(v) as u64);
        write_value(out, v);
    }
}

fn value_len(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) => 2,
        Value::Number(_) => 9,
        Value::String(s) => field_len(3, s.len()),
        Value::Struct(m) => field_len(5, struct_len(m)),
        Value::List(items) => field_len(6, list_len(items)),
    }
}

fn list_len(items: &[Value]) -> usize {
    items.iter().map(|v| field_len(1, value_len(v))).sum()
}

fn write_value(out: &mut impl BufMut, value: &Value) {
    match value {
        Value::Null => out.put_slice(&[0x08, 0x00]),
        Value::Number(n) => {
            out.put_u8(0x11);
            out.put_u64_le(n.to_bits());
        }
        Value::String(s) => put_bytes_field(out, 3, s.as_bytes()),
        Value::Bool(b) => out.put_slice(&[0x20, u8::from(*b)]),
        Value::Struct(m) => {
            put_tag(out, 5, 2);
            put_varint(out, struct_len(m) as u64);
            write_struct(out, m);
        }
        Value::List(items) => {
            put_tag(out, 6, 2);
            put_varint(out, list_len(items) as u64);
            for item in items {
                put_tag(out, 1, 2);
                put_varint(out, value_len(item) as u64);
                write_value(out, item);
            }
        }
    }
}
