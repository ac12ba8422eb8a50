//! Flows that ended with FIN or RST, remembered for a while (like the kernel's TIME_WAIT) so that
//! what still arrives for them (the last ACK, retransmissions, a duplicate of the last response,
//! a replayed SYN) is recognised and dropped instead of opening a new flow.

use std::collections::{HashMap, VecDeque};

use super::FlowKey;
use crate::Timestamp;

/// What is remembered of a closed flow.
#[derive(Debug, Clone, Copy)]
pub(super) struct Closed {
    /// Whether the client is `FlowKey::a`.
    pub(super) client_is_a: bool,
    /// The client's initial sequence number, when its SYN was seen.
    pub(super) client_isn: Option<u32>,
    /// Per direction (client, server): the sequence number after the last byte seen.
    pub(super) ends: [Option<u32>; 2],
    pub(super) closed_at: Timestamp,
}

/// Whether sequence number `seq` may belong to the stream whose next byte is `next`: within
/// 16 MiB of it either way (more than a stream has in flight). A new connection on the same
/// addresses starts elsewhere: at a random sequence number, or (Linux, RFC 6528) at the old one
/// plus a clock ticking 15.6 million times a second.
pub(super) const fn same_stream(seq: u32, next: u32) -> bool {
    const SAME_STREAM: u32 = 1 << 24;
    let dist = seq.wrapping_sub(next);
    dist < SAME_STREAM || dist > SAME_STREAM.wrapping_neg()
}

impl Closed {
    /// Whether a segment with this sequence number and SYN flag, sent by the client (`true`) or
    /// the server, belongs to the closed flow.
    pub(super) fn owns(&self, from_client: bool, syn: bool, seq: u32) -> bool {
        if syn && from_client {
            // A replayed SYN carries the old ISN; a new connection a new one (and when the old
            // ISN is unknown, a SYN is taken as a new connection).
            return self.client_isn.is_some_and(|isn| isn == seq);
        }
        let end = self.ends.get(usize::from(!from_client)).copied().flatten();
        end.is_none_or(|end| same_stream(seq, end))
    }
}

/// At most `capacity` closed flows, each for at most `linger` nanoseconds.
#[derive(Debug, Default)]
pub(super) struct ClosedFlows {
    map: HashMap<FlowKey, Closed>,
    /// In the order they closed, to expire and to evict the oldest first.
    order: VecDeque<(FlowKey, Timestamp)>,
}

impl ClosedFlows {
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    pub(super) fn get(&self, key: &FlowKey) -> Option<&Closed> {
        self.map.get(key)
    }

    pub(super) fn forget(&mut self, key: &FlowKey) {
        self.map.remove(key);
    }

    /// Remembers a flow; the oldest is forgotten when `capacity` are already remembered.
    pub(super) fn insert(&mut self, key: FlowKey, closed: Closed, capacity: usize) {
        if capacity == 0 {
            return;
        }
        while self.map.len() >= capacity {
            if !self.pop_oldest() {
                break;
            }
        }
        self.order.push_back((key, closed.closed_at));
        self.map.insert(key, closed);
        // Entries whose flow was forgotten or closed again are dropped here, so the queue never
        // outgrows the map by much.
        if self.order.len() > 2 * self.map.len() + 16 {
            let map = &self.map;
            self.order
                .retain(|(k, at)| map.get(k).is_some_and(|c| c.closed_at == *at));
        }
    }

    /// Forgets every flow closed at or before `until`.
    pub(super) fn expire(&mut self, until: Timestamp) {
        while let Some(&(_, at)) = self.order.front() {
            if at > until {
                break;
            }
            self.pop_oldest();
        }
    }

    /// When the oldest remembered flow closed.
    pub(super) fn oldest(&self) -> Option<Timestamp> {
        self.order.front().map(|(_, at)| *at)
    }

    fn pop_oldest(&mut self) -> bool {
        let Some((key, at)) = self.order.pop_front() else {
            return false;
        };
        if self.map.get(&key).is_some_and(|c| c.closed_at == at) {
            self.map.remove(&key);
        }
        true
    }
}
