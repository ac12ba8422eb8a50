//! What a connection holds and waits for: the bytes it buffers (for a caller's memory budget)
//! and the response deadlines of its pending requests.

use std::collections::VecDeque;

use super::Connection;
use crate::session::Session as _;
use crate::{Event, Timestamp};

impl Connection {
    /// Heap bytes the decoder holds now beyond its fixed size: heads being gathered, requests
    /// waiting for their responses, session buffers, queued events. What a flow table charges to
    /// its budget.
    pub fn buffered_bytes(&self) -> usize {
        self.session.buffered_bytes()
            + self.events.capacity() * size_of::<Event>()
            + self
                .earlier
                .as_ref()
                .map_or(0, |_| size_of::<crate::Stats>())
    }

    /// Swaps the event queue with `queue`: the flow tracker lends every connection one queue
    /// while feeding it, so idle connections hold none.
    pub(crate) fn swap_events(&mut self, queue: &mut VecDeque<Event>) {
        core::mem::swap(&mut self.events, queue);
    }

    /// When [`Connection::handle_timeout`] must next be called: the earliest response deadline
    /// ([`Limits::response_timeout`](crate::Limits::response_timeout) after a request ended).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.session.poll_timeout()
    }

    /// Reports the requests whose response timeout passed at `now`.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.session.handle_timeout(now, &mut self.events);
    }
}
