//! Bytes a direction holds across feed calls (a head being gathered, a candidate message start,
//! bytes to read again), each with its arrival time. Like the sub-decoders' resynchronisation
//! window, the times go with the bytes: a message found in bytes read again starts at the time
//! its first byte arrived, not at the time of the bytes held before it, so records do not depend
//! on how the stream was cut into feed calls. Times are kept as runs (one per feed call that
//! contributed, merged when equal), so what is held costs at most one run per byte.

#![deny(clippy::indexing_slicing)]

use core::ops::Deref;

use bytes::{Bytes, BytesMut};

use crate::Timestamp;

#[derive(Debug, Default)]
pub(crate) struct Held {
    bytes: BytesMut,
    /// How many bytes arrived at each time, in order; together they cover `bytes`.
    runs: Vec<(usize, Timestamp)>,
}

impl Held {
    /// Appends `bytes`, which arrived at `at`.
    pub(crate) fn extend(&mut self, bytes: &[u8], at: Timestamp) {
        if bytes.is_empty() {
            return;
        }
        self.bytes.extend_from_slice(bytes);
        match self.runs.last_mut() {
            Some((len, time)) if *time == at => *len += bytes.len(),
            _ => self.runs.push((bytes.len(), at)),
        }
    }

    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.runs.clear();
    }

    /// Heap bytes held, allocated capacity included.
    pub(crate) fn capacity(&self) -> usize {
        self.bytes.capacity() + self.runs.capacity() * size_of::<(usize, Timestamp)>()
    }

    /// When the first byte arrived.
    pub(crate) fn first_time(&self) -> Option<Timestamp> {
        self.runs.first().map(|(_, at)| *at)
    }

    /// When byte `index` arrived.
    pub(crate) fn time_at(&self, index: usize) -> Option<Timestamp> {
        let mut end = 0;
        self.runs.iter().find_map(|(len, at)| {
            end += len;
            (index < end).then_some(*at)
        })
    }

    /// Bytes `from..to`, with their times (a copy; the error paths use it).
    pub(crate) fn range(&self, from: usize, to: usize) -> Self {
        let mut out = Self::default();
        let mut start = 0;
        for (len, at) in &self.runs {
            let end = start + len;
            let (lo, hi) = (start.max(from), end.min(to));
            if lo < hi {
                out.extend(self.bytes.get(lo..hi).unwrap_or_default(), *at);
            }
            start = end;
        }
        out
    }

    /// The first `n` bytes (the rest stays held, its times with it).
    pub(crate) fn split_to(&mut self, n: usize) -> Bytes {
        let n = n.min(self.bytes.len());
        let (mut left, mut whole) = (n, 0);
        for (len, _) in &mut self.runs {
            if left < *len {
                *len -= left;
                break;
            }
            left -= *len;
            whole += 1;
            if left == 0 {
                break;
            }
        }
        self.runs.drain(..whole);
        self.bytes.split_to(n).freeze()
    }

    /// The held bytes as runs of bytes that arrived together, each with its time, emptying
    /// this.
    pub(crate) fn take_runs(&mut self) -> (BytesMut, Vec<(usize, Timestamp)>) {
        (
            core::mem::take(&mut self.bytes),
            core::mem::take(&mut self.runs),
        )
    }

    /// Each run of bytes that arrived together, with its time.
    pub(crate) fn runs(&self) -> impl Iterator<Item = (&[u8], Timestamp)> + '_ {
        let mut start = 0;
        self.runs.iter().map(move |(len, at)| {
            let run = self.bytes.get(start..start + len).unwrap_or_default();
            start += len;
            (run, *at)
        })
    }
}

impl Deref for Held {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held() -> Held {
        let mut h = Held::default();
        h.extend(b"ab", Timestamp(1));
        h.extend(b"", Timestamp(9));
        h.extend(b"cd", Timestamp(2));
        h.extend(b"e", Timestamp(2));
        h.extend(b"f", Timestamp(3));
        h
    }

    #[test]
    fn times_follow_the_bytes() {
        let mut h = held();
        assert_eq!(&*h, b"abcdef");
        assert_eq!(h.first_time(), Some(Timestamp(1)));
        let times: Vec<_> = (0..7).map(|i| h.time_at(i)).collect();
        let expected = [1, 1, 2, 2, 2, 3].map(|t| Some(Timestamp(t)));
        assert_eq!(times[..6], expected);
        assert_eq!(times[6], None);
        let middle = h.range(1, 4);
        let runs: Vec<_> = middle.runs().collect();
        assert_eq!(
            runs,
            [(&b"b"[..], Timestamp(1)), (&b"cd"[..], Timestamp(2))]
        );
        assert_eq!(&h.split_to(3)[..], b"abc");
        assert_eq!(h.first_time(), Some(Timestamp(2)));
        assert_eq!(&*h, b"def");
        let (bytes, runs) = h.take_runs();
        assert_eq!(
            (&bytes[..], runs),
            (&b"def"[..], vec![(2, Timestamp(2)), (1, Timestamp(3))])
        );
        assert!(h.is_empty() && h.first_time().is_none());
    }

    #[test]
    fn splitting_at_run_boundaries_and_inside_runs() {
        for (n, rest) in [(0, 6), (2, 4), (3, 3), (5, 1), (6, 0), (9, 0)] {
            let mut h = held();
            let head = h.split_to(n);
            assert_eq!(head.len() + h.len(), 6, "{n}");
            assert_eq!(h.len(), rest, "{n}");
            let times: Vec<_> = (0..rest).map(|i| h.time_at(i).unwrap().0).collect();
            assert_eq!(times, [1, 1, 2, 2, 2, 3][6 - rest..], "{n}");
            let covered: usize = h.runs().map(|(bytes, _)| bytes.len()).sum();
            assert_eq!(covered, rest, "{n}");
        }
    }
}
