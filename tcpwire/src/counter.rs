//! Per-state counters with node_exporter's semantics, and the counting fast path that fills them
//! straight from table bytes.

use crate::error::{Column, Error, ErrorKind};
use crate::lines::{Line, LineAssembler};
use crate::reader::{Limits, Stats};
use crate::wire::row::{TcpRow, is_blank_line, is_header};
use crate::wire::state::{RowKind, TcpState, TimerKind};
use crate::wire::token::{
    Tokens, all_nonblank, count_tokens, hex_u32, hex_u64, hex8_at, split_colon, trim_padding_end,
};

/// How the two queue pseudo-states are summed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum QueueSemantics {
    /// node_exporter's: the sum over every row, LISTEN included. Fed from the `/proc` files this is
    /// exactly node_exporter ≤ 1.3.1 (a LISTEN row's `rx_queue` is its accept backlog, counted as
    /// if it were bytes; its `tx_queue` is 0). Fed from sock_diag it is exactly node_exporter ≥ 1.4,
    /// where a LISTEN socket's `wqueue` is its maximum backlog, so `tx_queued_bytes` includes
    /// Σ `listen()` backlogs.
    #[default]
    NodeExporter,
    /// Bytes only: LISTEN rows, whose queues count connections, are left out of both sums.
    BytesOnly,
}

/// Per-state row counts and queue sums of one or more tables.
///
/// Queue sums are kept apart for LISTEN and other rows, so either [`QueueSemantics`] can be
/// derived afterwards. Unknown state codes are counted under their own code, never folded into a
/// known state (node_exporter ≤ 1.3.1 added code `0D` to `tx_queued_bytes`).
#[derive(Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TcpCounts {
    by_state: [u64; 256],
    /// Rows counted.
    pub rows: u64,
    /// Rows printed by the full-socket printer.
    pub full_rows: u64,
    /// TIME_WAIT minisocket rows (states `06` and orphaned `05`).
    pub time_wait_rows: u64,
    /// Request-socket rows (`TCP_NEW_SYN_RECV`, printed as `03`).
    pub request_rows: u64,
    /// Σ `tx_queue` of LISTEN rows (0 from `/proc`; the maximum backlog from sock_diag).
    pub tx_queue_listen: u64,
    /// Σ `tx_queue` of all other rows.
    pub tx_queue_other: u64,
    /// Σ `rx_queue` of LISTEN rows: accept-queue lengths, not bytes.
    pub rx_queue_listen: u64,
    /// Σ `rx_queue` of all other rows.
    pub rx_queue_other: u64,
}

impl Default for TcpCounts {
    fn default() -> Self {
        Self {
            by_state: [0; 256],
            rows: 0,
            full_rows: 0,
            time_wait_rows: 0,
            request_rows: 0,
            tx_queue_listen: 0,
            tx_queue_other: 0,
            rx_queue_listen: 0,
            rx_queue_other: 0,
        }
    }
}

impl core::fmt::Debug for TcpCounts {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TcpCounts")
            .field("rows", &self.rows)
            .field("states", &self.states().collect::<Vec<_>>())
            .field(
                "kinds",
                &(self.full_rows, self.time_wait_rows, self.request_rows),
            )
            .field("tx", &(self.tx_queue_listen, self.tx_queue_other))
            .field("rx", &(self.rx_queue_listen, self.rx_queue_other))
            .finish()
    }
}

impl TcpCounts {
    /// Counts one socket.
    pub fn add(&mut self, state: TcpState, tx_queue: u32, rx_queue: u32, kind: RowKind) {
        if let Some(n) = self.by_state.get_mut(usize::from(state.0)) {
            *n += 1;
        }
        self.rows += 1;
        match kind {
            RowKind::TimeWait => self.time_wait_rows += 1,
            RowKind::Request => self.request_rows += 1,
            RowKind::Full => self.full_rows += 1,
        }
        let (tx, rx) = if state == TcpState::LISTEN {
            (&mut self.tx_queue_listen, &mut self.rx_queue_listen)
        } else {
            (&mut self.tx_queue_other, &mut self.rx_queue_other)
        };
        *tx += u64::from(tx_queue);
        *rx += u64::from(rx_queue);
    }

    /// Counts a parsed row.
    pub fn add_row(&mut self, row: &TcpRow<'_>) {
        self.add(row.state(), row.tx_queue(), row.rx_queue(), row.kind());
    }

    /// Adds another set of counts (the `tcp6` table to the `tcp` one).
    pub fn merge(&mut self, other: &Self) {
        for (mine, theirs) in self.by_state.iter_mut().zip(other.by_state.iter()) {
            *mine += theirs;
        }
        self.rows += other.rows;
        self.full_rows += other.full_rows;
        self.time_wait_rows += other.time_wait_rows;
        self.request_rows += other.request_rows;
        self.tx_queue_listen += other.tx_queue_listen;
        self.tx_queue_other += other.tx_queue_other;
        self.rx_queue_listen += other.rx_queue_listen;
        self.rx_queue_other += other.rx_queue_other;
    }

    /// Rows in `state`.
    pub fn state(&self, state: TcpState) -> u64 {
        self.by_state
            .get(usize::from(state.0))
            .copied()
            .unwrap_or(0)
    }

    /// Every state code with at least one row, in code order.
    pub fn states(&self) -> impl Iterator<Item = (TcpState, u64)> + '_ {
        (0..=255u8)
            .map(TcpState)
            .map(|s| (s, self.state(s)))
            .filter(|&(_, n)| n > 0)
    }

    /// State codes node_exporter has no label for (such as `0D`), with their counts.
    pub fn unknown_states(&self) -> impl Iterator<Item = (TcpState, u64)> + '_ {
        self.states()
            .filter(|(s, _)| s.node_exporter_label().is_none())
    }

    /// The `rx_queued_bytes` pseudo-state.
    pub const fn rx_queued_bytes(&self, semantics: QueueSemantics) -> u64 {
        match semantics {
            QueueSemantics::NodeExporter => self.rx_queue_other + self.rx_queue_listen,
            QueueSemantics::BytesOnly => self.rx_queue_other,
        }
    }

    /// The `tx_queued_bytes` pseudo-state.
    pub const fn tx_queued_bytes(&self, semantics: QueueSemantics) -> u64 {
        match semantics {
            QueueSemantics::NodeExporter => self.tx_queue_other + self.tx_queue_listen,
            QueueSemantics::BytesOnly => self.tx_queue_other,
        }
    }

    /// The `state` label values and values of `node_tcp_connection_states`, in the order
    /// node_exporter exposes them (sorted by label). States without rows are left out, as
    /// node_exporter does, unless `zero_fill`; the two queue pseudo-states are always present.
    pub fn node_exporter_states(
        &self,
        semantics: QueueSemantics,
        zero_fill: bool,
    ) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        let mut series: [(&'static str, u64); 13] = [("", 0); 13];
        for (slot, code) in series.iter_mut().zip(1..=11u8) {
            let state = TcpState(code);
            *slot = (
                state.node_exporter_label().unwrap_or_default(),
                self.state(state),
            );
        }
        series[11] = ("rx_queued_bytes", self.rx_queued_bytes(semantics));
        series[12] = ("tx_queued_bytes", self.tx_queued_bytes(semantics));
        series.sort_unstable_by_key(|(label, _)| *label);
        series
            .into_iter()
            .filter(move |(label, n)| zero_fill || *n > 0 || label.ends_with("_queued_bytes"))
    }
}

/// The counting fast path: reads only the columns counting needs (state, queues, and for the few
/// states whose layout tells the row kind, the timer and the column count), in O(1) memory.
///
/// It checks less than [`TableReader`](crate::TableReader): rows whose other columns are damaged
/// are still counted. On well-formed tables both give identical [`TcpCounts`].
///
/// ```
/// use tcpwire::{Limits, StateCounter, TcpState};
///
/// let table = b"   0: 0100007F:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1061 1 0000000000000000 100 0 0 10 0\n   1: 0100007F:0016 0100007F:D2F0 01 00000010:00000000 01:00000014 00000000  1000        0 4242 2 0000000000000000 20 4 1 10 -1";
/// let mut counter = StateCounter::new(Limits::default());
/// for chunk in table.chunks(64) {
///     counter.feed(chunk);
/// }
/// counter.feed_eof(); // the last row has no newline: it is counted now
/// assert_eq!(counter.counts().state(TcpState::LISTEN), 1);
/// assert_eq!(counter.counts().state(TcpState::ESTABLISHED), 1);
/// assert_eq!(counter.stats().rows, 2);
/// ```
#[derive(Debug)]
pub struct StateCounter {
    lines: LineAssembler,
    tally: Tally,
}

/// What the counter accumulates, apart from the line framing that feeds it.
#[derive(Debug)]
struct Tally {
    max_line: usize,
    counts: TcpCounts,
    stats: Stats,
    first_error: Option<Error>,
}

impl StateCounter {
    /// A counter at the start of a stream.
    pub fn new(limits: Limits) -> Self {
        Self {
            lines: LineAssembler::new(limits.max_line),
            tally: Tally {
                max_line: limits.max_line,
                counts: TcpCounts::default(),
                stats: Stats::default(),
                first_error: None,
            },
        }
    }

    /// Counts the lines this chunk completes; a cut line is carried (bounded) to the next chunk.
    ///
    /// # Panics
    /// Never.
    pub fn feed(&mut self, chunk: &[u8]) {
        let tally = &mut self.tally;
        tally.stats.bytes += chunk.len() as u64;
        let mut lines = self.lines.feed(chunk);
        if let Some(first) = lines.first.take() {
            tally.count_line(first);
        }
        let (body, base) = (lines.body, lines.base);
        let mut pos = 0;
        while pos < body.len() {
            let fast = kernel_layout_prefix(body, pos).and_then(|(state, tx, rx, after)| {
                // `body` ends with a newline, so every line has one.
                let nl = find_newline(body, after)?;
                let kind = if RowKind::tail_matters(state) {
                    row_kind_from_rest(state, body.get(after..nl)?)?
                } else {
                    RowKind::Full
                };
                (nl - pos <= tally.max_line).then_some((state, tx, rx, kind, nl))
            });
            if let Some((state, tx, rx, kind, nl)) = fast {
                tally.stats.lines += 1;
                tally.stats.rows += 1;
                tally.counts.add(state, tx, rx, kind);
                pos = nl + 1;
                continue;
            }
            let Some(nl) = find_newline(body, pos) else {
                break;
            };
            let bytes = body.get(pos..nl).unwrap_or_default();
            let overlong = bytes.len() > tally.max_line;
            let offset = base + pos as u64;
            tally.count_line(Line {
                bytes: if overlong { &[] } else { bytes },
                offset,
                overlong,
            });
            pos = nl + 1;
        }
    }

    /// Ends the stream, counting a last line that had no newline (a truncated capture; recorded
    /// in [`Stats::unterminated_last_line`]). The counter can then read another table into the
    /// same counts.
    ///
    /// # Panics
    /// Never.
    pub fn feed_eof(&mut self) {
        if let Some(line) = self.lines.finish() {
            self.tally.stats.unterminated_last_line = true;
            self.tally.count_line(line);
        }
    }

    /// The counts so far.
    pub const fn counts(&self) -> &TcpCounts {
        &self.tally.counts
    }

    /// Line counters so far.
    pub const fn stats(&self) -> Stats {
        self.tally.stats
    }

    /// The first malformed line's error (a stream offset), to show a user; all are counted in
    /// [`Stats::malformed`].
    pub const fn first_error(&self) -> Option<Error> {
        self.tally.first_error
    }
}

impl Tally {
    /// Counts one framed line by the general path: any spacing, any digit count.
    fn count_line(&mut self, line: Line<'_>) {
        self.stats.lines += 1;
        let result = if line.overlong {
            self.stats.overlong += 1;
            Err(Error::new(
                ErrorKind::LineTooLong {
                    limit: self.max_line,
                },
                0,
            ))
        } else {
            match scan_counted_columns(line.bytes) {
                Err(_) if is_blank_line(line.bytes) => {
                    self.stats.blank_lines += 1;
                    return;
                }
                Err(_) if is_header(line.bytes) => {
                    self.stats.headers += 1;
                    return;
                }
                other => other,
            }
        };
        match result {
            Ok((state, tx, rx, kind)) => {
                self.stats.rows += 1;
                self.counts.add(state, tx, rx, kind);
            }
            Err(e) => {
                self.stats.malformed += 1;
                self.first_error
                    .get_or_insert_with(|| e.rebased(line.offset));
            }
        }
    }
}

/// Reads `sl`, skips the addresses, then decodes `st` and `tx_queue:rx_queue`. The general path,
/// for any spacing and digit count.
fn scan_counted_columns(line: &[u8]) -> Result<(TcpState, u32, u32, RowKind), Error> {
    let mut tokens = Tokens::new(line);
    let missing = |column| {
        Error::new(
            ErrorKind::MissingColumn { missing: column },
            line.len() as u64,
        )
    };
    let bad = |column, at: usize| Error::new(ErrorKind::BadColumn { column }, at as u64);
    let (at, slot) = tokens.next().ok_or_else(|| missing(Column::Slot))?;
    if slot.last() != Some(&b':') {
        return Err(bad(Column::Slot, at));
    }
    tokens.next().ok_or_else(|| missing(Column::LocalAddress))?;
    tokens
        .next()
        .ok_or_else(|| missing(Column::RemoteAddress))?;
    let (at, state) = tokens.next().ok_or_else(|| missing(Column::State))?;
    let state = hex_u32(state)
        .and_then(|s| u8::try_from(s).ok())
        .map(TcpState)
        .ok_or_else(|| bad(Column::State, at))?;
    let (at, queues) = tokens.next().ok_or_else(|| missing(Column::TxQueue))?;
    let (tx, rx) = split_colon(queues).ok_or_else(|| bad(Column::TxQueue, at))?;
    let tx = hex_u32(tx).ok_or_else(|| bad(Column::TxQueue, at))?;
    let rx = hex_u32(rx).ok_or_else(|| bad(Column::RxQueue, at))?;
    let kind = if RowKind::tail_matters(state) {
        let rest = line.get(tokens.position()..).unwrap_or_default();
        match (row_kind_from_rest(state, rest), tokens.next()) {
            (Some(kind), _) => kind,
            (None, None) => return Err(missing(Column::TimerKind)),
            (None, Some((at, _))) => return Err(bad(Column::TimerKind, at)),
        }
    } else {
        RowKind::Full
    };
    Ok((state, tx, rx, kind))
}

/// The row kind from what follows `tx_queue:rx_queue`: the timer kind, and whether the row has
/// the five-column TCP-state tail (12 or more columns follow for full rows). `None` when the timer
/// column is missing or malformed.
fn row_kind_from_rest(state: TcpState, rest: &[u8]) -> Option<RowKind> {
    // The kernel's ` %02X:%08lX ` first, at fixed offsets; anything else takes the general path.
    if rest.get(..1) == Some(b" ")
        && rest.get(3) == Some(&b':')
        && rest.get(12) == Some(&b' ')
        && hex8_at(rest, 4).is_some()
        && let Some(timer) = rest.get(1..3).and_then(hex_u64)
    {
        let columns = trim_padding_end(rest.get(12..)?);
        let has_tail = count_tokens(columns, 11) == 11;
        return Some(RowKind::classify(state, TimerKind(timer as u8), has_tail));
    }
    let mut tokens = Tokens::new(rest);
    let (_, timer) = tokens.next()?;
    let (kind, _) = split_colon(timer)?;
    let timer = u8::try_from(hex_u32(kind)?).ok()?;
    let has_tail = count_tokens(rest.get(tokens.position()..)?, 11) == 11;
    Some(RowKind::classify(state, TimerKind(timer), has_tail))
}

fn find_newline(body: &[u8], from: usize) -> Option<usize> {
    memchr::memchr(b'\n', body.get(from..)?).map(|i| from + i)
}

/// The kernel's exact layout up to the queues, read at fixed offsets: `%4d: ` slot, two endpoint
/// tokens of 13 (`%08X:%04X`) or 37 (IPv6) bytes, `%02X` state, `%08X:%08X` queues, then a blank.
/// Returns the state, queues and the offset after the queues. Every separator it accepts is a
/// space, so it never reads across a newline; `None` sends the line to the general path, which
/// gives the same answer for any line this accepts.
fn kernel_layout_prefix(body: &[u8], pos: usize) -> Option<(TcpState, u32, u32, usize)> {
    let at = |i: usize| body.get(i).copied();
    let mut i = pos;
    while at(i) == Some(b' ') {
        i += 1;
    }
    let digits = i;
    while at(i).is_some_and(|b| b.is_ascii_digit()) {
        i += 1;
    }
    if i == digits || at(i) != Some(b':') || at(i + 1) != Some(b' ') {
        return None;
    }
    i += 2;
    // The counts need no address, only the token boundaries the general path would find.
    for _ in 0..2 {
        let len = [13, 37]
            .into_iter()
            .find(|&len| at(i + len) == Some(b' ') && all_nonblank(body, i, len))?;
        i += len + 1;
    }
    let state = hex_u64(body.get(i..i + 2)?)? as u8;
    let tx = hex8_at(body, i + 3)?;
    let rx = hex8_at(body, i + 12)?;
    let blank_after = matches!(at(i + 20), Some(b' ' | b'\n'));
    if at(i + 2) != Some(b' ') || at(i + 11) != Some(b':') || !blank_after {
        return None;
    }
    Some((TcpState(state), tx, rx, i + 20))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wherever the fixed-offset path answers, the general path gives the same answer.
    #[test]
    fn fast_prefix_agrees_with_the_general_scan() {
        let tables: [&[u8]; 3] = [
            include_bytes!("../tests/data/real_tcp"),
            include_bytes!("../tests/data/real_tcp6"),
            include_bytes!("../tests/data/tcp_edge_cases"),
        ];
        let alphabet = b" :-0123456789ABCDEFaf\nxZ\t";
        let mut rng = 0x2545_F491_4F6C_DD1D_u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng as usize
        };
        let mut accepted = 0;
        for table in tables {
            for line in table
                .split(|&b| b == b'\n')
                .skip(1)
                .filter(|l| !l.is_empty())
            {
                for round in 0..200 {
                    let mut line = line.to_vec();
                    for _ in 0..round % 4 {
                        let at = next() % line.len();
                        line[at] = alphabet[next() % alphabet.len()];
                    }
                    line.push(b'\n');
                    let Some((state, tx, rx, after)) = kernel_layout_prefix(&line, 0) else {
                        continue;
                    };
                    let Some(nl) = find_newline(&line, after) else {
                        continue;
                    };
                    let Some(kind) = row_kind_from_rest(state, &line[after..nl]) else {
                        continue;
                    };
                    accepted += 1;
                    assert_eq!(
                        scan_counted_columns(&line[..nl]),
                        Ok((state, tx, rx, kind)),
                        "{:?}",
                        String::from_utf8_lossy(&line)
                    );
                }
            }
        }
        assert!(accepted > 1000, "{accepted}");
    }
}
