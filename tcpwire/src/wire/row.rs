//! One `/proc/net/tcp{,6}` row: the typed, borrowed view, its parser and its formatter.
#![deny(clippy::indexing_slicing)]

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::state::{RowKind, TcpState, TimerKind};
use super::token::{
    Tokens, dec_i64, dec_u64, hex_u32, hex_u64, hex8_at, only_padding, skip_padding, split_colon,
};
use crate::error::{Column, Error, ErrorKind};

/// How the 32-bit address words of a table were printed.
///
/// The kernel prints each `__be32` address word with `%08X` as a *host* integer, so the text
/// depends on the endianness of the machine that produced the file, not the one reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum ByteOrder {
    /// The machine running this code (right for a live `/proc`).
    #[default]
    Native,
    /// A little-endian producer (x86-64, aarch64, riscv64 …).
    Little,
    /// A big-endian producer (s390x, some ppc64, mips …).
    Big,
}

impl ByteOrder {
    /// Resolves [`ByteOrder::Native`] to the order of the running machine.
    pub const fn resolve(self) -> Self {
        match self {
            Self::Native if cfg!(target_endian = "big") => Self::Big,
            Self::Native => Self::Little,
            other => other,
        }
    }

    /// The four address bytes (network order) behind a printed word.
    const fn word_to_bytes(self, word: u32) -> [u8; 4] {
        match self.resolve() {
            Self::Big => word.to_be_bytes(),
            _ => word.to_le_bytes(),
        }
    }

    /// The word the kernel prints for four address bytes.
    const fn bytes_to_word(self, bytes: [u8; 4]) -> u32 {
        match self.resolve() {
            Self::Big => u32::from_be_bytes(bytes),
            _ => u32::from_le_bytes(bytes),
        }
    }
}

/// How [`parse_row`] reads a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RowOptions {
    /// Endianness of the machine that printed the table.
    pub byte_order: ByteOrder,
    /// Accept only the kernel's exact layouts: zero-padded widths (`%08X`, `%04X`, `%02X`), timer
    /// expiry of 8–16 digits, pointer of 8 or 16, and exactly 12 or 17 columns. Off by default,
    /// when any digit count within the column's type and 10 or more columns are accepted.
    pub strict: bool,
}

impl RowOptions {
    /// Sets [`RowOptions::byte_order`].
    pub const fn byte_order(mut self, order: ByteOrder) -> Self {
        self.byte_order = order;
        self
    }

    /// Sets [`RowOptions::strict`].
    pub const fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }
}

/// The five TCP-state columns that only full-socket rows carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub struct FullTail {
    /// Retransmission timeout, in USER_HZ ticks.
    pub rto: u64,
    /// Delayed-ACK timeout, in USER_HZ ticks.
    pub ato: u64,
    /// `(quick << 1) | pingpong`.
    pub quick_ack: u32,
    /// Congestion window, in segments.
    pub cwnd: u32,
    /// Slow-start threshold, `-1` during initial slow start. For LISTEN rows the kernel prints the
    /// fast-open queue's `max_qlen` here instead.
    pub ssthresh: i32,
}

/// Every decoded column of a row, owned and `Copy`; what [`encode_row`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct RowFields {
    /// `sl`: the kernel's running index (not guaranteed contiguous or unique).
    pub slot: u64,
    /// Local address and port.
    pub local: SocketAddr,
    /// Remote address and port (unspecified for LISTEN).
    pub remote: SocketAddr,
    /// State code.
    pub state: TcpState,
    /// `write_seq - snd_una`: unacknowledged plus unsent bytes (0 for LISTEN).
    pub tx_queue: u32,
    /// Unread received bytes; for LISTEN, the accept-queue length (connections, not bytes).
    pub rx_queue: u32,
    /// Pending timer.
    pub timer: TimerKind,
    /// Timer expiry as printed (USER_HZ ticks; 16-digit values from old kernels are negative
    /// deltas, see [`TcpRow::timer_expiry_ticks`]).
    pub timer_expiry: u64,
    /// Retransmissions (SYN-ACK retransmits for request sockets).
    pub retransmits: u32,
    /// Owner uid in the reader's user namespace.
    pub uid: u32,
    /// Unanswered probes (the header calls this column `timeout`).
    pub probes: i32,
    /// Socket inode; `None` for the kernel's 0 (not yet accepted, TIME_WAIT and request rows).
    pub inode: Option<u64>,
    /// Reference count, when the row has that column.
    pub ref_count: Option<i32>,
    /// The socket's kernel address as printed by `%pK` (hashed, or 0 under `kptr_restrict`).
    pub pointer: Option<u64>,
    /// The TCP-state columns of full rows.
    pub tail: Option<FullTail>,
}

impl Default for RowFields {
    fn default() -> Self {
        let unspecified = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
        Self {
            slot: 0,
            local: unspecified,
            remote: unspecified,
            state: TcpState::default(),
            tx_queue: 0,
            rx_queue: 0,
            timer: TimerKind::NONE,
            timer_expiry: 0,
            retransmits: 0,
            uid: 0,
            probes: 0,
            inode: None,
            ref_count: None,
            pointer: None,
            tail: None,
        }
    }
}

impl RowFields {
    /// Which kernel printer made the row (see [`RowKind::classify`]).
    pub const fn kind(&self) -> RowKind {
        RowKind::classify(self.state, self.timer, self.tail.is_some())
    }
}

/// One parsed row, borrowing the line it came from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TcpRow<'a> {
    line: &'a [u8],
    fields: RowFields,
    columns: u8,
    extra: &'a [u8],
}

impl<'a> TcpRow<'a> {
    /// A row in one of the kernel's two layouts, nothing after its columns.
    #[inline(always)]
    const fn kernel(line: &'a [u8], fields: RowFields) -> Self {
        let columns = if fields.tail.is_some() { 17 } else { 12 };
        Self {
            line,
            fields,
            columns,
            extra: &[],
        }
    }

    /// All decoded columns.
    pub const fn fields(&self) -> &RowFields {
        &self.fields
    }

    /// The line as given (without its terminating newline when the reader found one).
    pub const fn line(&self) -> &'a [u8] {
        self.line
    }

    /// Which kernel printer made the row.
    pub const fn kind(&self) -> RowKind {
        self.fields.kind()
    }

    /// State code.
    pub const fn state(&self) -> TcpState {
        self.fields.state
    }

    /// Local address and port.
    pub const fn local(&self) -> SocketAddr {
        self.fields.local
    }

    /// Remote address and port.
    pub const fn remote(&self) -> SocketAddr {
        self.fields.remote
    }

    /// Local address with an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, how dual-stack sockets
    /// show IPv4 peers in `tcp6`) turned into its IPv4 form.
    pub fn local_canonical(&self) -> SocketAddr {
        canonical(self.fields.local)
    }

    /// Remote address, IPv4-mapped IPv6 turned into IPv4.
    pub fn remote_canonical(&self) -> SocketAddr {
        canonical(self.fields.remote)
    }

    /// Whether either endpoint is an IPv4-mapped IPv6 address.
    pub fn is_ipv4_mapped(&self) -> bool {
        [self.fields.local, self.fields.remote]
            .iter()
            .any(|a| matches!(a.ip(), IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some()))
    }

    /// `tx_queue`.
    pub const fn tx_queue(&self) -> u32 {
        self.fields.tx_queue
    }

    /// `rx_queue` (for LISTEN, the accept backlog).
    pub const fn rx_queue(&self) -> u32 {
        self.fields.rx_queue
    }

    /// Socket inode, `None` when the kernel printed 0.
    pub const fn inode(&self) -> Option<u64> {
        self.fields.inode
    }

    /// Timer expiry in USER_HZ ticks, signed: kernels before the clamp printed a negative `long`
    /// delta as 16 hex digits (`FFFFFFFFFFFFFFF6` = -10).
    pub const fn timer_expiry_ticks(&self) -> i64 {
        self.fields.timer_expiry as i64
    }

    /// Timer expiry as a duration for a given USER_HZ (100 on every mainstream kernel);
    /// `None` for a negative expiry or a zero `user_hz`.
    pub fn timer_expiry(&self, user_hz: u32) -> Option<core::time::Duration> {
        let ticks = u64::try_from(self.timer_expiry_ticks()).ok()?;
        let hz = u64::from(user_hz);
        if hz == 0 {
            return None;
        }
        let nanos = u128::from(ticks % hz) * 1_000_000_000 / u128::from(hz);
        Some(core::time::Duration::new(
            ticks / hz,
            u32::try_from(nanos).ok()?,
        ))
    }

    /// For LISTEN rows, the fast-open queue's `max_qlen` (the kernel prints it in the last column).
    pub fn fastopen_max_qlen(&self) -> Option<i32> {
        (self.fields.state == TcpState::LISTEN).then_some(self.fields.tail?.ssthresh)
    }

    /// Number of whitespace-separated columns on the line.
    pub const fn columns(&self) -> u8 {
        self.columns
    }

    /// Whatever follows the columns this crate decodes (an incomplete or future tail), trimmed;
    /// empty for the kernel's own layouts.
    pub const fn extra(&self) -> &'a [u8] {
        self.extra
    }
}

impl fmt::Debug for TcpRow<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpRow")
            .field("kind", &self.kind())
            .field("fields", &self.fields)
            .field("columns", &self.columns)
            .field("extra_len", &self.extra.len())
            .finish()
    }
}

fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Parses one row (a line of the table, with or without its newline and the kernel's padding).
///
/// Not for the header line: callers tell it apart with [`is_header`].
///
/// ```
/// use std::net::SocketAddr;
/// use tcpwire::{RowOptions, TcpState, parse_row};
///
/// let line = b"   1: 0100007F:0016 0100007F:D2F0 01 00000010:00000000 01:00000014 00000000  1000        0 4242 2 0000000000000000 20 4 1 10 -1";
/// let row = parse_row(line, RowOptions::default())?;
/// assert_eq!(row.state(), TcpState::ESTABLISHED);
/// assert_eq!(row.local(), "127.0.0.1:22".parse::<SocketAddr>().unwrap());
/// assert_eq!((row.tx_queue(), row.inode()), (16, Some(4242)));
/// # Ok::<(), tcpwire::Error>(())
/// ```
///
/// # Errors
/// [`ErrorKind::MissingColumn`] when the row ends before the tenth column (`inode`),
/// [`ErrorKind::BadColumn`] when a column breaks its grammar or type range, and in strict mode
/// [`ErrorKind::UnexpectedColumnCount`]. The offset is within `line`.
///
/// # Panics
/// Never.
#[inline]
pub fn parse_row(line: &[u8], options: RowOptions) -> Result<TcpRow<'_>, Error> {
    if let Some(row) = KernelLayout::new(line).parse(options.byte_order) {
        return Ok(row);
    }
    RowParser {
        tokens: Tokens::new(line),
        line,
        options,
        columns: 0,
    }
    .parse()
}

/// The fast path: the kernel's exact `seq_printf` layout read left to right at known widths, eight
/// hex digits at a time. It accepts a subset of what [`RowParser`] accepts, in both modes, and
/// returns the identical row; on any surprise it returns `None` and the general parser decides
/// (and explains the error, if there is one).
struct KernelLayout<'a> {
    line: &'a [u8],
    i: usize,
}

impl<'a> KernelLayout<'a> {
    #[inline]
    const fn new(line: &'a [u8]) -> Self {
        Self { line, i: 0 }
    }

    #[inline]
    fn byte(&self, at: usize) -> Option<u8> {
        self.line.get(at).copied()
    }

    /// The byte at `at` ends a column: a space, the newline, or the end of the line.
    #[inline]
    fn ends_column(&self, at: usize) -> bool {
        matches!(self.byte(at), None | Some(b' ' | b'\n'))
    }

    #[inline]
    fn literal(&mut self, b: u8) -> Option<()> {
        (self.byte(self.i)? == b).then(|| self.i += 1)
    }

    /// Exactly one space (the kernel's separator; any other blank goes to the general path).
    #[inline]
    fn space(&mut self) -> Option<()> {
        self.literal(b' ')
    }

    #[inline]
    fn skip_spaces(&mut self) {
        while self.byte(self.i) == Some(b' ') {
            self.i += 1;
        }
    }

    #[inline]
    fn hex8(&mut self) -> Option<u32> {
        let v = hex8_at(self.line, self.i)?;
        self.i += 8;
        Some(v)
    }

    #[inline]
    fn hex_n(&mut self, n: usize) -> Option<u64> {
        let v = hex_u64(self.line.get(self.i..self.i + n)?)?;
        self.i += n;
        Some(v)
    }

    /// `%d`/`%u`/`%lu`: an optional `-`, then up to 19 digits, read in one pass.
    #[inline(always)]
    fn decimal<T: TryFrom<i64>>(&mut self) -> Option<T> {
        let negative = self.byte(self.i) == Some(b'-');
        let start = self.i + usize::from(negative);
        let mut i = start;
        let mut value: i64 = 0;
        while let Some(d) = self
            .byte(i)
            .map(|b| b.wrapping_sub(b'0'))
            .filter(|d| *d < 10)
        {
            // 18 digits always fit an i64; longer numbers go to the general path.
            if i - start == 18 {
                return None;
            }
            value = value * 10 + i64::from(d);
            i += 1;
        }
        if i == start {
            return None;
        }
        self.i = i;
        T::try_from(if negative { -value } else { value }).ok()
    }

    /// Digits only, no sign (`sl` and `inode`, which the general parser reads unsigned).
    #[inline(always)]
    fn unsigned(&mut self) -> Option<u64> {
        if self.byte(self.i) == Some(b'-') {
            return None;
        }
        self.decimal()
    }

    /// A space, then a right-aligned decimal (`%5u`, `%8d`).
    #[inline(always)]
    fn padded_decimal<T: TryFrom<i64>>(&mut self) -> Option<T> {
        self.space()?;
        self.skip_spaces();
        self.decimal()
    }

    #[inline(always)]
    fn endpoint(&mut self, order: ByteOrder) -> Option<SocketAddr> {
        let ip = match (self.byte(self.i + 8), self.byte(self.i + 32)) {
            (Some(b':'), _) => IpAddr::V4(Ipv4Addr::from(order.word_to_bytes(self.hex8()?))),
            (_, Some(b':')) => {
                let mut octets = [0u8; 16];
                for out in octets.chunks_exact_mut(4) {
                    out.copy_from_slice(&order.word_to_bytes(self.hex8()?));
                }
                IpAddr::V6(Ipv6Addr::from(octets))
            }
            _ => return None,
        };
        self.literal(b':')?;
        let port = self.hex_n(4)? as u16;
        Some(SocketAddr::new(ip, port))
    }

    /// `%pK`: 16 hex digits on 64-bit kernels, 8 on 32-bit ones.
    #[inline]
    fn pointer(&mut self) -> Option<u64> {
        if self.ends_column(self.i + 16) && hex8_at(self.line, self.i + 8).is_some() {
            let high = u64::from(self.hex8()?);
            return Some((high << 32) | u64::from(self.hex8()?));
        }
        if self.ends_column(self.i + 8) {
            return self.hex8().map(u64::from);
        }
        None
    }

    /// A whole line: the columns, then nothing but padding.
    #[inline(always)]
    fn parse(mut self, order: ByteOrder) -> Option<TcpRow<'a>> {
        let fields = self.fields(order)?;
        // Only padding may follow: anything else (a future column) is the general path's business.
        if !only_padding(self.line.get(self.i..)?) {
            return None;
        }
        Some(TcpRow::kernel(self.line, fields))
    }

    /// The columns, leaving `i` just after the last one. Every separator checked is a space and
    /// every column a digit string, so this never reads past a newline.
    #[inline(always)]
    fn fields(&mut self, order: ByteOrder) -> Option<RowFields> {
        self.skip_spaces();
        let slot = self.unsigned()?;
        self.literal(b':')?;
        self.space()?;
        let local = self.endpoint(order)?;
        self.space()?;
        let remote = self.endpoint(order)?;
        if local.is_ipv4() != remote.is_ipv4() {
            return None;
        }
        self.space()?;
        let state = TcpState(self.hex_n(2)? as u8);
        self.space()?;
        let tx_queue = self.hex8()?;
        self.literal(b':')?;
        let rx_queue = self.hex8()?;
        self.space()?;
        let timer = TimerKind(self.hex_n(2)? as u8);
        self.literal(b':')?;
        let timer_expiry = u64::from(self.hex8()?);
        self.space()?;
        let retransmits = self.hex8()?;
        let uid = self.padded_decimal()?;
        let probes = self.padded_decimal()?;
        self.space()?;
        let inode = self.unsigned()?;
        self.space()?;
        let ref_count = self.decimal()?;
        self.space()?;
        let pointer = self.pointer()?;
        let mut tail = None;
        if self.byte(self.i) == Some(b' ')
            && self
                .byte(self.i + 1)
                .is_some_and(|b| b == b'-' || b.is_ascii_digit())
        {
            self.space()?;
            let rto = self.decimal()?;
            self.space()?;
            let ato = self.decimal()?;
            self.space()?;
            let quick_ack = self.decimal()?;
            self.space()?;
            let cwnd = self.decimal()?;
            self.space()?;
            let ssthresh = self.decimal()?;
            tail = Some(FullTail {
                rto,
                ato,
                quick_ack,
                cwnd,
                ssthresh,
            });
        }
        Some(RowFields {
            slot,
            local,
            remote,
            state,
            tx_queue,
            rx_queue,
            timer,
            timer_expiry,
            retransmits,
            uid,
            probes,
            inode: (inode != 0).then_some(inode),
            ref_count: Some(ref_count),
            pointer: Some(pointer),
            tail,
        })
    }
}

/// The fast path over a stream: a kernel-layout row at the start of `text` whose padding ends in
/// a newline, read in one pass (no separate search for the newline first). Returns the row,
/// whose line excludes the newline, and the newline's offset. `None` when the line is anything
/// else; the caller then frames the line and uses [`parse_row`].
#[inline(always)]
pub(crate) fn parse_kernel_row_in_stream(
    text: &[u8],
    order: ByteOrder,
) -> Option<(TcpRow<'_>, usize)> {
    let mut layout = KernelLayout::new(text);
    let fields = layout.fields(order)?;
    let end = skip_padding(text, layout.i);
    if text.get(end) != Some(&b'\n') {
        return None;
    }
    Some((TcpRow::kernel(text.get(..end)?, fields), end))
}

/// Whether a line is the table's header: its first token is `sl`, wherever it arrives.
pub fn is_header(line: &[u8]) -> bool {
    Tokens::new(line)
        .next()
        .is_some_and(|(_, first)| first == b"sl")
}

/// Whether a line is empty or only whitespace (spaces, tabs, CR, newline). A line of other
/// control bytes (NUL and the like) separates no columns either, but it is junk, not padding:
/// readers report it as malformed.
pub fn is_blank_line(line: &[u8]) -> bool {
    line.iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

struct RowParser<'a> {
    tokens: Tokens<'a>,
    line: &'a [u8],
    options: RowOptions,
    columns: u8,
}

type Token<'a> = (usize, &'a [u8]);

impl<'a> RowParser<'a> {
    fn next_column(&mut self, column: Column) -> Result<Token<'a>, Error> {
        let token = self.tokens.next().ok_or_else(|| {
            Error::new(
                ErrorKind::MissingColumn { missing: column },
                self.line.len() as u64,
            )
        })?;
        self.columns = self.columns.saturating_add(1);
        Ok(token)
    }

    fn bad(column: Column, at: usize) -> Error {
        Error::new(ErrorKind::BadColumn { column }, at as u64)
    }

    /// A hex number whose width the kernel fixes (`%0NX`), checked only in strict mode.
    fn hex_exact(
        &self,
        digits: &[u8],
        widths: &[usize],
        column: Column,
        at: usize,
    ) -> Result<u64, Error> {
        if self.options.strict && !widths.contains(&digits.len()) {
            return Err(Self::bad(column, at));
        }
        hex_u64(digits).ok_or_else(|| Self::bad(column, at))
    }

    fn hex32(&self, digits: &[u8], width: usize, column: Column, at: usize) -> Result<u32, Error> {
        let value = self.hex_exact(digits, &[width], column, at)?;
        u32::try_from(value).map_err(|_| Self::bad(column, at))
    }

    fn decimal<T: TryFrom<i64>>(&mut self, column: Column) -> Result<T, Error> {
        let (at, text) = self.next_column(column)?;
        dec_i64(text)
            .and_then(|v| T::try_from(v).ok())
            .ok_or_else(|| Self::bad(column, at))
    }

    /// The endpoint column and its offset.
    fn endpoint(&mut self, column: Column) -> Result<(usize, SocketAddr), Error> {
        let (at, token) = self.next_column(column)?;
        let (addr, port) = split_colon(token).ok_or_else(|| Self::bad(column, at))?;
        let port = self.hex32(port, 4, column, at)?;
        let port = u16::try_from(port).map_err(|_| Self::bad(column, at))?;
        let ip =
            decode_address(addr, self.options.byte_order).ok_or_else(|| Self::bad(column, at))?;
        Ok((at, SocketAddr::new(ip, port)))
    }

    fn parse(mut self) -> Result<TcpRow<'a>, Error> {
        let (at, slot) = self.next_column(Column::Slot)?;
        let slot = slot
            .strip_suffix(b":")
            .and_then(dec_u64)
            .ok_or_else(|| Self::bad(Column::Slot, at))?;
        let (_, local) = self.endpoint(Column::LocalAddress)?;
        let (remote_at, remote) = self.endpoint(Column::RemoteAddress)?;
        if local.is_ipv4() != remote.is_ipv4() {
            return Err(Self::bad(Column::RemoteAddress, remote_at));
        }
        let (at, state) = self.next_column(Column::State)?;
        let state = self.hex_exact(state, &[2], Column::State, at)?;
        let state = TcpState(u8::try_from(state).map_err(|_| Self::bad(Column::State, at))?);

        let (at, queues) = self.next_column(Column::TxQueue)?;
        let (tx, rx) = split_colon(queues).ok_or_else(|| Self::bad(Column::TxQueue, at))?;
        let tx_queue = self.hex32(tx, 8, Column::TxQueue, at)?;
        let rx_queue = self.hex32(rx, 8, Column::RxQueue, at + tx.len() + 1)?;

        let (at, timer) = self.next_column(Column::TimerKind)?;
        let (kind_text, when) =
            split_colon(timer).ok_or_else(|| Self::bad(Column::TimerKind, at))?;
        let kind = self.hex32(kind_text, 2, Column::TimerKind, at)?;
        let timer = TimerKind(u8::try_from(kind).map_err(|_| Self::bad(Column::TimerKind, at))?);
        let when_at = at + kind_text.len() + 1;
        let timer_expiry = self.hex_exact(
            when,
            &[8, 9, 10, 11, 12, 13, 14, 15, 16],
            Column::TimerExpiry,
            when_at,
        )?;

        let (at, retransmits) = self.next_column(Column::Retransmits)?;
        let retransmits = self.hex32(retransmits, 8, Column::Retransmits, at)?;
        let uid = self.decimal::<u32>(Column::Uid)?;
        let probes = self.decimal::<i32>(Column::Probes)?;
        let (at, inode) = self.next_column(Column::Inode)?;
        let inode = dec_u64(inode).ok_or_else(|| Self::bad(Column::Inode, at))?;

        let mut fields = RowFields {
            slot,
            local,
            remote,
            state,
            tx_queue,
            rx_queue,
            timer,
            timer_expiry,
            retransmits,
            uid,
            probes,
            inode: (inode != 0).then_some(inode),
            ref_count: None,
            pointer: None,
            tail: None,
        };
        // Columns from here on are optional: old kernels printed fewer, future ones may print more.
        if let Some((at, refs)) = self.tokens.next() {
            self.columns += 1;
            let refs = dec_i64(refs).and_then(|v| i32::try_from(v).ok());
            fields.ref_count = Some(refs.ok_or_else(|| Self::bad(Column::RefCount, at))?);
            if let Some((at, ptr)) = self.tokens.next() {
                self.columns += 1;
                fields.pointer = Some(self.hex_exact(ptr, &[8, 16], Column::Pointer, at)?);
                let before_tail = self.tokens.clone();
                fields.tail = self.tail()?;
                if fields.tail.is_some() {
                    self.columns += 5;
                } else {
                    self.tokens = before_tail;
                }
            }
        }
        let extra = self.tokens.rest();
        let columns = usize::from(self.columns) + Tokens::new(extra).count();
        let columns = u8::try_from(columns).unwrap_or(u8::MAX);
        if self.options.strict && !matches!(columns, 12 | 17) {
            let at = self.tokens.position() as u64;
            return Err(Error::new(
                ErrorKind::UnexpectedColumnCount { found: columns },
                at,
            ));
        }
        Ok(TcpRow {
            line: self.line,
            fields,
            columns,
            extra,
        })
    }

    /// The five TCP-state columns, or `None` when fewer than five remain (an incomplete tail is
    /// then reported through [`TcpRow::extra`] rather than half-decoded).
    fn tail(&mut self) -> Result<Option<FullTail>, Error> {
        let mut texts: [Token<'a>; 5] = [(0, &[]); 5];
        for slot in &mut texts {
            match self.tokens.next() {
                Some(token) => *slot = token,
                None => return Ok(None),
            }
        }
        let [rto, ato, quick, cwnd, ssthresh] = texts;
        let num = |(at, text): Token<'a>| dec_i64(text).ok_or_else(|| Self::bad(Column::Tail, at));
        let to = |(at, _): Token<'a>| Self::bad(Column::Tail, at);
        Ok(Some(FullTail {
            rto: u64::try_from(num(rto)?).map_err(|_| to(rto))?,
            ato: u64::try_from(num(ato)?).map_err(|_| to(ato))?,
            quick_ack: u32::try_from(num(quick)?).map_err(|_| to(quick))?,
            cwnd: u32::try_from(num(cwnd)?).map_err(|_| to(cwnd))?,
            ssthresh: i32::try_from(num(ssthresh)?).map_err(|_| to(ssthresh))?,
        }))
    }
}

/// Decodes the hex address of one endpoint: 8 digits for IPv4, 32 for IPv6.
fn decode_address(hex: &[u8], order: ByteOrder) -> Option<IpAddr> {
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(
            order.word_to_bytes(hex_u32(hex)?),
        ))),
        32 => {
            let mut octets = [0u8; 16];
            for (word, out) in hex.chunks_exact(8).zip(octets.chunks_exact_mut(4)) {
                out.copy_from_slice(&order.word_to_bytes(hex_u32(word)?));
            }
            Some(IpAddr::V6(Ipv6Addr::from(octets)))
        }
        _ => None,
    }
}

/// Encodes one row exactly as the kernel's printer for its kind does (`%4d: %08X:%04X …`), without
/// the newline and without the padding the IPv4 table adds (see [`TCP4_LINE_WIDTH`]), into the
/// start of `out`, and returns its length. A buffer of [`ROW_MAX_LEN`] bytes always suffices.
///
/// Rows with a [`FullTail`] use the 17-column full-socket layout; others use the 12-column
/// layout, or stop early when `ref_count` or `pointer` is absent (a tail needs both, a pointer
/// needs the reference count, as in the order the columns are read).
///
/// ```
/// use tcpwire::{ByteOrder, ROW_MAX_LEN, RowOptions, encode_row, parse_row};
///
/// let line = b"   0: 0100007F:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1061 1 0000000000000000 100 0 0 10 0";
/// let row = parse_row(line, RowOptions::default())?;
/// let mut out = [0u8; ROW_MAX_LEN];
/// let n = encode_row(row.fields(), ByteOrder::Little, &mut out)?;
/// assert_eq!(&out[..n], &line[..]);
/// # Ok::<(), tcpwire::Error>(())
/// ```
///
/// # Errors
/// [`ErrorKind::BufferTooSmall`] with the row's length when `out` is shorter (what was written
/// into `out` is then unspecified).
///
/// # Panics
/// Never.
pub fn encode_row(fields: &RowFields, order: ByteOrder, out: &mut [u8]) -> Result<usize, Error> {
    let mut writer = SliceWriter { out, len: 0 };
    // `SliceWriter` never fails: it only counts what does not fit.
    let _ = format_row(fields, order, &mut writer);
    if writer.len > writer.out.len() {
        return Err(Error::new(
            ErrorKind::BufferTooSmall { needed: writer.len },
            0,
        ));
    }
    Ok(writer.len)
}

/// The longest row [`encode_row`] writes: every column at its widest (a 20-digit slot, IPv6
/// endpoints, negative `i32`s, 20-digit `u64`s) is 296 bytes.
pub const ROW_MAX_LEN: usize = 320;

/// Writes into a byte slice, counting (not writing) whatever does not fit.
struct SliceWriter<'a> {
    out: &'a mut [u8],
    len: usize,
}

impl fmt::Write for SliceWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if let Some(dst) = self.out.get_mut(self.len..end) {
            dst.copy_from_slice(s.as_bytes());
        }
        self.len = end;
        Ok(())
    }
}

/// The kernel's row printer, over any `fmt::Write`.
fn format_row(fields: &RowFields, order: ByteOrder, out: &mut impl fmt::Write) -> fmt::Result {
    write!(out, "{:4}: ", fields.slot)?;
    write_endpoint(fields.local, order, out)?;
    out.write_char(' ')?;
    write_endpoint(fields.remote, order, out)?;
    write!(
        out,
        " {:02X} {:08X}:{:08X} {:02X}:{:08X} {:08X} {:5} {:8} {}",
        fields.state.0,
        fields.tx_queue,
        fields.rx_queue,
        fields.timer.0,
        fields.timer_expiry,
        fields.retransmits,
        fields.uid,
        fields.probes,
        fields.inode.unwrap_or(0)
    )?;
    // Each optional column is written only after the ones before it, as the parser reads them.
    if let Some(refs) = fields.ref_count {
        write!(out, " {refs}")?;
        if let Some(ptr) = fields.pointer {
            write!(out, " {ptr:016x}")?;
            if let Some(t) = fields.tail {
                write!(
                    out,
                    " {} {} {} {} {}",
                    t.rto, t.ato, t.quick_ack, t.cwnd, t.ssthresh
                )?;
            }
        }
    }
    Ok(())
}

/// Every line of the kernel's IPv4 table, header included, is space-padded to this many bytes
/// before its newline (`seq_setwidth(seq, TMPSZ - 1)`); IPv6 lines are not padded.
pub const TCP4_LINE_WIDTH: usize = 149;

/// The header line of `/proc/net/tcp`, without padding.
pub const TCP4_HEADER: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode";

/// The header line of `/proc/net/tcp6`.
pub const TCP6_HEADER: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode";

fn write_endpoint(addr: SocketAddr, order: ByteOrder, out: &mut impl fmt::Write) -> fmt::Result {
    match addr.ip() {
        IpAddr::V4(v4) => write!(out, "{:08X}", order.bytes_to_word(v4.octets()))?,
        IpAddr::V6(v6) => {
            for word in v6.octets().chunks_exact(4) {
                let mut bytes = [0u8; 4];
                bytes.copy_from_slice(word);
                write!(out, "{:08X}", order.bytes_to_word(bytes))?;
            }
        }
    }
    write!(out, ":{:04X}", addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn general(line: &[u8], options: RowOptions) -> Result<TcpRow<'_>, Error> {
        RowParser {
            tokens: Tokens::new(line),
            line,
            options,
            columns: 0,
        }
        .parse()
    }

    #[test]
    fn errors_point_at_the_offending_column() {
        let mixed = b"   0: 0100007F:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 1";
        let e = parse_row(mixed, RowOptions::default()).unwrap_err();
        assert_eq!(
            (e.kind(), e.offset()),
            (
                ErrorKind::BadColumn {
                    column: Column::RemoteAddress
                },
                20
            )
        );
        let short = b"   0: 0100007F:0016 00000000:0000 0A";
        let e = parse_row(short, RowOptions::default()).unwrap_err();
        assert_eq!(
            (e.kind(), e.offset()),
            (
                ErrorKind::MissingColumn {
                    missing: Column::TxQueue
                },
                short.len() as u64
            )
        );
    }

    /// Every line the fast path accepts, the general parser accepts with the identical row, in
    /// both modes and both byte orders; checked on real rows and on many mutations of them.
    #[test]
    fn fast_path_agrees_with_the_general_parser() {
        let tables: [&[u8]; 4] = [
            include_bytes!("../../tests/data/real_tcp"),
            include_bytes!("../../tests/data/real_tcp6"),
            include_bytes!("../../tests/data/tcp_edge_cases"),
            include_bytes!("../../tests/data/tcp_be_300_seed7"),
        ];
        let alphabet = b" :-0123456789ABCDEFaf\nxZ\t";
        let mut rng = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let (mut accepted, mut checked) = (0, 0);
        for table in tables {
            for line in table
                .split(|&b| b == b'\n')
                .skip(1)
                .filter(|l| !l.is_empty())
            {
                for round in 0..60 {
                    let mut line = line.to_vec();
                    for _ in 0..round % 4 {
                        let at = (next() as usize) % line.len();
                        match next() % 3 {
                            0 => line[at] = alphabet[(next() as usize) % alphabet.len()],
                            1 => {
                                line.remove(at);
                            }
                            _ => line.insert(at, alphabet[(next() as usize) % alphabet.len()]),
                        }
                    }
                    for order in [ByteOrder::Little, ByteOrder::Big] {
                        checked += 1;
                        let Some(fast) = KernelLayout::new(&line).parse(order) else {
                            continue;
                        };
                        accepted += 1;
                        for strict in [false, true] {
                            let options = RowOptions::default().byte_order(order).strict(strict);
                            assert_eq!(
                                general(&line, options),
                                Ok(fast),
                                "{:?}",
                                String::from_utf8_lossy(&line)
                            );
                        }
                        let mut streamed = line.clone();
                        streamed.extend_from_slice(b"\n   9: next");
                        let (row, end) = parse_kernel_row_in_stream(&streamed, order)
                            .expect("same line in a stream");
                        let first_newline =
                            line.iter().position(|&b| b == b'\n').unwrap_or(line.len());
                        assert_eq!((row.fields(), end), (fast.fields(), first_newline));
                    }
                }
            }
        }
        assert!(
            accepted > 1000 && accepted < checked,
            "{accepted} of {checked}"
        );
    }
}
