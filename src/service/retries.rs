//! At-least-once: records waiting to be sent again, after a failed delivery or after the producer
//! would not take them (an output topic it knows to be missing, for one).
//!
//! They wait in the order in which they were first handed to the producer (`Sent::seq`), and a
//! topic's records go out again in that order: a record that is not due yet, or that the producer
//! refuses again, holds back every later record of its topic, and while any record of a topic
//! waits, new records of that topic queue behind it (`holds_topic`). So a record that waited for a
//! missing topic still lands before the newer records of its key. What this cannot order is a
//! record whose delivery failed after newer records of its key were already delivered.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::clients::{OutgoingRecord, Sent};

/// The wait after a record's first failure; it doubles with each further failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// A record waiting to be sent again.
#[derive(Debug)]
pub struct Retry {
    pub due: Instant,
    /// Failed attempts so far: 0 for a record queued behind its topic without being tried.
    pub attempt: u32,
    pub sent: Sent,
    pub record: OutgoingRecord,
}

#[derive(Debug, Default)]
pub struct RetryQueue {
    /// By `Sent::seq`: the order in which the records were first handed to the producer.
    waiting: BTreeMap<u64, Retry>,
    /// How many records of each topic wait.
    per_topic: HashMap<String, usize>,
}

impl RetryQueue {
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether records of `topic` wait: a new record of it must queue behind them.
    pub fn holds_topic(&self, topic: &str) -> bool {
        !self.waiting.is_empty() && self.per_topic.contains_key(topic)
    }

    /// A record whose delivery failed, or that the producer would not take: sent again after
    /// `FIRST_BACKOFF`, in its place among its topic's waiting records.
    pub fn push_failed(&mut self, sent: Sent, record: OutgoingRecord, now: Instant) {
        self.insert(Retry {
            due: now + FIRST_BACKOFF,
            attempt: 1,
            sent,
            record,
        });
    }

    /// A record queued behind its topic's waiting records without being tried: it goes out as soon
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
        let topic = retry.record.topic.clone();
        if let Some(replaced) = self.waiting.insert(retry.sent.seq, retry) {
            // A record is handed back at most once per attempt; keep the count right regardless.
            self.forget(&replaced.record.topic);
        }
        *self.per_topic.entry(topic).or_default() += 1;
    }

    fn forget(&mut self, topic: &str) {
        if let Some(count) = self.per_topic.get_mut(topic) {
            *count -= 1;
            if *count == 0 {
                self.per_topic.remove(topic);
            }
        }
    }

    /// Keeps the records for which `keep` holds; returns how many were dropped.
    pub fn retain(&mut self, mut keep: impl FnMut(&Retry) -> bool) -> usize {
        let before = self.waiting.len();
        let mut dropped_topics = Vec::new();
        self.waiting.retain(|_, retry| {
            let kept = keep(retry);
            if !kept {
                dropped_topics.push(retry.record.topic.clone());
            }
            kept
        });
        for topic in &dropped_topics {
            self.forget(topic);
        }
        before - self.waiting.len()
    }

    /// Makes every waiting record due now (a new producer is there to take them).
    pub fn make_due(&mut self, now: Instant) {
        for retry in self.waiting.values_mut() {
            retry.due = retry.due.min(now);
        }
    }

    /// Hands due records to `send`, each topic's in order, and stops with a topic at its first
    /// record that is not due or that `send` refuses (it backs off exponentially, up to
    /// `MAX_BACKOFF`, and is never given up). Records that `send` takes leave the queue.
    pub fn resend_due<E>(&mut self, now: Instant, mut send: impl FnMut(&Retry) -> Result<(), E>) {
        let mut held_topics: Vec<String> = Vec::new();
        let mut taken = Vec::new();
        for (&seq, retry) in self.waiting.iter_mut() {
            if held_topics.len() == self.per_topic.len() {
                break;
            }
            if held_topics.contains(&retry.record.topic) {
                continue;
            }
            if retry.due > now {
                held_topics.push(retry.record.topic.clone());
                continue;
            }
            match send(retry) {
                Ok(()) => taken.push(seq),
                Err(_) => {
                    retry.attempt += 1;
                    retry.due = now + backoff(retry.attempt);
                    held_topics.push(retry.record.topic.clone());
                }
            }
        }
        for seq in taken {
            if let Some(retry) = self.waiting.remove(&seq) {
                self.forget(&retry.record.topic);
            }
        }
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

    fn record(topic: &str, seq: u64) -> (Sent, OutgoingRecord) {
        let sent = Sent {
            input: InputRef {
                partition: 0,
                offset: seq as i64,
                generation: 1,
            },
            timeouts: 0,
            seq,
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

    /// Resends with a producer that takes records of the topics in `open`, and returns the
    /// sequence numbers offered, in order, with whether they were taken.
    fn resend(queue: &mut RetryQueue, now: Instant, open: &[&str]) -> Vec<(u64, bool)> {
        let mut offered = Vec::new();
        queue.resend_due(now, |retry| {
            let taken = open.contains(&retry.record.topic.as_str());
            offered.push((retry.sent.seq, taken));
            if taken {
                Ok(())
            } else {
                Err(())
            }
        });
        offered
    }

    #[test]
    fn a_topics_records_go_out_in_the_order_they_were_first_sent() {
        let now = Instant::now();
        let mut queue = RetryQueue::default();
        // Refused at send (newer), then the delivery failures of older records come back.
        for seq in [7, 8, 3, 5] {
            let (sent, record) = record("missed", seq);
            queue.push_failed(sent, record, now);
        }
        let later = now + FIRST_BACKOFF;
        assert_eq!(
            resend(&mut queue, later, &["missed"]),
            [(3, true), (5, true), (7, true), (8, true)]
        );
        assert!(queue.is_empty());
        assert!(!queue.holds_topic("missed"));
    }

    #[test]
    fn a_refused_record_holds_back_the_rest_of_its_topic_only() {
        let now = Instant::now();
        let mut queue = RetryQueue::default();
        for (topic, seq) in [("missed", 1), ("parties", 2), ("missed", 3), ("parties", 4)] {
            let (sent, record) = record(topic, seq);
            queue.push_failed(sent, record, now);
        }
        let later = now + FIRST_BACKOFF;
        // The missed-call topic is still missing: its first record is refused, the second not
        // tried; the party records go out.
        assert_eq!(
            resend(&mut queue, later, &["parties"]),
            [(1, false), (2, true), (4, true)]
        );
        assert_eq!(queue.len(), 2);
        assert!(queue.holds_topic("missed"));
        assert!(!queue.holds_topic("parties"));
        // A new record of the topic queues behind, due at once, but waits for the refused one,
        // which backs off.
        let (sent, record) = record("missed", 9);
        queue.push_behind(sent, record, later);
        assert_eq!(resend(&mut queue, later, &["missed"]), []);
        let retry_due = later + backoff(2);
        assert_eq!(
            resend(&mut queue, retry_due, &["missed"]),
            [(1, true), (3, true), (9, true)]
        );
        assert!(queue.is_empty());
    }

    #[test]
    fn a_record_not_due_yet_holds_back_its_topic() {
        let now = Instant::now();
        let mut queue = RetryQueue::default();
        let (sent, record_1) = record("missed", 1);
        queue.push_failed(sent, record_1, now);
        let (sent, record_2) = record("missed", 2);
        queue.push_behind(sent, record_2, now);
        assert_eq!(resend(&mut queue, now, &["missed"]), []);
        queue.make_due(now);
        assert_eq!(resend(&mut queue, now, &["missed"]), [(1, true), (2, true)]);
    }

    #[test]
    fn backoff_doubles_up_to_ten_seconds() {
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(2), Duration::from_millis(200));
        assert_eq!(backoff(5), Duration::from_millis(1600));
        assert_eq!(backoff(8), Duration::from_secs(10));
        assert_eq!(backoff(40), Duration::from_secs(10));
    }

    #[test]
    fn dropped_records_no_longer_hold_their_topic() {
        let now = Instant::now();
        let mut queue = RetryQueue::default();
        for (topic, seq) in [("missed", 1), ("missed", 2), ("parties", 3)] {
            let (sent, record) = record(topic, seq);
            queue.push_failed(sent, record, now);
        }
        assert_eq!(queue.retain(|r| r.record.topic != "missed"), 2);
        assert!(!queue.holds_topic("missed"));
        assert!(queue.holds_topic("parties"));
        assert_eq!(queue.len(), 1);
    }
}
