//! Duplicate suppression in a bounded window (docs/domain.md §3): RingCentral redelivers
//! notifications (WebSocket recovery replays, overlapping subscriptions, webhook retries).
//!
//! The window remembers the last `capacity` keys, first in first out. Keys are 64-bit digests
//! (`KeyHasher`, fixed constants), so equal inputs give equal keys in every process; with a window
//! of 100,000 the chance that a new key collides with a remembered one is about 5e-15 per lookup.
//! A 64-bit digest is no defence against someone who crafts colliding inputs, keyed or not
//! (birthday search takes 2^32 tries); a suppressed record is counted, never silently dropped.

use std::hash::{Hash, Hasher};

/// Remembers the most recent keys, up to a fixed number.
pub type DedupWindow = Window<()>;

/// Remembers the most recent keys, up to a fixed number, each with a value.
///
/// An open-addressing table of (key, insertion number, value) slots with linear probing: a lookup
/// reads one or two neighbouring slots, usually one cache line (a general-purpose map reads its
/// control bytes and its entry in two places, and in a window of 100,000 keys each is a cache
/// miss). A key is remembered while fewer than `capacity` insertions came after its own;
/// forgotten keys keep their slot until an insertion reuses it or the table is rebuilt without
/// them.
#[derive(Debug, Clone)]
pub struct Window<V> {
    capacity: u64,
    /// Insertion number of the next insertion, counted from 1 (0 marks an empty slot).
    next: u64,
    slots: Vec<Slot<V>>,
    /// Slots in use, forgotten keys included.
    occupied: usize,
    /// What changes overwrote since the oldest mark still wanted (`keep_undo`); `None` when the
    /// window is never rolled back.
    journal: Option<Journal<V>>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Slot<V> {
    key: u64,
    /// Insertion number; 0 for an empty slot.
    at: u64,
    value: V,
}

/// What a change overwrote, to put back on `rollback`.
#[derive(Debug, Clone)]
enum Undo<V> {
    /// A slot's contents before it was written.
    Slot { index: usize, was: Slot<V> },
    /// The whole table before it was rebuilt (`make_room`).
    Table(Vec<Slot<V>>),
}

impl<V> Undo<V> {
    /// Bytes held, for the journal's bound.
    fn weight(&self) -> usize {
        match self {
            Undo::Slot { .. } => std::mem::size_of::<Self>(),
            Undo::Table(slots) => std::mem::size_of::<Self>() + std::mem::size_of_val(&slots[..]),
        }
    }
}

/// Undo information, newest last, from the oldest mark still wanted on.
#[derive(Debug, Clone, Default)]
struct Journal<V> {
    undo: Vec<Undo<V>>,
    /// Entries dropped from the front (`settle`): marks count positions from the first entry ever.
    settled: usize,
    /// Bytes the entries hold.
    held: usize,
    /// Changes when marks taken before can no longer be rolled back to: `clear`, the journal
    /// outgrew its bound and was dropped, or a rollback.
    epoch: u64,
}

impl<V> Journal<V> {
    /// Drops every entry: marks taken so far are of no use any more.
    fn restart(&mut self) {
        self.undo = Vec::new();
        self.settled = 0;
        self.held = 0;
        self.epoch += 1;
    }
}

/// A state of a window that `rollback` can return it to (`Window::mark`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    epoch: u64,
    position: usize,
    next: u64,
    occupied: usize,
}

/// Slots of a new window; it grows with use.
const INITIAL_SLOTS: usize = 1024;

/// The least a window's undo journal may hold, in bytes (about 32,000 changes), so that a window
/// still small (a process just started) keeps it for transactions of any usual size.
const JOURNAL_FLOOR_BYTES: usize = 1 << 20;

impl<V: Copy + Default> Window<V> {
    /// A window of `capacity` keys; 0 disables it. Memory grows with use, up to the slot size
    /// (16 bytes plus the value) times the smallest power of two of at least twice the capacity.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity as u64,
            next: 1,
            slots: Vec::new(),
            occupied: 0,
            journal: None,
        }
    }

    /// From now on, keeps what each change overwrites, so that the window can be rolled back to
    /// a mark (`mark`, `rollback`): under exactly-once, what an aborted transaction emitted is
    /// forgotten and what committed transactions emitted is kept. The journal holds at most the
    /// table's bytes, or `JOURNAL_FLOOR_BYTES` while the table is smaller; past that it is
    /// dropped, and rolling back to an earlier mark fails (the caller then forgets everything, as
    /// without a journal). So a table grown since the mark is kept for the rollback, but a table
    /// larger than the floor rebuilt at its own size (forgotten keys dropped, at least 64,000 new
    /// keys apart in a full window of 100,000) is not: holding a whole table more was seen to raise
    /// the peak memory under exactly-once by a few MiB, and the rollback that needs it is the rare
    /// abort of a transaction that rebuilt a table.
    pub fn keep_undo(&mut self) {
        self.journal.get_or_insert_with(Journal::default);
    }

    /// The window's state now, if it keeps undo information.
    pub fn mark(&self) -> Option<Mark> {
        self.journal.as_ref().map(|journal| Mark {
            epoch: journal.epoch,
            position: journal.settled + journal.undo.len(),
            next: self.next,
            occupied: self.occupied,
        })
    }

    /// Returns the window to its state at `mark`. False, changing nothing, when that state can no
    /// longer be restored: the window was cleared, its journal outgrew its bound, it was settled
    /// past the mark, or rolled back since the mark was taken (to it or elsewhere). A rollback
    /// leaves no mark usable: take a new one.
    pub fn rollback(&mut self, mark: Mark) -> bool {
        let Window {
            slots,
            journal: Some(journal),
            ..
        } = self
        else {
            return false;
        };
        let Some(keep) = mark
            .position
            .checked_sub(journal.settled)
            .filter(|&keep| mark.epoch == journal.epoch && keep <= journal.undo.len())
        else {
            return false;
        };
        // Newest first: a table rebuilt puts back the old table, which older entries index.
        while journal.undo.len() > keep {
            match journal.undo.pop() {
                Some(Undo::Slot { index, was }) => slots[index] = was,
                Some(Undo::Table(table)) => *slots = table,
                None => break,
            }
        }
        // Marks taken after the target describe states that no longer exist, and the entries
        // before it lead to marks the caller has no more use for (it settles before it rolls
        // back, at the start of the aborted transaction): none is kept.
        journal.restart();
        self.next = mark.next;
        self.occupied = mark.occupied;
        true
    }

    /// Drops the undo information from before `mark`: the window will not be rolled back past it.
    pub fn settle(&mut self, mark: Mark) {
        let Some(journal) = &mut self.journal else {
            return;
        };
        if mark.epoch != journal.epoch || mark.position <= journal.settled {
            return;
        }
        let drop = (mark.position - journal.settled).min(journal.undo.len());
        for undo in journal.undo.drain(..drop) {
            journal.held -= undo.weight();
        }
        journal.settled += drop;
    }

    /// Notes what a change is about to overwrite, when undo information is kept.
    fn journal(&mut self, undo: impl FnOnce(&[Slot<V>]) -> Undo<V>) {
        let Window {
            slots,
            journal: Some(journal),
            ..
        } = self
        else {
            return;
        };
        let undo = undo(slots);
        let bound = std::mem::size_of_val(&slots[..]).max(JOURNAL_FLOOR_BYTES);
        if journal.held + undo.weight() > bound {
            journal.restart();
            return;
        }
        journal.held += undo.weight();
        journal.undo.push(undo);
    }

    /// Writes a slot, noting what it held.
    fn write(&mut self, index: usize, slot: Slot<V>) {
        self.journal(|slots| Undo::Slot {
            index,
            was: slots[index],
        });
        self.slots[index] = slot;
    }

    fn remembers(&self, at: u64) -> bool {
        // Insertion numbers never exceed `next`; subtracting cannot overflow.
        at != 0 && self.next - at <= self.capacity
    }

    /// The slot holding `key`, or the empty slot that ends its probe sequence, and the first slot
    /// on the way that holds a forgotten key (reusable).
    fn probe(&self, key: u64) -> (usize, Option<usize>) {
        let mask = self.slots.len() - 1;
        // Keys are digests already: their low bits are as good as any hash of them.
        let mut i = key as usize & mask;
        let mut reusable = None;
        loop {
            let slot = &self.slots[i];
            if slot.at == 0 || slot.key == key {
                return (i, reusable);
            }
            if reusable.is_none() && !self.remembers(slot.at) {
                reusable = Some(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// Asks the CPU to start loading the slot where a lookup of `key` begins, so that the lookup,
    /// issued after other work, does not wait for memory: in a full window of 100,000 keys (a
    /// 4 MiB table) nearly every lookup misses the caches.
    pub fn prefetch(&self, key: u64) {
        let mask = self.slots.len().wrapping_sub(1);
        if let Some(slot) = self.slots.get(key as usize & mask) {
            prefetch(slot);
        }
    }

    /// The value of `key`, if it is remembered.
    pub fn get(&self, key: u64) -> Option<V> {
        if self.slots.is_empty() {
            return None;
        }
        let slot = &self.slots[self.probe(key).0];
        (slot.at != 0 && slot.key == key && self.remembers(slot.at)).then_some(slot.value)
    }

    pub fn contains(&self, key: u64) -> bool {
        self.get(key).is_some()
    }

    /// Remembers `key`, forgetting the oldest key when full. A key still remembered keeps its
    /// place and its value.
    pub fn insert(&mut self, key: u64) {
        self.store(key, V::default(), false);
    }

    /// Remembers `key` with `value`, forgetting the oldest key when full. A key still remembered
    /// takes the value and keeps its place.
    pub fn put(&mut self, key: u64, value: V) {
        self.store(key, value, true);
    }

    fn store(&mut self, key: u64, value: V, replace: bool) {
        if self.capacity == 0 {
            return;
        }
        self.make_room();
        let (found, reusable) = self.probe(key);
        let at = self.next;
        let slot = self.slots[found];
        if slot.at != 0 {
            // The key itself: remembered, or forgotten and inserted again.
            if self.remembers(slot.at) {
                if replace {
                    self.write(found, Slot { value, ..slot });
                }
                return;
            }
            self.write(found, Slot { key, at, value });
        } else if let Some(stale) = reusable {
            // Absent (the probe reached an empty slot): take the first forgotten key's slot.
            self.write(stale, Slot { key, at, value });
        } else {
            self.write(found, Slot { key, at, value });
            self.occupied += 1;
        }
        self.next += 1;
    }

    /// Keeps the table at most 5/8 full (short probe sequences), and the remembered keys at most
    /// half of it: grows while the window fills, otherwise rebuilds without the forgotten keys.
    fn make_room(&mut self) {
        if (self.occupied + 1) * 8 <= self.slots.len() * 5 {
            return;
        }
        let remembered = self.len();
        let mut size = self.slots.len().max(INITIAL_SLOTS);
        while (remembered + 1) * 2 > size {
            size *= 2;
        }
        let old = std::mem::replace(&mut self.slots, vec![Slot::default(); size]);
        self.occupied = 0;
        let mask = size - 1;
        for &slot in &old {
            if self.remembers(slot.at) {
                let mut i = slot.key as usize & mask;
                while self.slots[i].at != 0 {
                    i = (i + 1) & mask;
                }
                self.slots[i] = slot;
                self.occupied += 1;
            }
        }
        // Kept whole when undo information is (a rollback puts it back), else dropped.
        self.journal(move |_| Undo::Table(old));
    }

    /// Forgets everything (what was "emitted" may never have been published). Marks taken before
    /// can no longer be rolled back to.
    pub fn clear(&mut self) {
        self.slots = Vec::new();
        self.occupied = 0;
        self.next = 1;
        if let Some(journal) = &mut self.journal {
            journal.restart();
        }
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        (self.next - 1).min(self.capacity) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(target_arch = "x86_64")]
fn prefetch<T>(slot: &T) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    // SAFETY: a prefetch is a hint that reads nothing and never faults; SSE, which it needs, is
    // part of every x86_64 CPU.
    unsafe { _mm_prefetch::<_MM_HINT_T0>((slot as *const T).cast()) };
}

#[cfg(not(target_arch = "x86_64"))]
fn prefetch<T>(_: &T) {}

/// The stable 64-bit digest of a value.
pub fn digest<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut h = KeyHasher::default();
    value.hash(&mut h);
    h.finish()
}

/// The digest function of the windows: eight bytes per step, each mixed in with a folded 64x64 to
/// 128-bit multiplication (the construction of wyhash and foldhash). About four times faster than
/// SipHash on these short keys, and as well distributed for this purpose.
#[derive(Debug, Clone, Copy)]
pub struct KeyHasher(u64);

const SEED: u64 = 0x243f_6a88_85a3_08d3;
const MIX: u64 = 0x9e37_79b9_7f4a_7c15;
const FINAL: u64 = 0xbf58_476d_1ce4_e5b9;

fn folded_multiply(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ ((product >> 64) as u64)
}

impl Default for KeyHasher {
    fn default() -> Self {
        KeyHasher(SEED)
    }
}

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut state = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in chunks.by_ref() {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            state = folded_multiply(state ^ u64::from_le_bytes(word), MIX);
        }
        let rest = chunks.remainder();
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        // The length keeps "ab" + "c" apart from "a" + "bc".
        let tail = u64::from_le_bytes(word) ^ ((bytes.len() as u64) << 56);
        self.0 = folded_multiply(state ^ tail, MIX);
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = folded_multiply(self.0 ^ n, MIX);
    }

    fn write_u8(&mut self, n: u8) {
        self.write_u64(u64::from(n));
    }

    fn write_i64(&mut self, n: i64) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        folded_multiply(self.0 ^ SEED, FINAL)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// A seeded xorshift generator: `random(n)` is below `n`.
    fn xorshift(mut state: u64) -> impl FnMut(u64) -> u64 {
        move |n| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        }
    }

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
    fn a_forgotten_key_can_be_remembered_again_and_the_map_stays_bounded() {
        let mut w = DedupWindow::new(3);
        for key in 0..1_000 {
            w.insert(key);
            assert!(w.contains(key));
            assert!(key < 3 || !w.contains(key - 3), "key {} forgotten", key - 3);
            assert!(w.slots.len() <= INITIAL_SLOTS);
        }
        assert_eq!(w.len(), 3);
        w.insert(5);
        assert!(w.contains(5), "inserted again after it was forgotten");
        assert!(!w.contains(997), "and the oldest went");
    }

    /// The window against the plainest model of its contract: the last `capacity` keys inserted
    /// (a key still remembered is not inserted again; `put` replaces its value in place), over
    /// random operations, with keys that spread over the table and keys that all want the same
    /// slot.
    #[test]
    fn agrees_with_a_queue_of_the_last_keys() {
        use std::collections::VecDeque;
        let mut random = xorshift(0x9e37_79b9_u64);
        for (capacity, key_space, colliding) in [
            (1, 4, false),
            (5, 12, false),
            (5, 12, true),
            (700, 3_000, false),
            (300, 900, true),
            (2_000, 50_000, false),
        ] {
            let mut window: Window<u64> = Window::new(capacity);
            let mut model: VecDeque<(u64, u64)> = VecDeque::new();
            let find = |model: &VecDeque<(u64, u64)>, key: u64| {
                model.iter().find(|(k, _)| *k == key).map(|&(_, v)| v)
            };
            for step in 0..40_000 {
                let mut key = random(key_space);
                if colliding {
                    // Equal low bits: one long probe sequence, forgotten slots reused in it.
                    key <<= 32;
                }
                match random(4) {
                    0 => assert_eq!(window.get(key), find(&model, key), "get {key}"),
                    1 => {
                        match model.iter_mut().find(|(k, _)| *k == key) {
                            Some(entry) => entry.1 = step,
                            None => model.push_back((key, step)),
                        }
                        window.put(key, step);
                        assert_eq!(window.get(key), Some(step));
                    }
                    _ => {
                        if find(&model, key).is_none() {
                            model.push_back((key, 0));
                        }
                        window.insert(key);
                        assert!(window.contains(key));
                    }
                }
                if model.len() > capacity {
                    model.pop_front();
                }
                assert_eq!(window.len(), model.len());
            }
            for key in 0..key_space {
                let key = if colliding { key << 32 } else { key };
                assert_eq!(window.get(key), find(&model, key), "final {key}");
            }
            assert!(window.slots.len() <= (4 * capacity).max(INITIAL_SLOTS));
        }
    }

    /// Rolled back to a mark, a window that keeps undo information is the window it was at the
    /// mark, slot for slot, over random operations that grow its table, rebuild it at its own size
    /// and reuse forgotten keys' slots (tables below the journal's floor, so that nothing is
    /// refused). As the core thread uses it: a mark per batch, settled at a later mark (a commit),
    /// rolled back to any mark still held (an abort); marks taken before the rollback are refused
    /// afterwards.
    #[test]
    fn rolls_back_to_its_state_at_a_mark() {
        use std::collections::VecDeque;
        let mut random = xorshift(0x2545_f491_u64);
        type State = (Vec<Slot<u64>>, u64, usize);
        let (mut across_growth, mut across_rebuild) = (0, 0);
        for (capacity, key_space) in [(1, 4), (5, 100_000), (300, 900), (2_000, 50_000)] {
            let mut window: Window<u64> = Window::new(capacity);
            window.keep_undo();
            let state_of = |w: &Window<u64>| -> State { (w.slots.clone(), w.next, w.occupied) };
            // Each mark, the state it marks, and whether the table grew, or was rebuilt at its
            // own size, since.
            let mut marks: VecDeque<(Mark, State, bool, bool)> = VecDeque::new();
            let mut rolled_back = 0;
            for round in 0..2_000 {
                let mark = window.mark().expect("keeps undo information");
                marks.push_back((mark, state_of(&window), false, false));
                let before = (window.slots.len(), window.occupied);
                // At most four marks of up to a sixteenth of the capacity of changes each: within
                // the journal's floor, rebuilds included.
                for step in 0..=random(capacity as u64 / 16 + 2) {
                    let key = random(key_space);
                    if random(2) == 0 {
                        window.put(key, round * 10_000 + step);
                    } else {
                        window.insert(key);
                    }
                }
                // Grown from a table, not from none.
                let grown = before.0 > 0 && window.slots.len() > before.0;
                let compacted = !grown && window.occupied < before.1;
                for m in marks.iter_mut() {
                    m.2 |= grown;
                    m.3 |= compacted;
                }
                // Growth is rare (twice at most here): rolled back across the first times.
                let roll_back = (grown && across_growth < 2) || random(4) == 0;
                match if roll_back { 0 } else { 1 + random(3) } {
                    0 => {
                        let target = random(marks.len() as u64) as usize;
                        let (mark, expected, grew, rebuilt) = marks[target].clone();
                        assert!(window.rollback(mark), "{capacity}, round {round}");
                        assert!(
                            state_of(&window) == expected,
                            "{capacity}, round {round}: not the state at the mark"
                        );
                        let stale = marks[random(target as u64 + 1) as usize].0;
                        assert!(!window.rollback(stale), "a mark taken before the rollback");
                        assert!(state_of(&window) == expected, "a refusal changes nothing");
                        rolled_back += 1;
                        across_growth += usize::from(grew);
                        across_rebuild += usize::from(rebuilt);
                        marks.clear();
                    }
                    1 if marks.len() > 1 => {
                        let keep = 1 + random(marks.len() as u64 - 1) as usize;
                        marks.drain(..keep);
                        window.settle(marks[0].0);
                    }
                    _ => {}
                }
                if marks.len() >= 4 {
                    marks.drain(..2);
                    window.settle(marks[0].0);
                }
            }
            assert!(rolled_back > 300, "{capacity}: {rolled_back}");
        }
        assert!(
            across_growth > 0 && across_rebuild > 0,
            "{across_growth} {across_rebuild}"
        );
    }

    #[test]
    fn a_mark_settled_past_cleared_or_outgrown_is_refused() {
        let mut w: Window<u64> = Window::new(4);
        assert_eq!(w.mark(), None, "no undo information unless asked for");
        assert!(!w.rollback(Mark {
            epoch: 0,
            position: 0,
            next: 1,
            occupied: 0
        }));
        w.keep_undo();
        let first = w.mark().expect("keeps undo information");
        w.put(1, 10);
        let second = w.mark().expect("keeps undo information");
        w.put(2, 20);
        w.settle(second);
        assert!(!w.rollback(first), "settled past");
        assert_eq!((w.get(1), w.get(2)), (Some(10), Some(20)), "unchanged");
        assert!(w.rollback(second));
        assert_eq!((w.get(1), w.get(2)), (Some(10), None));

        let mark = w.mark().expect("keeps undo information");
        w.clear();
        assert!(!w.rollback(mark), "cleared");

        // More changes than the journal's bound holds (its floor, for this small table): it is
        // dropped, not grown.
        let mark = w.mark().expect("keeps undo information");
        for key in 0..40_000 {
            w.put(key % 3, key);
        }
        assert!(!w.rollback(mark), "outgrown");
        let journal = w.journal.as_ref().expect("journal");
        assert!(journal.held <= JOURNAL_FLOOR_BYTES);
        // Marks taken since work.
        let mark = w.mark().expect("keeps undo information");
        w.put(7, 70);
        assert!(w.rollback(mark));
        assert_eq!(w.get(7), None);

        // A table grown since the mark is put back.
        let mut w: Window<u64> = Window::new(2_000);
        w.keep_undo();
        (0..500).for_each(|key| w.insert(key));
        let mark = w.mark().expect("keeps undo information");
        w.settle(mark);
        let before = (w.slots.clone(), w.next, w.occupied);
        (500..900).for_each(|key| w.insert(key));
        assert!(w.slots.len() > before.0.len(), "grown");
        assert!(w.rollback(mark));
        assert!((w.slots.clone(), w.next, w.occupied) == before);
        assert!(w.contains(499) && !w.contains(500));

        // A table above the floor rebuilt at its own size (forgotten keys dropped) is not kept,
        // though the changes alone would fit: refused.
        let spread = |key: u64| key.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut w: Window<u64> = Window::new(20_000);
        w.keep_undo();
        (0..150_000).for_each(|key| w.insert(spread(key)));
        assert!(std::mem::size_of_val(&w.slots[..]) > JOURNAL_FLOOR_BYTES);
        let mark = w.mark().expect("keeps undo information");
        w.settle(mark);
        let size = w.slots.len();
        let mut key = 150_000;
        loop {
            let occupied = w.occupied;
            w.insert(spread(key));
            key += 1;
            if w.occupied < occupied {
                break;
            }
            assert!(key < 185_000, "rebuilt within 35,000 insertions");
            assert_eq!(
                w.mark().map(|m| m.epoch),
                Some(mark.epoch),
                "not outgrown before"
            );
        }
        assert_eq!(w.slots.len(), size, "rebuilt at its own size");
        assert!(!w.rollback(mark));
        assert!(w.contains(spread(key - 1)));
    }

    #[test]
    fn a_prefetch_changes_nothing_the_window_answers() {
        let mut w = DedupWindow::new(4);
        // Before the table exists, and for keys present, absent and forgotten.
        w.prefetch(u64::MAX);
        for key in 0..6 {
            w.insert(key);
        }
        for key in [0, 1, 2, 5, 99, u64::MAX] {
            let before = w.contains(key);
            w.prefetch(key);
            assert_eq!(w.contains(key), before, "{key}");
        }
        assert_eq!(w.len(), 4);
    }

    #[test]
    fn put_replaces_the_value_of_a_remembered_key_in_its_place() {
        let mut w: Window<u32> = Window::new(2);
        w.put(1, 10);
        w.put(2, 20);
        w.put(1, 11);
        assert_eq!(w.get(1), Some(11));
        assert_eq!(w.len(), 2);
        // 1 is still the oldest key.
        w.put(3, 30);
        assert_eq!(w.get(1), None);
        assert_eq!((w.get(2), w.get(3)), (Some(20), Some(30)));
        // Put again once forgotten: remembered as new.
        w.put(1, 12);
        assert_eq!((w.get(1), w.get(2)), (Some(12), None));
        // `insert` leaves a remembered key's value alone.
        w.insert(1);
        assert_eq!(w.get(1), Some(12));
        w.clear();
        assert_eq!(w.get(1), None);
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
        assert_ne!(digest(&("ab", "c")), digest(&("a", "bc")));
        assert_ne!(digest(&(Some(1i64), true)), digest(&(Some(1i64), false)));
    }

    #[test]
    fn digests_of_similar_keys_do_not_collide() {
        // Ids that differ in one digit or one character, as record ids of one call do.
        let mut seen = HashSet::new();
        for call in 0..2_000u32 {
            for party in 0..10u32 {
                for state in ["Setup", "Proceeding", "Answered", "Disconnected", "Gone"] {
                    let id = format!("s-a0d7a5e2c9f5d4e3b2a1{call:04}z1c9d-p{party}");
                    assert!(seen.insert(digest(&(id.as_str(), state))), "{id} {state}");
                }
            }
        }
        // Every bit of the digest depends on the input.
        let (a, b) = (digest("a"), digest("b"));
        assert!((a ^ b).count_ones() > 16, "{a:x} {b:x}");
    }
}
