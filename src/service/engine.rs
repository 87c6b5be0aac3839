//! The service loop: consume, process, produce, and commit only what is safe to commit.
//!
//! One thread owns the consumer and polls it; librdkafka calls the rebalance callback from inside
//! that poll, on the same thread, so the callback and the loop never run at once and share the
//! `Engine` through an uncontended mutex. The producer runs its own thread and reports each
//! delivery over a channel, which the loop drains between polls.
//!
//! Guarantees, and where they are implemented:
//! - at-least-once: an input offset is stored for commit only when every record it produced and
//!   every earlier offset of its partition is acknowledged (`OffsetTracker`); failed deliveries
//!   are sent again with backoff (`Engine::apply_report`), never skipped;
//! - exactly-once: records, dead letters and input offsets commit in one Kafka transaction every
//!   `commit_interval`; an abort rewinds the consumer to the committed offsets and forgets the
//!   duplicate window (`Engine::abort_and_rewind`);
//! - revoke: in-flight work of revoked partitions is drained under `drain_timeout` and committed
//!   before the partitions go (`Engine::on_revoke`); a lost assignment commits nothing;
//! - bounded memory: past `max_in_flight_messages`/`_bytes` intake is held, and after
//!   `HOLD_BEFORE_PAUSE` the assigned partitions are paused (`Engine::apply_backpressure`); the
//!   consumer's prefetch is capped (`clients`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, ConsumerGroupMetadata, Rebalance,
};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{BaseRecord, Producer, PurgeConfig, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use thiserror::Error;

use super::admin;
use super::clients::{
    admin_config, consumer_config, copy_headers, export_consumer_statistics, is_fatal,
    log_librdkafka, producer_config, producer_max_record_bytes, refused_for_good,
    transaction_timeout, Delivery, DeliveryContext, ErrorLog, FailedDelivery, HeldPartitions,
    LeaderlessPartitions, OutgoingRecord, RecordParts, Sent, STATISTICS_INTERVAL,
};
use super::config::{Guarantee, ServiceConfig};
use super::dead_letters::{self, Rejected, Source};
use super::offsets::{InputRef, OffsetTracker};
use super::pipeline::{self, Batch, Incoming, Job, Polled, Processed};
use super::registry::{self, RegistryError};
use super::retries::{Refusal, RetryQueue};
use crate::core::budget::MAX_RECORD_BYTES;
use crate::core::framing::ValueFormat;
use crate::core::{Processor, Rejection, TopicKind};
use crate::health::Health;
use crate::metrics::Metrics;
use prometheus::local::{LocalHistogram, LocalIntCounter};

/// How long one consumer poll may block; bounds the reaction time to shutdown and reports.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// A batch is queued behind the one the core thread is working on once it has this many messages:
/// large enough to spare the hand-off, small enough that the core thread never runs dry.
const QUEUED_BATCH_MESSAGES: usize = 128;
/// How long one consumer poll may block while the core thread has work.
const CORE_BUSY_POLL: Duration = Duration::from_millis(1);
/// Messages taken from the consumer between two rounds of housekeeping (delivery reports, offsets,
/// transactions, backpressure).
const POLL_BURST: usize = 64;
/// Timeout of the blocking transactional calls and of synchronous admin-like requests.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the start-up check of each output topic waits for its metadata.
const OUTPUT_CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeout of one transactional call (commit, abort). Kept short because a timed-out call is
/// retried, and a transaction that cannot be ended after `TRANSACTION_ATTEMPTS` tries is given up
/// on by replacing the producer.
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(10);
const TRANSACTION_ATTEMPTS: u32 = 3;
/// How long `send_offsets_to_transaction` may run before the producer is given up on. librdkafka
/// caps the call's own work at `TRANSACTION_TIMEOUT` but waits for its result without a deadline,
/// and that wait was seen to last for minutes after a frozen broker came back (`Engine::send_offsets`).
const SEND_OFFSETS_DEADLINE: Duration = Duration::from_secs(20);
/// How often safe offsets are handed to the consumer's offset store (at-least-once). The
/// auto-commit runs every second, so storing more often than this gains nothing.
const STORE_OFFSETS_INTERVAL: Duration = Duration::from_millis(20);
/// Batches queued at the core thread: two, so that it has the next one at hand when it finishes
/// one, without waiting for this thread to be scheduled.
const BATCHES_AT_CORE: usize = 2;
/// Over the in-flight bounds for less than this, intake is held by not polling the consumer (what
/// it prefetched waits in librdkafka's bounded queue); past it the partitions are paused, so that
/// the consumer is polled again (group membership, rebalances) while a record is held for long.
/// Pausing is not the first resort: librdkafka starts fetching a resumed partition again only when
/// its broker thread next wakes, up to a second later, which made every brief pause at full speed
/// a second without input (with 5,000 messages in flight at most: 6,121 notifications/s instead
/// of 164,072, BENCHMARKS.md).
const HOLD_BEFORE_PAUSE: Duration = Duration::from_millis(500);
/// While intake is held: how long to wait for a delivery report before the next round.
const HOLD_WAIT: Duration = Duration::from_millis(5);
/// Acknowledged messages wait in the offset tracker behind an unacknowledged one of their
/// partition (a record being retried). Intake is also held when this many times
/// `max_in_flight_messages` are held, which bounds that memory (24 bytes a message).
const TRACKED_PER_IN_FLIGHT: usize = 4;
/// At-least-once: a record that timed out this many times (`message.timeout.ms` each) gets the
/// producer replaced, at most once per this many timeouts. librdkafka can leave one partition
/// without a leader in its cache after a broker restart and retry it forever; a new producer
/// starts from fresh metadata. In a whole-cluster outage a replacement costs a reconnect (and
/// possibly duplicates of purged in-flight records) and changes nothing.
const STUCK_AFTER_TIMEOUTS: u32 = 3;

/// Why the service stopped with an error.
#[derive(Debug, Error)]
pub enum ServiceError {
    #[error(
        "input topic {topic:?} does not exist (create it, or check --input-topic and the brokers)"
    )]
    InputTopicMissing { topic: String },
    #[error(
        "not authorized to describe input topic {topic:?} (grant this principal Describe and Read on it, and Read on the consumer group)"
    )]
    InputTopicNotAuthorized { topic: String },
    #[error("input topic {topic:?} cannot be used now: the brokers report {code}")]
    InputTopicUnavailable {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error("{action} failed: {source}; brokers {servers}: {hint}")]
    Connection {
        action: &'static str,
        servers: Box<str>,
        hint: &'static str,
        // Boxed: the error type stays small on every Result of the loop.
        #[source]
        source: Box<KafkaError>,
    },
    #[error("{action} failed: {source}")]
    Kafka {
        action: &'static str,
        #[source]
        source: KafkaError,
    },
    #[error("fatal Kafka error, stopping: {0}")]
    Fatal(String),
    #[error("{0}")]
    SchemaRegistry(#[from] RegistryError),
    #[error("value framing: {0}")]
    Framing(#[from] crate::core::framing::FramingError),
}

fn kafka(action: &'static str) -> impl FnOnce(KafkaError) -> ServiceError {
    move |source| ServiceError::Kafka { action, source }
}

/// What to check when the brokers do not answer a start-up request.
pub const CHECK_CONNECTION: &str = "check the addresses and ports, that they are reachable from here, and security.protocol with its TLS and SASL settings";

/// Whether a failed request says the brokers could not be reached (rather than refused it).
pub fn is_connection_error(error: &KafkaError) -> bool {
    // rust-rdkafka gives no code for an admin request's error, though it has one.
    let code = match error {
        KafkaError::AdminOp(code) => Some(*code),
        other => other.rdkafka_error_code(),
    };
    matches!(
        code,
        Some(
            RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::Resolve
                | RDKafkaErrorCode::CoordinatorNotAvailable
        )
    )
}
/// What to check when transactions cannot be initialized: brokers that answer metadata requests
/// may still lack a transaction coordinator.
const CHECK_TRANSACTIONS: &str = "check that they are reachable, and that the transaction coordinator is available: the __transaction_state topic needs at least transaction.state.log.replication.factor brokers, and min.insync.replicas of them up";

/// A start-up request to the brokers that failed: when it timed out or found no broker, the
/// error names the brokers and what to check (`hint`).
fn start_up_request(
    action: &'static str,
    servers: String,
    hint: &'static str,
) -> impl FnOnce(KafkaError) -> ServiceError {
    move |source| {
        if is_connection_error(&source) {
            ServiceError::Connection {
                action,
                servers: servers.into_boxed_str(),
                hint,
                source: Box::new(source),
            }
        } else {
            ServiceError::Kafka { action, source }
        }
    }
}

/// A topic as the brokers' metadata describes it.
enum TopicState {
    Usable,
    Missing,
    NotAuthorized,
    Unavailable(RDKafkaErrorCode),
}

/// The state of a topic from `describe`: its error and partition count, `None` when the
/// metadata does not list it.
fn topic_state(described: Option<(Option<RDKafkaErrorCode>, usize)>) -> TopicState {
    match described {
        Some((None, partitions)) if partitions > 0 => TopicState::Usable,
        None | Some((None | Some(RDKafkaErrorCode::UnknownTopicOrPartition), _)) => {
            TopicState::Missing
        }
        Some((Some(RDKafkaErrorCode::TopicAuthorizationFailed), _)) => TopicState::NotAuthorized,
        Some((Some(code), _)) => TopicState::Unavailable(code),
    }
}

/// What keeps the service from reading the input topic, if anything.
fn input_topic_problem(
    topic: &str,
    described: Option<(Option<RDKafkaErrorCode>, usize)>,
) -> Option<ServiceError> {
    let topic = topic.to_owned();
    match topic_state(described) {
        TopicState::Usable => None,
        TopicState::Missing => Some(ServiceError::InputTopicMissing { topic }),
        TopicState::NotAuthorized => Some(ServiceError::InputTopicNotAuthorized { topic }),
        TopicState::Unavailable(code) => Some(ServiceError::InputTopicUnavailable { topic, code }),
    }
}

/// What is wrong with an output topic, or `None`.
fn output_topic_problem(described: Option<(Option<RDKafkaErrorCode>, usize)>) -> Option<String> {
    match topic_state(described) {
        TopicState::Usable => None,
        TopicState::Missing => Some("does not exist".into()),
        TopicState::NotAuthorized => {
            Some("not authorized (this principal needs Describe and Write on it)".into())
        }
        TopicState::Unavailable(code) => Some(code.to_string()),
    }
}

/// A topic's error and partition count in the brokers' metadata, if it is listed. The client
/// keeps a handle to the topic afterwards (librdkafka frees topics with the client): describe
/// each topic with the client that uses it anyway.
fn describe<C: ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
    timeout: Duration,
) -> KafkaResult<Option<(Option<RDKafkaErrorCode>, usize)>> {
    let metadata = client.fetch_metadata(Some(topic), timeout)?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map(|t| (t.error().map(RDKafkaErrorCode::from), t.partitions().len())))
}

/// How long the first start-up request waits before it is asked again (then twice as long each
/// time), the stop flag read between.
const START_UP_ATTEMPT: Duration = Duration::from_secs(1);
const START_UP_ATTEMPT_MAX: Duration = Duration::from_secs(5);
/// How long one request to the schema registry may take (four in an attempt): as long as before
/// it was asked again, so that a slow registry still answers; a signal waits for the attempt in
/// progress.
const REGISTRY_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Whether initializing transactions may be asked again: brokers out of reach, or a retriable
/// error librdkafka reports for a call that timed out while it kept trying (a previous
/// transaction still being aborted, `CONCURRENT_TRANSACTIONS`; a coordinator loading or moving).
/// The call resumes what is under way (librdkafka: "This call is resumable when a retriable
/// timeout error is returned").
fn transactions_may_be_asked_again(error: &KafkaError) -> bool {
    is_connection_error(error)
        || matches!(error, KafkaError::Transaction(e) if e.is_retriable() && !e.is_fatal())
}

/// A start-up request (the schema registry, metadata, initializing transactions) made with
/// `request(wait)` (the registry's requests have time-outs of their own). Errors `asked_again`
/// accepts (brokers or registry out of reach) are asked again, each time waiting longer (1 s,
/// 2 s, 4 s, then 5 s, `REQUEST_TIMEOUT` in all), with the stop flag read between: a signal
/// meanwhile stops the service within seconds, having read nothing (`Ok(None)`), instead of after
/// the whole time-out; a slow broker still has 5 s to answer. Any other error is returned at once.
fn start_up<T, E>(
    stop: &AtomicBool,
    asked_again: fn(&E) -> bool,
    mut request: impl FnMut(Duration) -> Result<T, E>,
) -> Result<Option<T>, E> {
    let stopped = || {
        let stopped = stop.load(Ordering::Relaxed);
        if stopped {
            tracing::info!("stopped before reading anything");
        }
        stopped
    };
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut attempt = START_UP_ATTEMPT;
    loop {
        let asked_at = Instant::now();
        let wait = attempt.min(deadline.saturating_duration_since(asked_at));
        match request(wait) {
            Ok(answer) => return Ok((!stopped()).then_some(answer)),
            Err(_) if stopped() => return Ok(None),
            Err(error) if !asked_again(&error) || wait.is_zero() || Instant::now() >= deadline => {
                return Err(error)
            }
            // An error at once (all brokers down) is asked again after the rest of the wait.
            Err(_) => wait_unless_stopped(stop, asked_at + wait),
        }
        attempt = (attempt * 2).min(START_UP_ATTEMPT_MAX);
    }
}

/// Waits until `until`, or until `stop` is set.
fn wait_unless_stopped(stop: &AtomicBool, until: Instant) {
    while !stop.load(Ordering::Relaxed) {
        let Some(left) = until.checked_duration_since(Instant::now()) else {
            return;
        };
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// Counts of one run, for the caller's summary.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub messages: u64,
    pub records: u64,
    pub dead_letters: u64,
}

/// State of the open transaction (exactly-once only).
struct Transaction {
    started: Instant,
    /// Next offset to read, per partition, of everything sent in this transaction.
    positions: BTreeMap<i32, i64>,
    /// A record of this transaction failed: it must abort.
    failed: bool,
    /// The number of the first batch back from the core thread after it began (`batches_done`):
    /// the first whose records it holds. An abort forgets what batches from it on emitted.
    first_batch: u64,
}

/// The series updated for every message: resolved once (looking a series up by its labels costs a
/// hash and a lock), and counted locally, without atomics, until `flush` at the end of each batch.
struct HotMetrics {
    processed: LocalIntCounter,
    duplicate: LocalIntCounter,
    rejected: LocalIntCounter,
    /// Indexed like `TopicKind::ALL`.
    records: [LocalIntCounter; 4],
    event_lag: LocalHistogram,
    delivery_lag: LocalHistogram,
}

impl HotMetrics {
    fn new(metrics: &Metrics) -> Self {
        let outcome = |label| metrics.input_messages.with_label_values(&[label]).local();
        Self {
            processed: outcome("processed"),
            duplicate: outcome("duplicate"),
            rejected: outcome("rejected"),
            records: TopicKind::ALL.map(|kind| {
                metrics
                    .output_records
                    .with_label_values(&[kind.label()])
                    .local()
            }),
            event_lag: metrics.lag.with_label_values(&["event"]).local(),
            delivery_lag: metrics.lag.with_label_values(&["delivery"]).local(),
        }
    }

    fn records(&self, kind: TopicKind) -> &LocalIntCounter {
        &self.records[kind.index()]
    }

    fn flush(&self) {
        for counter in [&self.processed, &self.duplicate, &self.rejected]
            .into_iter()
            .chain(&self.records)
        {
            counter.flush();
        }
        self.event_lag.flush();
        self.delivery_lag.flush();
    }
}

/// Everything the loop and the rebalance callback share.
pub struct Engine {
    /// Shared so that records can borrow a topic name while the engine sends.
    config: Arc<ServiceConfig>,
    /// The producer's `message.max.bytes` (lowered to fit the output topics, once they are read):
    /// dead letters are cut to fit it.
    max_record_bytes: usize,
    /// The output topics' limits, read at start-up while the group is joined (`record_limit`):
    /// applied before the first batch goes to the core thread (`apply_topic_limits`).
    pending_record_limit: Option<Receiver<usize>>,
    /// `finish` ran: shutdown has drained what it could.
    finished: bool,
    /// Exactly-once: per assigned partition, the offset of the first message polled since it was
    /// assigned. An abort rewinds a partition with no committed offset yet to it: the reset
    /// policy's position (the log's end, with `latest`) may have moved past what was read.
    first_polled: BTreeMap<i32, i64>,
    producer: ThreadedProducer<DeliveryContext>,
    /// Kept to create a replacement producer (exactly-once) that reports to the same channel.
    reports_tx: mpsc::Sender<Delivery>,
    transactional_id: Option<String>,
    reports: Receiver<Delivery>,
    /// Work for the core thread (`pipeline`), and the batches it returns.
    jobs: SyncSender<Job>,
    done: Receiver<Batch>,
    /// Messages polled since the last batch went to the core thread.
    collecting: Batch,
    /// Returned batches, kept for their buffers.
    spares: Vec<Batch>,
    /// Batches at the core thread (at most `BATCHES_AT_CORE`).
    at_core: usize,
    /// Batches back from the core thread so far, published or dropped. Batches come back in the
    /// order they went, so this is also the number the core thread gave the next one.
    batches_done: u64,
    /// Publishing failed part-way through a batch: the messages after the failed one were never
    /// tracked, so nothing more may be published or committed (committing later offsets would
    /// skip them). The process stops; what was not committed is read again.
    poisoned: bool,
    /// While a revoke flushes the pipeline: how long a full producer queue may hold it up.
    send_deadline: Option<Instant>,
    /// The duplicate window must be cleared (`forget_emitted`).
    forget_requested: bool,
    /// Topics that refused a record's timestamp (`INVALID_TIMESTAMP` or `INVALID_RECORD`: the topic's
    /// `message.timestamp.before.max.ms` or `after.max.ms`, for one, against a backlog's old
    /// input): their records are sent without the input's timestamp from then on, stamped by the
    /// producer when sent, rather than refused for good.
    timestamps_refused: Vec<String>,
    /// `send` waited for room in the producer queue: the clock reading `publish` measures lag
    /// against is stale.
    waited_for_queue: bool,
    /// A record timed out `STUCK_AFTER_TIMEOUTS` times: replace the producer (at-least-once).
    producer_stuck: bool,
    /// When the producer was last replaced because of `producer_stuck`.
    producer_replaced_at: Option<Instant>,
    /// Exactly-once: failed transactions in a row (`abort_failed_transaction`).
    failed_transactions_in_a_row: u32,
    /// Exactly-once: `send_offsets` helper threads still running, abandoned ones included.
    offsets_calls_running: Arc<AtomicUsize>,
    /// The input partitions held, with what exactly-once transactions committed, for the gauges.
    held_partitions: Arc<HeldPartitions>,
    metrics: Arc<Metrics>,
    /// Handles of the labelled series the loop updates for every message.
    hot: HotMetrics,
    offsets_stored_at: Instant,
    health: Arc<Health>,
    stop: Arc<AtomicBool>,
    tracker: OffsetTracker,
    /// At-least-once: records waiting to be sent again, in their first order.
    retries: RetryQueue,
    /// `Sent::seq` of the next record handed to the producer.
    next_seq: u64,
    transaction: Option<Transaction>,
    /// Since when intake has been over the in-flight bounds, and what `apply_backpressure` last
    /// decided.
    over_since: Option<Instant>,
    intake: Intake,
    paused: bool,
    fatal: Option<ServiceError>,
    summary: RunSummary,
}

/// The consumer's context: runs the rebalance steps on the shared engine.
pub struct GroupContext {
    engine: Arc<Mutex<Engine>>,
    /// Also reachable without the engine's lock: librdkafka may call the commit callback from
    /// inside a synchronous commit that the engine makes while holding it.
    metrics: Arc<Metrics>,
    leaderless: LeaderlessPartitions,
    held_partitions: Arc<HeldPartitions>,
    errors: ErrorLog,
}

fn lock<T: Poisonable>(engine: &Mutex<T>) -> MutexGuard<'_, T> {
    engine.lock().unwrap_or_else(|poisoned| {
        // A panic while the lock was held may have left a batch half-published. Recorded once:
        // `Engine::poisoned` remembers it from now on.
        let mut state = poisoned.into_inner();
        state.poison("a panic while the service loop's state was being changed");
        engine.clear_poison();
        state
    })
}

/// State that a panic makes untrustworthy.
trait Poisonable {
    /// Nothing more may be published or committed, and the loop stops with `why`.
    fn poison(&mut self, why: &str);
}

impl Poisonable for Engine {
    fn poison(&mut self, why: &str) {
        self.poisoned = true;
        self.fatal
            .get_or_insert_with(|| ServiceError::Fatal(format!("a bug: {why}")));
    }
}

/// Poisons the engine if the loop's thread unwinds from a panic. The consumer, dropped after this
/// guard, revokes its partitions as it closes, and that revoke would otherwise publish and commit
/// what is left, possibly past messages of a batch the panic left half-published.
struct PoisonOnPanic<T: Poisonable>(std::sync::Weak<Mutex<T>>);

impl<T: Poisonable> Drop for PoisonOnPanic<T> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(engine) = self.0.upgrade() {
                lock(&engine).poison("a panic on the service loop's thread");
            }
        }
    }
}

/// Runs a rebalance callback's work. A panic in it poisons the engine, which stops the loop,
/// instead of unwinding out of `poll`: rdkafka would then not acknowledge the rebalance to
/// librdkafka, and closing the consumer could wait for it for ever.
fn contain_panic<T: Poisonable>(engine: &Mutex<T>, callback: &str, work: impl FnOnce()) {
    if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        // Not through `lock`, whose own reason would come first when the panic held the lock.
        engine
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .poison(&format!("a panic in the {callback} callback: {message}"));
    }
}

impl ClientContext for GroupContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        log_librdkafka("consumer", level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.errors.error("consumer", &error, reason);
    }

    fn stats(&self, statistics: rdkafka::Statistics) {
        export_consumer_statistics(&self.metrics, &statistics, &self.held_partitions);
        self.leaderless
            .observe(&self.metrics, &statistics, &self.held_partitions);
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        contain_panic(&self.engine, "pre_rebalance", || {
            self.before_rebalance(consumer, rebalance)
        });
    }

    /// Every consumer offset commit: the periodic auto-commits of at-least-once and the
    /// synchronous ones on revoke and shutdown.
    fn commit_callback(&self, result: KafkaResult<()>, _: &TopicPartitionList) {
        let metrics = &self.metrics;
        match result {
            Ok(()) => metrics.offset_commits.with_label_values(&["ok"]).inc(),
            // Nothing new to commit is not a failure.
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => {
                metrics.offset_commits.with_label_values(&["error"]).inc();
                tracing::warn!(%error, "offset commit failed; the offsets will be committed later or read again");
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        contain_panic(&self.engine, "post_rebalance", || {
            self.after_rebalance(consumer, rebalance)
        });
    }
}

impl GroupContext {
    fn before_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let mut engine = lock(&self.engine);
        match rebalance {
            Rebalance::Assign(tpl) => engine.on_assign(&partitions_of(tpl)),
            Rebalance::Revoke(tpl) => {
                let lost = consumer.assignment_lost();
                if lost {
                    engine.health.set_assignment_lost();
                }
                engine.on_revoke(consumer, &partitions_of(tpl), lost);
            }
            Rebalance::Error(error) => {
                engine
                    .metrics
                    .rebalances
                    .with_label_values(&["error"])
                    .inc();
                tracing::warn!(%error, "rebalance error");
            }
        }
    }

    fn after_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let engine = lock(&self.engine);
        // Assigned partitions take the current pause state. Paused: the incremental assignment
        // starts them fetching, and the next change of the pause would be the first to see them.
        // Not paused: librdkafka keeps a partition's application pause across an unassignment
        // (only its own pause is reset), so one revoked while paused would come back paused for
        // good.
        if let Rebalance::Assign(tpl) = rebalance {
            let result = if engine.paused {
                consumer.pause(tpl)
            } else {
                consumer.resume(tpl)
            };
            if let Err(error) = result {
                tracing::warn!(%error, paused = engine.paused, "setting the pause of newly assigned partitions failed");
            }
        }
        let assigned = consumer.assignment().map(|a| a.count()).unwrap_or(0);
        match rebalance {
            Rebalance::Assign(_) => engine.health.set_assigned(assigned),
            Rebalance::Revoke(_) => engine.health.set_revoked(assigned),
            Rebalance::Error(_) => {}
        }
    }
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Engine {
    fn exactly_once(&self) -> bool {
        self.transactional_id.is_some()
    }

    fn on_assign(&mut self, partitions: &[i32]) {
        self.metrics.rebalances.with_label_values(&["assign"]).inc();
        self.held_partitions.assign(partitions);
        for &p in partitions {
            self.tracker.assign(p);
            self.first_polled.remove(&p);
        }
        tracing::info!(?partitions, "partitions assigned");
    }

    fn on_revoke(&mut self, consumer: &BaseConsumer<GroupContext>, partitions: &[i32], lost: bool) {
        let kind = if lost { "lost" } else { "revoke" };
        self.metrics.rebalances.with_label_values(&[kind]).inc();
        tracing::info!(?partitions, lost, "partitions revoked");
        // What was polled is published before the partitions go, as if it had been processed the
        // moment it was polled (its keys are in the duplicate window already, or soon will be).
        // A lost assignment under exactly-once aborts instead, which drops it.
        if !(lost && self.transaction.is_some()) {
            self.send_deadline = Some(Instant::now() + self.config.drain_timeout);
            if let Err(e) = self.flush_pipeline(true) {
                self.poisoned = true;
                self.fatal.get_or_insert(e);
            }
            self.send_deadline = None;
        }
        if self.poisoned {
            // Something polled was never published: commit nothing, abort what the open
            // transaction holds, and let the process stop. The next owner reads it all again.
            tracing::warn!(
                ?partitions,
                "revoked after a failed publish; nothing is committed"
            );
            if self.transaction.is_some() {
                let _ = self.producer.abort_transaction(Duration::from_secs(5));
                self.transaction = None;
            }
        } else if self.transaction.is_some() {
            // The open transaction holds records of the revoked partitions: commit it while they
            // are still ours, or abort it if they are already someone else's.
            let result = if lost {
                // Lost: every partition goes now, and the coordinator is likely out of reach
                // (a lost assignment is what a session timeout gives): nothing to rewind.
                self.abort_and_rewind(consumer, Rewind::Nothing)
            } else {
                self.commit_transaction(consumer)
            };
            if let Err(e) = result {
                self.fatal.get_or_insert(e);
            }
            if let Some(txn) = &mut self.transaction {
                for p in partitions {
                    txn.positions.remove(p);
                }
            }
        } else if !lost {
            // After `finish` (the consumer's close at shutdown) the drain has had its time.
            let deadline = Instant::now()
                + if self.finished {
                    Duration::ZERO
                } else {
                    self.config.drain_timeout
                };
            let drained = self.drain(
                |t| partitions.iter().all(|&p| t.pending_in(p) == 0),
                deadline,
            );
            if !drained {
                tracing::warn!(
                    ?partitions,
                    fatal = self.fatal.is_some(),
                    "revoked partitions not drained (deadline passed, or a fatal error); unacknowledged offsets are not committed and will be read again"
                );
                self.forget_emitted();
            }
            self.commit_offsets(consumer, partitions);
        } else {
            // Records of a lost assignment may never be delivered.
            self.forget_emitted();
        }
        self.held_partitions.revoke(partitions);
        for &p in partitions {
            self.tracker.revoke(p);
            self.first_polled.remove(&p);
            // The lag of a partition that is no longer ours is someone else's to report.
            for gauge in [
                &self.metrics.consumer_lag,
                &self.metrics.consumer_leaderless,
            ] {
                let _ = gauge.remove_label_values(&[&p.to_string()]);
            }
        }
        if self
            .retries
            .retain(|r| !partitions.contains(&r.sent.input.partition))
            > 0
        {
            self.forget_emitted();
        }
        self.update_gauges();
    }

    /// Waits for delivery reports until `done` holds or the deadline passes; returns `done`.
    fn drain(&mut self, done: impl Fn(&OffsetTracker) -> bool, deadline: Instant) -> bool {
        loop {
            self.health.heartbeat();
            self.resend_due_retries();
            if done(&self.tracker) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline || self.fatal.is_some() {
                return false;
            }
            match self
                .reports
                .recv_timeout((deadline - now).min(Duration::from_millis(100)))
            {
                Ok(report) => self.apply_report(report),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return done(&self.tracker),
            }
        }
    }

    /// Applies every delivery report that has arrived.
    fn pump_reports(&mut self) {
        while let Ok(report) = self.reports.try_recv() {
            self.apply_report(report);
        }
    }

    fn apply_report(&mut self, report: Delivery) {
        match report {
            Delivery::Acknowledged(input) => {
                self.tracker.ack(input);
            }
            Delivery::Failed(failed) => {
                let FailedDelivery {
                    sent,
                    error,
                    record,
                } = *failed;
                // A topic that refuses a record's timestamp answers INVALID_TIMESTAMP, which
                // librdkafka reports as INVALID_RECORD when several records of a batch were
                // refused (and INVALID_RECORD covers other refusals too): a refusal of a record
                // sent with its input timestamp is taken as the timestamp's, and the topic's
                // records are sent without one from then on, this one again. A record refused
                // without its input timestamp is refused for what `is_fatal` says.
                let timestamp_refused = sent.carried_timestamp
                    && matches!(
                        error.rdkafka_error_code(),
                        Some(RDKafkaErrorCode::InvalidTimestamp | RDKafkaErrorCode::InvalidRecord)
                    );
                if timestamp_refused && !self.timestamps_refused.contains(&record.topic) {
                    tracing::warn!(
                        topic = record.topic,
                        %error,
                        "the topic refused a record, taken as refusing its timestamp (the topic's message.timestamp.*.max.ms against old input, for one): its records are stamped by the producer from now on"
                    );
                    self.timestamps_refused.push(record.topic.clone());
                }
                let input = sent.input;
                let current = self.tracker.generation(input.partition) == Some(input.generation);
                if let Some(txn) = &mut self.transaction {
                    // The transaction cannot commit with a lost record: abort and read again. A
                    // record of an older assignment belonged to a transaction already aborted (an
                    // abort rewinds every partition to a new generation): nothing to do.
                    if !current {
                        // A permanent refusal still is one, reported after its transaction was
                        // aborted for another record's failure. (Not every fatal code: a
                        // replaced producer's records fail with its fencing.)
                        if error.rdkafka_error_code().is_some_and(refused_for_good) {
                            self.fatal
                                .get_or_insert(undeliverable(&record.topic, &error));
                        }
                        return;
                    }
                    if !txn.failed {
                        tracing::warn!(%error, topic = record.topic, "delivery failed inside a transaction; it will abort");
                    }
                    txn.failed = true;
                    self.tracker.ack(input);
                    // Refused for good (a topic's limit lowered, a permission withdrawn): each
                    // new transaction would fail the same way and abort, for ever. Stop as
                    // at-least-once does; nothing of the transaction is committed.
                    if is_fatal(&error) && !timestamp_refused {
                        self.fatal
                            .get_or_insert(undeliverable(&record.topic, &error));
                    }
                } else if is_fatal(&error) && !timestamp_refused {
                    self.fatal
                        .get_or_insert(undeliverable(&record.topic, &error));
                } else if !current {
                    // A record of a revoked assignment that will not be sent again.
                    self.forget_emitted();
                } else {
                    if sent.timeouts >= STUCK_AFTER_TIMEOUTS {
                        self.producer_stuck = true;
                    }
                    self.send_later(&error, sent, record);
                }
            }
        }
    }

    /// At-least-once: sends a record again later, after its delivery failed or the producer would
    /// not take it. Until it is acknowledged, its input message's offset is not committed.
    fn send_later(&mut self, error: &KafkaError, sent: Sent, record: OutgoingRecord) {
        self.metrics.delivery_retries.inc();
        // One warning per outage, not one per record.
        if self.retries.is_empty() {
            tracing::warn!(%error, topic = record.topic, "delivery failed; sending again (further failures are logged at debug level)");
        } else {
            tracing::debug!(%error, topic = record.topic, "delivery failed; sending again");
        }
        self.retries.push_failed(sent, record, Instant::now());
    }

    fn resend_due_retries(&mut self) {
        if self.retries.is_empty() {
            return;
        }
        // Taken out for the call, which sends through `self`.
        let mut retries = std::mem::take(&mut self.retries);
        let mut fatal = None;
        retries.resend_due(Instant::now(), |retry| {
            let error = match self.try_send(&retry.record.parts(), retry.sent) {
                Ok(()) => return Ok(()),
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                    return Err(Refusal::Busy)
                }
                Err(error) => error,
            };
            if is_fatal(&error) {
                // As in `send`: the service stops, and this record's offset is never committed.
                fatal.get_or_insert(error);
                return Err(Refusal::NotNow);
            }
            if retry.attempt == 0 {
                // Queued behind its lane, refused on its first attempt.
                self.metrics.delivery_retries.inc();
            }
            tracing::debug!(%error, topic = retry.record.topic, "resend refused; backing off");
            Err(Refusal::NotNow)
        });
        self.retries = retries;
        if let Some(error) = fatal {
            self.fatal.get_or_insert(kafka("producing a record")(error));
        }
    }

    fn try_send(&self, record: &RecordParts<'_>, mut sent: Sent) -> Result<(), KafkaError> {
        let timestamp = record
            .timestamp
            .filter(|_| !self.timestamps_refused.iter().any(|t| t == record.topic));
        sent.carried_timestamp = timestamp.is_some();
        let mut base: BaseRecord<'_, [u8], [u8], Box<Sent>> =
            BaseRecord::with_opaque_to(record.topic, Box::new(sent)).payload(record.value);
        if let Some(key) = record.key {
            base = base.key(key);
        }
        if let Some(headers) = record.headers {
            base = base.headers(headers.clone());
        }
        if let Some(ts) = timestamp {
            base = base.timestamp(ts);
        }
        self.producer.send(base).map_err(|(error, _)| error)
    }

    /// Sends a record, waiting while the producer queue is full.
    fn send(&mut self, record: RecordParts<'_>, input: InputRef) -> Result<(), ServiceError> {
        let mut backoff = Duration::from_millis(1);
        let sent = Sent {
            input,
            timeouts: 0,
            seq: self.next_seq,
            timestamp: record.timestamp,
            carried_timestamp: false,
        };
        self.next_seq += 1;
        loop {
            // Checked on every attempt: waiting for room in the producer queue applies delivery
            // reports, which may hand back an older record of the same lane.
            if self.transaction.is_none() && self.retries.holds(record.topic, input.partition) {
                // Older records of this topic and input partition wait to be sent again: this one
                // goes after them, so that a key's records keep their order.
                self.retries
                    .push_behind(sent, record.into(), Instant::now());
                return Ok(());
            }
            match self.try_send(&record, sent) {
                Ok(()) => return Ok(()),
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                    let past_deadline = self.send_deadline.is_some_and(|d| Instant::now() >= d);
                    if self.stop.load(Ordering::Relaxed) || past_deadline {
                        // Stopping, or a rebalance cannot wait longer: the offset of this message
                        // is not committed, so it is read again; nothing is lost by giving up.
                        self.fail_transaction();
                        return Err(ServiceError::Fatal(
                            "producer queue stayed full during shutdown or a rebalance".into(),
                        ));
                    }
                    self.pump_reports();
                    self.health.heartbeat();
                    std::thread::sleep(backoff);
                    self.waited_for_queue = true;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
                Err(error) if is_fatal(&error) => {
                    self.fail_transaction();
                    return Err(kafka("producing a record")(error));
                }
                Err(error) => {
                    if let Some(txn) = &mut self.transaction {
                        // The transaction is in an error state: it will abort, and the input it
                        // covers (this message included) is read again.
                        if !txn.failed {
                            tracing::warn!(%error, "producing into a failed transaction; it will abort");
                        }
                        txn.failed = true;
                        return Ok(());
                    }
                    // Refused for now, not for good (an output topic librdkafka has found
                    // missing, for one): the record waits with the failed deliveries.
                    self.send_later(&error, sent, record.into());
                    return Ok(());
                }
            }
        }
    }

    /// A message's records were sent only in part: the open transaction must not commit.
    fn fail_transaction(&mut self) {
        if let Some(txn) = &mut self.transaction {
            txn.failed = true;
        }
    }

    /// Takes a polled message into the batch being collected.
    fn on_polled(&mut self, message: &BorrowedMessage<'_>) {
        let partition = message.partition();
        let Some(generation) = self.tracker.generation(partition) else {
            tracing::debug!(
                partition,
                offset = message.offset(),
                "message of a partition no longer assigned; skipped"
            );
            return;
        };
        if self.exactly_once() {
            self.first_polled
                .entry(partition)
                .or_insert_with(|| message.offset());
        }
        self.collecting.push(Incoming {
            partition,
            offset: message.offset(),
            generation,
            timestamp: message.timestamp().to_millis(),
            payload: message.payload().unwrap_or_default(),
            key: message.key(),
            headers: copy_headers(message),
        });
    }

    /// Sends the collected batch to the core thread when it is due: at once when the core thread
    /// is idle; when it has work, once the batch has `QUEUED_BATCH_MESSAGES` (or `force`) and
    /// there is room.
    fn dispatch(&mut self, force: bool) -> Result<(), ServiceError> {
        let due = match self.at_core {
            0 => true,
            n if n < BATCHES_AT_CORE => {
                force || self.collecting.messages.len() >= QUEUED_BATCH_MESSAGES
            }
            _ => false,
        };
        if !due || self.collecting.is_empty() {
            return Ok(());
        }
        if let Some(pending) = self.pending_record_limit.take() {
            self.apply_topic_limits(&pending)?;
        }
        let mut batch = self.spares.pop().unwrap_or_default();
        batch.clear();
        std::mem::swap(&mut batch, &mut self.collecting);
        self.jobs
            .send(Job::Process(batch))
            .map_err(|_| core_thread_stopped())?;
        self.at_core += 1;
        Ok(())
    }

    /// Lowers the record limit to fit the output topics, if they accept less than the producer
    /// (`record_limit`, whose answer this waits for; its requests are bounded by their timeouts). Nothing has
    /// been sent yet: the producer is replaced by one whose `message.max.bytes` (which also caps
    /// its batches) fits too, and the core thread measures records against the new limit.
    fn apply_topic_limits(&mut self, pending: &Receiver<usize>) -> Result<(), ServiceError> {
        // Only at the first dispatch: a replaced producer's open transaction is aborted, which
        // is harmless only while it holds nothing.
        debug_assert_eq!(
            self.batches_done, 0,
            "topic limits applied after publishing"
        );
        let limit = pending.recv().unwrap_or(self.max_record_bytes);
        if limit >= self.max_record_bytes {
            return Ok(());
        }
        self.max_record_bytes = limit;
        self.metrics
            .record_limit
            .set(limit.min(MAX_RECORD_BYTES) as i64);
        self.jobs
            .send(Job::RecordLimit(limit))
            .map_err(|_| core_thread_stopped())?;
        let producer = self.new_producer()?;
        if self.exactly_once() {
            // The first producer's open transaction holds nothing.
            self.init_replacement(&producer)?;
        }
        let old = std::mem::replace(&mut self.producer, producer);
        old.context().retire();
        drop(old);
        if self.transaction.is_some() {
            self.begin_transaction()?;
        }
        Ok(())
    }

    /// Takes a batch back from the core thread, waiting up to `wait`, and hands its records to the
    /// producer (`publish`) or drops them. Returns whether a batch came back.
    fn collect(&mut self, wait: Duration, publish: bool) -> Result<bool, ServiceError> {
        if self.at_core == 0 {
            return Ok(false);
        }
        let batch = match self.done.recv_timeout(wait) {
            Ok(batch) => batch,
            Err(RecvTimeoutError::Timeout) => return Ok(false),
            Err(RecvTimeoutError::Disconnected) => return Err(core_thread_stopped()),
        };
        self.at_core -= 1;
        // The core thread gets its next batch before this one is published, so that the two
        // threads work at the same time.
        let result = if publish && !self.poisoned {
            self.dispatch(false).and_then(|()| self.publish(&batch))
        } else {
            Ok(())
        };
        self.spares.push(batch);
        self.batches_done += 1;
        if result.is_err() {
            self.poisoned = true;
        }
        result.map(|()| true)
    }

    /// Runs everything polled through the core and publishes it (or, with `publish` false, drops
    /// it: an aborted transaction's input is read again). Afterwards no message is between the
    /// consumer and the producer, which rebalances, aborts and shutdown rely on.
    fn flush_pipeline(&mut self, publish: bool) -> Result<(), ServiceError> {
        while self.at_core > 0 || !self.collecting.is_empty() {
            if !publish || self.poisoned {
                self.collecting.clear();
            }
            self.dispatch(true)?;
            self.collect(Duration::from_secs(1), publish)?;
        }
        Ok(())
    }

    /// Clears the duplicate window when it may remember records that will never be published
    /// (dropped work of a revoked partition), so that their redelivery is published, not
    /// suppressed. Costs at most some duplicates.
    /// Requested where it is noticed, sent once per loop round (`send_forget`).
    fn forget_emitted(&mut self) {
        self.forget_requested = true;
    }

    fn send_forget(&mut self) -> Result<(), ServiceError> {
        if std::mem::take(&mut self.forget_requested) {
            self.jobs
                .send(Job::Forget)
                .map_err(|_| core_thread_stopped())?;
        }
        Ok(())
    }

    /// Publishes what the core made of a batch: each message's records, or its dead letter.
    fn publish(&mut self, batch: &Batch) -> Result<(), ServiceError> {
        // Lag and in-flight time are measured against one reading of each clock per batch, read
        // again after a wait for room in the producer queue: otherwise the batch is published at
        // once.
        let (mut now, mut sent_at) = (now_ms(), Instant::now());
        let result = batch
            .messages
            .iter()
            .zip(&batch.results)
            .try_for_each(|(message, result)| {
                if std::mem::take(&mut self.waited_for_queue) {
                    (now, sent_at) = (now_ms(), Instant::now());
                }
                self.publish_message(batch, message, result, now, sent_at)
            });
        self.hot.flush();
        result
    }

    fn publish_message(
        &mut self,
        batch: &Batch,
        message: &Polled,
        result: &Processed,
        now: i64,
        sent_at: Instant,
    ) -> Result<(), ServiceError> {
        let (partition, offset) = (message.partition, message.offset);
        // Every log line about this message names its partition and offset.
        let _span = tracing::debug_span!("message", partition, offset).entered();
        if self.tracker.generation(partition) != Some(message.generation) {
            // Revoked since it was polled: its new owner reads it again.
            tracing::debug!("message of a partition no longer assigned; not published");
            return Ok(());
        }
        let (records, dead_letter) = match result {
            Processed::Accepted { outcome, records } => {
                if outcome.duplicate {
                    self.hot.duplicate.inc();
                } else {
                    self.hot.processed.inc();
                }
                if outcome.suppressed > 0 {
                    self.metrics
                        .records_suppressed
                        .inc_by(outcome.suppressed as u64);
                }
                if outcome.event_time_ms.is_some() || outcome.sent_at_ms.is_some() {
                    let age = |at: i64| ((now - at).max(0) as f64) / 1000.0;
                    if let Some(at) = outcome.event_time_ms {
                        self.hot.event_lag.observe(age(at));
                    }
                    if let Some(at) = outcome.sent_at_ms {
                        self.hot.delivery_lag.observe(age(at));
                    }
                }
                let records = &batch.records[records.clone()];
                for record in records {
                    self.hot.records(record.kind).inc();
                }
                self.summary.records += records.len() as u64;
                (records, None)
            }
            Processed::Rejected(rejection) => {
                self.hot.rejected.inc();
                self.metrics
                    .dead_letters
                    .with_label_values(&[rejection.stage.as_str(), rejection.code])
                    .inc();
                self.summary.dead_letters += 1;
                tracing::debug!(rejection = %crate::logging::mask_phone_numbers(&rejection.to_string()), "dead letter");
                (&[][..], Some(self.dead_letter(batch, message, rejection)))
            }
        };
        self.summary.messages += 1;

        let count = records.len() + usize::from(dead_letter.is_some());
        // The message and its records, which the producer or the retries hold until they are
        // acknowledged: a message may derive more bytes than it has (up to the core's bound).
        let held_bytes = message.payload.len()
            + records
                .iter()
                .map(|r| r.key.len() + r.value.len())
                .sum::<usize>();
        let Some(input) = self
            .tracker
            .track(partition, offset, count, held_bytes, sent_at)
        else {
            return Ok(());
        };
        let config = Arc::clone(&self.config);
        for record in records {
            let parts = RecordParts {
                topic: config.topics.of(record.kind),
                key: Some(&batch.output[record.key.clone()]),
                value: &batch.output[record.value.clone()],
                headers: None,
                timestamp: message.timestamp,
            };
            self.send(parts, input)?;
        }
        if let Some(dead_letter) = &dead_letter {
            self.send(dead_letter.parts(), input)?;
        }
        if let Some(txn) = &mut self.transaction {
            txn.positions.insert(partition, offset + 1);
        }
        Ok(())
    }

    /// The dead letter of a rejected message, fitted into the producer's record size limit.
    fn dead_letter(
        &self,
        batch: &Batch,
        message: &Polled,
        rejection: &Rejection,
    ) -> OutgoingRecord {
        let source = Source {
            topic: &self.config.topics.input,
            partition: message.partition,
            offset: message.offset,
        };
        let rejected = Rejected {
            value: batch.payload(message),
            key: batch.key(message),
            headers: message.headers.as_ref(),
            timestamp: message.timestamp,
        };
        let (record, fit) = dead_letters::dead_letter(
            &self.config.topics.dead_letters,
            rejected,
            rejection,
            source,
            self.max_record_bytes,
        );
        if fit.truncated_from.is_some() || fit.original_dropped.is_some() {
            tracing::warn!(
                bytes = rejected.value.len(),
                limit = self.max_record_bytes,
                truncated = fit.truncated_from.is_some(),
                original_dropped = fit.original_dropped.is_some(),
                "dead letter too large for the producer: cut to fit (the whole message stays at its source offset)"
            );
        }
        record
    }

    /// At-least-once: hands the offsets that became safe to the consumer's offset store, which
    /// the auto-commit then commits.
    fn store_offsets(&mut self, consumer: &BaseConsumer<GroupContext>) {
        if self.exactly_once() || self.offsets_stored_at.elapsed() < STORE_OFFSETS_INTERVAL {
            return;
        }
        self.offsets_stored_at = Instant::now();
        let changes = self.tracker.committable_changes();
        if changes.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (partition, offset) in changes {
            if tpl
                .add_partition_offset(&self.config.topics.input, partition, Offset::Offset(offset))
                .is_err()
            {
                continue;
            }
        }
        if let Err(error) = consumer.store_offsets(&tpl) {
            tracing::debug!(%error, "storing offsets failed (partition revoked meanwhile?)");
        }
    }

    /// Synchronously commits the safe offsets of `partitions` (at-least-once).
    fn commit_offsets(&mut self, consumer: &BaseConsumer<GroupContext>, partitions: &[i32]) {
        if self.exactly_once() {
            // The tracker counts records delivered, not committed in a transaction: under
            // exactly-once offsets go only with the transaction that holds the records.
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for &p in partitions {
            if let Some(offset) = self.tracker.committable(p) {
                let _ =
                    tpl.add_partition_offset(&self.config.topics.input, p, Offset::Offset(offset));
            }
        }
        if tpl.count() == 0 {
            return;
        }
        // Stored too: librdkafka's auto-commit commits the stored offsets, and one taken from an
        // older store while this commit is on its way would move the group's offsets back (seen:
        // after a clean stop, a restart read a hundred messages again).
        if let Err(error) = consumer.store_offsets(&tpl) {
            tracing::debug!(%error, "storing the offsets to commit failed");
        }
        // The commit callback counts the result.
        if let Err(error) = consumer.commit(&tpl, CommitMode::Sync) {
            tracing::warn!(%error, "offset commit failed; the offsets will be read again");
        }
    }

    fn commit_transaction_if_due(
        &mut self,
        consumer: &BaseConsumer<GroupContext>,
    ) -> Result<(), ServiceError> {
        let due = self.transaction.as_ref().is_some_and(|t| {
            (!t.positions.is_empty() || t.failed)
                && t.started.elapsed() >= self.config.commit_interval
        });
        if due {
            self.commit_transaction(consumer)?;
        }
        Ok(())
    }

    /// Commits the open transaction with the input offsets it covers, then opens the next one.
    ///
    /// librdkafka's rule: after a retriable failure (a timeout) of `send_offsets_to_transaction`
    /// or `commit_transaction`, the same call must be made again before anything else is
    /// produced. So retriable failures are retried here, with backoff, until the call succeeds,
    /// the transaction must abort (then it is aborted and the input rewound), or a fatal error.
    fn commit_transaction(
        &mut self,
        consumer: &BaseConsumer<GroupContext>,
    ) -> Result<(), ServiceError> {
        let Some(txn) = &self.transaction else {
            return Ok(());
        };
        if self.fatal.is_some() {
            // The loop stops next; the open transaction is aborted on the way out.
            return Ok(());
        }
        if txn.failed {
            return self.abort_failed_transaction(consumer);
        }
        if txn.positions.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for (&partition, &offset) in &txn.positions {
            let _ = tpl.add_partition_offset(
                &self.config.topics.input,
                partition,
                Offset::Offset(offset),
            );
        }
        let mut offsets_sent = false;
        let mut backoff = Backoff::new();
        let mut attempt = 0;
        loop {
            self.health.heartbeat();
            attempt += 1;
            let result = if offsets_sent {
                self.producer.commit_transaction(TRANSACTION_TIMEOUT)
            } else {
                let metadata = consumer
                    .group_metadata()
                    .ok_or_else(|| ServiceError::Fatal("consumer has no group metadata".into()))?;
                let Some(sent) = self.send_offsets(&tpl, metadata)? else {
                    self.metrics
                        .offset_commits
                        .with_label_values(&["error"])
                        .inc();
                    if self.stop.load(Ordering::Relaxed) {
                        return Err(ServiceError::Fatal(
                            "sending the input offsets to the transaction did not return during shutdown; what was not committed is read again on restart".into(),
                        ));
                    }
                    if self.offsets_calls_running.load(Ordering::Relaxed) > 1 {
                        // An earlier abandoned producer is still stuck too: rather than pile up
                        // clients, stop and let the restart begin with fresh ones.
                        return Err(ServiceError::Fatal(
                            "sending the input offsets to the transaction did not return, again, while an abandoned producer is still stuck; stopping".into(),
                        ));
                    }
                    tracing::warn!(
                        deadline = ?SEND_OFFSETS_DEADLINE,
                        "sending the input offsets to the transaction did not return; replacing the producer"
                    );
                    self.replace_producer("offsets_call_stuck")?;
                    return self.rewind_and_begin(consumer, Rewind::Assigned);
                };
                // The offsets call may have taken its whole deadline: the commit is another call.
                self.health.heartbeat();
                sent.inspect(|()| offsets_sent = true)
                    .and_then(|()| self.producer.commit_transaction(TRANSACTION_TIMEOUT))
            };
            match result {
                Ok(()) => break,
                Err(KafkaError::Transaction(e)) if e.txn_requires_abort() => {
                    // The records' refusal reaches the commit before their delivery reports,
                    // which say which record failed and why (a permanent refusal stops the
                    // service, a refused timestamp is handled): librdkafka has them all by now,
                    // and the rewind would make them stale.
                    self.drain(
                        |t| t.in_flight_messages() == 0,
                        Instant::now() + REPORTS_AFTER_FAILED_COMMIT,
                    );
                    if refused_for_good(e.code()) {
                        self.fatal.get_or_insert(ServiceError::Fatal(format!(
                            "the transaction failed on a record refused for good: {e}"
                        )));
                    }
                    if let Some(fatal) = self.fatal.take() {
                        return Err(fatal);
                    }
                    tracing::warn!(error = %e, "transaction must abort");
                    return self.abort_failed_transaction(consumer);
                }
                Err(error) if is_fatal(&error) => return Err(fatal_transaction_error(error)),
                Err(error) if attempt >= TRANSACTION_ATTEMPTS => {
                    self.metrics
                        .offset_commits
                        .with_label_values(&["error"])
                        .inc();
                    // A commit that timed out may only be retried, not aborted: give up on the
                    // producer instead, which aborts the transaction on the broker.
                    tracing::warn!(%error, attempt, "transaction commit keeps failing; replacing the producer");
                    self.replace_producer("transaction_not_ending")?;
                    return self.rewind_and_begin(consumer, Rewind::Assigned);
                }
                Err(error) => {
                    self.metrics
                        .offset_commits
                        .with_label_values(&["error"])
                        .inc();
                    tracing::warn!(%error, attempt, "transaction commit did not complete; retrying");
                    backoff.wait();
                }
            }
        }
        self.failed_transactions_in_a_row = 0;
        if let Some(txn) = &self.transaction {
            self.held_partitions.committed(&txn.positions);
        }
        // Everything back from the core thread was published in the transaction just committed
        // or before it.
        self.jobs
            .send(Job::Settle(self.batches_done))
            .map_err(|_| core_thread_stopped())?;
        self.metrics
            .transactions
            .with_label_values(&["committed"])
            .inc();
        self.metrics.offset_commits.with_label_values(&["ok"]).inc();
        self.pump_reports();
        self.begin_transaction()
    }

    /// `send_offsets_to_transaction`, on a helper thread holding its own handle to the producer,
    /// so that a call that never returns (see `SEND_OFFSETS_DEADLINE`) cannot stall the service:
    /// `None` when it did not return in time. An abandoned call ends whenever librdkafka settles
    /// it (that was seen to take minutes); its thread then drops its handle, often the last.
    fn send_offsets(
        &self,
        offsets: &TopicPartitionList,
        metadata: ConsumerGroupMetadata,
    ) -> Result<Option<KafkaResult<()>>, ServiceError> {
        let producer = self.producer.clone();
        let offsets = offsets.clone();
        let (done, result) = mpsc::sync_channel(1);
        let running = self.offsets_calls_running.clone();
        running.fetch_add(1, Ordering::Relaxed);
        std::thread::Builder::new()
            .name("callstream-txn".into())
            .spawn(move || {
                let _ = done.send(producer.send_offsets_to_transaction(
                    &offsets,
                    &metadata,
                    TRANSACTION_TIMEOUT,
                ));
                // The producer handle goes first: the last one tears the client down.
                drop(producer);
                running.fetch_sub(1, Ordering::Relaxed);
            })
            .map_err(|e| {
                self.offsets_calls_running.fetch_sub(1, Ordering::Relaxed);
                ServiceError::Fatal(format!("cannot start a thread to send offsets: {e}"))
            })?;
        Ok(result.recv_timeout(SEND_OFFSETS_DEADLINE).ok())
    }

    fn begin_transaction(&mut self) -> Result<(), ServiceError> {
        self.producer.begin_transaction().map_err(|e| {
            if is_fatal(&e) {
                fatal_transaction_error(e)
            } else {
                kafka("beginning a transaction")(e)
            }
        })?;
        self.transaction = Some(Transaction {
            started: Instant::now(),
            positions: BTreeMap::new(),
            failed: false,
            first_batch: self.batches_done,
        });
        Ok(())
    }

    /// Aborts a transaction that failed (a record was not delivered, or the commit was refused).
    /// After `STUCK_AFTER_TIMEOUTS` such transactions in a row the producer is replaced instead: as
    /// under at-least-once, it may keep a partition without a leader for good (librdkafka#5430),
    /// and every transaction would fail the same way. The new producer starts from fresh metadata
    /// and fences the old one, which aborts its transaction.
    fn abort_failed_transaction(
        &mut self,
        consumer: &BaseConsumer<GroupContext>,
    ) -> Result<(), ServiceError> {
        self.failed_transactions_in_a_row += 1;
        if self.failed_transactions_in_a_row < STUCK_AFTER_TIMEOUTS {
            return self.abort_and_rewind(consumer, Rewind::Assigned);
        }
        self.failed_transactions_in_a_row = 0;
        tracing::warn!(
            transactions = STUCK_AFTER_TIMEOUTS,
            "the last transactions all failed; replacing the producer"
        );
        self.replace_producer("transactions_failing")?;
        self.rewind_and_begin(consumer, Rewind::Assigned)
    }

    /// Aborts the open transaction and rewinds every assigned partition to its committed offset,
    /// so that what the transaction held is processed again. A timed-out abort is retried (the
    /// broker may be unreachable for a while): what it covered must never be committed.
    fn abort_and_rewind(
        &mut self,
        consumer: &BaseConsumer<GroupContext>,
        rewind: Rewind,
    ) -> Result<(), ServiceError> {
        let mut backoff = Backoff::new();
        let mut attempt = 0;
        loop {
            self.health.heartbeat();
            attempt += 1;
            match self.producer.abort_transaction(TRANSACTION_TIMEOUT) {
                Ok(()) => break,
                Err(e) if is_fatal(&e) => return Err(fatal_transaction_error(e)),
                Err(error) if attempt >= TRANSACTION_ATTEMPTS => {
                    tracing::warn!(%error, attempt, "transaction abort keeps failing; replacing the producer");
                    self.replace_producer("transaction_not_ending")?;
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, attempt, "transaction abort did not complete; retrying");
                    backoff.wait();
                }
            }
        }
        self.rewind_and_begin(consumer, rewind)
    }

    /// After an abort: forget what the transaction emitted, rewind every assigned partition read
    /// since its assignment to its committed offset (unless `rewind` is `Rewind::Nothing`), and
    /// open the next transaction.
    fn rewind_and_begin(
        &mut self,
        consumer: &BaseConsumer<GroupContext>,
        rewind: Rewind,
    ) -> Result<(), ServiceError> {
        self.metrics
            .transactions
            .with_label_values(&["aborted"])
            .inc();
        // Nothing polled before the rewind may be published, and what was "emitted" in the
        // aborted transaction was never published: drop the first, forget the second (and only
        // that: what committed transactions published stays remembered, so that a redelivery of
        // it read again now is still suppressed).
        self.flush_pipeline(false)?;
        self.send_forget()?;
        let forget = self
            .transaction
            .as_ref()
            .map_or(Job::Forget, |txn| Job::Rollback(txn.first_batch));
        self.jobs.send(forget).map_err(|_| core_thread_stopped())?;
        for p in self.tracker.assigned() {
            self.tracker.assign(p);
        }
        self.pump_reports();
        if rewind == Rewind::Nothing || self.first_polled.is_empty() {
            return self.begin_transaction();
        }
        // A partition-level error can last: an offset held by a transaction an earlier process
        // left open is unstable until the broker aborts that transaction, after its timeout.
        let patience = transaction_timeout(&self.config) + REQUEST_TIMEOUT;
        let deadline = Instant::now() + patience;
        let mut backoff = Backoff::new();
        let committed = loop {
            self.health.heartbeat();
            // Attempts shorter than the liveness probe's stall limit, asked again until `patience`.
            let error = match consumer.committed(TRANSACTION_TIMEOUT) {
                // A partition's own error (a pending transactional offset, say) leaves its offset
                // unknown, not absent: falling back to a reset position could skip or repeat.
                Ok(committed) => match committed.elements().iter().find_map(|e| e.error().err()) {
                    None => break committed,
                    Some(error) => error,
                },
                Err(error) => error,
            };
            if is_fatal(&error) {
                return Err(kafka("reading committed offsets")(error));
            }
            if self.stop.load(Ordering::Relaxed) {
                return Err(kafka("reading committed offsets while stopping")(error));
            }
            if Instant::now() >= deadline {
                return Err(ServiceError::Fatal(format!(
                    "could not read the committed offsets to rewind to after an abort within {} s ({error}); what was not committed is read again on restart",
                    patience.as_secs()
                )));
            }
            tracing::warn!(%error, "reading committed offsets failed; retrying");
            backoff.wait();
        };
        for element in committed.elements() {
            let partition = element.partition();
            // Nothing read since the assignment: the position has not moved, and a partition
            // whose fetching has not started yet cannot be sought.
            let Some(&first) = self.first_polled.get(&partition) else {
                continue;
            };
            let target = match element.offset() {
                Offset::Offset(o) => Offset::Offset(o),
                // Nothing committed yet: back to the first message read since the assignment.
                _ => Offset::Offset(first),
            };
            // Reading on from where the consumer is would skip the aborted input: stop instead,
            // and a restart reads from the committed offsets.
            consumer
                .seek(element.topic(), partition, target, REQUEST_TIMEOUT)
                .map_err(kafka("rewinding a partition after an abort"))?;
        }
        self.begin_transaction()
    }

    /// Exactly-once: replaces a producer given up on for `reason` (its transaction cannot be ended,
    /// keeps failing, or a call into it does not return). The new producer has the same
    /// transactional id, so its `init_transactions` fences the old one and aborts whatever it left
    /// open on the broker: nothing of that transaction is ever committed.
    fn replace_producer(&mut self, reason: &str) -> Result<(), ServiceError> {
        // Counted when given up on: the new producer may wait a while for the coordinator.
        self.metrics
            .producer_replacements
            .with_label_values(&[reason])
            .inc();
        let producer = self.new_producer()?;
        self.init_replacement(&producer)?;
        let old = std::mem::replace(&mut self.producer, producer);
        old.context().retire();
        // Its records belong to the aborted transaction. Purged now rather than when its last
        // handle goes, which an abandoned call may hold for long.
        old.purge(PurgeConfig::default().queue().inflight());
        drop(old);
        tracing::info!("producer replaced; its open transaction was aborted");
        Ok(())
    }

    /// Exactly-once: initializes transactions on a replacement producer (taking the transactional
    /// id over from the current one), retrying until it succeeds, a fatal error, or a stop.
    fn init_replacement(
        &self,
        producer: &ThreadedProducer<DeliveryContext>,
    ) -> Result<(), ServiceError> {
        let mut backoff = Backoff::new();
        loop {
            self.health.heartbeat();
            // librdkafka resumes a timed-out initialization when asked again; short attempts keep
            // the liveness probe fed meanwhile.
            match producer.init_transactions(TRANSACTION_TIMEOUT) {
                Ok(()) => return Ok(()),
                Err(e) if is_fatal(&e) => return Err(fatal_transaction_error(e)),
                Err(error) if self.stop.load(Ordering::Relaxed) => {
                    return Err(ServiceError::Fatal(format!(
                        "stopping while the replacement producer could not be initialized ({error}); what was not committed is read again on restart"
                    )))
                }
                Err(error) => {
                    tracing::warn!(%error, "initializing the replacement producer failed; retrying");
                    backoff.wait();
                }
            }
        }
    }

    /// A producer like the first one, reporting to the same channel.
    fn new_producer(&self) -> Result<ThreadedProducer<DeliveryContext>, ServiceError> {
        create_producer(
            &self.config,
            self.transactional_id.as_deref(),
            self.max_record_bytes,
            &self.reports_tx,
            &self.metrics,
        )
    }

    /// At-least-once: replaces a producer that keeps timing out a record (`STUCK_AFTER_TIMEOUTS`).
    /// The old producer's undelivered records are purged; they come back as failed deliveries and
    /// are sent again through the new one (a purged record may have reached the broker: a
    /// duplicate, never a loss).
    fn replace_stuck_producer(&mut self) -> Result<(), ServiceError> {
        let interval = self.config.message_timeout * STUCK_AFTER_TIMEOUTS;
        let recently = self
            .producer_replaced_at
            .is_some_and(|at| at.elapsed() < interval);
        if !std::mem::take(&mut self.producer_stuck) || self.transactional_id.is_some() || recently
        {
            return Ok(());
        }
        tracing::warn!(
            timeouts = STUCK_AFTER_TIMEOUTS,
            "a record keeps timing out; replacing the producer"
        );
        let new = self.new_producer()?;
        let old = std::mem::replace(&mut self.producer, new);
        old.context().retire();
        self.producer_replaced_at = Some(Instant::now());
        self.metrics
            .producer_replacements
            .with_label_values(&["record_timeouts"])
            .inc();
        old.purge(PurgeConfig::default().queue().inflight());
        // Serves the purged records' reports into the channel; after a purge nothing waits on the
        // broker, so this returns at once unless librdkafka is stuck itself. A record whose report
        // never came would be neither resent nor acknowledged, holding its partition back for
        // good: stop instead, and let the restart read it again.
        if let Err(error) = old.flush(self.config.drain_timeout) {
            return Err(ServiceError::Fatal(format!(
                "the replaced producer did not report every purged record: {error}"
            )));
        }
        drop(old);
        // Resend the purged records now, before anything newer is published, so that a key's
        // records keep their order as far as a resend allows.
        self.pump_reports();
        self.retries.make_due(Instant::now());
        self.resend_due_retries();
        Ok(())
    }

    /// Holds intake while too much is in flight: at first by not polling the consumer
    /// (`holding_intake`), then, past `HOLD_BEFORE_PAUSE`, by pausing the assigned partitions.
    fn apply_backpressure(&mut self, consumer: &BaseConsumer<GroupContext>) {
        let over = self.tracker.in_flight_messages() >= self.config.max_in_flight_messages
            || self.tracker.in_flight_bytes() >= self.config.max_in_flight_bytes
            || self.tracker.tracked_messages()
                >= self.config.max_in_flight_messages * TRACKED_PER_IN_FLIGHT;
        let now = Instant::now();
        self.over_since = match (over, self.over_since) {
            (false, _) => None,
            (true, None) => Some(now),
            (true, since) => since,
        };
        self.metrics.intake_paused.set(i64::from(over));
        self.intake = intake(self.over_since, self.paused, now);
        let pause = self.intake == Intake::Pause;
        if pause == self.paused {
            return;
        }
        if let Ok(assignment) = consumer.assignment() {
            let result = if pause {
                consumer.pause(&assignment)
            } else {
                consumer.resume(&assignment)
            };
            match result {
                Ok(()) => self.paused = pause,
                Err(error) => tracing::warn!(%error, "pause/resume failed"),
            }
        }
    }

    /// Over the in-flight bounds, but not yet for `HOLD_BEFORE_PAUSE`: the loop does not poll the
    /// consumer. (Paused instead, it is polled: its partitions give nothing.)
    fn holding_intake(&self) -> bool {
        self.intake == Intake::Hold
    }

    /// While intake is held: waits briefly for a delivery report, and applies what came.
    fn wait_for_reports(&mut self, wait: Duration) {
        if let Ok(report) = self.reports.recv_timeout(wait) {
            self.apply_report(report);
            self.pump_reports();
        }
    }

    fn update_gauges(&self) {
        self.metrics
            .in_flight_messages
            .set(self.tracker.in_flight_messages() as i64);
        self.metrics
            .in_flight_bytes
            .set(self.tracker.in_flight_bytes() as i64);
        let oldest = self.tracker.oldest_unacknowledged(Instant::now());
        self.metrics
            .oldest_unacknowledged
            .set(oldest.as_secs() as i64);
    }

    /// Stopping on an error under exactly-once: aborts the open transaction, once, so that
    /// `read_committed` readers of the output partitions need not wait for the brokers to time it
    /// out (`transaction.timeout.ms`). Aborting publishes nothing, whatever went wrong.
    fn abort_on_the_way_out(&mut self) {
        if self.transaction.take().is_none() {
            return;
        }
        // Briefly: the stop has waited for the drain already, and a supervisor's grace period
        // (30 s in Docker) is running.
        match self.producer.abort_transaction(ABORT_ON_THE_WAY_OUT) {
            Ok(()) => tracing::info!("the open transaction was aborted"),
            Err(error) => tracing::warn!(
                %error,
                "the open transaction could not be aborted; the brokers end it after transaction.timeout.ms"
            ),
        }
    }

    /// Shutdown: drain and commit everything that can be.
    fn finish(&mut self, consumer: &BaseConsumer<GroupContext>) -> Result<(), ServiceError> {
        // The consumer's close revokes the partitions next: what could be drained was drained here.
        self.finished = true;
        self.flush_pipeline(true)?;
        match shutdown_commit(
            self.exactly_once(),
            self.transaction.is_some(),
            self.fatal.is_some(),
        ) {
            // Nothing more will be sent; an empty open transaction has nothing on the broker.
            ShutdownCommit::Transaction => return self.commit_transaction(consumer),
            ShutdownCommit::Nothing => return self.fatal.take().map_or(Ok(()), Err),
            ShutdownCommit::AcknowledgedOffsets => {}
        }
        let deadline = Instant::now() + self.config.drain_timeout;
        if !self.drain(|t| t.in_flight_messages() == 0, deadline) && self.fatal.is_none() {
            tracing::warn!(
                in_flight = self.tracker.in_flight_messages(),
                "shutdown drain deadline passed; unacknowledged offsets are not committed"
            );
        }
        // What was acknowledged is committed either way; a fatal error met while draining (a
        // record refused for good) still makes the exit a failure.
        let partitions = self.tracker.assigned();
        self.commit_offsets(consumer, &partitions);
        self.fatal.take().map_or(Ok(()), Err)
    }
}

/// The producer, reporting deliveries to `reports`, its `message.max.bytes` lowered to
/// `max_record_bytes` where that is lower (`record_limit`).
fn create_producer(
    config: &ServiceConfig,
    transactional_id: Option<&str>,
    max_record_bytes: usize,
    reports: &mpsc::Sender<Delivery>,
    metrics: &Arc<Metrics>,
) -> Result<ThreadedProducer<DeliveryContext>, ServiceError> {
    let mut settings = producer_config(config, transactional_id);
    if max_record_bytes < producer_max_record_bytes(config) {
        // The producer's own limit, not the consumer's (the `-X` passthrough sets both): it also
        // caps the producer's batches, which the topics' limits apply to.
        settings.set("message.max.bytes", max_record_bytes.to_string());
    }
    settings
        .create_with_context(DeliveryContext {
            reports: reports.clone(),
            metrics: metrics.clone(),
            retired: AtomicBool::new(false),
            errors: ErrorLog::default(),
        })
        .map_err(kafka("creating the producer"))
}

/// The largest record (key, value, headers and librdkafka's framing) the producer may send: its
/// `message.max.bytes`, lowered where an output topic's `max.message.bytes` is lower. A record the
/// producer refuses would stop the service, and so would a record a topic refuses (a permanent
/// error), at every restart: measured against this limit before it is sent, such a record is a
/// dead letter instead. The topics' limits are read once, at start-up, on a thread of its own
/// while the group is joined; if they cannot be read, the producer's limit applies alone.
fn record_limit(config: &ServiceConfig) -> usize {
    let producer_limit = producer_max_record_bytes(config);
    let mut topics: Vec<&str> = config.topics.outputs().to_vec();
    topics.sort_unstable();
    topics.dedup();
    let limits = match admin::max_message_bytes(
        &admin_config(config),
        &topics,
        OUTPUT_CHECK_TIMEOUT,
    ) {
        Ok(limits) => limits,
        Err(error) => {
            tracing::warn!(%error, "could not read the output topics' max.message.bytes; records are measured against the producer's message.max.bytes only");
            return producer_limit;
        }
    };
    for (topic, limit) in &limits {
        if let Err(why) = limit {
            tracing::warn!(topic, why, "could not read an output topic's max.message.bytes; records are measured against the producer's message.max.bytes only");
        }
    }
    // A missing topic is left out here: the start-up check of the output topics warns of it.
    let readable = limits.iter().filter_map(|(topic, limit)| match limit {
        Ok(Some(bytes)) => Some((topic.as_str(), *bytes)),
        _ => None,
    });
    match fit_to_topics(producer_limit, readable) {
        Some((topic, topic_limit, fitted)) => {
            tracing::warn!(
                topic,
                topic_max_message_bytes = topic_limit,
                producer_message_max_bytes = producer_limit,
                record_limit = fitted,
                "an output topic accepts less than the producer's message.max.bytes: records are limited to fit it, larger ones are dead letters (record_too_large)"
            );
            fitted
        }
        None => producer_limit,
    }
}

/// The lowest `message.max.bytes` librdkafka accepts.
const LOWEST_MESSAGE_MAX_BYTES: usize = 1_000;

/// The record limit that fits every topic's `max.message.bytes` (the broker compares it with whole
/// record batches, `RECORD_BATCH_OVERHEAD` bytes of header included), when the producer's own is
/// higher: the topic that sets it, its limit, and the fitted limit.
fn fit_to_topics<'t>(
    producer_limit: usize,
    topic_limits: impl Iterator<Item = (&'t str, usize)>,
) -> Option<(&'t str, usize, usize)> {
    let (topic, topic_limit) = topic_limits.min_by_key(|&(_, bytes)| bytes)?;
    // librdkafka takes no `message.max.bytes` below 1,000; a topic limit that low is refused by
    // the broker record by record, as before.
    let fitted = topic_limit
        .saturating_sub(admin::RECORD_BATCH_OVERHEAD)
        .max(LOWEST_MESSAGE_MAX_BYTES);
    (fitted < producer_limit).then_some((topic, topic_limit, fitted))
}

/// How intake goes on, under the in-flight bounds and over them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Intake {
    Read,
    /// Not read for now: the consumer is not polled.
    Hold,
    /// The assigned partitions are paused (and the consumer is polled).
    Pause,
}

/// Intake over the bounds since `over_since` (`None`: under them): held at first, paused once that
/// lasted `HOLD_BEFORE_PAUSE`, and paused partitions stay paused until intake is under the bounds.
fn intake(over_since: Option<Instant>, paused: bool, now: Instant) -> Intake {
    match over_since {
        None => Intake::Read,
        Some(since) if paused || now.saturating_duration_since(since) >= HOLD_BEFORE_PAUSE => {
            Intake::Pause
        }
        Some(_) => Intake::Hold,
    }
}

fn core_thread_stopped() -> ServiceError {
    ServiceError::Fatal("the core thread stopped".into())
}

/// Exponential backoff for retries of blocking calls: 100 ms doubling up to 5 s.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Backoff(Duration::from_millis(100))
    }

    fn wait(&mut self) {
        std::thread::sleep(self.0);
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
    }
}

fn fatal_transaction_error(error: KafkaError) -> ServiceError {
    let fenced = matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::Fenced
                | RDKafkaErrorCode::InvalidProducerEpoch
        )
    ) || error.to_string().to_lowercase().contains("fenced");
    if fenced {
        ServiceError::Fatal(format!(
            "this producer was fenced: another instance uses the same transactional.id ({error})"
        ))
    } else {
        ServiceError::Fatal(error.to_string())
    }
}

/// The error that stops the service when a record to `topic` is refused for good.
fn undeliverable(topic: &str, error: &KafkaError) -> ServiceError {
    ServiceError::Fatal(format!("delivery to {topic} failed: {error}"))
}

/// How long a failed commit waits for the delivery reports of its transaction's records.
const REPORTS_AFTER_FAILED_COMMIT: Duration = Duration::from_secs(5);

/// How long stopping on an error waits for the open transaction's abort.
const ABORT_ON_THE_WAY_OUT: Duration = Duration::from_secs(5);

/// The transactional id of this process: the configured one; else, with a static membership id,
/// one named after it, so that a restart of the member fences its predecessor's producer and ends
/// its open transaction at once; else one unique to host and process.
fn transactional_id(config: &ServiceConfig) -> String {
    if let Some(id) = &config.transactional_id {
        return id.clone();
    }
    if let Some(member) = &config.group_instance_id {
        return format!("callstream-{}-{member}", config.group_id);
    }
    format!(
        "callstream-{}-{}-{}",
        config.group_id,
        host_name(),
        std::process::id()
    )
}

/// The machine's name: `HOSTNAME` is often not exported (under systemd, say), so the kernel's.
fn host_name() -> String {
    let named = |name: String| Some(name.trim().to_owned()).filter(|name| !name.is_empty());
    std::env::var("HOSTNAME")
        .ok()
        .and_then(named)
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .and_then(named)
        })
        .unwrap_or_else(|| "host".into())
}

/// The brokers the clients are given: `-X bootstrap.servers`, applied last, wins.
fn effective_bootstrap_servers(config: &ServiceConfig) -> String {
    config
        .librdkafka
        .get("bootstrap.servers")
        .unwrap_or(&config.bootstrap_servers)
        .clone()
}

/// Says at start-up which output topics cannot be written. Not fatal: their records wait for them,
/// and a broker may create topics on first use. The producer describes them (it holds handles to
/// them anyway), briefly: the input topic's metadata just came back.
fn warn_about_output_topics(engine: &Engine) {
    for topic in engine.config.topics.outputs() {
        match describe(engine.producer.client(), topic, OUTPUT_CHECK_TIMEOUT) {
            Ok(described) => {
                if let Some(problem) = output_topic_problem(described) {
                    tracing::warn!(
                        topic,
                        problem,
                        "output topic not usable: its records wait until it is (create it with `callstream topics create`)"
                    );
                }
            }
            Err(error) => tracing::warn!(topic, %error, "could not check output topic"),
        }
    }
}

/// Runs the service until `stop` is set or a fatal error occurs.
pub fn run(
    config: ServiceConfig,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    stop: Arc<AtomicBool>,
) -> Result<RunSummary, ServiceError> {
    // Every log line of this run (the loop and the rebalance callbacks share this thread) names
    // the group and the guarantee.
    let _span = tracing::info_span!(
        "service",
        group = %config.group_id,
        guarantee = config.guarantee.as_str()
    )
    .entered();
    let value_format = match &config.schema_registry {
        Some(registry) => {
            let mut told = false;
            let resolved = start_up(&stop, RegistryError::is_transient, |_| {
                let answer = registry::resolve(registry, &config.topics, REGISTRY_REQUEST_TIMEOUT);
                if let Err(error) = &answer {
                    if !told && error.is_transient() {
                        tracing::warn!(%error, "asking the schema registry again");
                        told = true;
                    }
                }
                answer
            })?;
            match resolved {
                Some(format) => format,
                None => return Ok(RunSummary::default()),
            }
        }
        None => ValueFormat::single_object()?,
    };
    let (reports_tx, reports) = mpsc::channel::<Delivery>();
    let transactional = config.guarantee == Guarantee::ExactlyOnce;
    let txn_id = transactional.then(|| transactional_id(&config));
    let max_record_bytes = producer_max_record_bytes(&config);
    metrics
        .record_limit
        .set(max_record_bytes.min(MAX_RECORD_BYTES) as i64);
    let pending_record_limit = config.read_topic_limits.then(|| {
        let (limit_tx, limit) = mpsc::channel();
        let settings = config.clone();
        let span = tracing::Span::current();
        std::thread::spawn(move || {
            let _span = span.entered();
            // The receiver is gone only when the service stopped before its first batch.
            let _ = limit_tx.send(record_limit(&settings));
        });
        limit
    });
    let producer = create_producer(
        &config,
        txn_id.as_deref(),
        max_record_bytes,
        &reports_tx,
        &metrics,
    )?;
    if transactional {
        let initialized = start_up(&stop, transactions_may_be_asked_again, |wait| {
            producer.init_transactions(wait)
        })
        .map_err(|e| {
            if is_fatal(&e) {
                fatal_transaction_error(e)
            } else {
                start_up_request(
                    "initializing transactions",
                    effective_bootstrap_servers(&config),
                    CHECK_TRANSACTIONS,
                )(e)
            }
        })?;
        if initialized.is_none() {
            return Ok(RunSummary::default());
        }
        tracing::info!(
            transactional_id = txn_id.as_deref().unwrap_or(""),
            "transactions initialized"
        );
    }
    let input_topic = config.topics.input.clone();
    let consumer_settings = consumer_config(&config, STATISTICS_INTERVAL.as_millis() as u64);
    let metrics_for_context = metrics.clone();
    // The core thread, behind bounded channels (`BATCHES_AT_CORE` batches there or back, and the
    // other jobs, which it takes at once).
    let (jobs, job_queue) = mpsc::sync_channel::<Job>(BATCHES_AT_CORE + 3);
    let (done_tx, done) = mpsc::sync_channel::<Batch>(BATCHES_AT_CORE);
    let mut processor = Processor::new(config.processor);
    if txn_id.is_some() {
        processor.keep_undo();
    }
    let held_partitions = Arc::new(HeldPartitions::default());
    let durations = metrics.processing_duration.clone();
    let window_resets = metrics.window_resets.clone();
    let core_thread = std::thread::Builder::new()
        .name("callstream-core".into())
        .spawn(move || {
            pipeline::run_core(
                processor,
                value_format,
                max_record_bytes,
                durations,
                window_resets,
                job_queue,
                done_tx,
            )
        })
        .map_err(|e| ServiceError::Fatal(format!("starting the core thread: {e}")))?;
    let engine = Arc::new(Mutex::new(Engine {
        jobs,
        done,
        collecting: Batch::default(),
        spares: Vec::new(),
        at_core: 0,
        batches_done: 0,
        poisoned: false,
        send_deadline: None,
        forget_requested: false,
        timestamps_refused: Vec::new(),
        waited_for_queue: false,
        producer_stuck: false,
        producer_replaced_at: None,
        failed_transactions_in_a_row: 0,
        offsets_calls_running: Arc::new(AtomicUsize::new(0)),
        held_partitions: held_partitions.clone(),
        hot: HotMetrics::new(&metrics),
        offsets_stored_at: Instant::now(),
        max_record_bytes,
        pending_record_limit,
        finished: false,
        first_polled: BTreeMap::new(),
        config: Arc::new(config),
        producer,
        reports_tx,
        transactional_id: txn_id,
        reports,
        metrics,
        health: health.clone(),
        stop: stop.clone(),
        tracker: OffsetTracker::new(),
        retries: RetryQueue::default(),
        next_seq: 0,
        transaction: None,
        over_since: None,
        intake: Intake::Read,
        paused: false,
        fatal: None,
        summary: RunSummary::default(),
    }));
    if transactional {
        lock(&engine).begin_transaction()?;
    }
    let consumer: BaseConsumer<GroupContext> = consumer_settings
        .create_with_context(GroupContext {
            engine: engine.clone(),
            metrics: metrics_for_context,
            leaderless: LeaderlessPartitions::default(),
            held_partitions,
            errors: ErrorLog::default(),
        })
        .map_err(kafka("creating the consumer"))?;
    // Declared after the consumer, so dropped before it.
    let _poison_on_panic = PoisonOnPanic(Arc::downgrade(&engine));

    let described = start_up(&stop, is_connection_error, |wait| {
        describe(consumer.client(), &input_topic, wait)
    })
    .map_err(start_up_request(
        "reading topic metadata",
        effective_bootstrap_servers(&lock(&engine).config),
        CHECK_CONNECTION,
    ))?;
    let Some(described) = described else {
        return Ok(RunSummary::default());
    };
    if let Some(problem) = input_topic_problem(&input_topic, described) {
        return Err(problem);
    }
    warn_about_output_topics(&lock(&engine));
    consumer
        .subscribe(&[&input_topic])
        .map_err(kafka("subscribing"))?;
    health.set_running(true);
    tracing::info!(topic = input_topic, "consuming");

    let outcome = run_loop(&consumer, &engine, &health, &stop);
    health.set_shutting_down();
    let finished = outcome.and_then(|()| lock(&engine).finish(&consumer));
    if finished.is_err() {
        // Stopping on an error: closing the consumer revokes its partitions, which must then
        // publish and commit nothing more (see `Engine::poisoned`).
        let mut e = lock(&engine);
        e.poisoned = true;
        e.abort_on_the_way_out();
    }
    // Closing the consumer leaves the group; its revoke callback finds nothing left to do.
    consumer.unsubscribe();
    drop(consumer);
    health.set_running(false);
    // A fatal error met by the close's revoke still makes the exit a failure.
    let late_fatal = lock(&engine).fatal.take();
    let finished = finished.and_then(|()| late_fatal.map_or(Ok(()), Err));
    let summary = lock(&engine).summary.clone();
    // Closing the job channel ends the core thread.
    drop(engine);
    if core_thread.join().is_err() {
        tracing::error!("the core thread panicked");
    }
    finished.map(|()| summary)
}

/// What an abort rewinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rewind {
    /// Every assigned partition read since its assignment, to its committed offset.
    Assigned,
    /// Nothing: the whole assignment is going.
    Nothing,
}

/// What shutdown commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ShutdownCommit {
    /// The open transaction, with its offsets (exactly-once).
    Transaction,
    /// The consumer offsets of every acknowledged message (at-least-once), even after a fatal
    /// error: what was acknowledged is safe to commit.
    AcknowledgedOffsets,
    Nothing,
}

fn shutdown_commit(exactly_once: bool, transaction_open: bool, fatal: bool) -> ShutdownCommit {
    match (exactly_once, transaction_open, fatal) {
        // Under exactly-once, records delivered in a transaction that failed or was aborted were
        // never committed: neither the transaction nor the consumer may commit their offsets.
        (true, true, false) => ShutdownCommit::Transaction,
        (true, _, _) => ShutdownCommit::Nothing,
        (false, _, _) => ShutdownCommit::AcknowledgedOffsets,
    }
}

fn run_loop(
    consumer: &BaseConsumer<GroupContext>,
    engine: &Mutex<Engine>,
    health: &Health,
    stop: &AtomicBool,
) -> Result<(), ServiceError> {
    while !stop.load(Ordering::Relaxed) {
        health.heartbeat();
        let poll_timeout = {
            let mut e = lock(engine);
            if let Some(fatal) = e.fatal.take() {
                return Err(fatal);
            }
            if e.poisoned {
                // Its fatal error, if it came with one, was taken above; nothing may be published
                // after it in any case.
                return Err(ServiceError::Fatal(
                    "stopped: the service loop's state is poisoned (a failed publish or a panic)"
                        .into(),
                ));
            }
            e.pump_reports();
            e.send_forget()?;
            e.replace_stuck_producer()?;
            e.resend_due_retries();
            e.store_offsets(consumer);
            e.commit_transaction_if_due(consumer)?;
            e.apply_backpressure(consumer);
            e.update_gauges();
            if let Some(fatal) = e.fatal.take() {
                return Err(fatal);
            }
            while e.collect(Duration::ZERO, true)? {}
            e.dispatch(false)?;
            if e.collecting.is_full() {
                // The core thread has all it can take: wait for it rather than poll more.
                e.collect(POLL_INTERVAL, true)?;
                continue;
            }
            if e.holding_intake() {
                // Too much in flight: hand the core thread what was collected, and wait for its
                // results or for acknowledgements rather than read more.
                e.dispatch(true)?;
                if !e.collect(HOLD_WAIT, true)? {
                    e.wait_for_reports(HOLD_WAIT);
                }
                continue;
            }
            // While the core thread has work, wait for input only briefly: its results are due.
            if e.at_core > 0 {
                CORE_BUSY_POLL
            } else {
                POLL_INTERVAL
            }
        };
        // Take what the consumer has ready, up to a burst, before the next round of housekeeping.
        let mut taken = 0;
        let mut polled = consumer.poll(poll_timeout);
        loop {
            match polled {
                None => {
                    if taken == 0 {
                        // Nothing to read now: hand the core thread what was collected. Not
                        // waiting for its results here: input arriving meanwhile is collected
                        // while the core works, instead of after.
                        let mut e = lock(engine);
                        e.dispatch(true)?;
                        while e.collect(Duration::ZERO, true)? {}
                    }
                    break;
                }
                Some(Err(error)) if is_fatal(&error) => {
                    return Err(ServiceError::Fatal(format!("consumer: {error}")))
                }
                Some(Err(error)) => {
                    tracing::warn!(%error, "consumer error");
                    break;
                }
                Some(Ok(message)) => {
                    taken += 1;
                    let mut e = lock(engine);
                    e.on_polled(&message);
                    if e.collecting.is_full() || taken >= POLL_BURST {
                        break;
                    }
                }
            }
            polled = consumer.poll(Duration::ZERO);
        }
    }
    // Stopped: a fatal error a rebalance callback met in the last poll must not be lost, or
    // shutdown would go on to commit as if nothing had failed.
    lock(engine).fatal.take().map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Flag(Option<String>);

    impl Poisonable for Flag {
        fn poison(&mut self, why: &str) {
            self.0.get_or_insert_with(|| why.to_owned());
        }
    }

    #[test]
    fn a_static_member_keeps_its_transactional_id_across_restarts() {
        let mut config = ServiceConfig::new("localhost:9092", "g");
        let per_process = transactional_id(&config);
        assert!(per_process.starts_with("callstream-g-"), "{per_process}");
        assert!(
            per_process.ends_with(&format!("-{}", std::process::id())),
            "{per_process}"
        );
        assert!(
            per_process.contains(&format!("-{}-", host_name())),
            "the machine's name: {per_process}"
        );
        // Named after the member, with no process id: a restart fences its predecessor.
        config.group_instance_id = Some("callstream-0".into());
        assert_eq!(transactional_id(&config), "callstream-g-callstream-0");
        config.transactional_id = Some("mine".into());
        assert_eq!(transactional_id(&config), "mine");
    }

    #[test]
    fn a_start_up_request_is_asked_again_only_for_what_the_caller_accepts() {
        let unreachable = || KafkaError::MetadataFetch(RDKafkaErrorCode::OperationTimedOut);
        let running = AtomicBool::new(false);
        // Asked again after an error it accepts, with a longer wait each time.
        let mut waits = Vec::new();
        let answer = start_up(&running, is_connection_error, |wait| {
            waits.push(wait);
            if waits.len() < 3 {
                Err(unreachable())
            } else {
                Ok(7)
            }
        });
        assert_eq!(answer.ok().flatten(), Some(7));
        assert_eq!(waits, [1, 2, 4].map(Duration::from_secs), "growing waits");
        // Another error is returned at once.
        let mut asked = 0;
        let refused = start_up(&running, is_connection_error, |_| -> KafkaResult<()> {
            asked += 1;
            Err(KafkaError::MetadataFetch(
                RDKafkaErrorCode::TopicAuthorizationFailed,
            ))
        });
        assert!(refused.is_err());
        assert_eq!(asked, 1);
        // Stopping ends it with nothing.
        let stopping = AtomicBool::new(true);
        let stopped = start_up(&stopping, is_connection_error, |_| -> KafkaResult<()> {
            Err(unreachable())
        });
        assert!(matches!(stopped, Ok(None)));
    }

    #[test]
    fn a_panic_poisons_the_engine_whether_or_not_it_held_the_lock() {
        // Unwinding past the guard (the loop's thread, before its consumer is dropped).
        let state = Arc::new(Mutex::new(Flag::default()));
        let weak = Arc::downgrade(&state);
        let unwound = std::thread::spawn(move || {
            let _guard = PoisonOnPanic(weak);
            panic!("a bug in the loop");
        })
        .join();
        assert!(unwound.is_err());
        assert_eq!(
            lock(&state).0.as_deref(),
            Some("a panic on the service loop's thread")
        );

        // A panic while holding the lock, on a thread without the guard.
        let state = Arc::new(Mutex::new(Flag::default()));
        let shared = state.clone();
        let unwound = std::thread::spawn(move || {
            let _held = shared.lock().unwrap();
            panic!("a bug under the lock");
        })
        .join();
        assert!(unwound.is_err());
        assert!(
            lock(&state).0.is_some(),
            "poisoned when the lock is taken again"
        );

        // No panic: nothing changes.
        let state = Arc::new(Mutex::new(Flag::default()));
        drop(PoisonOnPanic(Arc::downgrade(&state)));
        assert_eq!(lock(&state).0, None);
    }

    #[test]
    fn a_panic_in_a_rebalance_callback_is_contained_and_poisons_the_engine() {
        let state = Mutex::new(Flag::default());
        contain_panic(&state, "pre_rebalance", || {
            let _held = lock(&state);
            panic!("a bug in on_revoke");
        });
        assert_eq!(
            lock(&state).0.as_deref(),
            Some("a panic in the pre_rebalance callback: a bug in on_revoke")
        );
        let state = Mutex::new(Flag::default());
        contain_panic(&state, "pre_rebalance", || {});
        assert_eq!(lock(&state).0, None);
    }

    #[test]
    fn start_up_problems_say_what_to_check() {
        use RDKafkaErrorCode::*;
        let topic = "telephony.sessions.raw";
        assert!(input_topic_problem(topic, Some((None, 3))).is_none());
        for missing in [
            None,
            Some((None, 0)),
            Some((Some(UnknownTopicOrPartition), 0)),
        ] {
            assert!(matches!(
                input_topic_problem(topic, missing),
                Some(ServiceError::InputTopicMissing { .. })
            ));
        }
        let denied = input_topic_problem(topic, Some((Some(TopicAuthorizationFailed), 0)));
        assert!(matches!(
            denied,
            Some(ServiceError::InputTopicNotAuthorized { .. })
        ));
        assert!(denied.unwrap().to_string().contains("not authorized"));
        let unavailable = input_topic_problem(topic, Some((Some(LeaderNotAvailable), 3)));
        assert!(matches!(
            unavailable,
            Some(ServiceError::InputTopicUnavailable { .. })
        ));

        assert_eq!(output_topic_problem(Some((None, 3))), None);
        assert_eq!(
            output_topic_problem(None).as_deref(),
            Some("does not exist")
        );
        assert!(
            output_topic_problem(Some((Some(TopicAuthorizationFailed), 0)))
                .is_some_and(|p| p.contains("Write"))
        );

        let timed_out = start_up_request(
            "reading topic metadata",
            "kafka-0:9093".into(),
            CHECK_CONNECTION,
        )(KafkaError::MetadataFetch(OperationTimedOut));
        let message = timed_out.to_string();
        assert!(
            message.contains("kafka-0:9093") && message.contains("security.protocol"),
            "{message}"
        );
        let other = start_up_request(
            "reading topic metadata",
            "kafka-0:9093".into(),
            CHECK_CONNECTION,
        )(KafkaError::MetadataFetch(InvalidRequest));
        assert!(matches!(other, ServiceError::Kafka { .. }));

        // `-X bootstrap.servers` is what the clients use, so it is what the error names.
        let mut config = ServiceConfig::new("kafka-0:9093", "group");
        assert_eq!(effective_bootstrap_servers(&config), "kafka-0:9093");
        config
            .librdkafka
            .insert("bootstrap.servers".into(), "kafka-9:9093".into());
        assert_eq!(effective_bootstrap_servers(&config), "kafka-9:9093");
    }

    #[test]
    fn shutdown_never_commits_consumer_offsets_under_exactly_once() {
        for transaction_open in [false, true] {
            for fatal in [false, true] {
                let commit = shutdown_commit(true, transaction_open, fatal);
                assert_ne!(commit, ShutdownCommit::AcknowledgedOffsets);
                assert_eq!(
                    commit == ShutdownCommit::Transaction,
                    transaction_open && !fatal,
                    "open {transaction_open}, fatal {fatal}"
                );
                assert_eq!(
                    shutdown_commit(false, transaction_open, fatal),
                    ShutdownCommit::AcknowledgedOffsets
                );
            }
        }
    }

    #[test]
    fn intake_over_the_bounds_is_held_then_paused_and_reads_again_under_them() {
        let over_at = Instant::now();
        let after = |ms| over_at + Duration::from_millis(ms);
        assert_eq!(intake(None, false, after(0)), Intake::Read);
        assert_eq!(intake(Some(over_at), false, after(0)), Intake::Hold);
        assert_eq!(intake(Some(over_at), false, after(499)), Intake::Hold);
        assert_eq!(intake(Some(over_at), false, after(500)), Intake::Pause);
        // Paused, it stays paused while over the bounds, and resumes under them.
        assert_eq!(intake(Some(after(900)), true, after(900)), Intake::Pause);
        assert_eq!(intake(None, true, after(1000)), Intake::Read);
    }

    #[test]
    fn records_are_fitted_to_the_lowest_topic_limit_below_the_producers() {
        // Kafka's defaults: every topic takes more than the producer sends.
        let defaults = [("parties", 1_048_588), ("dlq", 1_048_588)];
        assert_eq!(fit_to_topics(1_000_000, defaults.into_iter()), None);
        // One topic takes less: its limit, less a batch header, for every record.
        let lowered = [("parties", 1_048_588), ("missed", 2_000), ("dlq", 5_000)];
        assert_eq!(
            fit_to_topics(1_000_000, lowered.into_iter()),
            Some(("missed", 2_000, 1_939))
        );
        // A producer limit already below the fitted one stays.
        assert_eq!(fit_to_topics(1_500, lowered.into_iter()), None);
        // Nothing read: nothing to fit.
        assert_eq!(fit_to_topics(1_000_000, std::iter::empty()), None);
        // librdkafka's floor.
        assert_eq!(
            fit_to_topics(1_000_000, [("tiny", 10)].into_iter()),
            Some(("tiny", 10, 1_000))
        );
    }
}
