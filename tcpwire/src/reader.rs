//! Tier 2: the streaming table reader. Chunks in, typed rows out, in bounded memory.

use crate::error::{Error, ErrorKind};
use crate::lines::{Line, LineAssembler, Lines};
use crate::wire::row::{
    RowOptions, TcpRow, is_blank_line, is_header, parse_kernel_row_in_stream, parse_row,
};

/// Bounds on what a table may make a reader hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Longest line kept (default 1024 bytes; kernel rows are at most about 250). Longer lines are
    /// reported as [`ErrorKind::LineTooLong`] and skipped, so memory stays bounded whatever the input.
    pub max_line: usize,
}

impl Limits {
    /// Sets [`Limits::max_line`].
    pub const fn max_line(mut self, bytes: usize) -> Self {
        self.max_line = bytes;
        self
    }

    /// No bound on line length: only for inputs you trust.
    pub const fn unbounded_dangerous() -> Self {
        Self {
            max_line: usize::MAX,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_line: 1024 }
    }
}

/// How a reader reads a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Config {
    /// Byte order and strictness of the row grammar.
    pub row: RowOptions,
    /// Memory bounds.
    pub limits: Limits,
}

impl Config {
    /// Sets [`Config::row`].
    pub const fn row(mut self, row: RowOptions) -> Self {
        self.row = row;
        self
    }

    /// Sets [`Config::limits`].
    pub const fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
}

/// What a reader has seen so far; `Copy` counters for the caller's metrics backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Bytes fed.
    pub bytes: u64,
    /// Lines seen (headers, blanks, rows and malformed lines).
    pub lines: u64,
    /// Header lines (first token `sl`), wherever they appeared.
    pub headers: u64,
    /// Lines with no token at all.
    pub blank_lines: u64,
    /// Rows decoded.
    pub rows: u64,
    /// Lines that were neither header, blank nor a valid row (overlong lines included).
    pub malformed: u64,
    /// Of the malformed lines, those longer than [`Limits::max_line`].
    pub overlong: u64,
    /// Whether the last line of the stream had no newline (a truncated capture).
    pub unterminated_last_line: bool,
}

/// What a reader hands out for each line that is not a header or blank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A decoded row.
    Row(TcpRow<'a>),
    /// A line that is not a valid row. The rest of the table is unaffected.
    Malformed {
        /// Stream offset of the line's first byte.
        line_offset: u64,
        /// The line (empty when it exceeded [`Limits::max_line`] and was not kept).
        line: &'a [u8],
        /// What is wrong with it; its offset is a stream offset.
        error: Error,
    },
}

/// Classifies one line, updating the counters; `None` for headers and blank lines.
#[inline(always)]
fn interpret<'a>(
    line: Line<'a>,
    options: RowOptions,
    max_line: usize,
    stats: &mut Stats,
) -> Option<Event<'a>> {
    stats.lines += 1;
    if line.overlong {
        stats.malformed += 1;
        stats.overlong += 1;
        let error = Error::new(ErrorKind::LineTooLong { limit: max_line }, line.offset);
        return Some(Event::Malformed {
            line_offset: line.offset,
            line: line.bytes,
            error,
        });
    }
    // Rows are nearly every line: try the row grammar first and tell headers and blanks apart
    // only when it fails.
    match parse_row(line.bytes, options) {
        Ok(row) => {
            stats.rows += 1;
            Some(Event::Row(row))
        }
        Err(_) if is_blank_line(line.bytes) => {
            stats.blank_lines += 1;
            None
        }
        Err(_) if is_header(line.bytes) => {
            stats.headers += 1;
            None
        }
        Err(e) => {
            stats.malformed += 1;
            let error = e.rebased(line.offset);
            Some(Event::Malformed {
                line_offset: line.offset,
                line: line.bytes,
                error,
            })
        }
    }
}

/// Reads a `/proc/net/tcp` or `/proc/net/tcp6` table fed in chunks of any size.
///
/// Headers are recognised by their first token (`sl`) wherever they arrive, so a stream that starts
/// mid-table or concatenates both files reads fine. One bad row is one [`Event::Malformed`]; it
/// never affects its neighbours.
///
/// ```
/// use tcpwire::{Config, Event, TableReader};
///
/// let table = b"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1061 1 0000000000000000 100 0 0 10 0\n";
/// let mut reader = TableReader::new(Config::default());
/// let mut listening = 0;
/// for chunk in table.chunks(7) {
///     for event in reader.feed(chunk) {
///         match event {
///             Event::Row(row) if row.state() == tcpwire::TcpState::LISTEN => listening += 1,
///             Event::Row(_) => {}
///             Event::Malformed { line_offset, error, .. } => eprintln!("{line_offset}: {error}"),
///             _ => {}
///         }
///     }
/// }
/// assert!(reader.feed_eof().is_none());
/// assert_eq!(listening, 1);
/// ```
#[derive(Debug)]
pub struct TableReader {
    lines: LineAssembler,
    config: Config,
    stats: Stats,
}

impl TableReader {
    /// A reader at the start of a stream.
    pub const fn new(config: Config) -> Self {
        Self {
            lines: LineAssembler::new(config.limits.max_line),
            config,
            stats: zero_stats(),
        }
    }

    /// Takes the next chunk and returns the events of the lines it completes. A line cut by the
    /// chunk's end is kept (bounded) and completed by the next chunk or by
    /// [`TableReader::feed_eof`].
    ///
    /// Dropping the returned [`Rows`] early drains it: the rest of the chunk is consumed as if
    /// iterated (counted in [`TableReader::stats`], nothing carried over or lost from the stream's
    /// framing); only the events themselves are not seen.
    ///
    /// # Panics
    /// Never.
    pub fn feed<'a>(&'a mut self, chunk: &'a [u8]) -> Rows<'a> {
        self.stats.bytes += chunk.len() as u64;
        Rows {
            lines: self.lines.feed(chunk),
            options: self.config.row,
            max_line: self.config.limits.max_line,
            stats: &mut self.stats,
        }
    }

    /// Ends the stream: a last line without a newline (a truncated capture) is read now and
    /// returned as its event — a final [`Event::Row`] (or [`Event::Malformed`]) the caller must
    /// handle like any other; `None` when the stream ended with a newline (or the line was a
    /// header or blank). [`Stats::unterminated_last_line`] records that it happened. The reader
    /// can then start another table.
    ///
    /// ```
    /// use tcpwire::{Config, Event, TableReader};
    ///
    /// // A capture cut just before the last newline.
    /// let table = b"   0: 0100007F:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1061 1 0000000000000000 100 0 0 10 0";
    /// let mut reader = TableReader::new(Config::default());
    /// assert_eq!(reader.feed(table).count(), 0); // the row is still held
    /// assert!(matches!(reader.feed_eof(), Some(Event::Row(_))));
    /// assert!(reader.stats().unterminated_last_line);
    /// ```
    ///
    /// # Panics
    /// Never.
    pub fn feed_eof(&mut self) -> Option<Event<'_>> {
        let line = self.lines.finish()?;
        self.stats.unterminated_last_line = true;
        interpret(
            line,
            self.config.row,
            self.config.limits.max_line,
            &mut self.stats,
        )
    }

    /// Counters so far.
    pub const fn stats(&self) -> Stats {
        self.stats
    }

    /// Bytes of a partial line currently held (at most [`Limits::max_line`]).
    pub const fn buffered(&self) -> usize {
        self.lines.carried()
    }
}

const fn zero_stats() -> Stats {
    Stats {
        bytes: 0,
        lines: 0,
        headers: 0,
        blank_lines: 0,
        rows: 0,
        malformed: 0,
        overlong: 0,
        unterminated_last_line: false,
    }
}

/// The events of one chunk; see [`TableReader::feed`].
///
/// Dropping it early drains it: the remaining lines of the chunk are consumed exactly as if they
/// had been iterated (framed, parsed and counted in [`Stats`]), so the stream stays consistent and
/// nothing is lost but the events the caller chose not to look at. This is the rule for every
/// borrowing iterator of the family.
///
/// ```
/// use tcpwire::{Config, TableReader};
///
/// let table = b"   0: 0100007F:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1061 1 0000000000000000 100 0 0 10 0\n   1: 0100007F:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1062 1 0000000000000000 100 0 0 10 0\n";
/// let mut reader = TableReader::new(Config::default());
/// let first = reader.feed(table).next(); // look at one row, drop the rest
/// assert!(first.is_some());
/// assert_eq!(reader.stats().rows, 2); // both were read
/// ```
#[derive(Debug)]
pub struct Rows<'a> {
    lines: Lines<'a>,
    options: RowOptions,
    max_line: usize,
    stats: &'a mut Stats,
}

impl<'a> Rows<'a> {
    #[inline(always)]
    fn next_event(&mut self) -> Option<Event<'a>> {
        if let Some(first) = self.lines.first.take()
            && let Some(event) = interpret(first, self.options, self.max_line, self.stats)
        {
            return Some(event);
        }
        loop {
            // Most lines are kernel rows lying whole in the chunk: parse them and find their end
            // in one pass; anything else is framed first and goes the general way.
            let fast = parse_kernel_row_in_stream(self.lines.body, self.options.byte_order)
                .filter(|(_, end)| *end <= self.max_line);
            if let Some((row, end)) = fast {
                self.lines.advance(end + 1);
                self.stats.lines += 1;
                self.stats.rows += 1;
                return Some(Event::Row(row));
            }
            let line = self.lines.next()?;
            if let Some(event) = interpret(line, self.options, self.max_line, self.stats) {
                return Some(event);
            }
        }
    }
}

impl<'a> Iterator for Rows<'a> {
    type Item = Event<'a>;

    #[inline]
    fn next(&mut self) -> Option<Event<'a>> {
        self.next_event()
    }

    /// Internal iteration (`for_each`, `fold`, `filter_map(..).sum()` …): each event is built
    /// right where the closure takes it, sparing the copy of a row that `next` returns by value.
    #[inline]
    fn fold<B, F: FnMut(B, Event<'a>) -> B>(mut self, init: B, mut f: F) -> B {
        let mut acc = init;
        while let Some(event) = self.next_event() {
            acc = f(acc, event);
        }
        acc
    }
}

impl Drop for Rows<'_> {
    /// Keeps [`Stats`] exact when the caller stops early.
    fn drop(&mut self) {
        for _ in self.by_ref() {}
    }
}
