// Properties of the streaming readers on arbitrary bytes, split at points drawn from the input:
// - `TableReader` gives identical events whole, split, and byte by byte (chunking invariance);
// - its carry never exceeds `Limits::max_line`;
// - `StateCounter` sees the same lines, headers and blanks, and counts at least every row the
//   full parser accepts (it checks fewer columns), with identical counts when no line is malformed.

/// Runs every property on one input.
pub(crate) fn check(data: &[u8]) {
    use tcpwire::{Config, Event, Limits, StateCounter, TableReader, TcpCounts};

    fn read(chunks: &[&[u8]], limits: Limits) -> (Vec<String>, TcpCounts, tcpwire::Stats) {
        let mut reader = TableReader::new(Config::default().limits(limits));
        let mut events = Vec::new();
        let mut counts = TcpCounts::default();
        let mut record = |event: Event<'_>, counts: &mut TcpCounts| {
            if let Event::Row(row) = &event {
                counts.add_row(row);
            }
            events.push(format!("{event:?}"));
        };
        for chunk in chunks {
            for event in reader.feed(chunk) {
                record(event, &mut counts);
            }
            assert!(reader.buffered() <= limits.max_line);
        }
        if let Some(event) = reader.feed_eof() {
            record(event, &mut counts);
        }
        (events, counts, reader.stats())
    }

    let limits = Limits::default().max_line(200);
    let (split_seed, body) = data.split_first().map_or((0, data), |(s, b)| (*s, b));
    let whole = read(&[body], limits);
    let step = usize::from(split_seed % 64) + 1;
    let split: Vec<&[u8]> = body.chunks(step).collect();
    assert_eq!(whole, read(&split, limits), "chunks of {step}");
    if body.len() <= 512 {
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(whole, read(&bytes, limits), "1-byte chunks");
    }

    let mut counter = StateCounter::new(limits);
    for chunk in &split {
        counter.feed(chunk);
    }
    counter.feed_eof();
    let (_, counts, stats) = whole;
    let fast = counter.stats();
    assert_eq!((fast.lines, fast.headers, fast.blank_lines), (stats.lines, stats.headers, stats.blank_lines));
    assert!(fast.rows >= stats.rows);
    if stats.malformed == 0 {
        assert_eq!(counter.counts(), &counts);
    }
}
