//! `callstream dead-letters replay`: sends dead letters back to the input topic, after an upgrade
//! that accepts what was rejected, or once the upstream fault is fixed. What to send is decided by
//! `service::dead_letters::replay`; this is the Kafka loop around it.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer, ProducerContext, PurgeConfig, ThreadedProducer,
};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, Timestamp, TopicPartitionList};

use super::report::{now_ms, report, report_librdkafka_error, report_librdkafka_log};
use super::service::checked_settings;
use super::DeadLettersReplayArgs;
use crate::config::Settings;
use crate::service::clients::{copy_headers, ErrorLog};
use crate::service::dead_letters::{replay, Replay, ReplayFilter, TimestampWindow};
use crate::service::{admin, engine};

/// How long reading may make no progress before the replay gives up: the ends were measured when
/// it started, so only a broker in trouble keeps it waiting this long.
const QUIET_LIMIT: Duration = Duration::from_secs(60);
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// What a replay did.
#[derive(Debug, Default)]
struct Tally {
    replayed: u64,
    filtered: u64,
    foreign: u64,
    /// Where the whole messages of incomplete dead letters are.
    incomplete: Vec<String>,
    /// Sent (acknowledged, or in a dry run chosen) with the current time: the input topic would
    /// refuse their original one.
    restamped: u64,
}

/// `callstream dead-letters replay`.
pub fn replay_dead_letters(args: DeadLettersReplayArgs) -> ExitCode {
    let checked = checked_settings(
        &args.connection,
        &args.topics,
        Settings::validate_connection,
    );
    let settings = match checked {
        Ok(s) => s,
        Err(code) => return code,
    };
    let properties = settings.librdkafka_properties();
    // `defaults` may be changed with -X or the file; `own` are what the replay's guarantees rest
    // on, applied last.
    let client = |defaults: &[(&str, &str)], own: &[(&str, &str)]| {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &settings.kafka.bootstrap_servers);
        for (key, value) in defaults {
            c.set(*key, *value);
        }
        for (key, value) in &properties {
            c.set(key, value);
        }
        for (key, value) in own {
            c.set(*key, *value);
        }
        c.set_log_level(RDKafkaLogLevel::Warning);
        c
    };
    let message_timeout = settings.kafka.message_timeout_ms.to_string();
    let mut replayer = Replayer {
        from: &settings.topics.dead_letters,
        to: &settings.topics.input,
        filter: ReplayFilter {
            stages: args.stage.clone(),
            codes: args.code.clone(),
        },
        args: &args,
        servers: &settings.kafka.bootstrap_servers,
        started: false,
        message_timeout: Duration::from_millis(settings.kafka.message_timeout_ms),
        window: None,
        tally: Tally::default(),
        handled: BTreeMap::new(),
        ends: BTreeMap::new(),
        limits: BTreeMap::new(),
    };
    let result = replayer.run(
        client(
            &[],
            &[
                ("group.id", &args.group_id),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("isolation.level", "read_committed"),
                ("auto.offset.reset", "earliest"),
            ],
        ),
        // murmur2 as the service and Java clients partition: a replayed message goes to its key's
        // partition of the input topic, after the key's earlier messages.
        client(
            &[
                ("linger.ms", "5"),
                ("partitioner", "murmur2_random"),
                ("message.timeout.ms", &message_timeout),
            ],
            // A mistyped input topic is refused, not created by asking for it.
            &[
                ("enable.idempotence", "true"),
                ("allow.auto.create.topics", "false"),
            ],
        ),
        Duration::from_millis(settings.kafka.message_timeout_ms),
    );
    // What was done is said whether or not the replay finished, once it started.
    let tally = &replayer.tally;
    if replayer.started {
        let verb = if args.dry_run {
            "would replay"
        } else {
            "replayed"
        };
        println!(
            "{verb} {} dead letters from {} to {}; left out: {} not asked for, {} not from \
             callstream, {} incomplete",
            tally.replayed,
            replayer.from,
            replayer.to,
            tally.filtered,
            tally.foreign,
            tally.incomplete.len()
        );
        for source in &tally.incomplete {
            println!("incomplete: the whole message is at {source} (topic/partition/offset)");
        }
        if tally.restamped > 0 {
            println!(
                "{} of them with the current time: {} refuses their original time \
                 (message.timestamp.before.max.ms or after.max.ms)",
                tally.restamped, replayer.to
            );
        }
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("callstream: {e}");
            ExitCode::from(1)
        }
    }
}

/// One replay: reads the dead-letter topic up to `ends`, sends what the filter lets through.
struct Replayer<'a> {
    from: &'a str,
    to: &'a str,
    filter: ReplayFilter,
    args: &'a DeadLettersReplayArgs,
    servers: &'a str,
    /// Set once the replay knows where each partition starts and ends: before that it has done
    /// nothing to report.
    started: bool,
    /// The producer's delivery time-out: a record may be appended that much after it is sent.
    message_timeout: Duration,
    /// The timestamps the input topic accepts, if its configuration could be read.
    window: Option<TimestampWindow>,
    tally: Tally,
    /// Per partition, the offset after the last dead letter handled (sent, or left out).
    handled: BTreeMap<i32, i64>,
    /// Per partition, where reading it ends: its end when the replay started, or where it
    /// stopped.
    ends: BTreeMap<i32, i64>,
    /// Per partition, its end when the replay started.
    limits: BTreeMap<i32, i64>,
}

impl Replayer<'_> {
    fn run(
        &mut self,
        consumer_config: ClientConfig,
        producer_config: ClientConfig,
        message_timeout: Duration,
    ) -> Result<(), String> {
        let consumer: BaseConsumer = consumer_config.create().map_err(|e| e.to_string())?;
        let producer: ThreadedProducer<ReplayContext> = producer_config
            .create_with_context(ReplayContext::default())
            .map_err(|e| e.to_string())?;
        self.start(&consumer, &producer)?;
        self.started = true;
        self.window = self.input_timestamp_window(&producer_config);

        let read = self.read(&consumer, &producer);
        if self.args.dry_run {
            return read;
        }
        // Everything sent is acknowledged or has failed before anything is committed; what is
        // still queued after the producer's own time-out plus a margin is purged, and so fails.
        let mut flushed = producer.flush(message_timeout + CLIENT_TIMEOUT).is_ok();
        if !flushed {
            producer.purge(PurgeConfig::default().queue().inflight());
            flushed = producer.flush(CLIENT_TIMEOUT).is_ok();
        }
        let deliveries = producer.context().deliveries().clone();
        self.tally.replayed = deliveries.acknowledged;
        self.tally.restamped = deliveries.restamped;
        // Each partition is committed up to its first dead letter not handled, not sent, or not
        // acknowledged: a replay run again goes on from there, whatever stopped this one.
        let mut commit = TopicPartitionList::new();
        let mut stopped_at = Vec::new();
        for (&partition, &handled) in &self.handled {
            let next = deliveries.commit_point(partition, handled);
            commit
                .add_partition_offset(self.from, partition, Offset::Offset(next))
                .map_err(|e| e.to_string())?;
            if next < self.limits.get(&partition).copied().unwrap_or(next) {
                stopped_at.push(format!("{}/{partition}/{next}", self.from));
            }
        }
        if commit.count() > 0 {
            consumer.commit(&commit, CommitMode::Sync).map_err(|e| {
                format!(
                    "committing the replay's offsets: {e} (what it sent is sent again by the next \
                     replay){}",
                    read.as_ref()
                        .err()
                        .map(|r| format!("; before that: {r}"))
                        .unwrap_or_default()
                )
            })?;
        }
        let stopped = || {
            format!(
                "the replay stopped at {}: run it again to go on from there",
                stopped_at.join(", ")
            )
        };
        if let Err(error) = read {
            return Err(format!("{error}; {}", stopped()));
        }
        if !flushed || !deliveries.first_failed.is_empty() {
            return Err(format!(
                "some dead letters could not be sent to {}; {}",
                self.to,
                stopped()
            ));
        }
        Ok(())
    }

    /// Finds each partition's end and where this group's last replay stopped, and assigns.
    fn start(
        &mut self,
        consumer: &BaseConsumer,
        producer: &ThreadedProducer<ReplayContext>,
    ) -> Result<(), String> {
        let from = self.from;
        // The input topic must be there: sends to a missing topic fail only after a while.
        let input = producer
            .client()
            .fetch_metadata(Some(self.to), CLIENT_TIMEOUT)
            .map_err(|e| format!("reading the input topic {}: {e}{}", self.to, self.hint(&e)))?;
        if let Some(error) = input.topics().first().and_then(|t| t.error()) {
            return Err(format!(
                "input topic {}: {}",
                self.to,
                RDKafkaErrorCode::from(error)
            ));
        }
        let metadata = consumer
            .fetch_metadata(Some(from), CLIENT_TIMEOUT)
            .map_err(|e| format!("reading the partitions of {from}: {e}{}", self.hint(&e)))?;
        let topic = metadata
            .topics()
            .first()
            .ok_or_else(|| format!("no metadata for the dead-letter topic {from}"))?;
        if let Some(error) = topic.error() {
            return Err(format!(
                "dead-letter topic {from}: {}",
                RDKafkaErrorCode::from(error)
            ));
        }
        let mut bounds: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
        for partition in topic.partitions() {
            let watermarks = consumer
                .fetch_watermarks(from, partition.id(), CLIENT_TIMEOUT)
                .map_err(|e| format!("reading the ends of {from}/{}: {e}", partition.id()))?;
            bounds.insert(partition.id(), watermarks);
        }
        let committed = if self.args.from_beginning {
            BTreeMap::new()
        } else {
            committed_offsets(consumer, from, &bounds)?
        };
        if !self.args.from_beginning && committed.is_empty() && bounds.values().any(|(l, h)| h > l)
        {
            return Err(format!(
                "group {} has no offsets on {from}: it never replayed it, or its offsets expired \
                 (the brokers keep a group's offsets for offsets.retention.minutes, 7 days by \
                 default, after its last commit). Give --from-beginning to replay everything the \
                 topic holds",
                self.args.group_id
            ));
        }
        // Each partition starts where this group's last replay stopped, kept within what the
        // topic still holds (retention may have deleted past it).
        let mut start = TopicPartitionList::new();
        for (&partition, &(low, high)) in &bounds {
            let first = match committed.get(&partition) {
                Some(&offset) if offset < low => {
                    report(&format!(
                        "{from}/{partition}: dead letters before offset {low} were deleted \
                         before they were replayed (the group had reached {offset})"
                    ));
                    low
                }
                Some(&offset) if offset > high => {
                    report(&format!(
                        "{from}/{partition}: the group had reached offset {offset}, past the end \
                         {high} (the topic was recreated?); replaying the partition from {low}"
                    ));
                    low
                }
                Some(&offset) => offset,
                None => low,
            };
            start
                .add_partition_offset(from, partition, Offset::Offset(first))
                .map_err(|e| e.to_string())?;
            // Committed again even with nothing new, so that the group's offsets do not expire
            // between replays.
            self.handled.insert(partition, first);
            self.ends.insert(partition, high.max(first));
            self.limits.insert(partition, high.max(first));
        }
        consumer.assign(&start).map_err(|e| e.to_string())
    }

    /// What to check when the brokers could not be reached.
    fn hint(&self, error: &KafkaError) -> String {
        if engine::is_connection_error(error) {
            format!(" (brokers {}: {})", self.servers, engine::CHECK_CONNECTION)
        } else {
            String::new()
        }
    }

    /// The timestamps the input topic accepts; `None`, with a warning, if that cannot be read.
    fn input_timestamp_window(&self, client: &ClientConfig) -> Option<TimestampWindow> {
        let configs = admin::topic_configs(client, &[self.to], CLIENT_TIMEOUT);
        let config = match configs.map(|mut c| c.pop().map(|(_, config)| config)) {
            Ok(Some(Ok(Some(config)))) => Ok(config),
            Ok(Some(Ok(None))) => Err("no such topic".to_owned()),
            Ok(Some(Err(reason))) => Err(reason),
            Ok(None) => Err("not described".to_owned()),
            Err(e) => Err(e.to_string()),
        };
        match config {
            Ok(config) => Some(TimestampWindow::from_config(&config)),
            Err(reason) => {
                report(&format!(
                    "the timestamp limits of {} could not be read ({reason}): dead letters are \
                     sent with their original time, and one the topic refuses stops the replay \
                     there",
                    self.to
                ));
                None
            }
        }
    }

    /// Reads up to the ends, sending what the filter lets through.
    fn read(
        &mut self,
        consumer: &BaseConsumer,
        producer: &ThreadedProducer<ReplayContext>,
    ) -> Result<(), String> {
        let from = self.from;
        let mut progress_at = Instant::now();
        let mut last_positions = Vec::new();
        loop {
            // The consumer's position, not the last offset read, says a partition is done: under
            // read_committed, transaction markers take the last offsets and are never handed out.
            let positions: Vec<(i32, Offset)> = consumer
                .position()
                .map_err(|e| e.to_string())?
                .elements()
                .iter()
                .map(|e| (e.partition(), e.offset()))
                .collect();
            for &(partition, offset) in &positions {
                let end = self.ends.get(&partition).copied().unwrap_or(0);
                if matches!(offset, Offset::Offset(o) if o >= end) {
                    self.handled.insert(partition, end);
                }
            }
            // A partition whose send failed stops where it got to: what follows is the next
            // replay's, not sent twice.
            let failed: Vec<i32> = producer
                .context()
                .deliveries()
                .first_failed
                .keys()
                .copied()
                .collect();
            for partition in failed {
                if let Some(&handled) = self.handled.get(&partition) {
                    if self.ends.get(&partition) != Some(&handled) {
                        self.stop(consumer, partition, handled);
                    }
                }
            }
            if self
                .ends
                .iter()
                .all(|(p, end)| self.handled.get(p) == Some(end))
            {
                return Ok(());
            }
            if positions != last_positions {
                progress_at = Instant::now();
                last_positions = positions;
            }
            if progress_at.elapsed() > QUIET_LIMIT {
                return Err(format!(
                    "no progress reading {from} for {} s before its end",
                    QUIET_LIMIT.as_secs()
                ));
            }
            let message = match consumer.poll(Duration::from_millis(200)) {
                None => continue,
                Some(Err(e)) => {
                    report(&format!("reading {from}: {e}"));
                    continue;
                }
                Some(Ok(message)) => message,
            };
            let partition = message.partition();
            if message.offset() >= self.ends.get(&partition).copied().unwrap_or(0) {
                // Arrived after the replay started: the next replay's. The partition is done.
                let mut done = TopicPartitionList::new();
                done.add_partition(from, partition);
                let _ = consumer.pause(&done);
                continue;
            }
            if !self.handle(&message, producer)? {
                // Not sent: this partition stops here, for the next replay to go on from.
                self.stop(consumer, partition, message.offset());
                continue;
            }
            self.handled.insert(partition, message.offset() + 1);
            progress_at = Instant::now();
        }
    }

    /// Reads no more of `partition`: it ends at `offset`.
    fn stop(&mut self, consumer: &BaseConsumer, partition: i32, offset: i64) {
        let mut stopped = TopicPartitionList::new();
        stopped.add_partition(self.from, partition);
        let _ = consumer.pause(&stopped);
        self.ends.insert(partition, offset);
    }

    /// Sends one dead letter or leaves it out; false if the producer refused it.
    fn handle(
        &mut self,
        message: &BorrowedMessage<'_>,
        producer: &ThreadedProducer<ReplayContext>,
    ) -> Result<bool, String> {
        // Copied with checked names: rust-rdkafka's own reader panics on a name not in UTF-8.
        let copied = copy_headers(message).unwrap_or_default();
        let headers: Vec<(&str, Option<&[u8]>)> = copied.iter().map(|h| (h.key, h.value)).collect();
        let (headers, source_timestamp) = match replay(&headers, &self.filter) {
            Replay::Send { headers, timestamp } => (headers, timestamp),
            Replay::Filtered => {
                self.tally.filtered += 1;
                return Ok(true);
            }
            Replay::Foreign => {
                self.tally.foreign += 1;
                return Ok(true);
            }
            Replay::Incomplete { source } => {
                self.tally.incomplete.push(source);
                return Ok(true);
            }
        };
        // The original time: the dead letter's header says it; a dead letter written before that
        // header has it as its create time (a topic that stamps log append times lost it). One
        // the input topic would refuse is left to the producer, which stamps the current time.
        let created = match message.timestamp() {
            Timestamp::CreateTime(timestamp) => Some(timestamp),
            _ => None,
        };
        let now_ms = now_ms();
        let margin_ms = self.message_timeout.as_millis() as i64;
        let original = source_timestamp.or(created);
        let timestamp = original.filter(|&timestamp| {
            self.window
                .is_none_or(|w| w.accepts(timestamp, now_ms, margin_ms))
        });
        let restamped = original.is_some() && timestamp.is_none();
        if self.args.dry_run {
            self.tally.replayed += 1;
            self.tally.restamped += u64::from(restamped);
            return Ok(true);
        }
        let mut own = OwnedHeaders::new_with_capacity(headers.len());
        for (key, value) in headers {
            own = own.insert(Header { key, value });
        }
        // The dead letter's place travels with it: a failed delivery holds its partition's
        // commit back to it.
        let sending = Box::new(Sending {
            partition: message.partition(),
            offset: message.offset(),
            restamped,
        });
        let mut record: BaseRecord<'_, [u8], [u8], Box<Sending>> =
            BaseRecord::with_opaque_to(self.to, sending).headers(own);
        if let Some(value) = message.payload() {
            record = record.payload(value);
        }
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(timestamp) = timestamp {
            record = record.timestamp(timestamp);
        }
        // On its way from before it is sent: its delivery report may come at once.
        let (partition, offset) = (message.partition(), message.offset());
        producer
            .context()
            .deliveries()
            .pending
            .entry(partition)
            .or_default()
            .insert(offset);
        loop {
            match producer.send(record) {
                Ok(()) => return Ok(true),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => {
                    {
                        let mut deliveries = producer.context().deliveries();
                        if let Some(pending) = deliveries.pending.get_mut(&partition) {
                            pending.remove(&offset);
                        }
                        deliveries.failed(partition, offset);
                    }
                    report(&format!(
                        "the dead letter at {}/{partition}/{offset} was refused: {e}",
                        self.from
                    ));
                    return Ok(false);
                }
            }
        }
    }
}

/// The group's committed offsets on the topic's partitions.
fn committed_offsets(
    consumer: &BaseConsumer,
    topic: &str,
    bounds: &BTreeMap<i32, (i64, i64)>,
) -> Result<BTreeMap<i32, i64>, String> {
    let mut wanted = TopicPartitionList::new();
    for &partition in bounds.keys() {
        wanted.add_partition(topic, partition);
    }
    let committed = consumer
        .committed_offsets(wanted, CLIENT_TIMEOUT)
        .map_err(|e| format!("reading the group's offsets: {e}"))?;
    Ok(committed
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(offset) => Some((e.partition(), offset)),
            _ => None,
        })
        .collect())
}

/// Reports librdkafka's warnings and failed deliveries, and keeps track of the dead letters sent.
#[derive(Default)]
struct ReplayContext {
    deliveries: Mutex<Deliveries>,
    errors: ErrorLog,
}

/// The dead letters sent, by partition of the dead-letter topic.
#[derive(Debug, Default, Clone)]
struct Deliveries {
    /// Offsets of those sent and neither acknowledged nor failed yet.
    pending: BTreeMap<i32, std::collections::BTreeSet<i64>>,
    /// The first whose send failed.
    first_failed: BTreeMap<i32, i64>,
    acknowledged: u64,
    /// Of those acknowledged, the ones sent with the current time.
    restamped: u64,
}

/// A dead letter on its way to the input topic: its place, which a failed delivery holds its
/// partition's commit back to, and whether it was sent with the current time.
#[derive(Debug, Clone, Copy)]
struct Sending {
    partition: i32,
    offset: i64,
    restamped: bool,
}

impl Deliveries {
    /// The delivery report of `sent`: acknowledged or failed.
    fn delivered(&mut self, sent: Sending, acknowledged: bool) {
        if let Some(pending) = self.pending.get_mut(&sent.partition) {
            pending.remove(&sent.offset);
        }
        if acknowledged {
            self.acknowledged += 1;
            self.restamped += u64::from(sent.restamped);
        } else {
            self.failed(sent.partition, sent.offset);
        }
    }

    fn failed(&mut self, partition: i32, offset: i64) {
        let first = self.first_failed.entry(partition).or_insert(offset);
        *first = (*first).min(offset);
    }

    /// Where a partition may be committed, given what was handled: before the first dead letter
    /// that failed or is still on its way.
    fn commit_point(&self, partition: i32, handled: i64) -> i64 {
        let pending = self
            .pending
            .get(&partition)
            .and_then(|offsets| offsets.first().copied());
        [
            Some(handled),
            self.first_failed.get(&partition).copied(),
            pending,
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(handled)
    }
}

impl ReplayContext {
    fn deliveries(&self) -> std::sync::MutexGuard<'_, Deliveries> {
        // A panic elsewhere while holding it leaves the data as valid as before.
        self.deliveries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ClientContext for ReplayContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        report_librdkafka_log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        report_librdkafka_error(&self.errors, &error, reason);
    }
}

impl ProducerContext for ReplayContext {
    type DeliveryOpaque = Box<Sending>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent: Self::DeliveryOpaque) {
        let Sending {
            partition, offset, ..
        } = *sent;
        self.deliveries().delivered(*sent, result.is_ok());
        if let Err((error, _)) = result {
            report(&format!(
                "sending the dead letter at offset {offset} of partition {partition} failed: {error}"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_acknowledged_dead_letters_count_as_replayed_and_restamped() {
        let mut deliveries = Deliveries::default();
        let sending = |offset, restamped| Sending {
            partition: 0,
            offset,
            restamped,
        };
        deliveries.pending.entry(0).or_default().extend([5, 6, 7]);
        deliveries.delivered(sending(5, true), true);
        deliveries.delivered(sending(6, true), false);
        deliveries.delivered(sending(7, false), true);
        assert_eq!((deliveries.acknowledged, deliveries.restamped), (2, 1));
        // The failed one holds the partition's commit back to it.
        assert_eq!(deliveries.commit_point(0, 8), 6);
        assert!(deliveries.pending[&0].is_empty());
    }
}
