//! `callstream dead-letters replay`: sends dead letters back to the input topic, after an upgrade
//! that accepts what was rejected, or once the upstream fault is fixed. What to send is decided by
//! `service::dead_letters::replay`; this is the Kafka loop around it.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryResult, ProducerContext};
use std::sync::Mutex;

use super::generate::report;
use super::service::EXIT_CONFIG_ERROR;
use super::DeadLettersReplayArgs;
use crate::service::clients::copy_headers;
use crate::service::dead_letters::{replay, Replay, ReplayFilter};

/// How long the dead-letter topic may stay silent before its end is reached: it was measured
/// when the replay started, so only a broker in trouble keeps it waiting this long.
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
}

/// `callstream dead-letters replay`.
pub fn replay_dead_letters(args: DeadLettersReplayArgs) -> ExitCode {
    let settings = match args.connection.settings().and_then(|mut s| {
        args.topics.apply(&mut s.topics);
        s.validate_connection().map(|()| s)
    }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("callstream: {e}");
            return ExitCode::from(EXIT_CONFIG_ERROR);
        }
    };
    let filter = ReplayFilter {
        stages: args.stage.clone(),
        codes: args.code.clone(),
    };
    let properties = settings.librdkafka_properties();
    let client = |extra: &[(&str, &str)]| {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &settings.kafka.bootstrap_servers);
        for (key, value) in extra {
            c.set(*key, *value);
        }
        for (key, value) in &properties {
            c.set(key, value);
        }
        c
    };
    let from = &settings.topics.dead_letters;
    let to = &settings.topics.input;
    let result = run(
        client(&[
            ("group.id", &args.group_id),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("isolation.level", "read_committed"),
            ("auto.offset.reset", "earliest"),
        ]),
        // murmur2 as the service and Java clients partition: a replayed message goes to its key's
        // partition of the input topic, after the key's earlier messages.
        client(&[
            ("enable.idempotence", "true"),
            ("linger.ms", "5"),
            ("partitioner", "murmur2_random"),
        ]),
        from,
        to,
        &filter,
        &args,
    );
    match result {
        Ok(tally) => {
            let verb = if args.dry_run {
                "would replay"
            } else {
                "replayed"
            };
            println!(
                "{verb} {} dead letters from {from} to {to}; left out: {} not asked for, {} not \
                 from callstream, {} incomplete",
                tally.replayed,
                tally.filtered,
                tally.foreign,
                tally.incomplete.len()
            );
            for source in &tally.incomplete {
                println!("incomplete: the whole message is at {source} (topic/partition/offset)");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("callstream: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(
    consumer_config: ClientConfig,
    producer_config: ClientConfig,
    from: &str,
    to: &str,
    filter: &ReplayFilter,
    args: &DeadLettersReplayArgs,
) -> Result<Tally, String> {
    let consumer: BaseConsumer = consumer_config.create().map_err(|e| e.to_string())?;
    let producer: ThreadedProducer<ReplayContext> = producer_config
        .create_with_context(ReplayContext::default())
        .map_err(|e| e.to_string())?;

    // The end of each partition as the replay starts: what arrives later is the next replay's.
    let metadata = consumer
        .fetch_metadata(Some(from), CLIENT_TIMEOUT)
        .map_err(|e| format!("reading the partitions of {from}: {e}"))?;
    let topic = metadata
        .topics()
        .first()
        .ok_or_else(|| format!("no metadata for the dead-letter topic {from}"))?;
    if let Some(error) = topic.error() {
        return Err(format!(
            "dead-letter topic {from}: {}",
            rdkafka::types::RDKafkaErrorCode::from(error)
        ));
    }
    let mut bounds: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
    for partition in topic.partitions() {
        let watermarks = consumer
            .fetch_watermarks(from, partition.id(), CLIENT_TIMEOUT)
            .map_err(|e| format!("reading the ends of {from}/{}: {e}", partition.id()))?;
        bounds.insert(partition.id(), watermarks);
    }
    let committed = if args.from_beginning {
        BTreeMap::new()
    } else {
        committed_offsets(&consumer, from, &bounds)?
    };
    if !args.from_beginning && committed.is_empty() && bounds.values().any(|(l, h)| h > l) {
        return Err(format!(
            "group {} has no offsets on {from}: it never replayed it, or its offsets expired (the \
             brokers keep a group's offsets for offsets.retention.minutes, 7 days by default, after \
             its last commit). Give --from-beginning to replay everything the topic holds",
            args.group_id
        ));
    }
    // Where each partition starts: where this group's last replay stopped, kept within what the
    // topic still holds (retention may have deleted past it).
    let mut start = TopicPartitionList::new();
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    let mut nothing_new = Vec::new();
    for (&partition, &(low, high)) in &bounds {
        let from_offset = match committed.get(&partition) {
            Some(&offset) if offset < low => {
                report(&format!(
                    "{from}/{partition}: dead letters before offset {low} were deleted before they \
                     were replayed (the group had reached {offset})"
                ));
                low
            }
            Some(&offset) if offset > high => {
                report(&format!(
                    "{from}/{partition}: the group had reached offset {offset}, past the end {high} \
                     (the topic was recreated?); replaying the partition from {low}"
                ));
                low
            }
            Some(&offset) => offset,
            None => low,
        };
        start
            .add_partition_offset(from, partition, Offset::Offset(from_offset))
            .map_err(|e| e.to_string())?;
        // Committed again even when there is nothing new, so that the group's offsets do not
        // expire between replays.
        ends.insert(partition, high.max(from_offset));
        if from_offset >= high {
            // Nothing to read: done before it starts (its position would never be set).
            nothing_new.push(partition);
        }
    }
    consumer.assign(&start).map_err(|e| e.to_string())?;

    let mut tally = Tally::default();
    let mut quiet_since = Instant::now();
    loop {
        // The consumer's position, not the last offset read, says a partition is done: under
        // read_committed, transaction markers take the last offsets and are never handed out.
        let positions = consumer.position().map_err(|e| e.to_string())?;
        let done = |partition: i32, end: i64| {
            positions
                .find_partition(from, partition)
                .is_some_and(|e| matches!(e.offset(), Offset::Offset(o) if o >= end))
        };
        if ends
            .iter()
            .all(|(&p, &end)| nothing_new.contains(&p) || done(p, end))
        {
            break;
        }
        if quiet_since.elapsed() > QUIET_LIMIT {
            return Err(format!(
                "nothing read from {from} for {} s before its end; nothing committed",
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
        let end = ends.get(&message.partition()).copied().unwrap_or(0);
        if message.offset() >= end {
            // Arrived after the replay started: the next replay's. The partition is done.
            let mut done = TopicPartitionList::new();
            done.add_partition(from, message.partition());
            let _ = consumer.pause(&done);
            continue;
        }
        // Copied with checked names: rust-rdkafka's own reader panics on a name not in UTF-8.
        let copied = copy_headers(&message).unwrap_or_default();
        let headers: Vec<(&str, Option<&[u8]>)> = copied.iter().map(|h| (h.key, h.value)).collect();
        match replay(&headers, filter) {
            Replay::Send { headers } => {
                tally.replayed += 1;
                if args.dry_run {
                    continue;
                }
                let mut own = OwnedHeaders::new_with_capacity(headers.len());
                for (key, value) in headers {
                    own = own.insert(Header { key, value });
                }
                // The dead letter's place travels with it: a failed delivery holds its partition's
                // commit back to it.
                let place = Box::new((message.partition(), message.offset()));
                let mut record: BaseRecord<'_, [u8], [u8], Box<(i32, i64)>> =
                    BaseRecord::with_opaque_to(to, place).headers(own);
                if let Some(value) = message.payload() {
                    record = record.payload(value);
                }
                if let Some(key) = message.key() {
                    record = record.key(key);
                }
                // The original time is the record's create time; a topic that stamps log append
                // times no longer has it.
                if let rdkafka::Timestamp::CreateTime(timestamp) = message.timestamp() {
                    record = record.timestamp(timestamp);
                }
                send(&producer, record)?;
            }
            Replay::Filtered => tally.filtered += 1,
            Replay::Foreign => tally.foreign += 1,
            Replay::Incomplete { source } => tally.incomplete.push(source),
        }
        // Progress: a message below its partition's end was handled (the time `send` waited for
        // room in the producer's queue included).
        quiet_since = Instant::now();
    }
    if args.dry_run {
        return Ok(tally);
    }

    // Offsets are committed only once every replayed message is in the input topic, each
    // partition's up to its first dead letter that could not be sent: a replay run again starts
    // there.
    producer
        .flush(Duration::from_secs(60))
        .map_err(|e| format!("sending to {to}: {e}; nothing committed"))?;
    let failed = producer
        .context()
        .first_failed
        .lock()
        .map(|f| f.clone())
        .unwrap_or_default();
    let mut done = TopicPartitionList::new();
    for (partition, end) in &ends {
        let next = failed.get(partition).map_or(*end, |&first| first.min(*end));
        done.add_partition_offset(from, *partition, Offset::Offset(next))
            .map_err(|e| e.to_string())?;
    }
    if done.count() > 0 {
        consumer
            .commit(&done, rdkafka::consumer::CommitMode::Sync)
            .map_err(|e| format!("committing the replay's offsets: {e} (it was sent: a replay run again sends it again)"))?;
    }
    if !failed.is_empty() {
        let places: Vec<String> = failed
            .iter()
            .map(|(p, o)| format!("{from}/{p}/{o}"))
            .collect();
        return Err(format!(
            "some dead letters could not be sent to {to}; the replay stopped at the first of them \
             in each partition ({}): run it again to go on from there",
            places.join(", ")
        ));
    }
    Ok(tally)
}

/// Reports librdkafka's warnings and failed deliveries, and remembers, per partition of the
/// dead-letter topic, the first dead letter whose delivery failed.
#[derive(Default)]
struct ReplayContext {
    first_failed: Mutex<BTreeMap<i32, i64>>,
}

impl ClientContext for ReplayContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        if (level as i32) <= (rdkafka::config::RDKafkaLogLevel::Warning as i32) {
            report(&format!("librdkafka {facility}: {message}"));
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        report(&format!("{error}: {reason}"));
    }
}

impl ProducerContext for ReplayContext {
    type DeliveryOpaque = Box<(i32, i64)>;

    fn delivery(&self, result: &DeliveryResult<'_>, place: Self::DeliveryOpaque) {
        if let Err((error, _)) = result {
            let (partition, offset) = *place;
            report(&format!("sending the dead letter at offset {offset} of partition {partition} failed: {error}"));
            if let Ok(mut first) = self.first_failed.lock() {
                let entry = first.entry(partition).or_insert(offset);
                *entry = (*entry).min(offset);
            }
        }
    }
}

/// Sends a record, waiting while the producer queue is full.
fn send(
    producer: &ThreadedProducer<ReplayContext>,
    mut record: BaseRecord<'_, [u8], [u8], Box<(i32, i64)>>,
) -> Result<(), String> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((
                rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::QueueFull,
                ),
                r,
            )) => {
                record = r;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(e.to_string()),
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
