//! Fault injection with librdkafka's in-process mock cluster: produce errors and a broker outage
//! are retried, and no input offset is committed past an unacknowledged record.
//!
//! The mock cluster is used here only for what a real broker cannot do on demand; the delivery
//! guarantees themselves are tested against a real broker in `kafka_service.rs`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use callstream::core::framing::ValueFormat;
use callstream::core::{Processor, ProcessorConfig, TopicKind};
use callstream::generate::{Generator, GeneratorConfig};
use callstream::health::Health;
use callstream::metrics::Metrics;
use callstream::service::{self, Guarantee, RunSummary, ServiceConfig, ServiceError};
use callstream::topics::TopicNames;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::{MockCluster, MockCoordinator};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{Offset, TopicPartitionList};

const INPUT_BROKER: i32 = 1;
const OUTPUT_BROKER: i32 = 2;

struct Setup {
    cluster: MockCluster<'static, DefaultProducerContext>,
    bootstrap: String,
    topics: TopicNames,
    lines: Vec<String>,
    expected_parties: usize,
}

/// Three mock brokers: input and group coordination on broker 1, every output topic on broker 2,
/// so that output can fail while input keeps flowing; `count` generated notifications as input.
fn setup(count: usize) -> Setup {
    setup_with_seed(count, 5)
}

/// The cluster of `setup`, its input topic with `input_partitions` partitions, no input yet.
fn mock_cluster(
    input_partitions: i32,
) -> (
    MockCluster<'static, DefaultProducerContext>,
    String,
    TopicNames,
) {
    let cluster = MockCluster::new(3).expect("mock cluster");
    let bootstrap = cluster.bootstrap_servers();
    let topics = TopicNames::default();
    cluster
        .create_topic(&topics.input, input_partitions, 1)
        .expect("input topic");
    for partition in 0..input_partitions {
        cluster
            .partition_leader(&topics.input, partition, Some(INPUT_BROKER))
            .expect("leader");
    }
    for topic in topics.outputs() {
        cluster.create_topic(topic, 1, 1).expect("output topic");
        cluster
            .partition_leader(topic, 0, Some(OUTPUT_BROKER))
            .expect("leader");
    }
    cluster
        .coordinator(MockCoordinator::Group("mock-group".into()), INPUT_BROKER)
        .expect("coordinator");
    (cluster, bootstrap, topics)
}

/// Generated traffic of the call flows `mix` names (`"inbound=1"`).
fn generate(mix: &str, seed: u64, count: usize) -> Vec<String> {
    Generator::new(GeneratorConfig {
        seed,
        mix: mix.parse().expect("mix"),
        ..Default::default()
    })
    .take(count)
    .collect()
}

/// `setup` with other generated traffic.
fn setup_with_seed(count: usize, seed: u64) -> Setup {
    setup_with(
        Generator::new(GeneratorConfig {
            seed,
            ..Default::default()
        })
        .take(count)
        .collect(),
    )
}

/// `setup` with these lines as input.
fn setup_with(lines: Vec<String>) -> Setup {
    let (cluster, bootstrap, topics) = mock_cluster(1);
    let mut processor = Processor::new(ProcessorConfig::default());
    let mut expected_parties = 0;
    for line in &lines {
        processor
            .process(line.as_bytes(), |r| {
                expected_parties += usize::from(r.topic() == TopicKind::Parties);
                Ok(())
            })
            .expect("generated traffic is valid");
    }
    produce_input(&bootstrap, &topics.input, &lines);
    Setup {
        cluster,
        bootstrap,
        topics,
        lines,
        expected_parties,
    }
}

type Running = (
    Arc<Metrics>,
    Arc<AtomicBool>,
    JoinHandle<Result<RunSummary, ServiceError>>,
);

fn produce_input(bootstrap: &str, topic: &str, lines: &[String]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("producer");
    for line in lines {
        producer
            .send(BaseRecord::<(), String>::to(topic).payload(line))
            .map_err(|(e, _)| e)
            .expect("send");
    }
    producer.flush(Duration::from_secs(10)).expect("flush");
}

fn start(setup: &Setup, message_timeout: Duration) -> Running {
    let mut config = ServiceConfig::new(&setup.bootstrap, "mock-group");
    config.message_timeout = message_timeout;
    start_with(config)
}

fn start_with(config: ServiceConfig) -> Running {
    start_watched(config).0
}

/// `start_with`, also returning the service's health (its assigned partitions).
fn start_watched(mut config: ServiceConfig) -> (Running, Arc<Health>) {
    // The mock cluster does not describe topic configurations.
    config.read_topic_limits = false;
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let stop = Arc::new(AtomicBool::new(false));
    let handle = {
        let (metrics, health, stop) = (metrics.clone(), health.clone(), stop.clone());
        std::thread::spawn(move || service::run(config, metrics, health, stop))
    };
    ((metrics, stop, handle), health)
}

/// Settings of the rebalance tests of paused intake: a record that cannot be delivered times out
/// every second, intake pauses at 4 x 50 held messages, and the group rebalances in seconds.
fn pausing_group_member(bootstrap: &str) -> ServiceConfig {
    let mut config = ServiceConfig::new(bootstrap, "mock-group");
    config.message_timeout = Duration::from_millis(1_000);
    config.max_in_flight_messages = 50;
    for (key, value) in MOCK_SESSION {
        config.librdkafka.insert(key.into(), value.into());
    }
    config
}

/// Exactly-once settings for `setup`'s cluster.
fn exactly_once(setup: &Setup, transactional_id: &str) -> ServiceConfig {
    let mut config = ServiceConfig::new(&setup.bootstrap, "mock-group");
    config.guarantee = Guarantee::ExactlyOnce;
    config.transactional_id = Some(transactional_id.into());
    config
}

/// `topic` (one partition) loses its leader: the producer cannot deliver to it.
fn without_leader(setup: &Setup, topic: &str) {
    setup
        .cluster
        .partition_leader(topic, 0, None)
        .expect("no leader");
}

/// `topic` (one partition) has `broker` as its leader again.
fn leader_back(setup: &Setup, topic: &str, broker: i32) {
    setup
        .cluster
        .partition_leader(topic, 0, Some(broker))
        .expect("leader back");
}

fn replacements(metrics: &Metrics, reason: &str) -> u64 {
    metrics
        .producer_replacements
        .with_label_values(&[reason])
        .get()
}

/// Offsets committed by the group for each of `partitions` input partitions (-1 for none).
fn committed_per_partition(bootstrap: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "mock-group")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for partition in 0..partitions {
        tpl.add_partition(topic, partition);
    }
    let committed = consumer.committed_offsets(tpl, Duration::from_secs(5));
    committed
        .map(|c| {
            c.elements()
                .iter()
                .map(|e| match e.offset() {
                    Offset::Offset(o) => o,
                    _ => -1,
                })
                .collect()
        })
        .unwrap_or_else(|_| vec![-1; partitions as usize])
}

fn committed(setup: &Setup) -> Option<i64> {
    let offset = committed_per_partition(&setup.bootstrap, &setup.topics.input, 1)[0];
    (offset >= 0).then_some(offset)
}

/// Low and high watermark of `topic` (one partition).
fn watermarks(setup: &Setup, topic: &str) -> rdkafka::error::KafkaResult<(i64, i64)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &setup.bootstrap)
        .create()
        .expect("consumer");
    consumer.fetch_watermarks(topic, 0, Duration::from_secs(5))
}

fn output_count(setup: &Setup, topic: &str) -> i64 {
    watermarks(setup, topic)
        .map(|(low, high)| high - low)
        .unwrap_or(0)
}

fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until callstream has `partitions` assigned and its intake paused, with nearly nothing in
/// flight: what is left is held behind the stuck records.
fn wait_until_paused_on(partitions: usize, health: &Health, metrics: &Metrics) {
    wait_for(
        &format!("callstream paused on {partitions} partition(s)"),
        Duration::from_secs(60),
        || {
            health.assigned_partitions() == partitions
                && metrics.intake_paused.get() == 1
                && metrics.in_flight_messages.get() < 10
        },
    );
}

/// Waits for the service to stop on its own, and returns the error it stopped on (`why` if it
/// stopped cleanly).
fn stopped_on_error(
    handle: JoinHandle<Result<RunSummary, ServiceError>>,
    why: &str,
) -> ServiceError {
    wait_for("the service to stop", Duration::from_secs(60), || {
        handle.is_finished()
    });
    handle.join().expect("join").expect_err(why)
}

fn consumed(metrics: &Metrics) -> u64 {
    ["processed", "rejected", "duplicate"]
        .iter()
        .map(|o| metrics.input_messages.with_label_values(&[o]).get())
        .sum()
}

#[test]
fn a_broker_outage_is_retried_and_no_offset_passes_an_unacknowledged_record() {
    let setup = setup(300);
    setup
        .cluster
        .broker_down(OUTPUT_BROKER)
        .expect("broker down");
    let (metrics, stop, handle) = start(&setup, Duration::from_millis(1_500));

    wait_for(
        "every input message consumed",
        Duration::from_secs(60),
        || consumed(&metrics) == setup.lines.len() as u64,
    );
    wait_for(
        "failed deliveries being retried",
        Duration::from_secs(60),
        || metrics.delivery_retries.get() > 0,
    );
    // Nothing was acknowledged, so nothing may be committed.
    assert!(
        committed(&setup).unwrap_or(0) == 0,
        "an offset was committed past unacknowledged records: {:?}",
        committed(&setup)
    );
    // Everything is held, and counted against the in-flight bound: the messages and their records.
    wait_for(
        "the in-flight bytes to count every message and record",
        Duration::from_secs(10),
        || metrics.in_flight_bytes.get() == held_bytes(&setup.lines),
    );

    setup.cluster.broker_up(OUTPUT_BROKER).expect("broker up");
    wait_for(
        "every offset committed after recovery",
        Duration::from_secs(90),
        || committed(&setup) == Some(setup.lines.len() as i64),
    );
    stop.store(true, Ordering::Relaxed);
    handle.join().expect("join").expect("clean stop");
    assert!(output_count(&setup, &setup.topics.parties) >= setup.expected_parties as i64);
}

#[test]
fn injected_produce_errors_are_retried_without_loss() {
    let setup = setup(200);
    setup.cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 20],
    );
    let (metrics, stop, handle) = start(&setup, Duration::from_secs(30));
    wait_for("every offset committed", Duration::from_secs(90), || {
        committed(&setup) == Some(setup.lines.len() as i64)
    });
    stop.store(true, Ordering::Relaxed);
    handle.join().expect("join").expect("clean stop");
    assert_eq!(consumed(&metrics), setup.lines.len() as u64);
    assert_eq!(
        output_count(&setup, &setup.topics.parties),
        setup.expected_parties as i64
    );
}

/// A record the broker refuses for good (here: not authorized) stops the service with an error
/// that says so, and no offset is committed past its message: the group reads it again once the
/// cause is fixed. The first produce request is refused, so nothing may be committed at all.
#[test]
fn a_record_refused_for_good_stops_the_service_and_no_offset_passes_it() {
    let setup = setup(200);
    setup.cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 5],
    );
    let (metrics, _stop, handle) = start(&setup, Duration::from_secs(30));
    let error = stopped_on_error(handle, "a refused record must stop the service");
    // Said by the failed delivery, or by a send that librdkafka refused at once after it.
    let said = error.to_string();
    assert!(said.to_lowercase().contains("authoriz"), "{said}");
    assert!(metrics.delivery_failures.get() > 0);
    assert_eq!(
        committed(&setup).unwrap_or(0),
        0,
        "an offset was committed past a refused record"
    );
}

/// INVALID_RECORD for a record sent with its input timestamp is taken as the topic refusing the
/// timestamp: the record is sent again without it, once. Refused again, it stops the service.
#[test]
fn a_record_refused_once_is_sent_again_without_its_timestamp_and_twice_stops() {
    // Once: every record is published, and the group commits past everything.
    let setup = setup(100);
    setup.cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_RECORD],
    );
    let (metrics, stop, handle) = start(&setup, Duration::from_secs(30));
    wait_for("every offset committed", Duration::from_secs(60), || {
        committed(&setup) == Some(setup.lines.len() as i64)
    });
    stop.store(true, Ordering::Relaxed);
    handle.join().expect("join").expect("clean stop");
    assert!(metrics.delivery_failures.get() > 0);
    assert_eq!(
        output_count(&setup, &setup.topics.parties),
        setup.expected_parties as i64
    );

    // Refused again without the timestamp: the service stops, and commits nothing past it.
    let setup = setup_with_seed(100, 6);
    setup.cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_INVALID_RECORD; 10],
    );
    let (_, _stop, handle) = start(&setup, Duration::from_secs(30));
    let error = stopped_on_error(
        handle,
        "a record refused without its timestamp must stop the service",
    );
    assert!(error.to_string().contains("InvalidRecord"), "{error}");
    assert_eq!(committed(&setup).unwrap_or(0), 0);
}

/// Messages acknowledged behind one record that keeps failing are held by the offset tracker
/// until that record is delivered. Few are in flight then, so the in-flight limit does not stop
/// intake; the bound on held messages (4 times `max_in_flight_messages`) must, and intake must
/// resume once the record is delivered.
#[test]
fn messages_held_behind_a_stuck_record_pause_intake_until_it_is_delivered() {
    // One transfer call, then answered inbound calls only: with the transfers topic without a
    // leader, the transfer records are the only ones that cannot be delivered.
    let mut lines = generate("blind-transfer=1", 7, 12);
    // Per line, how many transfer records the model core makes of it.
    let transfers_per_line = |lines: &[String]| -> Vec<usize> {
        let mut processor = Processor::new(ProcessorConfig::default());
        lines
            .iter()
            .map(|line| {
                let mut transfers = 0;
                processor
                    .process(line.as_bytes(), |r| {
                        transfers += usize::from(r.topic() == TopicKind::Transfers);
                        Ok(())
                    })
                    .expect("generated traffic is valid");
                transfers
            })
            .collect()
    };
    let stuck_records: usize = transfers_per_line(&lines).iter().sum();
    assert!(
        stuck_records > 0,
        "the transfer call yields a transfer record"
    );
    lines.extend(generate("inbound=1", 8, 1_988));
    let per_line = transfers_per_line(&lines);
    assert_eq!(
        per_line.iter().sum::<usize>(),
        stuck_records,
        "only the first call transfers"
    );
    // The offset of the first message that cannot be fully published.
    let first_stuck = per_line.iter().position(|&t| t > 0).expect("a transfer") as i64;
    let total = lines.len();
    let setup = setup_with(lines);
    without_leader(&setup, &setup.topics.transfers);

    let max_in_flight = 50;
    let mut config = ServiceConfig::new(&setup.bootstrap, "mock-group");
    config.message_timeout = Duration::from_millis(1_000);
    config.max_in_flight_messages = max_in_flight;
    let (metrics, stop, handle) = start_with(config);

    // Paused with next to nothing in flight: what holds intake back is what waits behind the
    // transfer records, not the in-flight limit (which, reached for a moment, pauses too).
    wait_for(
        "intake paused with few messages in flight",
        Duration::from_secs(60),
        || metrics.intake_paused.get() == 1 && metrics.in_flight_messages.get() < 10,
    );
    assert!(
        consumed(&metrics) < total as u64,
        "intake paused, yet all {total} messages were consumed"
    );
    assert!(
        committed(&setup).unwrap_or(0) <= first_stuck,
        "an offset was committed past the undelivered transfer record at {first_stuck}: {:?}",
        committed(&setup)
    );

    leader_back(&setup, &setup.topics.transfers, OUTPUT_BROKER);
    wait_for("every offset committed", Duration::from_secs(90), || {
        committed(&setup) == Some(total as i64)
    });
    assert_eq!(metrics.intake_paused.get(), 0, "intake resumed");
    stop.store(true, Ordering::Relaxed);
    handle.join().expect("join").expect("clean stop");
    assert!(output_count(&setup, &setup.topics.transfers) >= stuck_records as i64);
    let missing = expected_party_values(&setup.lines)
        .difference(&published_values(&setup, &setup.topics.parties))
        .count();
    assert_eq!(missing, 0, "{missing} party records were never published");
}

/// The mock coordinator waits up to a session timeout for every member to rejoin a group.
const MOCK_SESSION: [(&str, &str); 2] = [
    ("session.timeout.ms", "6000"),
    ("heartbeat.interval.ms", "500"),
];

/// Produces each list of lines to its partition of `topic`.
fn produce_to_partitions(bootstrap: &str, topic: &str, per_partition: &[Vec<String>]) {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("producer");
    for (partition, lines) in per_partition.iter().enumerate() {
        for line in lines {
            producer
                .send(
                    BaseRecord::<(), String>::to(topic)
                        .partition(partition as i32)
                        .payload(line),
                )
                .map_err(|(e, _)| e)
                .expect("send");
        }
    }
    producer.flush(Duration::from_secs(10)).expect("flush");
}

/// Another member of callstream's group, on its own thread: a plain consumer that commits
/// nothing. Returns how many partitions it holds, the flag that makes it leave the group, and
/// its thread.
fn other_member(
    bootstrap: &str,
    topic: &str,
) -> (Arc<AtomicUsize>, Arc<AtomicBool>, JoinHandle<()>) {
    let assigned = Arc::new(AtomicUsize::new(0));
    let leaves = Arc::new(AtomicBool::new(false));
    let thread = {
        let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
        let (assigned, leaves) = (assigned.clone(), leaves.clone());
        std::thread::spawn(move || {
            let mut config = ClientConfig::new();
            config
                .set("bootstrap.servers", &bootstrap)
                .set("group.id", "mock-group")
                .set("partition.assignment.strategy", "cooperative-sticky")
                .set("enable.auto.commit", "false")
                .set("auto.offset.reset", "earliest");
            for (key, value) in MOCK_SESSION {
                config.set(key, value);
            }
            let consumer: BaseConsumer = config.create().expect("consumer");
            consumer.subscribe(&[&topic]).expect("subscribe");
            while !leaves.load(Ordering::Relaxed) {
                let _ = consumer.poll(Duration::from_millis(100));
                let count = consumer.assignment().map(|a| a.count()).unwrap_or(0);
                assigned.store(count, Ordering::Relaxed);
            }
            // Dropping the consumer closes it: it leaves the group.
        })
    };
    (assigned, leaves, thread)
}

/// The cluster of `mock_cluster(2)`, with the transfers topic without a leader, and as input on
/// each partition a transfer call (whose transfer record cannot be delivered) and then 600
/// notifications of answered inbound calls (seeds from `inbound_seed`), returned per partition.
fn two_partitions_stuck_behind_transfers(
    inbound_seed: u64,
) -> (
    MockCluster<'static, DefaultProducerContext>,
    String,
    TopicNames,
    Vec<Vec<String>>,
) {
    let (cluster, bootstrap, topics) = mock_cluster(2);
    cluster
        .partition_leader(&topics.transfers, 0, None)
        .expect("no leader");
    let per_partition: Vec<Vec<String>> = (0..2)
        .map(|p| {
            let mut lines = generate("blind-transfer=1", 7 + p, 12);
            lines.extend(generate("inbound=1", inbound_seed + p, 600));
            lines
        })
        .collect();
    produce_to_partitions(&bootstrap, &topics.input, &per_partition);
    (cluster, bootstrap, topics, per_partition)
}

/// A partition assigned while intake is paused joins paused: the incremental assignment of
/// cooperative-sticky starts it fetching, and it must not be read past the memory bounds. Two
/// input partitions, each starting with a transfer call whose transfer record cannot be
/// delivered; another member of the group holds one partition until callstream is paused on the
/// other, then leaves.
#[test]
fn a_partition_assigned_while_intake_is_paused_is_not_read_until_intake_resumes() {
    let (cluster, bootstrap, topics, per_partition) = two_partitions_stuck_behind_transfers(20);

    // The other member: holds both partitions, gives one up when callstream joins, then leaves.
    let (other_assigned, other_leaves, other) = other_member(&bootstrap, &topics.input);
    wait_for(
        "the other member assigned both",
        Duration::from_secs(30),
        || other_assigned.load(Ordering::Relaxed) == 2,
    );

    let ((metrics, stop, handle), health) = start_watched(pausing_group_member(&bootstrap));
    wait_until_paused_on(1, &health, &metrics);
    let consumed_while_paused = consumed(&metrics);

    other_leaves.store(true, Ordering::Relaxed);
    other.join().expect("the other member");
    wait_for(
        "callstream assigned the other partition",
        Duration::from_secs(60),
        || health.assigned_partitions() == 2,
    );
    // A few more timeouts of the stuck records: seconds in which an unpaused partition would
    // have been read to its end (612 messages; the mock broker serves them at once).
    let failures = metrics.delivery_failures.get();
    wait_for("more timeouts", Duration::from_secs(60), || {
        metrics.delivery_failures.get() >= failures + 4
    });
    let read_meanwhile = consumed(&metrics) - consumed_while_paused;
    assert!(
        read_meanwhile < 50,
        "{read_meanwhile} messages were read while intake was paused"
    );
    assert_eq!(metrics.intake_paused.get(), 1);

    cluster
        .partition_leader(&topics.transfers, 0, Some(OUTPUT_BROKER))
        .expect("leader back");
    let total: usize = per_partition.iter().map(Vec::len).sum();
    wait_for("every message consumed", Duration::from_secs(90), || {
        consumed(&metrics) == total as u64
    });
    stop.store(true, Ordering::Relaxed);
    handle.join().expect("join").expect("clean stop");
}

/// A partition revoked while intake is paused and assigned again after intake resumed is read:
/// librdkafka keeps an application pause across an unassignment, so the assignment must clear it.
#[test]
fn a_partition_revoked_while_paused_and_assigned_again_later_is_read() {
    let (cluster, bootstrap, topics, per_partition) = two_partitions_stuck_behind_transfers(30);

    // callstream alone: both partitions, paused behind the two transfer records.
    let mut config = pausing_group_member(&bootstrap);
    // A revoked partition's stuck record is given up on quickly.
    config.drain_timeout = Duration::from_secs(2);
    let ((metrics, stop, handle), health) = start_watched(config);
    wait_until_paused_on(2, &health, &metrics);

    // Another member takes one of the paused partitions.
    let (other_assigned, other_leaves, other) = other_member(&bootstrap, &topics.input);
    wait_for("the partitions shared", Duration::from_secs(60), || {
        health.assigned_partitions() == 1 && other_assigned.load(Ordering::Relaxed) == 1
    });
    // The transfer records can be delivered: intake resumes.
    cluster
        .partition_leader(&topics.transfers, 0, Some(OUTPUT_BROKER))
        .expect("leader back");
    wait_for("intake resumed", Duration::from_secs(60), || {
        metrics.intake_paused.get() == 0
    });
    // The other member leaves: its partition, paused when it was revoked, comes back.
    other_leaves.store(true, Ordering::Relaxed);
    other.join().expect("the other member");
    let lengths: Vec<i64> = per_partition.iter().map(|l| l.len() as i64).collect();
    wait_for(
        "both partitions committed to the end",
        Duration::from_secs(90),
        || committed_per_partition(&bootstrap, &topics.input, 2) == lengths,
    );
    stop.store(true, Ordering::Relaxed);
    handle.join().expect("join").expect("clean stop");
}

/// What the service holds for `lines` until their records are acknowledged: each message and its
/// records (keys and values as they are sent).
fn held_bytes(lines: &[String]) -> i64 {
    let format = ValueFormat::single_object().expect("schemas");
    let mut processor = Processor::new(ProcessorConfig::default());
    let mut bytes = 0;
    for line in lines {
        let mut derived = 0;
        processor
            .process(line.as_bytes(), |r| {
                let mut value = Vec::new();
                format.write_value(r, &mut value);
                derived += r.key().len() + value.len();
                Ok(())
            })
            .expect("generated traffic is valid");
        // A message without records (all of them duplicates) is not held.
        if derived > 0 {
            bytes += line.len() + derived;
        }
    }
    bytes as i64
}

/// Every distinct party record value the model core makes of `lines`, in the wire format.
fn expected_party_values(lines: &[String]) -> HashSet<Vec<u8>> {
    let format = ValueFormat::single_object().expect("schemas");
    let mut processor = Processor::new(ProcessorConfig::default());
    let mut values = HashSet::new();
    for line in lines {
        processor
            .process(line.as_bytes(), |r| {
                if r.topic() == TopicKind::Parties {
                    let mut value = Vec::new();
                    format.write_value(r, &mut value);
                    values.insert(value);
                }
                Ok(())
            })
            .expect("generated traffic is valid");
    }
    values
}

/// Every distinct value in `topic` (one partition).
fn published_values(setup: &Setup, topic: &str) -> HashSet<Vec<u8>> {
    published_values_from(setup, topic, 0)
}

fn end_offset(setup: &Setup, topic: &str) -> i64 {
    watermarks(setup, topic).expect("watermarks").1
}

/// Every distinct value in `topic` (one partition) at `from` or later.
fn published_values_from(setup: &Setup, topic: &str, from: i64) -> HashSet<Vec<u8>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &setup.bootstrap)
        .set("group.id", "mock-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let high = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(5))
        .expect("watermarks")
        .1;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(from))
        .expect("partition");
    consumer.assign(&tpl).expect("assign");
    let mut values = HashSet::new();
    let mut next = from;
    let deadline = Instant::now() + Duration::from_secs(60);
    while next < high {
        assert!(
            Instant::now() < deadline,
            "could not read {topic} to its end"
        );
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            values.insert(m.payload().unwrap_or_default().to_vec());
            next = m.offset() + 1;
        }
    }
    values
}

/// A partition that accepts nothing while the others do (what librdkafka does after a broker
/// restart when it keeps a stale "no leader" for one partition): after a record timed out three
/// times the producer is replaced, at most once per three timeouts; the records the old producer
/// still held are purged and sent again through the new one, and nothing is committed before they
/// are acknowledged. Input keeps arriving meanwhile, so that the old producer holds records when
/// it is replaced.
#[test]
fn a_producer_that_keeps_timing_out_a_record_is_replaced_without_loss() {
    let setup = setup(200);
    let stuck = &setup.topics.parties;
    without_leader(&setup, stuck);
    let (metrics, stop, handle) = start(&setup, Duration::from_millis(1_000));
    let feeding = Arc::new(AtomicBool::new(true));
    let feeder = {
        let (bootstrap, input, feeding) = (
            setup.bootstrap.clone(),
            setup.topics.input.clone(),
            feeding.clone(),
        );
        std::thread::spawn(move || {
            let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .create()
                .expect("producer");
            let mut sent = Vec::new();
            let mut lines = Generator::new(GeneratorConfig {
                seed: 6,
                ..Default::default()
            });
            while feeding.load(Ordering::Relaxed) {
                let line = lines.next().expect("endless traffic");
                producer
                    .send(BaseRecord::<(), String>::to(&input).payload(&line))
                    .map_err(|(e, _)| e)
                    .expect("send");
                sent.push(line);
                // Pacing, not waiting: a trickle of input.
                std::thread::sleep(Duration::from_millis(20));
            }
            producer.flush(Duration::from_secs(10)).expect("flush");
            sent
        })
    };

    wait_for("the producer replaced", Duration::from_secs(60), || {
        replacements(&metrics, "record_timeouts") > 0
    });
    let replaced_at = Instant::now();
    let failures_then = metrics.delivery_failures.get();
    // A few more rounds of timeouts: not a replacement per round.
    wait_for("more timeouts", Duration::from_secs(60), || {
        metrics.delivery_failures.get() >= 2 * failures_then
    });
    let rounds = replaced_at.elapsed().as_secs_f64();
    assert!(
        replacements(&metrics, "record_timeouts") as f64 <= 2.0 + rounds / 3.0,
        "{} replacements in {rounds:.1} s with a 1 s message timeout",
        replacements(&metrics, "record_timeouts")
    );
    feeding.store(false, Ordering::Relaxed);
    let mut lines = setup.lines.clone();
    lines.extend(feeder.join().expect("feeder"));
    assert!(
        output_count(&setup, &setup.topics.missed) > 0,
        "the other topics should have been delivered to meanwhile"
    );
    assert!(
        committed(&setup).unwrap_or(0) == 0,
        "an offset was committed past an undelivered record: {:?}",
        committed(&setup)
    );

    leader_back(&setup, stuck, OUTPUT_BROKER);
    wait_for("every offset committed", Duration::from_secs(90), || {
        committed(&setup) == Some(lines.len() as i64)
    });
    stop.store(true, Ordering::Relaxed);
    handle.join().expect("join").expect("clean stop");
    let (expected, published) = (
        expected_party_values(&lines),
        published_values(&setup, stuck),
    );
    let missing = expected.difference(&published).count();
    assert_eq!(missing, 0, "{missing} party records were never published");
    assert!(published.is_subset(&expected), "unexpected party records");
}

/// A record the broker refuses for good (here: not authorized) stops the process with an error,
/// nothing is committed past what was not published, and a restart publishes everything.
#[test]
fn a_permanent_produce_error_stops_the_process_and_a_restart_loses_nothing() {
    let setup = setup(200);
    setup.cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED],
    );
    let (_, _stop, handle) = start(&setup, Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !handle.is_finished() {
        assert!(Instant::now() < deadline, "the process did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    match handle.join().expect("join") {
        Err(ServiceError::Fatal(message)) => {
            assert!(message.contains("delivery"), "{message}")
        }
        other => panic!("expected a fatal error, got {other:?}"),
    }
    let after_failure = committed(&setup).unwrap_or(0);
    assert!(
        after_failure < setup.lines.len() as i64,
        "everything was committed although a record was refused"
    );

    let (metrics, stop, handle) = start(&setup, Duration::from_secs(30));
    wait_for("every offset committed", Duration::from_secs(90), || {
        committed(&setup) == Some(setup.lines.len() as i64)
    });
    stop.store(true, Ordering::Relaxed);
    handle.join().expect("join").expect("clean stop");
    assert_eq!(
        consumed(&metrics),
        setup.lines.len() as u64 - after_failure as u64,
        "the restart read from the committed offset"
    );
    let expected = expected_party_values(&setup.lines);
    let published = published_values(&setup, &setup.topics.parties);
    let missing = expected.difference(&published).count();
    assert_eq!(missing, 0, "{missing} party records were never published");
}

/// Exactly-once: librdkafka's `send_offsets_to_transaction` waits for its result without a
/// deadline. Here the transaction coordinator answers only after two minutes, so the call blocks
/// until librdkafka's request timeout (60 s); after a frozen broker came back it was seen to block
/// for minutes. The service gives up on the call at its own deadline, replaces the producer, reads
/// the uncommitted input again and publishes it after the replacement.
///
/// The mock cluster neither keeps offsets committed in a transaction nor fences or aborts (a new
/// producer gets a new producer id), so progress is read from the service's metrics and the
/// published records, and the abort itself is tested against the real broker
/// (`broker_faults.rs`).
#[test]
fn an_offsets_call_that_does_not_return_gets_the_transactional_producer_replaced() {
    const TRANSACTION_BROKER: i32 = 3;
    let setup = setup(200);
    setup
        .cluster
        .coordinator(
            MockCoordinator::Transaction("mock-txn".into()),
            TRANSACTION_BROKER,
        )
        .expect("coordinator");
    let (metrics, stop, handle) = start_with(exactly_once(&setup, "mock-txn"));
    let committed_transactions = || metrics.transactions.with_label_values(&["committed"]).get();
    wait_for(
        "the first input read and committed",
        Duration::from_secs(60),
        || consumed(&metrics) == setup.lines.len() as u64 && committed_transactions() > 0,
    );

    setup
        .cluster
        .broker_round_trip_time(TRANSACTION_BROKER, Duration::from_secs(120))
        .expect("slow coordinator");
    let more: Vec<String> = Generator::new(GeneratorConfig {
        seed: 7,
        ..Default::default()
    })
    .take(100)
    .collect();
    produce_input(&setup.bootstrap, &setup.topics.input, &more);
    wait_for(
        "the producer replaced for a stuck offsets call",
        Duration::from_secs(90),
        || replacements(&metrics, "offsets_call_stuck") > 0,
    );
    assert!(
        !handle.is_finished(),
        "the service stopped: {:?}",
        handle.join()
    );
    let committed_before = committed_transactions();
    let parties_then = end_offset(&setup, &setup.topics.parties);
    setup
        .cluster
        .broker_round_trip_time(TRANSACTION_BROKER, Duration::ZERO)
        .expect("coordinator back");

    // The input of the abandoned transaction is read again and published after the replacement.
    let expected_again = expected_party_values(&more);
    let mut lines = setup.lines.clone();
    lines.extend(more);
    let expected = expected_party_values(&lines);
    wait_for(
        "every party record published",
        Duration::from_secs(180),
        || {
            committed_transactions() > committed_before
                && expected_again.is_subset(&published_values_from(
                    &setup,
                    &setup.topics.parties,
                    parties_then,
                ))
                && expected.is_subset(&published_values(&setup, &setup.topics.parties))
        },
    );
    stop.store(true, Ordering::Relaxed);
    handle.join().expect("join").expect("clean stop");
    assert!(
        published_values(&setup, &setup.topics.parties).is_subset(&expected),
        "unexpected party records"
    );
}

/// Exactly-once, a partition that accepts nothing while the others do (librdkafka#5430 after a
/// fenced KRaft broker): every transaction fails on it and aborts; after three in a row the
/// producer is replaced, and once the partition has a leader again everything is published.
#[test]
fn a_transactional_producer_whose_transactions_keep_failing_is_replaced() {
    let setup = setup(200);
    let stuck = &setup.topics.parties;
    without_leader(&setup, stuck);
    let mut config = exactly_once(&setup, "mock-txn-stuck");
    config.message_timeout = Duration::from_millis(1_000);
    let (metrics, stop, handle) = start_with(config);
    let transactions = |result: &str| metrics.transactions.with_label_values(&[result]).get();
    wait_for("the producer replaced", Duration::from_secs(60), || {
        replacements(&metrics, "transactions_failing") > 0
    });
    assert!(
        transactions("aborted") >= 2,
        "replaced before the transactions failed: {} aborted",
        transactions("aborted")
    );
    assert_eq!(transactions("committed"), 0, "a transaction committed");

    leader_back(&setup, stuck, OUTPUT_BROKER);
    let expected = expected_party_values(&setup.lines);
    wait_for(
        "every party record published",
        Duration::from_secs(90),
        || transactions("committed") > 0 && expected.is_subset(&published_values(&setup, stuck)),
    );
    stop.store(true, Ordering::Relaxed);
    handle.join().expect("join").expect("clean stop");
    assert!(
        published_values(&setup, stuck).is_subset(&expected),
        "unexpected party records"
    );
}

/// Exactly-once with `auto.offset.reset=latest`: a transaction that aborts before the partition's
/// first commit rewinds to the first message read since the assignment, not to the log's end,
/// which by then is past everything that transaction read (and would skip it all).
#[test]
fn an_abort_before_the_first_commit_rewinds_to_what_was_read_not_to_the_end() {
    let (cluster, bootstrap, topics) = mock_cluster(1);
    let setup = Setup {
        cluster,
        bootstrap,
        topics,
        lines: Vec::new(),
        expected_parties: 0,
    };
    let stuck = &setup.topics.parties;
    without_leader(&setup, stuck);
    let mut config = exactly_once(&setup, "mock-txn-latest");
    config.auto_offset_reset = "latest".into();
    config.message_timeout = Duration::from_millis(1_000);
    let (metrics, stop, handle) = start_with(config);
    let transactions = |result: &str| metrics.transactions.with_label_values(&[result]).get();

    // With `latest`, what is produced before the consumer has its position is not read: produce
    // probes until one is consumed, so that everything produced afterwards must be.
    let probes = generate("inbound=1", 61, 200);
    let mut probes = probes.iter();
    wait_for("a probe consumed", Duration::from_secs(60), || {
        let probe = probes.next().expect("a probe left");
        produce_input(
            &setup.bootstrap,
            &setup.topics.input,
            std::slice::from_ref(probe),
        );
        consumed(&metrics) > 0
    });
    let lines = generate("inbound=1", 62, 100);
    produce_input(&setup.bootstrap, &setup.topics.input, &lines);
    wait_for("the lines consumed", Duration::from_secs(60), || {
        consumed(&metrics) > lines.len() as u64
    });
    // Their records cannot be delivered: the transaction holding them aborts and rewinds.
    let aborted_before = transactions("aborted");
    wait_for("a transaction aborted", Duration::from_secs(60), || {
        transactions("aborted") > aborted_before
    });
    assert_eq!(transactions("committed"), 0, "a transaction committed");

    leader_back(&setup, stuck, OUTPUT_BROKER);
    let expected = expected_party_values(&lines);
    wait_for(
        "every party record of the lines published",
        Duration::from_secs(90),
        || transactions("committed") > 0 && expected.is_subset(&published_values(&setup, stuck)),
    );
    stop.store(true, Ordering::Relaxed);
    handle.join().expect("join").expect("clean stop");
}

/// An assigned input partition without a leader is not fetched, silently: librdkafka waits for a
/// leader, and can keep a stale "no leader" for good (librdkafka#5430). The leaderless gauge is
/// what shows it; it clears once a leader is known and consumption goes on.
///
/// The partition has no leader from the start: librdkafka's mock broker crashes answering a fetch
/// for a partition that lost its leader (`rd_kafka_mock_Fetch_reply_tags_partition_write`).
#[test]
fn an_input_partition_without_a_leader_shows_in_the_leaderless_gauge_until_it_has_one() {
    let setup = setup(100);
    let input = &setup.topics.input;
    without_leader(&setup, input);
    let (metrics, stop, handle) = start(&setup, Duration::from_secs(30));
    let leaderless = || metrics.consumer_leaderless.with_label_values(&["0"]).get();
    // Two statistics intervals: it keeps growing while there is no leader.
    wait_for(
        "the partition counted as leaderless",
        Duration::from_secs(60),
        || leaderless() >= 10,
    );
    assert_eq!(consumed(&metrics), 0, "fetched without a leader");

    leader_back(&setup, input, INPUT_BROKER);
    wait_for("the input consumed", Duration::from_secs(60), || {
        consumed(&metrics) == setup.lines.len() as u64
    });
    wait_for("the gauge cleared", Duration::from_secs(30), || {
        leaderless() == 0
    });
    stop.store(true, Ordering::Relaxed);
    handle.join().expect("join").expect("clean stop");
}
