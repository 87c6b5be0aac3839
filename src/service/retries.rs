//! At-least-once: records waiting to be sent again, after a failed delivery or after the producer
//! would not take them (an output topic it knows to be missing, for one).
//!
//! They wait in the order in which they were first handed to the producer (`Sent::seq`), and go
//! out again in that order within each lane: an output topic and an input partition (records of
//! one key from different input partitions have no order to keep). A record that is not due yet,
//! or that the producer refuses again, holds back every later record of its lane, and while any
//! record of a lane waits, new records of that lane queue behind it (`holds`). So a record that
//! waited for a missing topic still lands before the newer records of its key. What this cannot
//! order are records that were already with the producer when an older record's failed delivery
//! was reported: they may land before it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::clients::{OutgoingRecord, Sent};

/// The wait after a record's first failure; it doubles with each further failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// The wait after the producer's queue was full: room comes with its next delivery reports.
const BUSY_WAIT: Duration = Duration::from_millis(5);

/// Why the producer did not take a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its queue is full: try again shortly, without counting a failure.
    Busy,
    /// Refused for now (a topic it knows to be missing, for one): back off.
    NotNow,
}

/// A record waiting to be sent again.
#[derive(Debug)]
pub struct Retry {
    pub due: Instant,
    /// Failed attempts so far: 0 for a record queued behind its lane without being tried.
    pub attempt: u32,
    pub sent: Sent,
    pub record: OutgoingRecord,
}

/// The waiting records of one lane (an output topic's records from one input partition), by
/// `Sent::seq`: the order in which they were first handed to the producer.
#[derive(Debug)]
struct Lane {
    topic: String,
    partition: i32,
    waiting: BTreeMap<u64, Retry>,
}

#[derive(Debug, Default)]
pub struct RetryQueue {
    /// Only lanes with waiting records: as many as output topics times input partitions at most.
    lanes: Vec<Lane>,
}

impl RetryQueue {
    pub fn is_empty(&self) -> bool {
        self.lanes.is_empty()
    }

    pub fn len(&self) -> usize {
        self.lanes.iter().map(|lane| lane.waiting.len()).sum()
    }

    /// Whether records of `topic` from input `partition` wait: a new one must queue behind them.
    pub fn holds(&self, topic: &str, partition: i32) -> bool {
        self.lanes
            .iter()
            .any(|lane| lane.partition == partition && lane.topic == topic)
    }

    /// A record whose delivery failed, or that the producer would not take: sent again after
    /// `FIRST_BACKOFF`, in its place among its lane's waiting records.
    pub fn push_failed(&mut self, sent: Sent, record: OutgoingRecord, now: Instant) {
        self.insert(Retry {
            due: now + FIRST_BACKOFF,
            attempt: 1,
            sent,
            record,
        });
    }

    /// A record queued behind its lane's waiting records without being tried: it goes out as soon
    /// as they have.
    pub fn push_behind(&mut self, sent: Sent, record: OutgoingRecord, now: Instant) {
        self.insert(Retry {
            due: now,
            attempt: 0,
            sent,
            record,
        });
    }

    fn insert(&mut self, retry: Retry) {
        let (topic, partition) = (&retry.record.topic, retry.sent.input.partition);
        let index = match self
            .lanes
            .iter()
            .position(|lane| lane.partition == partition && &lane.topic == topic)
        {
            Some(index) => index,
            None => {
                self.lanes.push(Lane {
                    topic: topic.clone(),
                    partition,
                    waiting: BTreeMap::new(),
                });
                self.lanes.len() - 1
            }
        };
        let seq = retry.sent.seq;
        let replaced = self.lanes[index].waiting.insert(seq, retry);
        // Each record has its own `seq`, and is in the queue or with the producer, never both.
        debug_assert!(replaced.is_none(), "record {seq} queued twice");
    }

    /// Keeps the records for which `keep` holds; returns how many were dropped.
    pub fn retain(&mut self, mut keep: impl FnMut(&Retry) -> bool) -> usize {
        let before = self.len();
        for lane in &mut self.lanes {
            lane.waiting.retain(|_, retry| keep(retry));
        }
        self.lanes.retain(|lane| !lane.waiting.is_empty());
        before - self.len()
    }

    /// Makes every waiting record due now (a new producer is there to take them).
    pub fn make_due(&mut self, now: Instant) {
        for retry in self
            .lanes
            .iter_mut()
            .flat_map(|lane| lane.waiting.values_mut())
        {
            retry.due = retry.due.min(now);
        }
    }

    /// Hands due records to `send`, each lane's in order, and stops with a lane at its first
    /// record that is not due or that `send` refuses: after `Refusal::NotNow` the record backs off
    /// exponentially, up to `MAX_BACKOFF`, and is never given up; after `Refusal::Busy` it waits
    /// `BUSY_WAIT`, and the pass ends (the queue that is full is the producer's, for every lane).
    /// Records that `send` takes leave the queue. A pass looks at each lane's first records only.
    pub fn resend_due(
        &mut self,
        now: Instant,
        mut send: impl FnMut(&Retry) -> Result<(), Refusal>,
    ) {
        let mut busy_at = None;
        for (index, lane) in self.lanes.iter_mut().enumerate() {
            while let Some(mut entry) = lane.waiting.first_entry() {
                let retry = entry.get_mut();
                if retry.due > now {
                    break;
                }
                match send(retry) {
                    Ok(()) => {
                        entry.remove();
                    }
                    Err(Refusal::Busy) => {
                        retry.due = now + BUSY_WAIT;
                        busy_at = Some(index);
                        break;
                    }
                    Err(Refusal::NotNow) => {
                        retry.attempt += 1;
                        retry.due = now + backoff(retry.attempt);
                        break;
                    }
                }
            }
            if busy_at.is_some() {
                break;
            }
        }
        if let Some(index) = busy_at {
            // The lanes after the one that found the queue full go first next time.
            self.lanes.rotate_left(index + 1);
        }
        self.lanes.retain(|lane| !lane.waiting.is_empty());
    }
}

/// The wait after a record's `failures`-th failure.
fn backoff(failures: u32) -> Duration {
    (FIRST_BACKOFF * (1u32 << failures.saturating_sub(1).min(7))).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::offsets::InputRef;

    /// A record of `topic` from input partition `partition`, first sent as number `seq`.
    fn record(topic: &str, partition: i32, seq: u64) -> (Sent, OutgoingRecord) {
        let sent = Sent {
            input: InputRef {
                partition,
                offset: seq as i64,
                generation: 1,
            },
            timeouts: 0,
            seq,
            timestamp: None,
            carried_timestamp: false,
        };
        let record = OutgoingRecord {
            topic: topic.to_owned(),
            key: Some(b"k".to_vec()),
            value: seq.to_le_bytes().to_vec(),
            headers: None,
            timestamp: None,
        };
        (sent, record)
    }

    fn push_failed(queue: &mut RetryQueue, records: &[(&str, i32, u64)], now: Instant) {
        for &(topic, partition, seq) in records {
            let (sent, record) = record(topic, partition, seq);
            queue.push_failed(sent, record, now);
        }
    }

    /// Resends through a producer that answers `answer(topic)`, and returns the sequence numbers
    /// offered, in order, with whether they were taken.
    fn resend(
        queue: &mut RetryQueue,
        now: Instant,
        answer: impl Fn(&str) -> Result<(), Refusal>,
    ) -> Vec<(u64, bool)> {
        let mut offered = Vec::new();
        queue.resend_due(now, |retry| {
            let result = answer(&retry.record.topic);
            offered.push((retry.sent.seq, result.is_ok()));
            result
        });
        offered
    }

    fn open(_: &str) -> Result<(), Refusal> {
        Ok(())
    }

    /// Every topic but the missed-call topic is there.
    fn missed_missing(topic: &str) -> Result<(), Refusal> {
        if topic == "missed" {
            Err(Refusal::NotNow)
        } else {
            Ok(())
        }
    }

    #[test]
    fn a_lanes_records_go_out_in_the_order_they_were_first_sent() {
        let now = Instant::now();
        let mut queue = RetryQueue::default();
        // Refused when sent (newer), then the failed deliveries of older records come back.
        push_failed(
            &mut queue,
            &[
                ("missed", 0, 7),
                ("missed", 0, 8),
                ("missed", 0, 3),
                ("missed", 0, 5),
            ],
            now,
        );
        let later = now + FIRST_BACKOFF;
        assert_eq!(
            resend(&mut queue, later, open),
            [(3, true), (5, true), (7, true), (8, true)]
        );
        assert!(queue.is_empty());
        assert!(!queue.holds("missed", 0));
    }

    #[test]
    fn a_refused_record_holds_back_the_rest_of_its_lane_only() {
        let now = Instant::now();
        let mut queue = RetryQueue::default();
        push_failed(
            &mut queue,
            &[
                ("missed", 0, 1),
                ("parties", 0, 2),
                ("missed", 0, 3),
                ("parties", 0, 4),
            ],
            now,
        );
        let later = now + FIRST_BACKOFF;
        // The missed-call topic is still missing: its first record is refused, the second not
        // tried; the party records go out.
        assert_eq!(
            resend(&mut queue, later, missed_missing),
            [(1, false), (2, true), (4, true)]
        );
        assert_eq!(queue.len(), 2);
        assert!(queue.holds("missed", 0));
        assert!(!queue.holds("missed", 1));
        assert!(!queue.holds("parties", 0));
        // A new record of the lane queues behind, due at once, but waits for the refused one,
        // which backs off.
        let (sent, record_9) = record("missed", 0, 9);
        queue.push_behind(sent, record_9, later);
        assert_eq!(resend(&mut queue, later, open), []);
        let retry_due = later + backoff(2);
        assert_eq!(
            resend(&mut queue, retry_due, open),
            [(1, true), (3, true), (9, true)]
        );
        assert!(queue.is_empty());
    }

    #[test]
    fn input_partitions_are_separate_lanes() {
        let now = Instant::now();
        let later = now + FIRST_BACKOFF;
        let mut queue = RetryQueue::default();
        push_failed(&mut queue, &[("missed", 0, 1)], now);
        // Partition 1's record failed later, and a newer one of it queued behind.
        push_failed(&mut queue, &[("missed", 1, 2)], later);
        let (sent, record_3) = record("missed", 1, 3);
        queue.push_behind(sent, record_3, later);
        // Partition 0's record does not wait for partition 1's.
        assert_eq!(resend(&mut queue, later, open), [(1, true)]);
        assert!(!queue.holds("missed", 0));
        assert!(queue.holds("missed", 1));
        assert_eq!(
            resend(&mut queue, later + FIRST_BACKOFF, open),
            [(2, true), (3, true)]
        );
    }

    #[test]
    fn a_pass_offers_only_what_can_go() {
        let now = Instant::now();
        let later = now + FIRST_BACKOFF;
        let mut queue = RetryQueue::default();
        // A thousand records held behind a first one that backs off, then another lane's record.
        push_failed(&mut queue, &[("missed", 0, 0)], later);
        for seq in 1..1_000 {
            let (sent, record) = record("missed", 0, seq);
            queue.push_behind(sent, record, now);
        }
        push_failed(&mut queue, &[("parties", 1, 1_000)], now);
        assert_eq!(resend(&mut queue, later, open), [(1_000, true)]);
        assert_eq!(queue.len(), 1_000);
    }

    #[test]
    fn a_full_producer_queue_costs_a_short_wait_not_a_backoff() {
        let now = Instant::now();
        let mut queue = RetryQueue::default();
        push_failed(
            &mut queue,
            &[("missed", 0, 1), ("missed", 0, 2), ("parties", 0, 3)],
            now,
        );
        let later = now + FIRST_BACKOFF;
        // The queue is full for every lane: the pass ends at the first refusal.
        assert_eq!(
            resend(&mut queue, later, |_| Err(Refusal::Busy)),
            [(1, false)]
        );
        assert_eq!(resend(&mut queue, later + BUSY_WAIT / 2, open), [(3, true)]);
        assert_eq!(
            resend(&mut queue, later + BUSY_WAIT, open),
            [(1, true), (2, true)]
        );
    }

    #[test]
    fn a_record_not_due_yet_holds_back_its_lane() {
        let now = Instant::now();
        let mut queue = RetryQueue::default();
        push_failed(&mut queue, &[("missed", 0, 1)], now);
        let (sent, record_2) = record("missed", 0, 2);
        queue.push_behind(sent, record_2, now);
        assert_eq!(resend(&mut queue, now, open), []);
        queue.make_due(now);
        assert_eq!(resend(&mut queue, now, open), [(1, true), (2, true)]);
    }

    #[test]
    fn backoff_doubles_up_to_ten_seconds() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(5), Duration::from_millis(1600));
        assert_eq!(backoff(8), Duration::from_secs(10));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn dropped_records_no_longer_hold_their_lane() {
        let now = Instant::now();
        let mut queue = RetryQueue::default();
        push_failed(
            &mut queue,
            &[("missed", 0, 1), ("missed", 0, 2), ("parties", 0, 3)],
            now,
        );
        assert_eq!(queue.retain(|r| r.record.topic != "missed"), 2);
        assert!(!queue.holds("missed", 0));
        assert!(queue.holds("parties", 0));
        assert_eq!(queue.len(), 1);
    }
}
