//! The capture-reading layer of `meshsniff`: packets out of classic pcap or pcapng files,
//! optionally gzip'd, and TCP segments out of those packets.
//!
//! [`open`] (or [`Capture::from_reader`]) sniffs the input: a gzip magic (`1f 8b`) switches on
//! streaming decompression (concatenated gzip members included), then the classic pcap magics
//! (both byte orders, micro- and nanosecond timestamps) or the pcapng section header pick the
//! format. Records are read through `pcap-parser`'s streaming readers with a bounded buffer
//! ([`INITIAL_BUFFER`], grown only for a record that does not fit, up to [`MAX_BUFFER`]), so a
//! capture of any size is read in constant memory.
//!
//! [`Capture`] is an iterator of `Result<Packet, CaptureError>`. Packets whose link type has no
//! decoder here (see [`LinkType`]) are skipped and counted in [`CaptureStats`] and, per link
//! type, in [`Capture::skipped_link_types`], never fatal; so are pcapng blocks that carry no
//! packet. A file that ends inside a record yields every whole packet first and then one
//! [`CaptureError::Truncated`] item; a pcapng block that is whole but whose contents overrun its
//! length is [`CaptureError::CaplenExceedsBlock`] (a packet claiming more captured bytes than
//! its block holds) or [`CaptureError::Malformed`], never a truncation. Nothing follows an error
//! item.
//!
//! [`ip_packet`] strips the link layer (VLAN tags included), and [`tcp_segment`] reads the TCP
//! segment of what is left with `l7decode`'s [`parse_ip_packet`] (IPv4 and IPv6; IP fragments
//! and non-TCP packets give `None`), ready for an [`l7decode::flows::FlowTracker`].
//!
//! [`live`] captures from a network interface instead (Linux AF_PACKET), yielding the same
//! [`PacketRef`]s.

pub mod live;

use std::fmt;
use std::fs::File;
use std::io::{self, Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use flate2::read::MultiGzDecoder;
use l7decode::flows::{Segment, parse_ip_packet};
use pcap_parser::traits::{PcapNGPacketBlock, PcapReaderIterator};
use pcap_parser::{Block, PcapBlockOwned, PcapError, create_reader};

/// Size of the streaming reader's buffer when a capture is opened.
pub const INITIAL_BUFFER: usize = 1 << 20;

/// Largest the streaming buffer may grow to hold one record; a bigger record is an error.
pub const MAX_BUFFER: usize = 64 << 20;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

/// The link-layer framing of a packet, for the link types this module can decode.
///
/// Any other link type makes its packets [skipped](CaptureStats::skipped_link_type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// BSD null/loopback (0): a 4-byte host-order address family, then IPv4 or IPv6.
    Null,
    /// Ethernet II (1), with any VLAN tags.
    Ethernet,
    /// Raw IP (101): the packet starts with an IPv4 or IPv6 header.
    RawIp,
    /// OpenBSD loopback (108): like [`LinkType::Null`] with the family in network order.
    Loop,
    /// Linux cooked capture v1 (113): a 16-byte header ending in an ether type.
    LinuxSll,
    /// Raw IPv4 (228).
    Ipv4,
    /// Raw IPv6 (229).
    Ipv6,
    /// Linux cooked capture v2 (276): a 20-byte header starting with an ether type.
    LinuxSll2,
}

impl LinkType {
    /// The link type for a `LINKTYPE_*` number, if it is one this module decodes.
    pub fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            0 => Self::Null,
            1 => Self::Ethernet,
            101 => Self::RawIp,
            108 => Self::Loop,
            113 => Self::LinuxSll,
            228 => Self::Ipv4,
            229 => Self::Ipv6,
            276 => Self::LinuxSll2,
            _ => return None,
        })
    }

    /// The `LINKTYPE_*` number.
    pub fn code(self) -> u32 {
        match self {
            Self::Null => 0,
            Self::Ethernet => 1,
            Self::RawIp => 101,
            Self::Loop => 108,
            Self::LinuxSll => 113,
            Self::Ipv4 => 228,
            Self::Ipv6 => 229,
            Self::LinuxSll2 => 276,
        }
    }
}

/// One captured packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Capture time in nanoseconds since the Unix epoch (0 for a pcapng simple packet block,
    /// which has no timestamp).
    pub ts_ns: u64,
    /// How `data` is framed.
    pub link: LinkType,
    /// The captured bytes, starting at the link-layer header.
    pub data: Vec<u8>,
    /// The packet's length on the wire; more than `data.len()` when the capture cut it.
    pub orig_len: u32,
}

impl Packet {
    /// Whether the capture kept fewer bytes than the packet had on the wire (snaplen cut).
    pub fn is_truncated(&self) -> bool {
        self.as_ref().is_truncated()
    }

    /// The packet, borrowed.
    pub fn as_ref(&self) -> PacketRef<'_> {
        PacketRef {
            ts_ns: self.ts_ns,
            link: self.link,
            data: &self.data,
            orig_len: self.orig_len,
        }
    }
}

/// One captured packet, borrowed from the reader's buffer ([`Capture::next_packet`]): reading a
/// capture this way copies and allocates nothing per packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketRef<'a> {
    /// Capture time in nanoseconds since the Unix epoch (0 for a pcapng simple packet block).
    pub ts_ns: u64,
    /// How `data` is framed.
    pub link: LinkType,
    /// The captured bytes, starting at the link-layer header.
    pub data: &'a [u8],
    /// The packet's length on the wire.
    pub orig_len: u32,
}

impl PacketRef<'_> {
    /// Whether the capture kept fewer bytes than the packet had on the wire (snaplen cut).
    pub fn is_truncated(&self) -> bool {
        (self.data.len() as u64) < u64::from(self.orig_len)
    }

    /// The packet, owned.
    pub fn to_owned(&self) -> Packet {
        Packet {
            ts_ns: self.ts_ns,
            link: self.link,
            data: self.data.to_vec(),
            orig_len: self.orig_len,
        }
    }
}

/// The container format of a capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Classic libpcap format.
    Pcap {
        /// Timestamps have nanosecond resolution (magic `a1b23c4d`) rather than microsecond.
        nanosecond: bool,
        /// The file was written big-endian.
        big_endian: bool,
    },
    /// pcapng.
    PcapNg,
}

/// Counters kept while a capture is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Packets yielded.
    pub packets: u64,
    /// Yielded packets whose captured length is below their original length.
    pub truncated_packets: u64,
    /// Packets skipped because their link type has no decoder here (per link type:
    /// [`Capture::skipped_link_types`]).
    pub skipped_link_type: u64,
    /// pcapng blocks skipped: blocks that carry no packet (statistics, name resolution,
    /// decryption secrets, custom and unknown blocks) and packet blocks naming an interface
    /// that was never described.
    pub skipped_blocks: u64,
}

/// Why a capture could not be read.
#[derive(Debug)]
#[non_exhaustive]
pub enum CaptureError {
    /// The file could not be opened.
    Open {
        /// The path given to [`open`].
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// Reading the input (or decompressing it) failed.
    Io(io::Error),
    /// The input is empty (after decompression, if it was gzip'd).
    Empty {
        /// The input was gzip'd.
        gzip: bool,
    },
    /// The input starts with neither a pcap, a pcapng nor a gzip magic.
    NotCapture {
        /// The first bytes (up to 4) of the input, after decompression if it was gzip'd.
        magic: Vec<u8>,
        /// The input was gzip'd.
        gzip: bool,
    },
    /// The input ends in the middle of the file header, a record or a block.
    Truncated {
        /// Offset (in the decompressed stream) of the incomplete header, record or block.
        offset: u64,
        /// Whole packets yielded before it.
        packets: u64,
        /// What was cut.
        detail: &'static str,
    },
    /// A record or block could not be parsed.
    Malformed {
        /// Offset (in the decompressed stream) of the bad record or block.
        offset: u64,
        /// What the parser said.
        detail: String,
    },
    /// A pcapng packet block whose captured-length field claims more bytes than the block has
    /// room for: the block is whole (its two length fields agree), its contents are not.
    CaplenExceedsBlock {
        /// Offset (in the decompressed stream) of the block.
        offset: u64,
        /// The captured length the block claims.
        caplen: u32,
        /// Bytes the block has room for after its fixed fields (its length less 32).
        room: u32,
    },
    /// One record is bigger than [`MAX_BUFFER`].
    RecordTooLarge {
        /// Offset (in the decompressed stream) of the record.
        offset: u64,
        /// The buffer limit.
        limit: usize,
    },
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let gz = |gzip: &bool| {
            if *gzip {
                " after gzip decompression"
            } else {
                ""
            }
        };
        match self {
            Self::Open { path, source } => {
                write!(f, "cannot open capture {}: {source}", path.display())
            }
            Self::Io(e) => write!(f, "I/O error while reading capture: {e}"),
            Self::Empty { gzip } => write!(f, "not a capture file: the input is empty{}", gz(gzip)),
            Self::NotCapture { magic, gzip } => {
                write!(f, "not a capture file: it starts with")?;
                for b in magic {
                    write!(f, " {b:02x}")?;
                }
                write!(f, "{}, not a pcap, pcapng or gzip magic", gz(gzip))
            }
            Self::Truncated {
                offset,
                packets,
                detail,
            } => write!(
                f,
                "truncated capture: the input ends inside {detail} at byte {offset} (after {packets} whole packets)"
            ),
            Self::Malformed { offset, detail } => {
                write!(f, "malformed capture at byte {offset}: {detail}")
            }
            Self::CaplenExceedsBlock {
                offset,
                caplen,
                room,
            } => write!(
                f,
                "malformed capture at byte {offset}: a pcapng packet block claims a captured length of {caplen} bytes but has room for {room}"
            ),
            Self::RecordTooLarge { offset, limit } => write!(
                f,
                "capture record at byte {offset} is larger than the {limit}-byte read buffer limit"
            ),
        }
    }
}

impl std::error::Error for CaptureError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Open { source, .. } | Self::Io(source) => Some(source),
            _ => None,
        }
    }
}

/// Opens a capture file: pcap or pcapng, optionally gzip'd. Reads only the first buffer-full.
pub fn open(path: &Path) -> Result<Capture, CaptureError> {
    let file = File::open(path).map_err(|source| CaptureError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    Capture::from_reader(file)
}

/// A description of one pcapng interface.
#[derive(Debug, Clone, Copy)]
struct Interface {
    /// The `LINKTYPE_*` number.
    code: u32,
    link: Option<LinkType>,
    /// Timestamp units per second.
    units_per_sec: u64,
    /// Seconds added to every timestamp.
    offset_sec: i64,
    snaplen: u32,
}

/// A streaming reader of packets from a capture; see the [module docs](self).
pub struct Capture {
    reader: Box<dyn PcapReaderIterator + Send>,
    io_error: Arc<Mutex<Option<io::Error>>>,
    format: Format,
    gzip: bool,
    /// Classic pcap: the file's link type, or `None` when it has no decoder here.
    pcap_link: Option<LinkType>,
    /// Classic pcap: the file's `LINKTYPE_*` number.
    pcap_link_code: u32,
    /// pcapng: the current section's interfaces.
    interfaces: Vec<Interface>,
    /// pcapng: the current section is big-endian.
    section_big_endian: bool,
    capacity: usize,
    stats: CaptureStats,
    /// Packets skipped per link type without a decoder, sorted by link type.
    skipped_links: SkippedLinks,
    done: bool,
    /// Bytes of the reader's buffer the packet lent by the last `next_packet` still occupies:
    /// consumed at the next call.
    lent: usize,
}

impl fmt::Debug for Capture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Capture")
            .field("format", &self.format)
            .field("gzip", &self.gzip)
            .field("pcap_link", &self.pcap_link)
            .field("interfaces", &self.interfaces)
            .field("capacity", &self.capacity)
            .field("stats", &self.stats)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Capture {
    /// Starts reading a capture from any byte stream: pcap or pcapng, optionally gzip'd.
    ///
    /// Fails at once if the input is empty, is not a capture, or ends inside the file header.
    pub fn from_reader<R: Read + Send + 'static>(mut input: R) -> Result<Self, CaptureError> {
        let raw_head = read_prefix(&mut input, 4).map_err(CaptureError::Io)?;
        let gzip = raw_head.starts_with(&GZIP_MAGIC);
        let (head, rest): (Vec<u8>, Box<dyn Read + Send>) = if gzip {
            let mut decoder = MultiGzDecoder::new(Cursor::new(raw_head).chain(input));
            let head = read_prefix(&mut decoder, 4).map_err(|e| io_to_error(e, 0, 0))?;
            (head, Box::new(decoder))
        } else {
            (raw_head, Box::new(input))
        };
        let format = sniff_format(&head, gzip)?;
        let input = Cursor::new(head).chain(rest);
        let io_error = Arc::new(Mutex::new(None));
        let fill = FillReader {
            inner: input,
            failed: false,
            slot: Arc::clone(&io_error),
        };
        let reader = match create_reader(INITIAL_BUFFER, fill) {
            Ok(reader) => reader,
            Err(e) => {
                if let Some(io) = take_io_error(&io_error) {
                    return Err(io_to_error(io, 0, 0));
                }
                return Err(match e {
                    PcapError::Incomplete(_) | PcapError::UnexpectedEof | PcapError::Eof => {
                        CaptureError::Truncated {
                            offset: 0,
                            packets: 0,
                            detail: "the file header",
                        }
                    }
                    // The first section header block may not fit in the first buffer-full,
                    // or it may be damaged: either way the magic promised a pcapng file.
                    PcapError::HeaderNotRecognized if format == Format::PcapNg => {
                        CaptureError::Malformed {
                            offset: 0,
                            detail: "the pcapng section header block cannot be parsed".into(),
                        }
                    }
                    other => CaptureError::Malformed {
                        offset: 0,
                        detail: format!("file header: {}", describe(&other)),
                    },
                });
            }
        };
        Ok(Self {
            reader,
            io_error,
            format,
            gzip,
            pcap_link: None,
            pcap_link_code: 0,
            interfaces: Vec::new(),
            section_big_endian: false,
            capacity: INITIAL_BUFFER,
            stats: CaptureStats::default(),
            skipped_links: SkippedLinks::default(),
            done: false,
            lent: 0,
        })
    }

    /// The container format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Whether the input was gzip'd.
    pub fn is_gzip(&self) -> bool {
        self.gzip
    }

    /// Counters so far (complete once the iterator has returned `None`).
    pub fn stats(&self) -> CaptureStats {
        self.stats
    }

    /// Packets skipped so far because their link type has no decoder here, as
    /// (`LINKTYPE_*` number, packets), sorted by link type; their sum is
    /// [`CaptureStats::skipped_link_type`].
    pub fn skipped_link_types(&self) -> &[(u32, u64)] {
        &self.skipped_links.0
    }

    fn fail<T>(&mut self, error: CaptureError) -> Option<Result<T, CaptureError>> {
        self.done = true;
        Some(Err(error))
    }

    /// The error for a pcapng block that lies whole in the buffer but whose contents run past
    /// its length (the parser asks for more bytes than the block has): a packet block whose
    /// captured length exceeds its room, or another block with an overrunning field.
    fn overrun_block(&self) -> Option<CaptureError> {
        if self.format != Format::PcapNg {
            return None;
        }
        let data = self.reader.data();
        let u32_at = |at: usize| -> Option<u32> {
            let bytes: [u8; 4] = data.get(at..at + 4)?.try_into().ok()?;
            Some(if self.section_big_endian {
                u32::from_be_bytes(bytes)
            } else {
                u32::from_le_bytes(bytes)
            })
        };
        let (block_type, block_len) = (u32_at(0)?, u32_at(4)?);
        // Not whole yet (or a section header, whose byte order is its own): nothing to say.
        if block_type == 0x0a0d_0d0a || (data.len() as u64) < u64::from(block_len) {
            return None;
        }
        let offset = self.reader.consumed() as u64;
        // Enhanced (6) and obsolete (2) packet blocks: 32 bytes of fixed fields, the captured
        // length at byte 20.
        if matches!(block_type, 2 | 6)
            && let Some(caplen) = u32_at(20)
            && let Some(room) = block_len.checked_sub(32)
            && u64::from(caplen).div_ceil(4) * 4 > u64::from(room)
        {
            return Some(CaptureError::CaplenExceedsBlock {
                offset,
                caplen,
                room,
            });
        }
        Some(CaptureError::Malformed {
            offset,
            detail: format!(
                "a pcapng block of type {block_type:#x} whose contents run past its length of {block_len} bytes"
            ),
        })
    }

    fn truncated(&self, detail: &'static str) -> CaptureError {
        CaptureError::Truncated {
            offset: self.reader.consumed() as u64,
            packets: self.stats.packets,
            detail,
        }
    }
}

/// Where a packet lies in the reader's buffer, and what describes it.
struct Located {
    ts_ns: u64,
    link: LinkType,
    /// Its bytes in `reader.data()`.
    range: std::ops::Range<usize>,
    orig_len: u32,
}

/// What the streaming reader's `next` said, without borrowing the reader.
enum Step {
    Block(usize, Option<Located>),
    Eof,
    Refill,
    Grow,
    UnexpectedEof,
    ReadError,
    Malformed(String),
}

impl Iterator for Capture {
    type Item = Result<Packet, CaptureError>;

    /// Each packet copied out of the reader's buffer; [`Capture::next_packet`] lends it instead.
    fn next(&mut self) -> Option<Self::Item> {
        self.next_packet().map(|p| p.map(|p| p.to_owned()))
    }
}

impl Capture {
    /// The next packet, borrowed from the reader's buffer until the next call: what
    /// [`Iterator::next`] yields, without a copy or an allocation per packet.
    pub fn next_packet(&mut self) -> Option<Result<PacketRef<'_>, CaptureError>> {
        if self.lent > 0 {
            self.reader.consume(std::mem::take(&mut self.lent));
        }
        while !self.done {
            let buffer = self.reader.data().as_ptr() as usize;
            let step = match self.reader.next() {
                Ok((offset, block)) => {
                    let packet = match block {
                        PcapBlockOwned::LegacyHeader(header) => {
                            self.pcap_link_code = pcap_linktype(header.network.0);
                            self.pcap_link = LinkType::from_code(self.pcap_link_code);
                            None
                        }
                        PcapBlockOwned::Legacy(record) => match self.pcap_link {
                            Some(link) => {
                                let nanos = matches!(
                                    self.format,
                                    Format::Pcap {
                                        nanosecond: true,
                                        ..
                                    }
                                );
                                let frac = u64::from(record.ts_usec);
                                let ts_ns = u64::from(record.ts_sec) * 1_000_000_000
                                    + if nanos { frac } else { frac * 1_000 };
                                Some(located(buffer, ts_ns, link, record.data, record.origlen))
                            }
                            None => {
                                self.stats.skipped_link_type += 1;
                                self.skipped_links.add(self.pcap_link_code);
                                None
                            }
                        },
                        PcapBlockOwned::NG(block) => {
                            if let Block::SectionHeader(shb) = &block {
                                self.section_big_endian = shb.big_endian();
                            }
                            let mut section = Section {
                                interfaces: &mut self.interfaces,
                                stats: &mut self.stats,
                                skipped_links: &mut self.skipped_links,
                            };
                            ng_block(buffer, &mut section, &block)
                        }
                    };
                    Step::Block(offset, packet)
                }
                Err(PcapError::Eof) => Step::Eof,
                Err(PcapError::Incomplete(_)) => Step::Refill,
                Err(PcapError::BufferTooSmall) => Step::Grow,
                Err(PcapError::UnexpectedEof) => Step::UnexpectedEof,
                Err(PcapError::ReadError) => Step::ReadError,
                Err(other) => Step::Malformed(describe(&other)),
            };
            // A pcapng block the buffer holds whole that the parser still wants more bytes for
            // is inconsistent with its own length, not cut short.
            if matches!(step, Step::Refill | Step::Grow | Step::UnexpectedEof)
                && let Some(error) = self.overrun_block()
            {
                return self.fail(error);
            }
            match step {
                Step::Block(offset, packet) => {
                    let Some(packet) = packet else {
                        self.reader.consume(offset);
                        continue;
                    };
                    // The packet's bytes stay in the buffer until the next call.
                    self.lent = offset;
                    self.stats.packets += 1;
                    let data = self.reader.data().get(packet.range).unwrap_or_default();
                    let packet = PacketRef {
                        ts_ns: packet.ts_ns,
                        link: packet.link,
                        data,
                        orig_len: packet.orig_len,
                    };
                    if packet.is_truncated() {
                        self.stats.truncated_packets += 1;
                    }
                    return Some(Ok(packet));
                }
                Step::Eof => {
                    if let Some(error) = self.stream_error() {
                        return self.fail(error);
                    }
                    self.done = true;
                }
                Step::Refill => {
                    let before = self.reader.data().len();
                    if self.reader.refill().is_err() {
                        return self.read_error();
                    }
                    // A full buffer that still holds no whole record: treat it as too small.
                    if !self.reader.reader_exhausted()
                        && self.reader.data().len() == before
                        && let Err(item) = self.step_grow()
                    {
                        return item;
                    }
                }
                Step::Grow => {
                    if let Err(item) = self.step_grow() {
                        return item;
                    }
                }
                Step::UnexpectedEof => {
                    if let Some(error) = self.stream_error() {
                        return self.fail(error);
                    }
                    self.done = true;
                    // Defensive: the reader reports a clean end this way when its buffer is
                    // empty but not rewound.
                    if !self.reader.data().is_empty() {
                        let what = match self.format {
                            Format::Pcap { .. } => "a packet record",
                            Format::PcapNg => "a pcapng block",
                        };
                        return Some(Err(self.truncated(what)));
                    }
                }
                Step::ReadError => return self.read_error(),
                Step::Malformed(detail) => {
                    let offset = self.reader.consumed() as u64;
                    return self.fail(CaptureError::Malformed { offset, detail });
                }
            }
        }
        None
    }
}

impl Capture {
    /// Doubles the buffer (up to [`MAX_BUFFER`]) and refills it; `Err` carries the error item
    /// that ends the iteration.
    fn step_grow<T>(&mut self) -> Result<(), Option<Result<T, CaptureError>>> {
        if self.capacity >= MAX_BUFFER {
            let offset = self.reader.consumed() as u64;
            return Err(self.fail(CaptureError::RecordTooLarge {
                offset,
                limit: MAX_BUFFER,
            }));
        }
        self.capacity = (self.capacity * 2).min(MAX_BUFFER);
        self.reader.grow(self.capacity);
        if self.reader.refill().is_err() {
            return Err(self.read_error());
        }
        Ok(())
    }

    /// The I/O error that ended the input early, if one did.
    fn stream_error(&self) -> Option<CaptureError> {
        let offset = self.reader.consumed() as u64;
        take_io_error(&self.io_error).map(|e| io_to_error(e, offset, self.stats.packets))
    }

    fn read_error<T>(&mut self) -> Option<Result<T, CaptureError>> {
        let offset = self.reader.consumed() as u64;
        let error = match take_io_error(&self.io_error) {
            Some(e) => io_to_error(e, offset, self.stats.packets),
            None => CaptureError::Io(io::Error::other("read failed")),
        };
        self.fail(error)
    }
}

/// A packet's bytes, a slice of the reader's buffer (which starts at address `buffer`), located
/// in that buffer: address arithmetic, no dereference.
fn located(buffer: usize, ts_ns: u64, link: LinkType, data: &[u8], orig_len: u32) -> Located {
    let start = (data.as_ptr() as usize).saturating_sub(buffer);
    Located {
        ts_ns,
        link,
        range: start..start + data.len(),
        orig_len,
    }
}

/// Packets skipped per link type, as (`LINKTYPE_*` number, packets) sorted by link type.
#[derive(Debug, Default)]
struct SkippedLinks(Vec<(u32, u64)>);

impl SkippedLinks {
    fn add(&mut self, code: u32) {
        match self.0.binary_search_by_key(&code, |(c, _)| *c) {
            Ok(at) => {
                if let Some((_, n)) = self.0.get_mut(at) {
                    *n += 1;
                }
            }
            Err(at) => self.0.insert(at, (code, 1)),
        }
    }
}

/// What a pcapng block may update: the section's interfaces and the counters.
struct Section<'a> {
    interfaces: &'a mut Vec<Interface>,
    stats: &'a mut CaptureStats,
    skipped_links: &'a mut SkippedLinks,
}

impl Section<'_> {
    /// The link type of a packet on `iface`, or `None` (counted) when it has no decoder here.
    fn link(&mut self, iface: Interface) -> Option<LinkType> {
        if iface.link.is_none() {
            self.stats.skipped_link_type += 1;
            self.skipped_links.add(iface.code);
        }
        iface.link
    }
}

/// Turns one pcapng block into a packet, keeping the section's interface table up to date.
fn ng_block(buffer: usize, section: &mut Section<'_>, block: &Block<'_>) -> Option<Located> {
    let Section {
        interfaces, stats, ..
    } = section;
    match block {
        Block::SectionHeader(_) => {
            interfaces.clear();
            None
        }
        Block::InterfaceDescription(idb) => {
            let code = pcap_linktype(idb.linktype.0);
            interfaces.push(Interface {
                code,
                link: LinkType::from_code(code),
                units_per_sec: ts_units_per_sec(idb.if_tsresol),
                offset_sec: idb.ts_offset(),
                snaplen: idb.snaplen,
            });
            None
        }
        Block::EnhancedPacket(epb) => {
            let Some(&iface) = interfaces.get(epb.if_id as usize) else {
                stats.skipped_blocks += 1;
                return None;
            };
            let link = section.link(iface)?;
            let ts = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
            let ts_ns = ng_ts_ns(ts, iface.units_per_sec, iface.offset_sec);
            Some(located(
                buffer,
                ts_ns,
                link,
                epb.packet_data(),
                epb.orig_len(),
            ))
        }
        Block::SimplePacket(spb) => {
            let Some(&iface) = interfaces.first() else {
                stats.skipped_blocks += 1;
                return None;
            };
            let link = section.link(iface)?;
            let mut data = spb.packet_data();
            if iface.snaplen != 0 && data.len() > iface.snaplen as usize {
                data = &data[..iface.snaplen as usize];
            }
            Some(located(buffer, 0, link, data, spb.orig_len()))
        }
        _ => {
            stats.skipped_blocks += 1;
            None
        }
    }
}

/// A parser error in a few words (its `Display` would dump the whole remaining buffer).
fn describe<I>(e: &PcapError<I>) -> String {
    match e {
        PcapError::NomError(_, kind) | PcapError::OwnedNomError(_, kind) => {
            format!("unparsable record or block ({kind:?})")
        }
        PcapError::Eof => "end of file".into(),
        PcapError::BufferTooSmall => "record larger than the read buffer".into(),
        PcapError::UnexpectedEof => "unexpected end of file".into(),
        PcapError::ReadError => "read error".into(),
        PcapError::Incomplete(n) => format!("{n} more bytes needed"),
        PcapError::HeaderNotRecognized => "header not recognized as pcap or pcapng".into(),
    }
}

/// The link type proper from a pcap header's or IDB's link-type field (the upper bits of the
/// pcap field can carry FCS information).
fn pcap_linktype(raw: i32) -> u32 {
    (raw as u32) & 0xffff
}

/// Timestamp units per second for a pcapng `if_tsresol` value: 10^-n seconds, or 2^-n with the
/// top bit set. (`pcap-parser`'s own helper rejects every power-of-two resolution.) A value
/// too large for `u64` falls back to the default, microseconds.
fn ts_units_per_sec(tsresol: u8) -> u64 {
    let exp = u32::from(tsresol & 0x7f);
    let units = if tsresol & 0x80 == 0 {
        10u64.checked_pow(exp)
    } else {
        1u64.checked_shl(exp).filter(|_| exp < 64)
    };
    units.unwrap_or(1_000_000)
}

/// Epoch nanoseconds from a pcapng timestamp, saturating at the ends of `u64`.
fn ng_ts_ns(ts: u64, units_per_sec: u64, offset_sec: i64) -> u64 {
    let units = u128::from(units_per_sec.max(1));
    let ns = i128::try_from(u128::from(ts) * 1_000_000_000 / units).unwrap_or(i128::MAX);
    let total = ns.saturating_add(i128::from(offset_sec) * 1_000_000_000);
    u64::try_from(total.max(0)).unwrap_or(u64::MAX)
}

fn sniff_format(head: &[u8], gzip: bool) -> Result<Format, CaptureError> {
    if head.is_empty() {
        return Err(CaptureError::Empty { gzip });
    }
    let magic: Option<[u8; 4]> = head.try_into().ok();
    match magic {
        Some(PCAPNG_MAGIC) => Ok(Format::PcapNg),
        // "Modified" (Kuznetzov) pcap: little-endian, microseconds.
        Some([0xd4, 0xc3, 0xb2, 0xa1] | [0x34, 0xcd, 0xb2, 0xa1]) => Ok(Format::Pcap {
            nanosecond: false,
            big_endian: false,
        }),
        Some([0xa1, 0xb2, 0xc3, 0xd4]) => Ok(Format::Pcap {
            nanosecond: false,
            big_endian: true,
        }),
        Some([0x4d, 0x3c, 0xb2, 0xa1]) => Ok(Format::Pcap {
            nanosecond: true,
            big_endian: false,
        }),
        Some([0xa1, 0xb2, 0x3c, 0x4d]) => Ok(Format::Pcap {
            nanosecond: true,
            big_endian: true,
        }),
        _ => Err(CaptureError::NotCapture {
            magic: head.to_vec(),
            gzip,
        }),
    }
}

/// Reads up to `n` bytes, fewer only at the end of the input.
fn read_prefix(input: &mut impl Read, n: usize) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(n);
    input.take(n as u64).read_to_end(&mut head)?;
    Ok(head)
}

/// An I/O error as a capture error: an early end of a (gzip) stream is a truncation.
fn io_to_error(e: io::Error, offset: u64, packets: u64) -> CaptureError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        CaptureError::Truncated {
            offset,
            packets,
            detail: "the gzip stream (cut before its end)",
        }
    } else {
        CaptureError::Io(e)
    }
}

fn take_io_error(slot: &Mutex<Option<io::Error>>) -> Option<io::Error> {
    match slot.lock() {
        Ok(mut guard) => guard.take(),
        Err(poisoned) => poisoned.into_inner().take(),
    }
}

/// Fills the caller's buffer as far as the input allows, so that the streaming reader sees a
/// full buffer after every read (and a 0 only at the real end). `pcap-parser` drops I/O errors,
/// so the first one is kept in `slot` and the stream ends there: bytes read before it are
/// delivered, later reads return 0, and the capture reports the error when it reaches the end.
struct FillReader<R> {
    inner: R,
    failed: bool,
    slot: Arc<Mutex<Option<io::Error>>>,
}

impl<R: Read> Read for FillReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() && !self.failed {
            match self.inner.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.failed = true;
                    match self.slot.lock() {
                        Ok(mut guard) => *guard = Some(e),
                        Err(poisoned) => *poisoned.into_inner() = Some(e),
                    }
                }
            }
        }
        Ok(filled)
    }
}

/// The IP packet inside a captured packet: the link-layer header (and any VLAN tags) stripped.
/// `None` when the link layer carries something other than IPv4 or IPv6, or is cut short.
pub fn ip_packet<'a>(packet: &PacketRef<'a>) -> Option<&'a [u8]> {
    const IPV4: u16 = 0x0800;
    const IPV6: u16 = 0x86dd;
    let data = packet.data;
    let be16 = |at: usize| Some(u16::from_be_bytes([*data.get(at)?, *data.get(at + 1)?]));
    let (ether_type, offset) = match packet.link {
        // The IP header's version nibble says which IP it is.
        LinkType::RawIp | LinkType::Ipv4 | LinkType::Ipv6 => return Some(data),
        // The address family's byte order depends on the capturing host; the IP header's
        // version nibble says the same thing portably.
        LinkType::Null | LinkType::Loop => return data.get(4..),
        LinkType::Ethernet => {
            let mut offset = 12;
            let mut ether_type = be16(offset)?;
            // 802.1Q, 802.1ad and the old QinQ tag: 4 bytes each, any number of them.
            while matches!(ether_type, 0x8100 | 0x88a8 | 0x9100) {
                offset += 4;
                ether_type = be16(offset)?;
            }
            (ether_type, offset + 2)
        }
        LinkType::LinuxSll => (be16(14)?, 16),
        LinkType::LinuxSll2 => (be16(0)?, 20),
    };
    matches!(ether_type, IPV4 | IPV6)
        .then(|| data.get(offset..))
        .flatten()
}

/// Decodes a packet down to its TCP segment (through [`ip_packet`] and
/// [`l7decode::flows::parse_ip_packet`]): `None` for non-IP, non-TCP, IP fragments, and packets
/// too damaged or too cut to hold a whole TCP header.
pub fn tcp_segment(packet: &Packet) -> Option<Segment<'_>> {
    segment_of(&packet.as_ref())
}

/// [`tcp_segment`] of a borrowed packet.
pub fn segment_of<'a>(packet: &PacketRef<'a>) -> Option<Segment<'a>> {
    parse_ip_packet(ip_packet(packet)?).ok()
}
