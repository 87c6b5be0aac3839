//! librdkafka clients: the consumer and producer settings callstream relies on, and the contexts
//! that route librdkafka's logs, errors, statistics and delivery reports.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, FromClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, DeliveryResult, Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, ProducerContext};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;

use super::config::{Guarantee, ServiceConfig};
use super::offsets::InputRef;
use crate::metrics::Metrics;

/// A record to (re)send, owned.
#[derive(Debug, Clone)]
pub struct OutgoingRecord {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Option<OwnedHeaders>,
    pub timestamp: Option<i64>,
}

impl OutgoingRecord {
    pub fn parts(&self) -> RecordParts<'_> {
        RecordParts {
            topic: &self.topic,
            key: self.key.as_deref(),
            value: &self.value,
            headers: self.headers.as_ref(),
            timestamp: self.timestamp,
        }
    }
}

/// A record to send, borrowed: the producer copies what it sends.
#[derive(Debug, Clone, Copy)]
pub struct RecordParts<'r> {
    pub topic: &'r str,
    pub key: Option<&'r [u8]>,
    pub value: &'r [u8],
    pub headers: Option<&'r OwnedHeaders>,
    pub timestamp: Option<i64>,
}

impl From<RecordParts<'_>> for OutgoingRecord {
    fn from(parts: RecordParts<'_>) -> Self {
        Self {
            topic: parts.topic.to_owned(),
            key: parts.key.map(<[u8]>::to_vec),
            value: parts.value.to_vec(),
            headers: parts.headers.cloned(),
            timestamp: parts.timestamp,
        }
    }
}

/// What travels with a record through the producer: the input message it came from, how many
/// times it timed out before this attempt, its place in the order in which records were first
/// handed to the producer (a record sent again keeps it), its timestamp as callstream set it
/// (librdkafka reports none for a record that failed, and a record sent again keeps it), and
/// whether this attempt carried that timestamp (`false`: librdkafka stamped it).
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    pub input: InputRef,
    pub timeouts: u32,
    pub seq: u64,
    pub timestamp: Option<i64>,
    pub carried_timestamp: bool,
}

/// What the producer reports for one record.
#[derive(Debug)]
pub enum Delivery {
    Acknowledged(InputRef),
    /// The record was not delivered within `message.timeout.ms` (or was refused); it is handed
    /// back so that it can be sent again. Boxed: acknowledgements, by far the most reports, stay
    /// small on their way through the channel.
    Failed(Box<FailedDelivery>),
}

/// A record that was not delivered, and why.
#[derive(Debug)]
pub struct FailedDelivery {
    /// Its input, and the times it has timed out, this failure included.
    pub sent: Sent,
    pub error: KafkaError,
    pub record: OutgoingRecord,
}

/// Full metadata refresh every 30 s instead of librdkafka's 5 minutes. A KRaft broker that was
/// frozen or restarted answers with leaderless partitions (-1) for a moment, and librdkafka can keep
/// that stale "no leader" for a partition until the next full refresh, with the partition's records
/// or fetches stalled meanwhile (seen in the fault tests, both clients).
const METADATA_REFRESH_MS: &str = "30000";

/// Consumer settings: cooperative rebalancing, offsets stored only by callstream, bounded
/// prefetch. User properties are applied last.
pub fn consumer_config(config: &ServiceConfig, statistics_interval_ms: u64) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.bootstrap_servers)
        .set("group.id", &config.group_id)
        .set("client.id", "callstream")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("auto.offset.reset", &config.auto_offset_reset)
        // Offsets are stored by callstream after delivery (at-least-once) or sent in the
        // transaction (exactly-once); librdkafka must never store one on its own.
        .set("enable.auto.offset.store", "false")
        .set(
            "enable.auto.commit",
            if config.guarantee == Guarantee::AtLeastOnce {
                "true"
            } else {
                "false"
            },
        )
        .set("auto.commit.interval.ms", "1000")
        .set("isolation.level", "read_committed")
        // Bounded prefetch: at most ~16 MiB and about 2,000 messages queued per partition. With
        // thresholds this low, librdkafka's default 1 s fetch backoff (taken whenever the queue is
        // above them) would cap throughput at a few thousand messages per second per partition.
        .set("queued.max.messages.kbytes", "16384")
        .set("queued.min.messages", "2000")
        .set("fetch.queue.backoff.ms", "10")
        .set("enable.partition.eof", "false")
        .set("topic.metadata.refresh.interval.ms", METADATA_REFRESH_MS)
        .set("statistics.interval.ms", statistics_interval_ms.to_string());
    if let Some(id) = &config.group_instance_id {
        c.set("group.instance.id", id);
    }
    apply_overrides(&mut c, config);
    c
}

/// Producer settings: idempotent, `acks=all`, Java-compatible partitioning, bounded queue.
pub fn producer_config(config: &ServiceConfig, transactional_id: Option<&str>) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.bootstrap_servers)
        .set("client.id", "callstream")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // murmur2_random is what the Java client does: Kafka Streams and Java consumers agree on
        // the partition of a key.
        .set("partitioner", "murmur2_random")
        // One input message fans out to up to four topics: with librdkafka's 5 ms the records
        // leave as many small batches, one produce request each, and the broker's per-request
        // work dominates (measured: about three times the broker CPU per notification). Kafka
        // Streams uses 100 ms for the same reason; 50 ms keeps most of the gain and halves the
        // acknowledgements in flight (max_in_flight_messages must cover rate x ack latency).
        .set("linger.ms", "50")
        .set("topic.metadata.refresh.interval.ms", METADATA_REFRESH_MS)
        .set("compression.type", "lz4")
        .set("queue.buffering.max.kbytes", "65536")
        .set(
            "message.timeout.ms",
            config.message_timeout.as_millis().to_string(),
        )
        .set(
            "statistics.interval.ms",
            STATISTICS_INTERVAL.as_millis().to_string(),
        );
    if let Some(id) = transactional_id {
        // The broker aborts a transaction left open this long, and then fences its producer: an
        // outage longer than this stops callstream (exit 1, nothing lost) for its supervisor to
        // restart it. An abandoned transaction (a killed process whose successor has another
        // transactional id) also holds read_committed readers back for this long.
        c.set("transactional.id", id).set(
            "transaction.timeout.ms",
            transaction_timeout(config).as_millis().to_string(),
        );
    }
    apply_overrides(&mut c, config);
    c
}

/// Whether librdkafka takes every property of the consumer's and the producer's settings (the
/// `-X` passthrough and the security settings among them): an unknown name, or a value of the
/// wrong type or out of range, is refused here, before anything connects; so are what librdkafka
/// checks when a client is made (combinations, that a CA file can be read).
pub fn check_properties(config: &ServiceConfig) -> Result<(), String> {
    // As `run` configures them: a transactional id under exactly-once only.
    let transactional_id = config
        .transactional_id
        .as_deref()
        .filter(|_| config.guarantee == Guarantee::ExactlyOnce);
    check_client::<BaseConsumer>("consumer", consumer_config(config, 0))?;
    check_client::<BaseProducer>("producer", producer_config(config, transactional_id))
}

/// Whether librdkafka takes a client's settings, one by one and then together: the combinations
/// (idempotence with more than 5 requests in flight, say) are checked only when a client is made,
/// so one is made here, without brokers, connected nowhere.
fn check_client<C: FromClientConfig>(
    client: &str,
    mut settings: ClientConfig,
) -> Result<(), String> {
    let refused = |e: KafkaError| format!("the {client}'s librdkafka settings: {e}");
    settings.create_native_config().map_err(refused)?;
    settings.remove("bootstrap.servers");
    settings.remove("metadata.broker.list");
    settings.create::<C>().map(drop).map_err(refused)
}

/// The producer's `transaction.timeout.ms`: `message_timeout`, at least a minute.
pub fn transaction_timeout(config: &ServiceConfig) -> Duration {
    config.message_timeout.max(Duration::from_secs(60))
}

/// Settings of the admin client that reads the output topics' configuration: the producer's
/// connection (brokers, security, the `-X` passthrough).
pub fn admin_config(config: &ServiceConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.bootstrap_servers)
        .set("client.id", "callstream")
        // Looking a topic up must not create it.
        .set("allow.auto.create.topics", "false");
    apply_overrides(&mut c, config);
    c
}

/// librdkafka's default `message.max.bytes`.
const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;

/// The largest record (key, value and headers) the producer sends: `message.max.bytes`, as set
/// with `-X` or librdkafka's default. librdkafka refuses a larger record when it is sent.
pub fn producer_max_record_bytes(config: &ServiceConfig) -> usize {
    config
        .librdkafka
        .get("message.max.bytes")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_MESSAGE_MAX_BYTES)
}

/// The `-X key=value` passthrough. Consumer-only or producer-only keys given to the other client
/// make librdkafka log a warning, not fail.
fn apply_overrides(c: &mut ClientConfig, config: &ServiceConfig) {
    for (key, value) in &config.librdkafka {
        c.set(key, value);
    }
    c.set_log_level(RDKafkaLogLevel::Warning);
}

/// The headers of a polled message, copied: each name as text (bytes that are not UTF-8
/// replaced, cut at a NUL byte), each value as it is. Input is hostile, and rust-rdkafka's header
/// reader panics on a name that is not UTF-8 (`Headers::try_get`); a copy made of checked names
/// is also what a dead letter's size is counted from.
pub fn copy_headers(message: &BorrowedMessage<'_>) -> Option<OwnedHeaders> {
    use rdkafka::bindings::{
        rd_kafka_header_get_all, rd_kafka_message_headers, rd_kafka_resp_err_t,
    };
    let mut native = std::ptr::null_mut();
    // SAFETY: the message is valid while borrowed; librdkafka parses its headers into storage
    // the message owns (or reports that it has none), valid as long as the message.
    let found = unsafe { rd_kafka_message_headers(message.ptr(), &mut native) };
    match found {
        rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR if !native.is_null() => {}
        rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__NOENT => return None,
        error => {
            // More than librdkafka's 100,000 headers, or a malformed length: a dead letter of
            // this message carries none of them.
            tracing::warn!(
                partition = message.partition(),
                offset = message.offset(),
                ?error,
                "the message's headers cannot be read; they are left out"
            );
            return None;
        }
    }
    let mut copy = OwnedHeaders::new();
    for index in 0.. {
        let (mut name, mut value, mut size) = (std::ptr::null(), std::ptr::null(), 0);
        // SAFETY: `native` is the message's headers (above); librdkafka fills the three
        // pointers with storage of those headers, or reports that `index` is past the last.
        let got =
            unsafe { rd_kafka_header_get_all(native, index, &mut name, &mut value, &mut size) };
        if got != rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
            break;
        }
        // SAFETY: librdkafka stores each name NUL-terminated and each value as `size` bytes
        // (null for a header without a value).
        let name = unsafe { std::ffi::CStr::from_ptr(name) }.to_string_lossy();
        let value = (!value.is_null())
            .then(|| unsafe { std::slice::from_raw_parts(value.cast::<u8>(), size) });
        copy = copy.insert(Header { key: &name, value });
    }
    Some(copy)
}

/// Errors after which the service cannot go on (and retrying would not help).
pub fn is_fatal(error: &KafkaError) -> bool {
    match error {
        KafkaError::Transaction(e) => e.is_fatal(),
        _ => error.rdkafka_error_code().is_some_and(|code| {
            refused_for_good(code)
                || matches!(
                    code,
                    RDKafkaErrorCode::Fatal
                        | RDKafkaErrorCode::Authentication
                        | RDKafkaErrorCode::SaslAuthenticationFailed
                        | RDKafkaErrorCode::ClusterAuthorizationFailed
                        | RDKafkaErrorCode::GroupAuthorizationFailed
                        | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
                        | RDKafkaErrorCode::ProducerFenced
                        | RDKafkaErrorCode::InvalidProducerEpoch
                        | RDKafkaErrorCode::Fenced
                        | RDKafkaErrorCode::InvalidRecord
                )
        }),
    }
}

/// A refusal that sending again cannot get past while the service runs: a record over a topic's
/// limit lowered since start-up (a restart reads the limit again, and the message becomes a dead
/// letter), or a topic it may no longer write to.
pub fn refused_for_good(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::TopicAuthorizationFailed
    )
}

/// Logs librdkafka's own messages through `tracing`.
pub(super) fn log_librdkafka(role: &str, level: RDKafkaLogLevel, facility: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => {
            tracing::error!(client = role, facility, "librdkafka: {message}")
        }
        RDKafkaLogLevel::Warning => {
            tracing::warn!(client = role, facility, "librdkafka: {message}")
        }
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(client = role, facility, "librdkafka: {message}")
        }
        RDKafkaLogLevel::Debug => tracing::debug!(client = role, facility, "librdkafka: {message}"),
    }
}

/// librdkafka's error callback, logged at most once per `ErrorLog::WINDOW` for the same error and
/// reason: with the brokers out of reach it reports the same two errors several times a second
/// (and the producer's twice over), which buried everything else in the log.
#[derive(Default)]
pub struct ErrorLog {
    /// Per error and reason: when it was last logged, and how many times it came since.
    seen: Mutex<HashMap<(String, String), (Instant, u64)>>,
}

impl ErrorLog {
    const WINDOW: Duration = Duration::from_secs(10);

    /// Whether to log this error now (`Some`: with how many identical ones were held back since
    /// it was last logged) or hold it back (`None`).
    pub fn admit(&self, error: &KafkaError, reason: &str) -> Option<u64> {
        // librdkafka ends a broker failure's reason with how long it took and how many it held
        // back itself ("(after 0ms in state CONNECT, 3 identical error(s) suppressed)"): the
        // same failure all the same.
        let reason = reason.split(" (after ").next().unwrap_or(reason);
        let key = (error.to_string(), reason.to_owned());
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        // Errors not seen for a while are forgotten: the map holds the recent ones only.
        seen.retain(|_, (logged, _)| now.duration_since(*logged) < 6 * Self::WINDOW);
        match seen.get_mut(&key) {
            Some((logged, since)) if now.duration_since(*logged) < Self::WINDOW => {
                *since += 1;
                None
            }
            Some((logged, since)) => {
                *logged = now;
                Some(std::mem::take(since))
            }
            None => {
                seen.insert(key, (now, 0));
                Some(0)
            }
        }
    }

    pub fn error(&self, client: &str, error: &KafkaError, reason: &str) {
        let Some(suppressed) = self.admit(error, reason) else {
            return;
        };
        // `suppressed`: how many identical ones were held back since it was last logged.
        tracing::warn!(client, %error, reason, suppressed, "librdkafka error");
    }
}

/// How often librdkafka reports statistics: the consumer's for the lag metrics
/// (`export_consumer_statistics`), the producer's for its queue.
pub const STATISTICS_INTERVAL: Duration = Duration::from_secs(5);

pub(super) fn export_consumer_statistics(
    metrics: &Metrics,
    statistics: &Statistics,
    held: &HeldPartitions,
) {
    for topic in statistics.topics.values() {
        for (&id, partition) in &topic.partitions {
            // Partitions not held (-1 is librdkafka's internal one) get no gauge.
            let Some(committed_in_transaction) = held.get(id) else {
                continue;
            };
            if let Some(lag) = consumer_lag(partition, committed_in_transaction) {
                metrics
                    .consumer_lag
                    .with_label_values(&[&id.to_string()])
                    .set(lag);
            }
        }
    }
}

/// Messages of a fetched input partition not yet committed: from the committed position to the
/// partition's last stable offset (callstream reads `read_committed`). `None` for a partition not
/// being fetched, or whose positions are not known yet.
///
/// librdkafka's own `consumer_lag` counts from the consumer's committed offset, which only the
/// consumer's commits and the offset fetch at assignment move. Under exactly-once the offsets are
/// committed by the producer's transactions instead (`committed_in_transaction`), and the
/// consumer's figure would only ever grow.
fn consumer_lag(
    partition: &rdkafka::statistics::Partition,
    committed_in_transaction: Option<i64>,
) -> Option<i64> {
    if partition.fetch_state != "active" {
        return None;
    }
    let Some(in_transaction) = committed_in_transaction else {
        return (partition.consumer_lag >= 0).then_some(partition.consumer_lag);
    };
    let position = in_transaction.max(partition.committed_offset);
    let end = partition.ls_offset;
    (end >= 0 && (0..=end).contains(&position)).then(|| end - position)
}

/// The input partitions this member holds, each with the offset (of the next message to read)
/// its transactions committed last, under exactly-once. Shared by the loop, which updates it on
/// assignment, revocation and commit, and the consumer's statistics callback. Statistics queued
/// before a revocation arrive after it: only held partitions get gauges, or a revoked one's would
/// come back, stale, and stay.
#[derive(Debug, Default)]
pub struct HeldPartitions(Mutex<HashMap<i32, Option<i64>>>);

impl HeldPartitions {
    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Option<i64>>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn assign(&self, partitions: &[i32]) {
        let mut held = self.held();
        for &partition in partitions {
            held.entry(partition).or_insert(None);
        }
    }

    pub fn revoke(&self, partitions: &[i32]) {
        let mut held = self.held();
        for partition in partitions {
            held.remove(partition);
        }
    }

    /// Records the offsets a transaction committed, for the partitions still held.
    pub fn committed<'a>(&self, positions: impl IntoIterator<Item = (&'a i32, &'a i64)>) {
        let mut held = self.held();
        for (partition, &offset) in positions {
            if let Some(at) = held.get_mut(partition) {
                *at = Some(at.map_or(offset, |at| at.max(offset)));
            }
        }
    }

    /// `None` for a partition not held; else what its transactions committed, if anything.
    fn get(&self, partition: i32) -> Option<Option<i64>> {
        self.held().get(&partition).copied()
    }
}

/// Since when each assigned input partition has been reported without a leader. Nothing is
/// fetched from such a partition, and librdkafka can keep a stale "no leader" for good
/// (librdkafka#5430), which nothing else would show.
#[derive(Debug, Default)]
pub struct LeaderlessPartitions(Mutex<HashMap<i32, Instant>>);

impl LeaderlessPartitions {
    /// Updates `callstream_consumer_leaderless_seconds` from the consumer's statistics.
    pub fn observe(&self, metrics: &Metrics, statistics: &Statistics, held: &HeldPartitions) {
        let mut since = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut assigned = Vec::new();
        for topic in statistics.topics.values() {
            // `desired` marks the assigned partitions; -1 is librdkafka's internal one.
            for (&id, partition) in topic
                .partitions
                .iter()
                .filter(|(&id, p)| p.desired && held.get(id).is_some())
            {
                assigned.push(id);
                let seconds = if partition.leader < 0 {
                    since
                        .entry(id)
                        .or_insert_with(Instant::now)
                        .elapsed()
                        .as_secs()
                } else {
                    since.remove(&id);
                    0
                };
                metrics
                    .consumer_leaderless
                    .with_label_values(&[&id.to_string()])
                    .set(seconds as i64);
            }
        }
        since.retain(|id, _| assigned.contains(id));
    }
}

/// The producer's context: forwards each delivery report to the service loop.
pub struct DeliveryContext {
    pub reports: Sender<Delivery>,
    pub metrics: Arc<Metrics>,
    /// Replaced by a new producer: its statistics no longer describe the service's queue. (A
    /// call abandoned on it may keep it alive, reporting, for minutes.)
    pub retired: AtomicBool,
    pub errors: ErrorLog,
}

impl DeliveryContext {
    pub fn retire(&self) {
        self.retired.store(true, Ordering::Relaxed);
    }
}

impl ClientContext for DeliveryContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log_librdkafka("producer", level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.errors.error("producer", &error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        if !self.retired.load(Ordering::Relaxed) {
            self.metrics.producer_queue.set(statistics.msg_cnt as i64);
        }
    }
}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<Sent>;

    fn delivery(&self, result: &DeliveryResult<'_>, sent: Self::DeliveryOpaque) {
        let report = match result {
            Ok(_) => Delivery::Acknowledged(sent.input),
            Err((error, message)) => {
                self.metrics.delivery_failures.inc();
                let timed_out =
                    error.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageTimedOut);
                Delivery::Failed(Box::new(FailedDelivery {
                    sent: Sent {
                        timeouts: sent.timeouts + u32::from(timed_out),
                        ..*sent
                    },
                    error: error.clone(),
                    record: OutgoingRecord {
                        topic: message.topic().to_owned(),
                        key: message.key().map(<[u8]>::to_vec),
                        value: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                        headers: message.headers().map(|h| h.detach()),
                        timestamp: sent.timestamp,
                    },
                }))
            }
        };
        // The receiver is gone only when the service is shutting down; nothing to report to then.
        let _ = self.reports.send(report);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use rdkafka::statistics::Partition;

    use super::*;

    fn fetched(committed_offset: i64, ls_offset: i64, consumer_lag: i64) -> Partition {
        Partition {
            fetch_state: "active".into(),
            committed_offset,
            ls_offset,
            hi_offset: ls_offset,
            consumer_lag,
            ..Partition::default()
        }
    }

    #[test]
    fn lag_is_librdkafkas_until_a_transaction_commits_then_counts_from_that_commit() {
        // At-least-once, or exactly-once before this process committed the partition: the
        // consumer's own figure, from the offset fetched at assignment.
        assert_eq!(consumer_lag(&fetched(40, 100, 60), None), Some(60));
        assert_eq!(consumer_lag(&fetched(-1001, 100, -1), None), None);
        // Exactly-once after commits: the consumer's committed offset stays where the assignment
        // found it, the lag counts from the transaction's.
        assert_eq!(consumer_lag(&fetched(40, 100, 60), Some(100)), Some(0));
        assert_eq!(consumer_lag(&fetched(40, 100, 60), Some(90)), Some(10));
        assert_eq!(consumer_lag(&fetched(-1001, 100, -1), Some(75)), Some(25));
        // Someone else committed further (a previous owner): the larger position counts.
        assert_eq!(consumer_lag(&fetched(95, 100, 5), Some(90)), Some(5));
        // Nothing known about the end yet, or a partition not being fetched.
        assert_eq!(consumer_lag(&fetched(40, -1001, -1), Some(90)), None);
        let stopped = Partition {
            fetch_state: "stopped".into(),
            ..fetched(40, 100, 60)
        };
        assert_eq!(consumer_lag(&stopped, Some(90)), None);
    }

    #[test]
    fn held_partitions_keep_the_furthest_commit_until_revoked() {
        let held = HeldPartitions::default();
        held.assign(&[0, 1]);
        assert_eq!(held.get(0), Some(None));
        held.committed(&BTreeMap::from([(0, 10), (1, 5), (2, 9)]));
        held.committed(&BTreeMap::from([(0, 8), (1, 7)]));
        assert_eq!((held.get(0), held.get(1)), (Some(Some(10)), Some(Some(7))));
        // A commit for a partition not held (revoked meanwhile) is not remembered.
        assert_eq!(held.get(2), None);
        held.revoke(&[0]);
        assert_eq!((held.get(0), held.get(1)), (None, Some(Some(7))));
        // Assigned again: what the transactions committed starts over.
        held.assign(&[0]);
        assert_eq!(held.get(0), Some(None));
    }

    #[test]
    fn the_same_error_is_logged_once_per_window_and_counted() {
        let log = ErrorLog::default();
        let down = KafkaError::Global(RDKafkaErrorCode::AllBrokersDown);
        for _ in 0..100 {
            log.error("producer", &down, "1/1 brokers are down");
        }
        log.error("producer", &down, "0/1 brokers are down");
        // The same failure, however long it took.
        let refused = KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure);
        log.error(
            "producer",
            &refused,
            "b:1: Connect failed (after 0ms in state CONNECT)",
        );
        log.error(
            "producer",
            &refused,
            "b:1: Connect failed (after 3ms in state CONNECT, 1 identical error(s) suppressed)",
        );
        let seen = log.seen.lock().expect("lock");
        let count = |reason: &str| seen[&(down.to_string(), reason.to_owned())].1;
        // The first was logged, the other 99 counted for the next line; another reason is its own.
        assert_eq!(count("1/1 brokers are down"), 99);
        assert_eq!(count("0/1 brokers are down"), 0);
        assert_eq!(
            seen[&(refused.to_string(), "b:1: Connect failed".to_owned())].1,
            1
        );
    }

    #[test]
    fn statistics_give_gauges_to_held_partitions_only() {
        let metrics = Metrics::new();
        let held = HeldPartitions::default();
        held.assign(&[1]);
        let topic = rdkafka::statistics::Topic {
            partitions: [(0, 7), (1, 3), (-1, 9)]
                .into_iter()
                .map(|(id, lag)| (id, fetched_and_desired(id, lag)))
                .collect(),
            ..Default::default()
        };
        let statistics = Statistics {
            topics: HashMap::from([("in".to_owned(), topic)]),
            ..Default::default()
        };
        export_consumer_statistics(&metrics, &statistics, &held);
        let lag = |p: &str| {
            metrics
                .registry
                .gather()
                .iter()
                .filter(|f| f.name() == "callstream_consumer_lag_messages")
                .flat_map(|f| f.get_metric().to_vec())
                .find(|m| m.get_label().iter().any(|l| l.value() == p))
                .map(|m| m.get_gauge().get_value())
        };
        assert_eq!((lag("0"), lag("1"), lag("-1")), (None, Some(3.0), None));
    }

    fn fetched_and_desired(partition: i32, lag: i64) -> Partition {
        Partition {
            partition,
            desired: true,
            ..fetched(100, 100 + lag, lag)
        }
    }

    #[test]
    fn both_clients_report_statistics() {
        let config = ServiceConfig::new("localhost:9092", "group");
        let interval = STATISTICS_INTERVAL.as_millis().to_string();
        for client in [
            producer_config(&config, None),
            consumer_config(&config, STATISTICS_INTERVAL.as_millis() as u64),
        ] {
            assert_eq!(
                client.get("statistics.interval.ms"),
                Some(interval.as_str())
            );
        }
    }
}
