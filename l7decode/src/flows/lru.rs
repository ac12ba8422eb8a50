//! Flows by how long they have been quiet: intrusive doubly linked lists over slot numbers, one
//! per idle-timeout class, so touching a flow, finding the quietest one and removing any are
//! O(1) and allocate nothing beyond one link record per slot.

const NIL: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Links {
    prev: u32,
    next: u32,
    /// The list the slot is on, or `None`.
    list: Option<u8>,
}

/// `LISTS` lists of slot numbers, each ordered from least to most recently touched.
#[derive(Debug)]
pub(super) struct Lru<const LISTS: usize> {
    links: Vec<Links>,
    heads: [u32; LISTS],
    tails: [u32; LISTS],
}

impl<const LISTS: usize> Lru<LISTS> {
    pub(super) const fn new() -> Self {
        Self {
            links: Vec::new(),
            heads: [NIL; LISTS],
            tails: [NIL; LISTS],
        }
    }

    /// Bytes of heap per slot.
    pub(super) const SLOT_BYTES: usize = size_of::<Links>();

    fn link(&mut self, slot: u32) -> Option<&mut Links> {
        self.links.get_mut(slot as usize)
    }

    /// Takes `slot` off its list, if it is on one.
    pub(super) fn remove(&mut self, slot: u32) {
        let Some(&Links {
            prev,
            next,
            list: Some(list),
        }) = self.links.get(slot as usize)
        else {
            return;
        };
        let list = usize::from(list);
        match self.link(prev) {
            Some(p) => p.next = next,
            None => {
                if let Some(h) = self.heads.get_mut(list) {
                    *h = next;
                }
            }
        }
        match self.link(next) {
            Some(n) => n.prev = prev,
            None => {
                if let Some(t) = self.tails.get_mut(list) {
                    *t = prev;
                }
            }
        }
        if let Some(l) = self.link(slot) {
            *l = Links {
                prev: NIL,
                next: NIL,
                list: None,
            };
        }
    }

    /// Makes `slot` the most recently touched of `list` (moving it from any other list).
    pub(super) fn touch(&mut self, slot: u32, list: usize) {
        if list >= LISTS {
            return;
        }
        let index = slot as usize;
        if self.links.len() <= index {
            self.links.resize(
                index + 1,
                Links {
                    prev: NIL,
                    next: NIL,
                    list: None,
                },
            );
        }
        let already_last = self
            .links
            .get(index)
            .is_some_and(|l| l.list == Some(list as u8) && l.next == NIL);
        if already_last {
            return;
        }
        self.remove(slot);
        let tail = self.tails.get(list).copied().unwrap_or(NIL);
        if let Some(l) = self.link(slot) {
            *l = Links {
                prev: tail,
                next: NIL,
                list: Some(list as u8),
            };
        }
        match self.link(tail) {
            Some(t) => t.next = slot,
            None => {
                if let Some(h) = self.heads.get_mut(list) {
                    *h = slot;
                }
            }
        }
        if let Some(t) = self.tails.get_mut(list) {
            *t = slot;
        }
    }

    /// The least recently touched slot of `list`.
    pub(super) fn front(&self, list: usize) -> Option<u32> {
        self.heads.get(list).copied().filter(|&h| h != NIL)
    }

    /// The slot after `slot` on its list.
    #[cfg(test)]
    pub(super) fn next(&self, slot: u32) -> Option<u32> {
        self.links
            .get(slot as usize)
            .map(|l| l.next)
            .filter(|&n| n != NIL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(lru: &Lru<2>, list: usize) -> Vec<u32> {
        let mut out = Vec::new();
        let mut at = lru.front(list);
        while let Some(slot) = at {
            out.push(slot);
            at = lru.next(slot);
        }
        out
    }

    #[test]
    fn touch_moves_to_the_back_and_between_lists() {
        let mut lru = Lru::<2>::new();
        for slot in [3, 1, 2] {
            lru.touch(slot, 0);
        }
        assert_eq!(order(&lru, 0), [3, 1, 2]);
        lru.touch(3, 0);
        assert_eq!(order(&lru, 0), [1, 2, 3]);
        lru.touch(2, 1);
        assert_eq!((order(&lru, 0), order(&lru, 1)), (vec![1, 3], vec![2]));
        lru.remove(1);
        lru.remove(1);
        assert_eq!(order(&lru, 0), [3]);
        lru.remove(3);
        lru.remove(2);
        assert_eq!((lru.front(0), lru.front(1)), (None, None));
        lru.touch(0, 5); // no such list: ignored
        assert_eq!(lru.front(0), None);
    }
}
