//! The resynchronisation window the sub-decoders share: bytes judged as a candidate message
//! start, each kept with its arrival time, slid forward one byte at a time. Judging a prefix that
//! grows byte by byte gives the same answer however the stream was chunked, and bytes replayed
//! from the window keep their own times.

use crate::Timestamp;

#[derive(Debug, Default)]
pub(crate) struct Window {
    bytes: Vec<u8>,
    times: Vec<Timestamp>,
}

impl Window {
    /// Adds `byte`, then drops bytes from the front while `judge` rejects the window
    /// (`Some(None)`). Returns how many were dropped and what `judge` accepted the window as
    /// (`None` while it needs more bytes, or once the window emptied).
    pub(crate) fn push<T>(
        &mut self,
        byte: u8,
        now: Timestamp,
        judge: impl Fn(&[u8]) -> Option<Option<T>>,
    ) -> (u64, Option<T>) {
        self.hold(byte, now);
        let mut dropped = 0;
        while let Some(verdict) = judge(&self.bytes) {
            if verdict.is_some() {
                return (dropped, verdict);
            }
            self.bytes.remove(0);
            self.times.remove(0);
            dropped += 1;
        }
        (dropped, None)
    }

    /// Adds `byte` without judging (bytes already read that must be judged again).
    pub(crate) fn hold(&mut self, byte: u8, at: Timestamp) {
        self.bytes.push(byte);
        self.times.push(at);
    }

    /// The bytes held, each with its arrival time, emptying the window.
    pub(crate) fn take(&mut self) -> impl Iterator<Item = (u8, Timestamp)> + use<> {
        let bytes = core::mem::take(&mut self.bytes);
        let times = core::mem::take(&mut self.times);
        bytes.into_iter().zip(times)
    }

    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        self.times.clear();
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.bytes.capacity() + self.times.capacity() * size_of::<Timestamp>()
    }

    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }
}
