//! Helpers for tests against the real broker started by `scripts/kafka.sh` (via scripts/test.sh,
//! which exports CALLSTREAM_TEST_BOOTSTRAP).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use callstream::core::{Processor, ProcessorConfig, TopicKind};
use callstream::generate::{Generator, GeneratorConfig};
use callstream::topics::TopicNames;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;
use rdkafka::{Offset, TopicPartitionList};

pub const PARTITIONS: i32 = 3;

pub fn bootstrap() -> String {
    std::env::var("CALLSTREAM_TEST_BOOTSTRAP").expect(
        "CALLSTREAM_TEST_BOOTSTRAP is not set: run the suite with scripts/test.sh, which starts a real Kafka broker",
    )
}

/// Topic names unique to one test.
pub fn unique_topics(test: &str) -> TopicNames {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let id = format!(
        "{test}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    TopicNames {
        input: format!("{id}.raw"),
        parties: format!("{id}.parties"),
        missed: format!("{id}.missed"),
        recorded: format!("{id}.recorded"),
        transfers: format!("{id}.transfers"),
        dead_letters: format!("{id}.dlq"),
    }
}

pub fn topic_flags(t: &TopicNames) -> Vec<String> {
    vec![
        "--input-topic".into(),
        t.input.clone(),
        "--parties-topic".into(),
        t.parties.clone(),
        "--missed-topic".into(),
        t.missed.clone(),
        "--recorded-topic".into(),
        t.recorded.clone(),
        "--transfers-topic".into(),
        t.transfers.clone(),
        "--dead-letter-topic".into(),
        t.dead_letters.clone(),
    ]
}

/// Creates every topic through `callstream topics create --include-input`.
pub fn create_topics(t: &TopicNames, partitions: i32) {
    let status = Command::new(env!("CARGO_BIN_EXE_callstream"))
        .args([
            "topics",
            "create",
            "--include-input",
            "--bootstrap-servers",
            &bootstrap(),
        ])
        .args(["--partitions", &partitions.to_string()])
        .args(topic_flags(t))
        .stdout(Stdio::null())
        .status()
        .expect("run topics create");
    assert!(status.success(), "topics create failed");
}

/// Sets one configuration property of a topic (replacing its other overrides, of which the topics
/// created here have none).
pub fn set_topic_config(topic: &str, key: &str, value: &str) {
    use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .expect("admin client");
    let change = AlterConfig::new(ResourceSpecifier::Topic(topic)).set(key, value);
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
    let results = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(admin.alter_configs([&change], &options))
        .expect("alter configs");
    for result in results {
        result.unwrap_or_else(|(_, code)| panic!("setting {key} of {topic}: {code}"));
    }
    // The controller has taken the change; wait until the broker describes it, which it does once
    // it applies it.
    let resource = ResourceSpecifier::Topic(topic);
    wait_for(
        &format!("{key} of {topic} applied"),
        Duration::from_secs(30),
        || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(admin.describe_configs([&resource], &options))
                .ok()
                .and_then(|mut results| results.pop())
                .and_then(Result::ok)
                .and_then(|described| described.get(key).and_then(|e| e.value.clone()))
                .is_some_and(|applied| applied == value)
        },
    );
}

/// A realistic corpus: generated calls plus lines the core rejects.
pub fn corpus(count: usize, seed: u64) -> Vec<String> {
    let mut lines: Vec<String> = Generator::new(GeneratorConfig {
        seed,
        ..Default::default()
    })
    .take(count)
    .collect();
    for (i, bad) in [
        "",
        "null",
        "{\"body\":{\"telephonySessionId\":\"s-x\",\"parties\":[]}}",
        "{\"uuid\":1,\"body\":{\"telephonySessionId\":\"s-y\",\"parties\":\"oops\"}}",
        "[1,2,3]",
    ]
    .iter()
    .enumerate()
    {
        lines.insert((i * 97) % lines.len().max(1), (*bad).to_owned());
    }
    lines
}

/// What the service must publish for a corpus, per topic: record ids (with multiplicity); and the
/// lines it must turn into dead letters.
pub fn expected(lines: &[String]) -> (BTreeMap<TopicKind, Vec<String>>, Vec<&str>) {
    let mut processor = Processor::new(ProcessorConfig::default());
    let mut out: BTreeMap<TopicKind, Vec<String>> = BTreeMap::new();
    let mut rejected = Vec::new();
    for line in lines {
        let result = processor.process(line.as_bytes(), |r| {
            out.entry(r.topic())
                .or_default()
                .push(r.record_id().to_owned());
            Ok(())
        });
        if result.is_err() {
            rejected.push(line.as_str());
        }
    }
    for ids in out.values_mut() {
        ids.sort();
    }
    (out, rejected)
}

pub fn produce(topic: &str, lines: &[String]) {
    let producer = InputProducer::new();
    for (i, line) in lines.iter().enumerate() {
        producer.send(topic, i, line);
    }
    producer.finish();
}

/// `produce`, every record with this timestamp (epoch milliseconds).
pub fn produce_at(topic: &str, lines: &[String], timestamp_ms: i64) {
    let producer = InputProducer::new();
    for (i, line) in lines.iter().enumerate() {
        producer.send_at(topic, i, line, Some(timestamp_ms));
    }
    producer.finish();
}

/// Produces `lines` as a steady stream, `PACED_CHUNK` every `PACED_TICK` (up to 2,000 a second),
/// until `stop` is set or the lines run out, and returns the lines produced. Load that lasts while
/// a test does something else.
pub fn produce_paced(
    topic: &str,
    lines: impl IntoIterator<Item = String>,
    stop: &AtomicBool,
) -> Vec<String> {
    let producer = InputProducer::new();
    let mut produced = Vec::new();
    for (i, line) in lines.into_iter().enumerate() {
        if i % PACED_CHUNK == 0 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            if i > 0 {
                std::thread::sleep(PACED_TICK);
            }
        }
        producer.send(topic, i, &line);
        produced.push(line);
    }
    producer.finish();
    produced
}

/// Small and frequent, so that callstream always has records of the last few milliseconds'
/// input in flight (its `linger.ms` is 50).
const PACED_CHUNK: usize = 10;
const PACED_TICK: Duration = Duration::from_millis(5);

/// The tests' input producer: idempotent, keys `k0` to `k16` in turn, every delivery checked.
struct InputProducer {
    producer: ThreadedProducer<CountFailures>,
    failures: Arc<AtomicUsize>,
}

/// Counts the records the broker did not take.
struct CountFailures(Arc<AtomicUsize>);

impl ClientContext for CountFailures {}

impl ProducerContext for CountFailures {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if result.is_err() {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl InputProducer {
    fn new() -> InputProducer {
        let failures = Arc::new(AtomicUsize::new(0));
        let producer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap())
            .set("enable.idempotence", "true")
            .create_with_context(CountFailures(failures.clone()))
            .expect("producer");
        InputProducer { producer, failures }
    }

    /// Sends the `i`th line, waiting while the producer's queue is full.
    fn send(&self, topic: &str, i: usize, line: &str) {
        self.send_at(topic, i, line, None);
    }

    /// `send`, with this timestamp (default: the time it is sent).
    fn send_at(&self, topic: &str, i: usize, line: &str, timestamp_ms: Option<i64>) {
        let key = format!("k{}", i % 17);
        let mut record = BaseRecord::to(topic)
            .payload(line.as_bytes())
            .key(key.as_bytes());
        if let Some(ms) = timestamp_ms {
            record = record.timestamp(ms);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    self.producer.poll(Duration::from_millis(10));
                }
                Err((error, _)) => panic!("producing test input to {topic}: {error}"),
            }
        }
    }

    /// Waits until every line is delivered; fails the test if any was not.
    fn finish(self) {
        if let Err(error) = self.producer.flush(Duration::from_secs(60)) {
            // Seen once after a broker restart: say what the producer knows, for next time.
            panic!(
                "test input not flushed within 60 s: {error}; {} records still queued; fatal error: {:?}",
                self.producer.in_flight_count(),
                self.producer.client().fatal_error()
            );
        }
        let failures = self.failures.load(Ordering::Relaxed);
        assert_eq!(failures, 0, "test input records not delivered");
    }
}

/// One record read back.
#[derive(Debug, Clone)]
pub struct ReadRecord {
    pub partition: i32,
    pub key: Option<String>,
    pub value: Vec<u8>,
    pub headers: BTreeMap<String, String>,
    pub timestamp: Option<i64>,
}

/// Reads a whole topic with `read_committed`, from the beginning to the current end.
pub fn read_topic(topic: &str) -> Vec<ReadRecord> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", "callstream-test-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions: Vec<i32> = metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for &p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("watermarks");
        if high > low {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
            ends.insert(p, high);
        }
    }
    let mut records = Vec::new();
    if ends.is_empty() {
        return records;
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut position: BTreeMap<i32, i64> = BTreeMap::new();
    // read_committed stops at the last stable offset; transaction markers occupy offsets too, so
    // reading ends when every partition's position reached its end or nothing more arrives.
    let mut idle_polls = 0;
    while Instant::now() < deadline && idle_polls < 20 {
        let done = ends
            .iter()
            .all(|(p, end)| position.get(p).is_some_and(|pos| pos + 1 >= *end));
        // A partition whose last offsets are transaction markers never hands out its last offset;
        // the consumer's position moves past the markers.
        let past_markers = || {
            consumer.position().is_ok_and(|tpl| {
                ends.iter().all(|(&p, &end)| {
                    matches!(tpl.find_partition(topic, p).map(|e| e.offset()), Some(Offset::Offset(o)) if o >= end)
                })
            })
        };
        if done || past_markers() {
            break;
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                idle_polls = 0;
                position.insert(m.partition(), m.offset());
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|x| {
                                (
                                    x.key.to_owned(),
                                    String::from_utf8_lossy(x.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                records.push(ReadRecord {
                    partition: m.partition(),
                    key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    value: m.payload().unwrap_or_default().to_vec(),
                    headers,
                    timestamp: m.timestamp().to_millis(),
                });
            }
            _ => idle_polls += 1,
        }
    }
    records
}

/// Polls `condition` every 200 ms until it holds or `timeout` passes.
pub fn wait_for(what: &str, timeout: Duration, condition: impl FnMut() -> bool) {
    wait_for_or_explain(what, timeout, condition, String::new);
}

/// `wait_for`, with `explain()` (the state of what was waited on) in the failure message.
pub fn wait_for_or_explain(
    what: &str,
    timeout: Duration,
    mut condition: impl FnMut() -> bool,
    explain: impl FnOnce() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        if Instant::now() >= deadline {
            panic!("timed out waiting for {what}\n{}", explain());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The record id of a derived record, decoded with its schema.
pub fn record_id(kind: TopicKind, value: &[u8]) -> String {
    let datum = callstream::core::framing::decode_value(kind, value)
        .expect("decodes with the shipped schema and framing");
    let json = serde_json::Value::try_from(datum).expect("json");
    json["record_id"].as_str().expect("record_id").to_owned()
}

/// A running `callstream run` process.
pub struct Service {
    pub child: Child,
    /// Where its standard error goes, when started with `start_logged`.
    log: Option<std::path::PathBuf>,
}

impl Service {
    pub fn start(topics: &TopicNames, group: &str, extra: &[&str]) -> Service {
        let child = Self::command(topics, group, extra)
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn callstream run");
        Service { child, log: None }
    }

    /// Like `start`, with standard error written to a file that `log` reads.
    pub fn start_logged(topics: &TopicNames, group: &str, extra: &[&str]) -> Service {
        let path = std::env::temp_dir().join(format!(
            "callstream-test-{}-{group}.log",
            std::process::id()
        ));
        let file = std::fs::File::create(&path).expect("log file");
        let child = Self::command(topics, group, extra)
            .stderr(file)
            .spawn()
            .expect("spawn callstream run");
        Service {
            child,
            log: Some(path),
        }
    }

    /// What the service wrote to standard error so far (`start_logged`).
    pub fn log(&self) -> String {
        self.log
            .as_ref()
            .and_then(|path| std::fs::read_to_string(path).ok())
            .unwrap_or_default()
    }

    fn command(topics: &TopicNames, group: &str, extra: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_callstream"));
        command
            .args([
                "run",
                "--bootstrap-servers",
                &bootstrap(),
                "--group-id",
                group,
            ])
            .args(topic_flags(topics))
            .args(extra)
            .env("CALLSTREAM_LOG", "callstream=info,warn")
            .stdout(Stdio::null());
        command
    }

    /// For a failure message: the service's own metrics (without histogram buckets) and, where gdb
    /// is installed, where its threads are blocked in librdkafka or callstream.
    pub fn diagnostics(&self, metrics_address: &str) -> String {
        let metrics: String = http_get(&format!("http://{metrics_address}/metrics"))
            .1
            .lines()
            .filter(|l| l.starts_with("callstream_") && !l.contains("_bucket"))
            .map(|l| format!("  {l}\n"))
            .collect();
        let stacks = Command::new("gdb")
            .args(["-p", &self.child.id().to_string(), "-batch"])
            .args(["-ex", "thread apply all bt 12"])
            .stderr(Stdio::null())
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .filter(|l| {
                        l.starts_with("Thread ")
                            || l.contains(" rd_kafka_")
                            || l.contains("callstream::")
                    })
                    .map(|l| format!("  {l}\n"))
                    .collect::<String>()
            })
            .unwrap_or_else(|_| "  (gdb not installed)\n".into());
        format!("callstream metrics:\n{metrics}callstream threads:\n{stacks}")
    }

    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status();
    }

    /// SIGTERM, then the exit status within `timeout`.
    pub fn stop(mut self, timeout: Duration) -> std::process::ExitStatus {
        self.signal("-TERM");
        self.exit_status(timeout, "of SIGTERM")
    }

    /// The exit status of a process expected to stop on its own, within `timeout`.
    pub fn exit_within(&mut self, timeout: Duration) -> std::process::ExitStatus {
        self.exit_status(timeout, "on its own")
    }

    fn exit_status(&mut self, timeout: Duration, how: &str) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "callstream did not exit within {timeout:?} {how}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(path) = &self.log {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Committed offsets of a group on a topic, summed over partitions; -1 while the broker cannot say
/// (a coordinator moving after a broker restart).
pub fn committed_total(group: &str, topic: &str, partitions: i32) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let Ok(committed) = consumer.committed_offsets(tpl, Duration::from_secs(10)) else {
        return -1;
    };
    committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .sum()
}

/// The sum of a topic's end offsets: up to the last committed transaction (librdkafka's default
/// `read_committed`), or, with `uncommitted`, up to the last record written.
pub fn end_total(topic: &str, partitions: i32) -> i64 {
    end_offsets_total(topic, partitions, "read_committed")
}

pub fn end_total_uncommitted(topic: &str, partitions: i32) -> i64 {
    end_offsets_total(topic, partitions, "read_uncommitted")
}

fn end_offsets_total(topic: &str, partitions: i32, isolation: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("isolation.level", isolation)
        .create()
        .expect("consumer");
    (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks")
                .1
        })
        .sum()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// GET a URL; `(0, "")` when nothing answers.
pub fn http_get(url: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    match agent.get(url).call() {
        Ok(mut r) => (
            r.status().as_u16(),
            r.body_mut().read_to_string().unwrap_or_default(),
        ),
        Err(_) => (0, String::new()),
    }
}

/// The sum of the samples of a metric whose series starts with `prefix` on a service's /metrics.
pub fn metric(address: &str, prefix: &str) -> f64 {
    http_get(&format!("http://{address}/metrics"))
        .1
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Runs `scripts/kafka.sh <command>` on the test broker.
pub fn broker(command: &str) {
    let status = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kafka.sh"))
        .arg(command)
        .stdout(Stdio::null())
        .status()
        .expect("run scripts/kafka.sh");
    assert!(status.success(), "kafka.sh {command} failed");
}
