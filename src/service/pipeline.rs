//! The core's own thread. The service loop copies polled messages into a `Batch` and hands it to
//! this thread, which runs each through the core and encodes its records into the same batch;
//! meanwhile the loop sends the previous batch's records and polls the next. One batch at a time
//! is at the core thread, and batches come back in the order they went, so records leave in input
//! order and one `Processor` (one duplicate window) sees every message.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::Instant;

use prometheus::local::LocalHistogram;
use prometheus::{Histogram, IntCounterVec};
use rdkafka::message::OwnedHeaders;

use crate::core::budget::OutputBudget;
use crate::core::framing::ValueFormat;
use crate::core::{Outcome, Processor, ProcessorMark, Rejection, TopicKind};

/// A batch stops taking messages at this many.
pub const MAX_BATCH_MESSAGES: usize = 512;
/// A batch stops taking messages at this many payload bytes.
pub const MAX_BATCH_BYTES: usize = 1 << 20;

/// One polled input message, its bytes in `Batch::input`.
#[derive(Debug)]
pub struct Polled {
    pub partition: i32,
    pub offset: i64,
    /// The tracker's generation of the partition when the message was polled.
    pub generation: u64,
    pub timestamp: Option<i64>,
    pub payload: Range<usize>,
    pub key: Option<Range<usize>>,
    /// Kept for the dead letter, which carries the original headers.
    pub headers: Option<OwnedHeaders>,
}

/// A polled message as it is handed to `Batch::push`.
pub struct Incoming<'m> {
    pub partition: i32,
    pub offset: i64,
    pub generation: u64,
    pub timestamp: Option<i64>,
    pub payload: &'m [u8],
    pub key: Option<&'m [u8]>,
    pub headers: Option<OwnedHeaders>,
}

/// An encoded output record, its key and value in `Batch::output`.
#[derive(Debug, Clone)]
pub struct StagedRecord {
    pub kind: TopicKind,
    pub key: Range<usize>,
    pub value: Range<usize>,
}

/// What the core made of one message.
#[derive(Debug)]
pub enum Processed {
    /// Accepted; its records are `Batch::records[records]`.
    Accepted {
        outcome: Outcome,
        records: Range<usize>,
    },
    Rejected(Rejection),
}

/// Messages on their way to the core thread and, filled in, back. Buffers are reused from batch
/// to batch: nothing is allocated per message or per record once they have grown.
#[derive(Debug, Default)]
pub struct Batch {
    pub input: Vec<u8>,
    pub messages: Vec<Polled>,
    pub output: Vec<u8>,
    pub records: Vec<StagedRecord>,
    /// One per message, in order; filled by the core thread.
    pub results: Vec<Processed>,
}

impl Batch {
    pub fn clear(&mut self) {
        self.input.clear();
        self.messages.clear();
        self.output.clear();
        self.records.clear();
        self.results.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.messages.len() >= MAX_BATCH_MESSAGES || self.input.len() >= MAX_BATCH_BYTES
    }

    /// Adds a message, copying its bytes.
    pub fn push(&mut self, message: Incoming<'_>) {
        let payload = append(&mut self.input, message.payload);
        let key = message.key.map(|k| append(&mut self.input, k));
        self.messages.push(Polled {
            partition: message.partition,
            offset: message.offset,
            generation: message.generation,
            timestamp: message.timestamp,
            payload,
            key,
            headers: message.headers,
        });
    }

    pub fn payload(&self, message: &Polled) -> &[u8] {
        &self.input[message.payload.clone()]
    }

    pub fn key(&self, message: &Polled) -> Option<&[u8]> {
        message.key.clone().map(|k| &self.input[k])
    }
}

fn append(buffer: &mut Vec<u8>, bytes: &[u8]) -> Range<usize> {
    let start = buffer.len();
    buffer.extend_from_slice(bytes);
    start..buffer.len()
}

/// Runs every message of the batch through the core, encoding the records of each into the
/// batch. A message that is rejected (an oversized record included) leaves no records behind.
/// Each message's processing time goes to `durations`, which the caller flushes.
pub fn process_batch(
    processor: &mut Processor,
    value_format: &ValueFormat,
    max_record_bytes: usize,
    batch: &mut Batch,
    durations: Option<&LocalHistogram>,
) {
    let Batch {
        input,
        messages,
        output,
        records,
        results,
    } = batch;
    output.clear();
    records.clear();
    results.clear();
    // One clock read per message: where one message ends the next begins (a read costs about
    // 40 ns on the virtual machines measured, about 1% of a message's time in the core).
    let mut started = durations.map(|_| Instant::now());
    for message in messages.iter() {
        let (output_mark, records_mark) = (output.len(), records.len());
        let payload = &input[message.payload.clone()];
        let mut budget = OutputBudget::new(payload.len(), max_record_bytes);
        let result = processor.process(payload, |record| {
            let key = append(output, record.key().as_bytes());
            let value_start = output.len();
            value_format.write_value(record, output);
            budget.charge(record.record_id(), key.len(), output.len() - value_start)?;
            records.push(StagedRecord {
                kind: record.topic(),
                key,
                value: value_start..output.len(),
            });
            Ok(())
        });
        results.push(match result {
            Ok(outcome) => Processed::Accepted {
                outcome,
                records: records_mark..records.len(),
            },
            Err(rejection) => {
                output.truncate(output_mark);
                records.truncate(records_mark);
                Processed::Rejected(rejection)
            }
        });
        if let (Some(histogram), Some(begun)) = (durations, started) {
            let now = Instant::now();
            histogram.observe((now - begun).as_secs_f64());
            started = Some(now);
        }
    }
}

/// Work for the core thread. Batches are numbered in the order they are sent, from 0.
pub enum Job {
    Process(Batch),
    /// Forget the duplicate windows: what they remember may never be published (dropped work
    /// of a revoked partition, at-least-once).
    Forget,
    /// Exactly-once: the batches before this number were published in committed transactions.
    /// The windows' undo information for them can go.
    Settle(u64),
    /// Exactly-once: what the batches from this number on emitted was not published (their
    /// transaction aborted, or they were dropped): forget it, and only it. Sent when those
    /// batches are back from the core thread.
    Rollback(u64),
    /// From now on, records must fit this limit (`producer_max_record_bytes`, lowered to fit the
    /// output topics, which are read at start-up). Sent before the first batch.
    RecordLimit(usize),
}

/// The core thread's loop: until the job channel closes.
pub fn run_core(
    mut processor: Processor,
    value_format: ValueFormat,
    mut max_record_bytes: usize,
    durations: Histogram,
    window_resets: IntCounterVec,
    jobs: Receiver<Job>,
    done: SyncSender<Batch>,
) {
    // Observed locally and flushed once per batch: one atomic update per batch, not per message.
    let durations = durations.local();
    let mut marks = BatchMarks {
        processed: 0,
        marks: VecDeque::new(),
        resets: window_resets,
    };
    for job in jobs {
        match job {
            Job::Process(mut batch) => {
                marks.before_batch(&processor);
                process_batch(
                    &mut processor,
                    &value_format,
                    max_record_bytes,
                    &mut batch,
                    Some(&durations),
                );
                durations.flush();
                if done.send(batch).is_err() {
                    return;
                }
            }
            Job::Forget => marks.forget(&mut processor, "dropped_work"),
            Job::Settle(committed) => marks.settle(&mut processor, committed),
            Job::Rollback(aborted) => marks.rollback(&mut processor, aborted),
            Job::RecordLimit(limit) => max_record_bytes = limit,
        }
    }
}

/// The duplicate windows' state before each batch not yet known to be committed (exactly-once,
/// where the processor keeps undo information; otherwise there are no marks), by batch number.
struct BatchMarks {
    /// Batches processed so far: the number of the next one.
    processed: u64,
    marks: VecDeque<(u64, ProcessorMark)>,
    /// `callstream_duplicate_window_resets_total{reason}`.
    resets: IntCounterVec,
}

impl BatchMarks {
    fn before_batch(&mut self, processor: &Processor) {
        if let Some(mark) = processor.mark() {
            self.marks.push_back((self.processed, mark));
        }
        self.processed += 1;
    }

    fn forget(&mut self, processor: &mut Processor, reason: &str) {
        processor.forget_emitted();
        self.marks.clear();
        self.resets.with_label_values(&[reason]).inc();
    }

    /// Batches before `committed` are published for good.
    fn settle(&mut self, processor: &mut Processor, committed: u64) {
        while self
            .marks
            .front()
            .is_some_and(|&(batch, _)| batch < committed)
        {
            self.marks.pop_front();
        }
        if let Some(mark) = self
            .marks
            .front()
            .map(|&(_, mark)| mark)
            .or_else(|| processor.mark())
        {
            processor.settle(mark);
        }
    }

    /// What batches from `aborted` on emitted was not published.
    fn rollback(&mut self, processor: &mut Processor, aborted: u64) {
        match self.marks.iter().position(|&(batch, _)| batch == aborted) {
            Some(i) => {
                if !processor.rollback(self.marks[i].1) {
                    self.resets.with_label_values(&["rollback_fallback"]).inc();
                    tracing::warn!("the duplicate windows could not be rolled back to the aborted transaction's start (its undo information outgrew its bound, or a full window's table was rebuilt); they were cleared, so redelivered notifications may be published again");
                }
                // A rollback leaves no mark usable; the next batch takes a new one.
                self.marks.clear();
            }
            // Nothing processed since.
            None if aborted >= self.processed => {}
            // Its mark is gone (the windows were cleared, or keep no undo information): forget
            // everything rather than remember what was not published.
            None => self.forget(processor, "rollback_fallback"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::budget::{MAX_RECORD_BYTES, OUTPUT_ALLOWANCE_BYTES, OUTPUT_PER_INPUT_BYTE};
    use crate::core::{ProcessorConfig, Stage};
    use crate::metrics::WINDOW_RESET_REASONS;

    fn notification(uuid: &str, session: &str) -> String {
        format!(
            r#"{{"uuid":"{uuid}","subscriptionId":"sub","body":{{"telephonySessionId":"{session}","eventTime":"2024-03-09T16:00:00.000Z","parties":[{{"id":"p-1","extensionId":"101","status":{{"code":"Answered"}}}},{{"id":"p-2","status":{{"code":"Answered"}}}}]}}}}"#
        )
    }

    fn batch_of(payloads: &[&str]) -> Batch {
        let mut batch = Batch::default();
        for (i, payload) in payloads.iter().enumerate() {
            batch.push(Incoming {
                partition: 0,
                offset: i as i64,
                generation: 1,
                timestamp: None,
                payload: payload.as_bytes(),
                key: Some(b"k"),
                headers: None,
            });
        }
        batch
    }

    /// Of one message: whether it was a transport duplicate, its records emitted and suppressed.
    type Seen = (bool, usize, usize);

    /// Runs `jobs` through the core thread's loop, as the engine sends them; returns, per batch
    /// in order, per message: whether it was a transport duplicate, and its records emitted and
    /// suppressed; and the windows' resets, per reason (`WINDOW_RESET_REASONS`).
    fn run_jobs(processor: Processor, jobs: Vec<Job>) -> (Vec<Vec<Seen>>, [u64; 2]) {
        let (job_tx, job_rx) = std::sync::mpsc::sync_channel(jobs.len());
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel(jobs.len());
        for job in jobs {
            job_tx.send(job).expect("queued");
        }
        drop(job_tx);
        let format = ValueFormat::single_object().expect("format");
        let durations = Histogram::with_opts(prometheus::HistogramOpts::new("d", "d")).expect("h");
        let resets = IntCounterVec::new(prometheus::Opts::new("r", "r"), &["reason"]).expect("r");
        run_core(
            processor,
            format,
            MAX_RECORD_BYTES,
            durations,
            resets.clone(),
            job_rx,
            done_tx,
        );
        let results = done_rx
            .try_iter()
            .map(|batch| {
                batch
                    .results
                    .iter()
                    .map(|r| match r {
                        Processed::Accepted { outcome, .. } => {
                            (outcome.duplicate, outcome.emitted, outcome.suppressed)
                        }
                        Processed::Rejected(rejection) => panic!("{rejection}"),
                    })
                    .collect()
            })
            .collect();
        let count = |reason| resets.with_label_values(&[reason]).get();
        (results, WINDOW_RESET_REASONS.map(count))
    }

    /// Exactly-once: a rollback to the first batch of an aborted transaction forgets what that
    /// batch and the later ones emitted, and keeps what committed batches emitted: their
    /// redelivery is still a duplicate, and a later notification repeating their parties' states
    /// still has its records suppressed. The commit came while a batch of the aborted transaction
    /// was at the core thread already. Without undo information a rollback forgets everything.
    #[test]
    fn a_rollback_forgets_the_aborted_batches_only() {
        let [a, b, c] = [("1", "s-a"), ("2", "s-b"), ("3", "s-c")].map(|(u, s)| notification(u, s));
        // The same call and party states as `a`, in a notification of its own.
        let restated = notification("4", "s-a");
        let jobs = || {
            vec![
                Job::Process(batch_of(&[&a])),
                Job::Process(batch_of(&[&b])),
                // Batch 0 committed; batches 1 and 2 are in a transaction that aborts.
                Job::Settle(1),
                Job::Process(batch_of(&[&c])),
                Job::Rollback(1),
                Job::Process(batch_of(&[&restated, &a, &b, &c])),
                // Nothing processed since batch 3: nothing to forget.
                Job::Rollback(4),
                Job::Process(batch_of(&[&b])),
            ]
        };
        let new = (false, 2, 0);
        let redelivered = (true, 0, 0);
        let mut undoing = Processor::new(ProcessorConfig::default());
        undoing.keep_undo();
        assert_eq!(
            run_jobs(undoing, jobs()),
            (
                vec![
                    vec![new],
                    vec![new],
                    vec![new],
                    vec![(false, 0, 2), redelivered, new, new],
                    vec![redelivered]
                ],
                [0, 0]
            )
        );
        // Without undo information (at-least-once) a rollback cannot be partial.
        assert_eq!(
            run_jobs(Processor::new(ProcessorConfig::default()), jobs()),
            (
                vec![
                    vec![new],
                    vec![new],
                    vec![new],
                    vec![new, (false, 0, 2), new, new],
                    vec![redelivered]
                ],
                [0, 1]
            ),
            "a reset counted as a rollback's fallback"
        );
        // A `Forget` in between leaves nothing to roll back to: everything is forgotten.
        let mut undoing = Processor::new(ProcessorConfig::default());
        undoing.keep_undo();
        let (forgotten, resets) = run_jobs(
            undoing,
            vec![
                Job::Process(batch_of(&[&a])),
                Job::Process(batch_of(&[&b])),
                Job::Forget,
                Job::Process(batch_of(&[&c])),
                Job::Rollback(1),
                Job::Process(batch_of(&[&a, &c])),
            ],
        );
        assert_eq!(forgotten[3], [new, new]);
        assert_eq!(
            resets,
            [1, 1],
            "the forget, and the rollback that found no mark"
        );
    }

    #[test]
    fn every_message_gets_a_result_and_its_own_records_in_order() {
        let mut processor = Processor::new(ProcessorConfig::default());
        let format = ValueFormat::single_object().unwrap();
        let first = notification("1", "s-a");
        let second = notification("2", "s-b");
        let mut batch = batch_of(&[&first, "not json", &second, &first]);
        process_batch(&mut processor, &format, MAX_RECORD_BYTES, &mut batch, None);

        assert_eq!(batch.results.len(), 4);
        let ranges: Vec<Range<usize>> = batch
            .results
            .iter()
            .map(|r| match r {
                Processed::Accepted { records, .. } => records.clone(),
                Processed::Rejected(_) => 0..0,
            })
            .collect();
        assert_eq!(ranges[0], 0..2, "two parties, two party records");
        assert!(matches!(&batch.results[1], Processed::Rejected(r) if r.stage == Stage::Decode));
        assert_eq!(ranges[2], 2..4);
        match &batch.results[3] {
            Processed::Accepted { outcome, records } => {
                assert!(outcome.duplicate, "the same uuid again is a redelivery");
                assert!(records.is_empty());
            }
            other => panic!("{other:?}"),
        }
        let keys: Vec<&[u8]> = batch
            .records
            .iter()
            .map(|r| &batch.output[r.key.clone()])
            .collect();
        assert_eq!(keys, [&b"101"[..], b"s-a", b"101", b"s-b"]);
        for record in &batch.records {
            let value = &batch.output[record.value.clone()];
            assert_eq!(&value[..2], &[0xc3, 0x01], "single-object framing");
        }
    }

    #[test]
    fn a_message_whose_records_outgrow_it_is_refused_whole() {
        // Every party record repeats the event filter: 256 parties of a message that is mostly
        // a 20 KB event filter derive about 5 MB.
        let parties: Vec<String> = (0..crate::core::validate::MAX_PARTIES)
            .map(|i| format!(r#"{{"id":"p-{i}","status":{{"code":"Answered"}}}}"#))
            .collect();
        let event = format!(
            "/restapi/v1.0/account/{}/telephony/sessions",
            "1".repeat(20_000)
        );
        let hostile = format!(
            r#"{{"uuid":"h","subscriptionId":"sub","event":"{event}","body":{{"telephonySessionId":"s-h","parties":[{}]}}}}"#,
            parties.join(",")
        );
        // The same filter on a one-party message is within its allowance.
        let single = format!(
            r#"{{"uuid":"o","subscriptionId":"sub","event":"{event}","body":{{"telephonySessionId":"s-o","parties":[{}]}}}}"#,
            parties[0]
        );
        let after = notification("2", "s-b");
        let mut processor = Processor::new(ProcessorConfig::default());
        let format = ValueFormat::single_object().unwrap();
        let mut batch = batch_of(&[&hostile, &single, &after, &hostile]);
        process_batch(&mut processor, &format, MAX_RECORD_BYTES, &mut batch, None);
        // Refused, it is not remembered: delivered again, it is refused again, not suppressed.
        assert!(
            matches!(&batch.results[3], Processed::Rejected(r) if r.code == "output_too_large")
        );

        match &batch.results[0] {
            Processed::Rejected(rejection) => {
                assert_eq!(rejection.stage, Stage::Encode);
                assert_eq!(rejection.code, "output_too_large");
                let budget = hostile.len() * OUTPUT_PER_INPUT_BYTE + OUTPUT_ALLOWANCE_BYTES;
                assert!(
                    rejection
                        .reason
                        .contains(&format!("more than {budget} bytes")),
                    "{rejection}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(&batch.results[1], Processed::Accepted { records, .. } if *records == (0..1))
        );
        assert!(
            matches!(&batch.results[2], Processed::Accepted { records, .. } if *records == (1..3))
        );
        // Nothing of the refused message stays in the batch: the output holds the other two's.
        assert!(
            batch.output.len() < 2 * event.len() + 1_000,
            "{}",
            batch.output.len()
        );
    }

    #[test]
    fn a_record_is_measured_with_its_key_against_the_lower_of_both_limits() {
        // Keyed by a 520 KB extension id that its value carries too: about 1,040,000 bytes with
        // the key, which librdkafka would refuse (`message.max.bytes`, 1,000,000 by default).
        let extension = "1".repeat(520_000);
        let long_key = format!(
            r#"{{"uuid":"k","body":{{"telephonySessionId":"s-k","parties":[{{"id":"p","extensionId":"{extension}","status":{{"code":"Answered"}}}}]}}}}"#
        );
        let normal = notification("2", "s-b");
        let format = ValueFormat::single_object().unwrap();
        let outcome = |limit: usize, payloads: &[&str]| {
            let mut processor = Processor::new(ProcessorConfig::default());
            let mut batch = batch_of(payloads);
            process_batch(&mut processor, &format, limit, &mut batch, None);
            batch
                .results
                .iter()
                .map(|r| match r {
                    Processed::Accepted { records, .. } => Ok(records.len()),
                    Processed::Rejected(rejection) => Err(rejection.to_string()),
                })
                .collect::<Vec<_>>()
        };
        let results = outcome(1_000_000, &[&long_key, &normal]);
        let reason = results[0].as_ref().unwrap_err();
        assert!(
            reason.contains("with its key, over the limit of 900000"),
            "{reason}"
        );
        assert_eq!(results[1], Ok(2));
        // A producer limit below the built-in one is the limit.
        let results = outcome(100, &[&normal]);
        let reason = results[0].as_ref().unwrap_err();
        assert!(reason.contains("over the limit of 100"), "{reason}");
        assert_eq!(outcome(2_000, &[&normal]), [Ok(2)]);
    }

    #[test]
    fn the_input_bytes_of_each_message_are_kept_for_its_dead_letter() {
        let mut batch = Batch::default();
        let message = |offset, payload: &'static [u8], key: Option<&'static [u8]>| Incoming {
            partition: 2,
            offset,
            generation: 1,
            timestamp: None,
            payload,
            key,
            headers: None,
        };
        batch.push(message(7, b"payload", Some(b"key")));
        batch.push(message(8, b"other", None));
        assert_eq!(batch.payload(&batch.messages[0]), b"payload");
        assert_eq!(batch.key(&batch.messages[0]), Some(&b"key"[..]));
        assert_eq!(batch.payload(&batch.messages[1]), b"other");
        assert_eq!(batch.key(&batch.messages[1]), None);
        batch.clear();
        assert!(batch.is_empty() && batch.input.is_empty());
    }
}
