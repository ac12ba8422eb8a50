//! Bytes a sub-decoder skipped while out of sync, per direction: reported as one
//! [`Event::Resynced`] when sync returns or the direction ends, so the events do not depend on how
//! the stream was chunked.

use std::collections::VecDeque;

use crate::{Direction, Event};

#[derive(Debug, Default)]
pub(crate) struct Skipped {
    /// Not yet reported, client then server.
    pending: [u64; 2],
    /// Everything ever skipped.
    total: u64,
}

impl Skipped {
    pub(crate) fn add(&mut self, dir: Direction, n: u64) {
        if let Some(p) = self
            .pending
            .get_mut(usize::from(dir == Direction::ServerToClient))
        {
            *p += n;
        }
        self.total += n;
    }

    pub(crate) fn report(&mut self, dir: Direction, events: &mut VecDeque<Event>) {
        let slot = self
            .pending
            .get_mut(usize::from(dir == Direction::ServerToClient));
        let skipped = slot.map(core::mem::take).unwrap_or(0);
        if skipped > 0 {
            events.push_back(Event::Resynced {
                direction: dir,
                skipped,
            });
        }
    }

    pub(crate) const fn total(&self) -> u64 {
        self.total
    }
}
