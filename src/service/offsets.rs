//! The at-least-once guarantee lives here: which input offset may be committed.
//!
//! Every polled message is tracked with the number of records it produced that the broker has not
//! acknowledged yet. A partition's committable offset is the lowest offset still pending, or one
//! past the highest offset seen when nothing is pending. So a later success never moves the
//! offset past an earlier failure: an unacknowledged record holds its partition's offset back
//! until it is delivered (failed deliveries are retried, never skipped).
//!
//! Each partition's state carries the generation of the assignment it belongs to. When a
//! partition is revoked or lost its state is dropped, and acknowledgements that arrive later for
//! the old generation are ignored: work from a lost assignment cannot move an offset.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Identifies an input message for acknowledgements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InputRef {
    pub partition: i32,
    pub offset: i64,
    /// The assignment generation of the partition when the message was polled.
    pub generation: u64,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    records: u32,
    bytes: u32,
    /// When the message was tracked, in milliseconds since the tracker's `epoch`.
    tracked_ms: u64,
}

#[derive(Debug, Default)]
struct PartitionState {
    generation: u64,
    /// Messages with records, in offset order (the order they are polled in): the records of each
    /// not yet acknowledged (0 once all are), and its bytes (for the in-flight memory bound). The
    /// front is always pending: completed messages leave from the front, so a lookup is a binary
    /// search over what is in flight and the committable offset is the front's.
    pending: VecDeque<(i64, Pending)>,
    /// Entries of `pending` with records still unacknowledged.
    unacknowledged: usize,
    highest_seen: Option<i64>,
    /// The last offset handed out by `committable_changes`, to report only changes.
    last_reported: Option<i64>,
}

/// Per-partition tracking of in-flight input messages.
#[derive(Debug)]
pub struct OffsetTracker {
    /// What tracking times are measured from (an `Instant` per message would take 16 bytes).
    epoch: Instant,
    partitions: HashMap<i32, PartitionState>,
    next_generation: u64,
    in_flight_messages: usize,
    in_flight_bytes: usize,
}

impl Default for OffsetTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl OffsetTracker {
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
            partitions: HashMap::new(),
            next_generation: 0,
            in_flight_messages: 0,
            in_flight_bytes: 0,
        }
    }

    fn millis_since_epoch(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// Starts tracking a partition (on assignment); returns its generation.
    pub fn assign(&mut self, partition: i32) -> u64 {
        self.revoke(partition);
        self.next_generation += 1;
        let generation = self.next_generation;
        self.partitions.insert(
            partition,
            PartitionState {
                generation,
                ..PartitionState::default()
            },
        );
        generation
    }

    /// Stops tracking a partition (revoked or lost): its pending work no longer counts.
    pub fn revoke(&mut self, partition: i32) {
        if let Some(state) = self.partitions.remove(&partition) {
            self.in_flight_messages -= state.unacknowledged;
            self.in_flight_bytes -= state
                .pending
                .iter()
                .filter(|(_, p)| p.records > 0)
                .map(|(_, p)| p.bytes as usize)
                .sum::<usize>();
        }
    }

    /// The generation of a tracked partition.
    pub fn generation(&self, partition: i32) -> Option<u64> {
        self.partitions.get(&partition).map(|s| s.generation)
    }

    /// Records a polled message that produced `records` records (0 is done at once), at `at`.
    /// Returns `None` if the partition is not assigned.
    pub fn track(
        &mut self,
        partition: i32,
        offset: i64,
        records: usize,
        bytes: usize,
        at: Instant,
    ) -> Option<InputRef> {
        let tracked_ms = self.millis_since_epoch(at);
        // A Kafka message is under 2 GiB, its records are bounded by the core (hundreds at most,
        // 16 times its size at most): both fit, and saturate if not.
        let records = u32::try_from(records).unwrap_or(u32::MAX);
        let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
        let state = self.partitions.get_mut(&partition)?;
        state.highest_seen = Some(state.highest_seen.map_or(offset, |h| h.max(offset)));
        if records > 0 {
            let at = match state.pending.back() {
                Some(&(last, _)) if last >= offset => {
                    // Not reached in practice (a partition is read forwards within a generation),
                    // but the lookups rely on offset order.
                    state.pending.partition_point(|&(o, _)| o < offset)
                }
                _ => state.pending.len(),
            };
            match state.pending.get_mut(at) {
                Some((o, pending)) if *o == offset => {
                    // The same message again: its records add up.
                    if pending.records == 0 {
                        state.unacknowledged += 1;
                        self.in_flight_messages += 1;
                        self.in_flight_bytes += pending.bytes as usize;
                        pending.tracked_ms = tracked_ms;
                    }
                    pending.records = pending.records.saturating_add(records);
                }
                _ => {
                    let pending = Pending {
                        records,
                        bytes,
                        tracked_ms,
                    };
                    state.pending.insert(at, (offset, pending));
                    state.unacknowledged += 1;
                    self.in_flight_messages += 1;
                    self.in_flight_bytes += bytes as usize;
                }
            }
        }
        Some(InputRef {
            partition,
            offset,
            generation: state.generation,
        })
    }

    /// One record of a message was acknowledged by the broker. Returns false if the
    /// acknowledgement is stale (its partition was revoked or re-assigned since).
    pub fn ack(&mut self, input: InputRef) -> bool {
        let Some(state) = self.partitions.get_mut(&input.partition) else {
            return false;
        };
        if state.generation != input.generation {
            return false;
        }
        let Ok(at) = state
            .pending
            .binary_search_by_key(&input.offset, |&(offset, _)| offset)
        else {
            return false;
        };
        let pending = &mut state.pending[at].1;
        if pending.records == 0 {
            return false;
        }
        pending.records -= 1;
        if pending.records == 0 {
            state.unacknowledged -= 1;
            self.in_flight_messages -= 1;
            self.in_flight_bytes -= pending.bytes as usize;
            while state.pending.front().is_some_and(|(_, p)| p.records == 0) {
                state.pending.pop_front();
            }
        }
        true
    }

    /// The offset to commit for a partition (the next message to read), if any message was seen.
    pub fn committable(&self, partition: i32) -> Option<i64> {
        let state = self.partitions.get(&partition)?;
        match state.pending.front() {
            Some(&(lowest_pending, _)) => Some(lowest_pending),
            None => state.highest_seen.map(|h| h + 1),
        }
    }

    /// Committable offsets that moved since the last call, for storing with the consumer.
    pub fn committable_changes(&mut self) -> Vec<(i32, i64)> {
        let mut changes = Vec::new();
        let partitions: Vec<i32> = self.partitions.keys().copied().collect();
        for partition in partitions {
            let Some(offset) = self.committable(partition) else {
                continue;
            };
            if let Some(state) = self.partitions.get_mut(&partition) {
                if state.last_reported != Some(offset) {
                    state.last_reported = Some(offset);
                    changes.push((partition, offset));
                }
            }
        }
        changes.sort_unstable();
        changes
    }

    /// Messages of a partition with records not yet acknowledged.
    pub fn pending_in(&self, partition: i32) -> usize {
        self.partitions
            .get(&partition)
            .map_or(0, |s| s.unacknowledged)
    }

    pub fn in_flight_messages(&self) -> usize {
        self.in_flight_messages
    }

    pub fn in_flight_bytes(&self) -> usize {
        self.in_flight_bytes
    }

    /// How long the oldest message with unacknowledged records has waited, as of `now` (zero when
    /// nothing is in flight). While records are delivered it is about the time to acknowledge
    /// what is in flight, even when a backlog is read at full speed; it grows while a record is
    /// not being acknowledged (sent again, or waiting for a missing topic), and that message holds
    /// its partition's offset back.
    pub fn oldest_unacknowledged(&self, now: Instant) -> Duration {
        let now_ms = self.millis_since_epoch(now);
        let oldest = self
            .partitions
            .values()
            .filter_map(|s| s.pending.front())
            .map(|(_, p)| p.tracked_ms)
            .min();
        oldest.map_or(Duration::ZERO, |ms| {
            Duration::from_millis(now_ms.saturating_sub(ms))
        })
    }

    /// Messages still held (24 bytes each): the unacknowledged ones, and acknowledged ones that
    /// wait behind an unacknowledged message of their partition. Bounded by the caller: a record
    /// retried for minutes would otherwise let the second kind grow with everything read after it.
    pub fn tracked_messages(&self) -> usize {
        self.partitions.values().map(|s| s.pending.len()).sum()
    }

    pub fn assigned(&self) -> Vec<i32> {
        let mut partitions: Vec<i32> = self.partitions.keys().copied().collect();
        partitions.sort_unstable();
        partitions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_unacknowledged_message_is_the_front_of_any_partition() {
        let mut t = OffsetTracker::new();
        let start = Instant::now();
        let at = |seconds| start + Duration::from_secs(seconds);
        assert_eq!(t.oldest_unacknowledged(at(100)), Duration::ZERO);
        t.assign(0);
        t.assign(1);
        let first = t.track(0, 1, 1, 10, at(0)).unwrap();
        let later = t.track(0, 2, 1, 10, at(3)).unwrap();
        let other = t.track(1, 7, 2, 10, at(5)).unwrap();
        // A message without records is done at once and never waits.
        t.track(1, 8, 0, 10, at(1));
        assert_eq!(t.oldest_unacknowledged(at(10)), Duration::from_secs(10));
        // Acknowledged behind an unacknowledged message: the front still waits.
        assert!(t.ack(later));
        assert_eq!(t.oldest_unacknowledged(at(10)), Duration::from_secs(10));
        assert!(t.ack(first));
        assert_eq!(t.oldest_unacknowledged(at(10)), Duration::from_secs(5));
        assert!(t.ack(other));
        assert_eq!(
            t.oldest_unacknowledged(at(10)),
            Duration::from_secs(5),
            "one record of two"
        );
        t.revoke(1);
        assert_eq!(t.oldest_unacknowledged(at(10)), Duration::ZERO);
        // A clock reading from before the message was tracked is no wait at all.
        t.track(0, 3, 1, 10, at(20)).unwrap();
        assert_eq!(t.oldest_unacknowledged(at(19)), Duration::ZERO);
    }

    #[test]
    fn a_later_success_does_not_move_the_offset_past_an_earlier_failure() {
        let mut t = OffsetTracker::new();
        t.assign(0);
        let first = t.track(0, 10, 1, 100, Instant::now()).unwrap();
        let second = t.track(0, 11, 1, 100, Instant::now()).unwrap();
        assert!(t.ack(second));
        // Offset 10 is still unacknowledged (its delivery failed and is being retried).
        assert_eq!(t.committable(0), Some(10));
        assert!(t.ack(first));
        assert_eq!(t.committable(0), Some(12));
    }

    #[test]
    fn a_message_is_done_only_when_all_its_records_are_acknowledged() {
        let mut t = OffsetTracker::new();
        t.assign(0);
        let m = t.track(0, 5, 3, 10, Instant::now()).unwrap();
        t.ack(m);
        t.ack(m);
        assert_eq!(t.committable(0), Some(5));
        assert_eq!(t.in_flight_messages(), 1);
        t.ack(m);
        assert_eq!(t.committable(0), Some(6));
        assert_eq!(t.in_flight_messages(), 0);
        assert_eq!(t.in_flight_bytes(), 0);
    }

    #[test]
    fn messages_with_no_records_complete_at_once_and_gaps_in_offsets_are_fine() {
        let mut t = OffsetTracker::new();
        t.assign(3);
        t.track(3, 100, 0, 10, Instant::now());
        t.track(3, 107, 0, 10, Instant::now()); // compaction and transaction markers leave gaps
        assert_eq!(t.committable(3), Some(108));
    }

    #[test]
    fn acknowledgements_from_a_revoked_assignment_are_ignored() {
        let mut t = OffsetTracker::new();
        t.assign(1);
        let old = t.track(1, 0, 1, 10, Instant::now()).unwrap();
        t.revoke(1);
        assert_eq!(t.in_flight_messages(), 0);
        t.assign(1);
        assert!(!t.ack(old), "stale ack must not count");
        assert_eq!(t.committable(1), None);
        let new = t.track(1, 0, 1, 10, Instant::now()).unwrap();
        assert_ne!(old.generation, new.generation);
        assert_eq!(t.committable(1), Some(0));
    }

    #[test]
    fn acknowledgements_out_of_order_hold_the_offset_at_the_oldest_pending_message() {
        let mut t = OffsetTracker::new();
        t.assign(0);
        let m: Vec<InputRef> = (0..5)
            .map(|o| t.track(0, o * 2, 1, 10, Instant::now()).unwrap())
            .collect();
        for i in [3, 1, 4] {
            assert!(t.ack(m[i]));
        }
        assert!(!t.ack(m[3]), "a message is acknowledged once per record");
        assert_eq!(t.committable(0), Some(0));
        assert_eq!((t.in_flight_messages(), t.pending_in(0)), (2, 2));
        assert!(t.ack(m[0]));
        assert_eq!(
            t.committable(0),
            Some(4),
            "offset 4 (m[2]) is still pending"
        );
        assert!(t.ack(m[2]));
        assert_eq!(t.committable(0), Some(9));
        assert_eq!((t.in_flight_messages(), t.in_flight_bytes()), (0, 0));
    }

    #[test]
    fn a_message_tracked_again_adds_its_records_and_an_earlier_offset_keeps_the_order() {
        let mut t = OffsetTracker::new();
        t.assign(0);
        let late = t.track(0, 9, 1, 10, Instant::now()).unwrap();
        let early = t.track(0, 3, 1, 10, Instant::now()).unwrap();
        let again = t.track(0, 9, 1, 10, Instant::now()).unwrap();
        assert_eq!(t.committable(0), Some(3));
        assert!(t.ack(early));
        assert!(t.ack(late));
        assert_eq!(t.committable(0), Some(9), "offset 9 has one record left");
        assert!(t.ack(again));
        assert_eq!(t.committable(0), Some(10));
        assert_eq!(t.in_flight_messages(), 0);
    }

    #[test]
    fn acknowledged_messages_behind_a_pending_one_stay_tracked_until_it_is_acknowledged() {
        let mut t = OffsetTracker::new();
        t.assign(0);
        t.assign(1);
        let stuck = t.track(0, 0, 1, 10, Instant::now()).unwrap();
        for offset in 1..=100 {
            let m = t.track(0, offset, 1, 10, Instant::now()).unwrap();
            t.ack(m);
        }
        let other = t.track(1, 0, 1, 10, Instant::now()).unwrap();
        assert_eq!((t.in_flight_messages(), t.tracked_messages()), (2, 102));
        t.ack(stuck);
        assert_eq!((t.in_flight_messages(), t.tracked_messages()), (1, 1));
        assert_eq!(t.committable(0), Some(101));
        t.revoke(1);
        assert_eq!((t.in_flight_messages(), t.tracked_messages()), (0, 0));
        assert!(!t.ack(other));
    }

    #[test]
    fn revoking_releases_what_was_in_flight() {
        let mut t = OffsetTracker::new();
        t.assign(0);
        let a = t.track(0, 0, 1, 10, Instant::now()).unwrap();
        t.track(0, 1, 2, 20, Instant::now());
        t.ack(a);
        t.track(0, 2, 1, 30, Instant::now());
        assert_eq!((t.in_flight_messages(), t.in_flight_bytes()), (2, 50));
        t.revoke(0);
        assert_eq!((t.in_flight_messages(), t.in_flight_bytes()), (0, 0));
    }

    #[test]
    fn unassigned_partitions_are_not_tracked() {
        let mut t = OffsetTracker::new();
        assert!(t.track(9, 0, 1, 1, Instant::now()).is_none());
    }

    #[test]
    fn committable_changes_reports_each_move_once() {
        let mut t = OffsetTracker::new();
        t.assign(0);
        t.assign(1);
        let a = t.track(0, 0, 1, 1, Instant::now()).unwrap();
        t.track(1, 4, 0, 1, Instant::now());
        assert_eq!(t.committable_changes(), vec![(0, 0), (1, 5)]);
        assert_eq!(t.committable_changes(), vec![]);
        t.ack(a);
        assert_eq!(t.committable_changes(), vec![(0, 1)]);
    }
}
