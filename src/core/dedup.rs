//! Duplicate suppression in a bounded window (domain.md §3): RingCentral redelivers notifications
//! (WebSocket recovery replays, overlapping subscriptions, webhook retries).
//!
//! The window remembers the last `capacity` keys, first in first out. Keys are 64-bit SipHash
//! digests with fixed keys, so equal inputs give equal keys in every process; with a window of
//! 100,000 the chance that a new key collides with a remembered one is about 5e-15 per lookup.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hash, Hasher};

/// Remembers the most recent keys, up to a fixed number.
#[derive(Debug)]
pub struct DedupWindow {
    capacity: usize,
    order: VecDeque<u64>,
    seen: HashSet<u64, BuildHasherDefault<PrehashedKey>>,
}

impl DedupWindow {
    /// A window of `capacity` keys; 0 disables suppression.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            order: VecDeque::with_capacity(capacity.min(1 << 16)),
            seen: HashSet::with_capacity_and_hasher(capacity.min(1 << 16), Default::default()),
        }
    }

    pub fn contains(&self, key: u64) -> bool {
        self.seen.contains(&key)
    }

    /// Remembers `key`, forgetting the oldest key when full.
    pub fn insert(&mut self, key: u64) {
        if self.capacity == 0 || !self.seen.insert(key) {
            return;
        }
        self.order.push_back(key);
        if self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.seen.remove(&oldest);
            }
        }
    }

    /// Forgets everything: after a transaction aborts, what was "emitted" was never published.
    pub fn clear(&mut self) {
        self.order.clear();
        self.seen.clear();
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

/// The stable 64-bit digest of a value.
pub fn digest<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// The keys are digests already; hashing them again would be wasted work.
#[derive(Default)]
pub struct PrehashedKey(u64);

impl Hasher for PrehashedKey {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_up_to_capacity_then_forgets_the_oldest() {
        let mut w = DedupWindow::new(2);
        w.insert(1);
        w.insert(2);
        assert!(w.contains(1) && w.contains(2));
        w.insert(3);
        assert!(!w.contains(1));
        assert!(w.contains(2) && w.contains(3));
        assert_eq!(w.len(), 2);
    }

    #[test]
    fn reinserting_a_key_does_not_grow_the_window() {
        let mut w = DedupWindow::new(2);
        w.insert(1);
        w.insert(1);
        assert_eq!(w.len(), 1);
    }

    #[test]
    fn capacity_zero_remembers_nothing() {
        let mut w = DedupWindow::new(0);
        w.insert(1);
        assert!(!w.contains(1));
    }

    #[test]
    fn digests_are_deterministic() {
        assert_eq!(digest("a:b:1"), digest("a:b:1"));
        assert_ne!(digest("a:b:1"), digest("a:b:2"));
    }
}
