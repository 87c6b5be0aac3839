//! The whole core path for one message, with duplicate suppression: what the Kafka loop and the
//! offline CLI both call.

use std::num::NonZeroU64;

use super::dedup::{digest, DedupWindow, Mark, Window};
use super::records::{OrderedState, OutputRecord};
use super::rejection::Rejection;
use super::{derive, parse, DecodeLimits};

/// Settings of the core.
#[derive(Debug, Clone, Copy)]
pub struct ProcessorConfig {
    pub limits: DecodeLimits,
    /// How many `(subscriptionId, uuid)` pairs are remembered; 0 turns this off.
    pub notification_window: usize,
    /// How many emitted `(record_id, state)` pairs, and apart from them how many recordings'
    /// latest states, are remembered; 0 turns this off.
    pub record_window: usize,
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        Self {
            limits: DecodeLimits::default(),
            notification_window: 100_000,
            record_window: 100_000,
        }
    }
}

/// What became of an accepted message. Rejected messages are `Err(Rejection)` instead.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Records handed to `emit`.
    pub emitted: usize,
    /// Records not emitted as duplicates: the same record id and state were emitted before (for a
    /// recording: its notification is not later than the latest one about it, or says nothing
    /// new), or a missed call without voicemail after the same one with voicemail.
    pub suppressed: usize,
    /// The whole notification was a transport-level redelivery: nothing was emitted.
    pub duplicate: bool,
    /// `eventTime` of the notification, epoch milliseconds, for lag metrics.
    pub event_time_ms: Option<i64>,
    /// Envelope `timestamp` of the notification, epoch milliseconds, for lag metrics.
    pub sent_at_ms: Option<i64>,
}

/// Runs messages through the core, remembering what it emitted.
#[derive(Debug, Clone)]
pub struct Processor {
    config: ProcessorConfig,
    notifications: DedupWindow,
    records: DedupWindow,
    /// Per record id whose states are ordered (a recording with a sequence): the latest state
    /// emitted, and the sequence of the latest notification that said it.
    latest: Window<Latest>,
}

/// The latest state emitted under a record id, and the sequence of its notification.
#[derive(Debug, Clone, Copy, Default)]
struct Latest {
    sequence: i64,
    /// The state's key; `None` when the record did not say the state (a recording without
    /// `active`), so that only its existence is known. (`NonZeroU64` keeps a slot at 32 bytes; a
    /// digest of 0 is read as "not said", which costs at most one republication.)
    said: Option<NonZeroU64>,
}

impl Latest {
    fn of(ordered: OrderedState, state: u64) -> Self {
        Latest {
            sequence: ordered.sequence,
            said: NonZeroU64::new(state).filter(|_| ordered.informative),
        }
    }

    /// Whether a record with ordered states tells nothing new against this, the latest state
    /// emitted under its id: news is a state said by a later notification that differs, or the
    /// first state said at all (from this notification on).
    fn repeated_by(self, ordered: OrderedState, state: u64) -> bool {
        if !ordered.informative {
            return true;
        }
        match self.said {
            Some(said) => ordered.sequence <= self.sequence || said.get() == state,
            None => ordered.sequence < self.sequence,
        }
    }

    /// Whether a record repeating this state comes from a later notification, which then is the
    /// latest to have said it (a late copy of an older state is not news against it).
    fn confirmed_by(self, ordered: OrderedState, state: u64) -> bool {
        ordered.informative
            && ordered.sequence > self.sequence
            && self.said.is_some_and(|said| said.get() == state)
    }
}

/// A state of the duplicate windows that `Processor::rollback` returns them to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessorMark {
    notifications: Mark,
    records: Mark,
    latest: Mark,
}

/// A record of the message being processed, as the windows see it.
struct Pending {
    state: u64,
    ordered: Option<OrderedState>,
    emitted: bool,
    /// Not emitted, but a later notification confirms the latest state: its sequence is kept.
    confirms_latest: bool,
}

impl Processor {
    pub fn new(config: ProcessorConfig) -> Self {
        Self {
            config,
            notifications: DedupWindow::new(config.notification_window),
            records: DedupWindow::new(config.record_window),
            latest: Window::new(config.record_window),
        }
    }

    /// Processes one message: calls `emit` for each record that is not a duplicate. If `emit`
    /// fails, nothing of this message is remembered as emitted and its error is returned, so that
    /// a retry or a dead letter is not mistaken for a duplicate later.
    pub fn process<E>(&mut self, bytes: &[u8], mut emit: E) -> Result<Outcome, Rejection>
    where
        E: FnMut(&OutputRecord<'_>) -> Result<(), Rejection>,
    {
        let notification = parse(bytes, &self.config.limits)?;

        let transport_key = match (
            &notification.envelope.subscription_id,
            &notification.envelope.uuid,
        ) {
            (Some(subscription), Some(uuid)) => Some(digest(&(subscription, uuid))),
            _ => None,
        };
        // Every window lookup is a likely cache miss: each slot is asked for as soon as its key is
        // known and looked up only after other work, so that the misses overlap that work and
        // each other instead of coming one after another.
        if let Some(key) = transport_key {
            self.notifications.prefetch(key);
        }
        let times = Outcome {
            event_time_ms: notification.session.event_time_ms,
            sent_at_ms: notification.envelope.sent_at_ms,
            ..Outcome::default()
        };

        let mut records = Vec::with_capacity(notification.parties.len() * 2);
        derive(&notification, &mut records);
        // A missed call whose caller reached the party's voicemail in an earlier notification (or
        // in another entry of this one) says so, though its own status no longer does (rare: one
        // lookup per missed call without voicemail).
        for i in 0..records.len() {
            let key = match &records[i] {
                OutputRecord::Missed(missed) if !missed.reached_voicemail => {
                    missed.call.voicemail_key()
                }
                _ => continue,
            };
            let here = records.iter().any(|r| {
                matches!(r, OutputRecord::Party(e)
                    if e.call.party.in_voicemail() && e.call.voicemail_key() == key)
            });
            if here || self.records.contains(key) {
                if let OutputRecord::Missed(missed) = &mut records[i] {
                    missed.reached_voicemail = true;
                }
            }
        }
        // Each record's keys, and whether the record was emitted: one list serves the lookups,
        // the duplicates within this notification and the insertions once all are emitted.
        let mut pending: Vec<Pending> = records
            .iter()
            .map(|record| {
                let state = record.state_key();
                self.records.prefetch(state);
                let ordered = record.ordered_state();
                if let Some(ordered) = ordered {
                    self.latest.prefetch(ordered.id);
                }
                Pending {
                    state,
                    ordered,
                    emitted: false,
                    confirms_latest: false,
                }
            })
            .collect();

        if transport_key.is_some_and(|k| self.notifications.contains(k)) {
            return Ok(Outcome {
                duplicate: true,
                ..times
            });
        }

        let mut outcome = times;
        // A record window of 0 turns suppression off, within a notification too.
        let suppressing = self.config.record_window > 0;
        for (i, record) in records.iter().enumerate() {
            let (earlier, rest) = pending.split_at_mut(i);
            let this = &mut rest[0];
            let emitted_here = |key: u64| earlier.iter().any(|p| p.emitted && p.state == key);
            let emitted = |key: u64| emitted_here(key) || self.records.contains(key);
            let duplicate = match this.ordered {
                // A state that can come back (a recording resumed after a pause) is compared with
                // the latest one emitted under its id: redeliveries and late copies of older
                // states carry no higher sequence.
                Some(ordered) => {
                    // The latest state of this id: said in this notification (whose records share
                    // its sequence), else emitted for an earlier one.
                    let in_this = earlier
                        .iter()
                        .rev()
                        .find(|p| {
                            p.emitted
                                && p.ordered
                                    .is_some_and(|o| o.id == ordered.id && o.informative)
                        })
                        .map(|p| Latest::of(ordered, p.state));
                    match in_this.or_else(|| self.latest.get(ordered.id)) {
                        Some(latest) => {
                            this.confirms_latest = latest.confirmed_by(ordered, this.state);
                            latest.repeated_by(ordered, this.state)
                        }
                        // None known: only the same state again in this notification repeats.
                        None => emitted_here(this.state),
                    }
                }
                None => emitted(this.state) || record.superseded_by().is_some_and(emitted),
            };
            if suppressing && duplicate {
                outcome.suppressed += 1;
                continue;
            }
            emit(record)?;
            this.emitted = true;
            outcome.emitted += 1;
        }

        for (p, record) in pending.iter().zip(&records) {
            // A record with ordered states is looked up only in `latest`, but remembered in
            // `records` too: a copy without a sequence is compared there.
            if p.emitted {
                self.records.insert(p.state);
            }
            if let OutputRecord::Party(event) = record {
                if event.call.party.in_voicemail() {
                    self.records.insert(event.call.voicemail_key());
                }
            }
            if let Some(ordered) = p.ordered.filter(|_| p.emitted || p.confirms_latest) {
                self.latest.put(ordered.id, Latest::of(ordered, p.state));
            }
        }
        if let Some(key) = transport_key {
            self.notifications.insert(key);
        }
        Ok(outcome)
    }

    /// Forgets what was emitted: call when emitted records were not published after all, or they
    /// would be suppressed when the input is read again.
    pub fn forget_emitted(&mut self) {
        self.notifications.clear();
        self.records.clear();
        self.latest.clear();
    }

    /// From now on, keeps what the windows need to forget only what was emitted after a mark
    /// (`mark`, `rollback`): under exactly-once, an aborted transaction's records, while those of
    /// committed transactions stay remembered. Costs some memory, bounded (`Window::keep_undo`).
    pub fn keep_undo(&mut self) {
        self.notifications.keep_undo();
        self.records.keep_undo();
        self.latest.keep_undo();
    }

    /// The windows' state now, if they keep undo information.
    pub fn mark(&self) -> Option<ProcessorMark> {
        Some(ProcessorMark {
            notifications: self.notifications.mark()?,
            records: self.records.mark()?,
            latest: self.latest.mark()?,
        })
    }

    /// Forgets what was emitted since `mark`, and nothing before it. Where that is no longer
    /// possible (a window was cleared since, or its undo information outgrew its bound), forgets
    /// everything, as `forget_emitted`, and returns false: at worst some records are published
    /// again, never one suppressed that was not published.
    pub fn rollback(&mut self, mark: ProcessorMark) -> bool {
        let restored = self.notifications.rollback(mark.notifications)
            && self.records.rollback(mark.records)
            && self.latest.rollback(mark.latest);
        if !restored {
            self.forget_emitted();
        }
        restored
    }

    /// Drops the undo information from before `mark`: what was emitted before it is published
    /// for good (its transaction committed).
    pub fn settle(&mut self, mark: ProcessorMark) {
        self.notifications.settle(mark.notifications);
        self.records.settle(mark.records);
        self.latest.settle(mark.latest);
    }
}
