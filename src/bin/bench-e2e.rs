//! End-to-end benchmark against a real broker: callstream (the release binary, as a separate
//! process) against a passthrough baseline measured in the same run.
//!
//! For each guarantee it preloads N notifications, then measures
//! - throughput: notifications/s from start until the whole backlog is processed and its offsets
//!   committed, for callstream and for the passthrough (an rdkafka consumer copying the same bytes
//!   to another topic with the same client settings, and under exactly-once the same transactions);
//! - latency: with notifications produced live at a fixed rate, p50/p99 of the time from the
//!   input record's timestamp until its party record is readable (read_committed);
//! - peak RSS of the callstream process (VmHWM);
//! - a ceiling: the passthrough loop writing the records callstream's core makes of each message
//!   instead of the bytes (no second thread, no per-record delivery tracking), which bounds what any
//!   service built on this core can reach on the same machine;
//! - CPU time per notification (user + system, from /proc) of callstream, of the passthrough, and
//!   of the broker while each ran (`--broker-pid`), which says where the time goes when the
//!   broker and the clients share the machine's cores.
//!
//! Before the first run the broker is warmed up (its JIT compiles the hot paths) with a discarded
//! passthrough over a small topic: the first pass through a cold broker is several times slower.
//!
//! Run it with `scripts/bench-e2e.sh`, which starts and stops the broker. The last lines are
//! `e2e <guarantee>: <N> notifications/s, passthrough: <M>/s, ratio <R>` (medians over runs).

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use callstream::core::framing::ValueFormat;
use callstream::core::{Processor, ProcessorConfig, TopicKind};
use callstream::generate::{Generator, GeneratorConfig};
use callstream::service::clients::{consumer_config, producer_config};
use callstream::service::{Guarantee, ServiceConfig};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer,
};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

const PARTITIONS: i32 = 3;

struct Options {
    bootstrap: String,
    count: usize,
    runs: usize,
    rate: u64,
    latency_seconds: u64,
    broker_pid: Option<u32>,
}

fn options() -> Options {
    let mut o = Options {
        bootstrap: std::env::var("CALLSTREAM_BOOTSTRAP_SERVERS")
            .unwrap_or_else(|_| "127.0.0.1:9092".into()),
        count: 200_000,
        runs: 3,
        rate: 2_000,
        latency_seconds: 10,
        broker_pid: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--bootstrap-servers" => o.bootstrap = value,
            "--count" => o.count = value.parse().expect("--count N"),
            "--runs" => o.runs = value.parse().expect("--runs N"),
            "--rate" => o.rate = value.parse().expect("--rate N"),
            "--latency-seconds" => o.latency_seconds = value.parse().expect("--latency-seconds N"),
            "--broker-pid" => o.broker_pid = Some(value.parse().expect("--broker-pid PID")),
            "--bench" => {
                i += 1;
                continue;
            }
            other => panic!("unknown argument {other}; see the header of src/bin/bench-e2e.rs"),
        }
        i += 2;
    }
    o
}

/// Creates, for each name, the input topic, the passthrough's copy topic, callstream's outputs and
/// the ceiling's record topics.
fn admin_create(bootstrap: &str, topics: &[&str]) {
    for topic in topics {
        topics_create(bootstrap, &["--input-topic", &format!("{topic}.copy")]);
        topics_create(bootstrap, &topic_flags(topic));
        // The ceiling writes to topics of its own, laid out like callstream's outputs.
        topics_create(bootstrap, &topic_flags(&ceiling_base(topic)));
    }
}

fn ceiling_base(topic: &str) -> String {
    format!("{topic}.ceiling")
}

/// `callstream topics create --include-input` with these topic flags.
fn topics_create(bootstrap: &str, flags: &[impl AsRef<std::ffi::OsStr>]) {
    let status = Command::new(callstream_exe())
        .args([
            "topics",
            "create",
            "--bootstrap-servers",
            bootstrap,
            "--include-input",
        ])
        .args(["--partitions", &PARTITIONS.to_string()])
        .args(flags)
        .stdout(Stdio::null())
        .status()
        .expect("topics create");
    assert!(status.success());
}

/// Topic flags of callstream for an input topic `topic`: outputs are `<topic>.<role>`.
fn topic_flags(topic: &str) -> Vec<String> {
    let mut flags = vec!["--input-topic".to_owned(), topic.to_owned()];
    for (flag, suffix) in [
        ("--parties-topic", "parties"),
        ("--missed-topic", "missed"),
        ("--recorded-topic", "recorded"),
        ("--transfers-topic", "transfers"),
        ("--dead-letter-topic", "dlq"),
    ] {
        flags.push(flag.to_owned());
        flags.push(format!("{topic}.{suffix}"));
    }
    flags
}

fn callstream_exe() -> std::path::PathBuf {
    let me = std::env::current_exe().expect("own path");
    me.parent().expect("bin dir").join("callstream")
}

fn preload(bootstrap: &str, topic: &str, count: usize, seed: u64) -> u64 {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("enable.idempotence", "true")
        .create()
        .expect("producer");
    let mut bytes = 0u64;
    for line in Generator::new(GeneratorConfig {
        seed,
        ..Default::default()
    })
    .take(count)
    {
        bytes += line.len() as u64;
        let mut record = BaseRecord::<(), String>::to(topic).payload(&line);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(5));
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
    bytes
}

fn committed(bootstrap: &str, group: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(topic, p);
    }
    consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .map(|c| {
            c.elements()
                .iter()
                .map(|e| match e.offset() {
                    Offset::Offset(o) => o,
                    _ => 0,
                })
                .sum()
        })
        .unwrap_or(-1)
}

struct Acks(Arc<AtomicU64>);
impl ClientContext for Acks {}
impl ProducerContext for Acks {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if result.is_ok() {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What the passthrough loop writes for each message it reads.
#[derive(Clone, Copy, PartialEq)]
enum Writes {
    /// The baseline: the same bytes.
    Bytes,
    /// A ceiling for any service built on callstream's core: the records callstream's core makes
    /// of the message (`Processor::process`, Avro), to topics laid out like callstream's outputs,
    /// with none of the service around it (no second thread, no per-record delivery tracking,
    /// offsets stored once at the end).
    Records,
}

/// The baseline: consume and copy bytes with callstream's own client settings.
fn passthrough(o: &Options, topic: &str, guarantee: Guarantee, group: &str) -> (f64, Cpu) {
    passthrough_copying(o, topic, guarantee, group, Writes::Bytes)
}

fn passthrough_copying(
    o: &Options,
    topic: &str,
    guarantee: Guarantee,
    group: &str,
    writes: Writes,
) -> (f64, Cpu) {
    let (client_before, broker_before) = (cpu_seconds(None), cpu_seconds(o.broker_pid));
    let rate = passthrough_rate(o, topic, guarantee, group, writes);
    let per_message = |seconds: f64| seconds * 1e6 / o.count as f64;
    let cpu = Cpu {
        client_us: per_message(cpu_seconds(None) - client_before),
        broker_us: per_message(cpu_seconds(o.broker_pid) - broker_before),
    };
    (rate, cpu)
}

fn passthrough_rate(
    o: &Options,
    topic: &str,
    guarantee: Guarantee,
    group: &str,
    writes: Writes,
) -> f64 {
    let mut processor = Processor::new(ProcessorConfig::default());
    // The ceiling's record topics, indexed like `TopicKind::ALL` (as `topic_flags` names them).
    let record_topics =
        TopicKind::ALL.map(|kind| format!("{}.{}", ceiling_base(topic), kind.label()));
    let value_format = ValueFormat::single_object().expect("schemas");
    let mut value = Vec::with_capacity(4096);
    let mut sent = 0u64;
    let mut config = ServiceConfig::new(&o.bootstrap, group);
    config.guarantee = guarantee;
    let txn_id = format!("{group}-txn");
    let transactional = guarantee == Guarantee::ExactlyOnce;
    let acks = Arc::new(AtomicU64::new(0));
    // Timed from before the clients exist, as callstream is timed from its spawn: both pay for
    // connecting to the broker.
    let started = Instant::now();
    let producer: ThreadedProducer<Acks> =
        producer_config(&config, transactional.then_some(txn_id.as_str()))
            .create_with_context(Acks(acks.clone()))
            .expect("producer");
    let consumer: BaseConsumer = consumer_config(&config, 0).create().expect("consumer");
    if transactional {
        producer
            .init_transactions(Duration::from_secs(30))
            .expect("init");
        producer.begin_transaction().expect("begin");
    }
    consumer.subscribe(&[topic]).expect("subscribe");
    let target = format!("{topic}.copy");
    let mut copied = 0usize;
    let mut positions: BTreeMap<i32, i64> = BTreeMap::new();
    let mut txn_started = Instant::now();
    let commit = |positions: &mut BTreeMap<i32, i64>, consumer: &BaseConsumer| {
        let mut tpl = TopicPartitionList::new();
        for (p, o) in positions.iter() {
            tpl.add_partition_offset(topic, *p, Offset::Offset(*o))
                .unwrap();
        }
        if transactional {
            producer
                .send_offsets_to_transaction(
                    &tpl,
                    &consumer.group_metadata().unwrap(),
                    Duration::from_secs(30),
                )
                .expect("offsets");
            producer
                .commit_transaction(Duration::from_secs(30))
                .expect("commit");
            producer.begin_transaction().expect("begin");
        } else if !tpl.elements().is_empty() {
            consumer.store_offsets(&tpl).expect("store");
        }
    };
    while copied < o.count {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
            let payload = m.payload().unwrap_or_default();
            if writes == Writes::Bytes {
                send_until_queued(&producer, &target, m.key(), payload);
                sent += 1;
            } else {
                processor
                    .process(payload, |record| {
                        value.clear();
                        value_format.write_value(record, &mut value);
                        let key = record.key();
                        let to = &record_topics[record.topic().index()];
                        send_until_queued(&producer, to, Some(key.as_bytes()), &value);
                        sent += 1;
                        Ok(())
                    })
                    .expect("generated traffic is valid");
            }
            positions.insert(m.partition(), m.offset() + 1);
            copied += 1;
        }
        if transactional && txn_started.elapsed() >= config.commit_interval && !positions.is_empty()
        {
            commit(&mut positions, &consumer);
            positions.clear();
            txn_started = Instant::now();
        }
    }
    if transactional {
        commit(&mut positions, &consumer);
    } else {
        // No `flush`: it would send the last batches before `linger.ms` is up, which callstream,
        // not knowing where the backlog ends, cannot do. Both wait out the linger.
        let deadline = Instant::now() + Duration::from_secs(60);
        while acks.load(Ordering::Relaxed) < sent {
            assert!(
                Instant::now() < deadline,
                "passthrough records not acknowledged"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        commit(&mut positions, &consumer);
        consumer
            .commit_consumer_state(rdkafka::consumer::CommitMode::Sync)
            .expect("commit");
    }
    o.count as f64 / started.elapsed().as_secs_f64()
}

fn send_until_queued(
    producer: &ThreadedProducer<Acks>,
    topic: &str,
    key: Option<&[u8]>,
    payload: &[u8],
) {
    let mut record = BaseRecord::<[u8], [u8]>::to(topic).payload(payload);
    if let Some(k) = key {
        record = record.key(k);
    }
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((_, r)) => {
                record = r;
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// Reads callstream's metrics endpoint, one request per poll: each scrape costs CPU on the machine
/// callstream is being measured on. (callstream closes each connection, so the agent reuses none.)
struct Scraper {
    agent: ureq::Agent,
    url: String,
}

impl Scraper {
    fn new(address: &str) -> Self {
        Self {
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(5)))
                .build()
                .into(),
            url: format!("http://{address}/metrics"),
        }
    }

    /// The metrics text, empty while the endpoint cannot be reached.
    fn scrape(&self) -> String {
        self.agent
            .get(&self.url)
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
            .unwrap_or_default()
    }
}

/// The sum of the series whose line starts with `prefix`.
fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_callstream(
    o: &Options,
    topic: &str,
    group: &str,
    guarantee: Guarantee,
    address: &str,
) -> Child {
    Command::new(callstream_exe())
        .args([
            "run",
            "--bootstrap-servers",
            &o.bootstrap,
            "--group-id",
            group,
        ])
        .args([
            "--guarantee",
            guarantee.as_str(),
            "--transactional-id",
            &format!("{group}-txn"),
        ])
        .args(topic_flags(topic))
        .args(["--metrics-addr", address, "--log-level", "warn"])
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn callstream")
}

/// CPU time (user + system) a process has used so far, in seconds; 0 if it cannot be read.
fn cpu_seconds(pid: Option<u32>) -> f64 {
    let path = pid.map_or_else(
        || "/proc/self/stat".to_owned(),
        |p| format!("/proc/{p}/stat"),
    );
    let Ok(stat) = std::fs::read_to_string(path) else {
        return 0.0;
    };
    // Fields after the parenthesised command name: utime and stime are the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<f64>().ok())
        .sum();
    ticks / 100.0
}

/// CPU use of one measured phase, in microseconds per notification.
#[derive(Clone, Copy, Default)]
struct Cpu {
    client_us: f64,
    broker_us: f64,
}

fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// Throughput of callstream on the preloaded backlog, its peak RSS, and the longest wait of an
/// unacknowledged message it reported meanwhile (what the delivery-stall alert watches: how high
/// it goes while a backlog is read at full speed).
fn callstream_backlog(
    o: &Options,
    topic: &str,
    guarantee: Guarantee,
    group: &str,
) -> (f64, f64, Cpu, f64) {
    let address = format!("127.0.0.1:{}", free_port());
    let broker_before = cpu_seconds(o.broker_pid);
    let started = Instant::now();
    let child = start_callstream(o, topic, group, guarantee, &address);
    let deadline = Instant::now() + Duration::from_secs(600);
    let scraper = Scraper::new(&address);
    let mut oldest_unacknowledged: f64 = 0.0;
    loop {
        // Done when every record is acknowledged (at-least-once; the offsets follow with the next
        // auto-commit) or when every offset is committed with its transaction (exactly-once).
        let metrics = scraper.scrape();
        oldest_unacknowledged = oldest_unacknowledged.max(metric(
            &metrics,
            "callstream_oldest_unacknowledged_seconds ",
        ));
        let caught_up = metric(&metrics, "callstream_input_messages_total") >= o.count as f64
            && metric(&metrics, "callstream_in_flight_messages ") == 0.0
            && (guarantee == Guarantee::AtLeastOnce
                || committed(&o.bootstrap, group, topic) >= o.count as i64);
        if caught_up {
            break;
        }
        assert!(Instant::now() < deadline, "callstream did not catch up");
        std::thread::sleep(Duration::from_millis(20));
    }
    let rate = o.count as f64 / started.elapsed().as_secs_f64();
    let rss = peak_rss_mib(child.id());
    let per_message = |seconds: f64| seconds * 1e6 / o.count as f64;
    let cpu = Cpu {
        client_us: per_message(cpu_seconds(Some(child.id()))),
        broker_us: per_message(cpu_seconds(o.broker_pid) - broker_before),
    };
    stop(child);
    (rate, rss, cpu, oldest_unacknowledged)
}

/// Latency p50/p99 (ms) with live traffic at a fixed rate.
fn callstream_latency(o: &Options, guarantee: Guarantee, run: usize) -> (f64, f64) {
    let topic = format!(
        "bench-live-{}-{}-{run}",
        std::process::id(),
        guarantee.as_str()
    );
    admin_create(&o.bootstrap, &[&topic]);
    let group = format!("{topic}-group");
    let address = format!("127.0.0.1:{}", free_port());
    let child = start_callstream(o, &topic, &group, guarantee, &address);
    let scraper = Scraper::new(&address);
    while metric(
        &scraper.scrape(),
        "callstream_rebalances_total{kind=\"assign\"}",
    ) < 1.0
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Assigned, not subscribed: a group join would delay the first reads, and that delay would
    // be counted as callstream's latency.
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &o.bootstrap)
        .set("group.id", format!("{topic}-reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("reader");
    let mut partitions = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        partitions
            .add_partition_offset(&format!("{topic}.parties"), p, Offset::Beginning)
            .expect("partition");
    }
    reader.assign(&partitions).expect("assign");
    // The upstream producer batches as connectors do (librdkafka's default linger). With 0, each
    // of the 2,000 notifications a second was a produce request of its own, which kept the broker
    // at a whole CPU of this machine's two and inflated the latency measured (p99 80-290 ms
    // against 60-70 ms). The timestamp is taken at send, so the linger counts as latency.
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &o.bootstrap)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let total = (o.rate * o.latency_seconds) as usize;
    let mut lines = Generator::new(GeneratorConfig {
        seed: 99,
        webhook_only: true,
        ..Default::default()
    });
    // Warm-up, not measured: the first records wait for the producer to learn the new output
    // topics' leaders, a start-up cost rather than latency. Measuring starts once a party record
    // made it through.
    let warm_up_deadline = Instant::now() + Duration::from_secs(60);
    let mut warm = false;
    while !warm {
        assert!(
            Instant::now() < warm_up_deadline,
            "no party record within a minute"
        );
        let line = lines.next().unwrap_or_default();
        let _ = producer.send(BaseRecord::<(), String>::to(&topic).payload(&line));
        producer.poll(Duration::ZERO);
        let until = Instant::now() + Duration::from_millis(100);
        while !warm && Instant::now() < until {
            warm = matches!(reader.poll(Duration::from_millis(10)), Some(Ok(_)));
        }
    }
    // Party records of the warm-up still on their way are read, not counted.
    while reader.poll(Duration::from_millis(300)).is_some() {}
    let started = Instant::now();
    let mut sent = 0usize;
    let mut latencies = Vec::with_capacity(total);
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    let deadline = started + Duration::from_secs(o.latency_seconds + 60);
    while Instant::now() < deadline && (sent < total || latencies.len() < total * 9 / 10) {
        while sent < total && started.elapsed().as_secs_f64() * o.rate as f64 >= sent as f64 {
            let line = lines.next().unwrap_or_default();
            let _ = producer.send(
                BaseRecord::<(), String>::to(&topic)
                    .payload(&line)
                    .timestamp(now_ms()),
            );
            sent += 1;
        }
        producer.poll(Duration::ZERO);
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(1)) {
            if let Some(ts) = m.timestamp().to_millis() {
                latencies.push((now_ms() - ts) as f64);
            }
        }
    }
    stop(child);
    latencies.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    (q(0.5), q(0.99))
}

/// Runs a discarded passthrough over a small topic so that the broker's JIT has compiled the
/// produce and fetch paths before anything is measured.
fn warm_up(o: &Options) {
    let topic = format!("bench-warmup-{}", std::process::id());
    admin_create(&o.bootstrap, &[&topic]);
    let count = o.count.min(50_000);
    preload(&o.bootstrap, &topic, count, 0);
    let warm = Options {
        bootstrap: o.bootstrap.clone(),
        count,
        broker_pid: o.broker_pid,
        ..*o
    };
    for guarantee in [Guarantee::AtLeastOnce, Guarantee::ExactlyOnce] {
        let group = format!("{topic}-{}", guarantee.as_str());
        let (rate, _) = passthrough(&warm, &topic, guarantee, &group);
        println!(
            "  warm-up ({}, discarded): passthrough {rate:.0}/s over {count} notifications",
            guarantee.as_str()
        );
    }
}

/// The median; of an even number of runs, the mean of the middle two (not the larger one).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let mid = v.len() / 2;
    if v.len() % 2 == 0 {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    }
}

fn spread(v: &[f64]) -> String {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{min:.0}..{max:.0}")
}

fn main() {
    let o = options();
    println!(
        "bench-e2e: {} notifications, {} runs, broker {}, latency at {}/s for {} s",
        o.count, o.runs, o.bootstrap, o.rate, o.latency_seconds
    );
    warm_up(&o);
    let mut lines = Vec::new();
    for guarantee in [Guarantee::AtLeastOnce, Guarantee::ExactlyOnce] {
        let (mut ours, mut base, mut ceiling, mut rss, mut p50, mut p99) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for run in 0..o.runs {
            let topic = format!("bench-{}-{}-{run}", std::process::id(), guarantee.as_str());
            admin_create(&o.bootstrap, &[&topic]);
            let bytes = preload(&o.bootstrap, &topic, o.count, run as u64 + 1);
            let (b, b_cpu) = passthrough(&o, &topic, guarantee, &format!("{topic}-passthrough"));
            let (k, k_cpu) = passthrough_copying(
                &o,
                &topic,
                guarantee,
                &format!("{topic}-ceiling"),
                Writes::Records,
            );
            let (c, r, c_cpu, waited) =
                callstream_backlog(&o, &topic, guarantee, &format!("{topic}-callstream"));
            let (l50, l99) = callstream_latency(&o, guarantee, run);
            println!(
                "  {} run {}: callstream {c:.0}/s, passthrough {b:.0}/s, ratio {:.2}, peak RSS {r:.1} MiB, latency p50 {l50:.0} ms p99 {l99:.0} ms ({} MB preloaded)",
                guarantee.as_str(),
                run + 1,
                c / b,
                bytes / 1_000_000
            );
            println!(
                "    CPU per notification: callstream {:.1} µs + broker {:.1} µs; passthrough {:.1} µs + broker {:.1} µs",
                c_cpu.client_us, c_cpu.broker_us, b_cpu.client_us, b_cpu.broker_us
            );
            println!("    oldest unacknowledged message while the backlog was read: {waited:.0} s at most");
            println!(
                "    ceiling (the passthrough loop writing the core's records): {k:.0}/s, ratio {:.2}; CPU {:.1} µs + broker {:.1} µs",
                k / b,
                k_cpu.client_us,
                k_cpu.broker_us
            );
            ours.push(c);
            base.push(b);
            ceiling.push(k);
            rss.push(r);
            p50.push(l50);
            p99.push(l99);
        }
        println!(
            "  {}: callstream median {:.0}/s (spread {}), passthrough median {:.0}/s (spread {}), peak RSS median {:.1} MiB, latency p50 {:.0} ms, p99 {:.0} ms",
            guarantee.as_str(),
            median(ours.clone()),
            spread(&ours),
            median(base.clone()),
            spread(&base),
            median(rss),
            median(p50),
            median(p99)
        );
        println!(
            "  {}: ceiling median {:.0}/s (spread {}), ratio to the passthrough {:.2}",
            guarantee.as_str(),
            median(ceiling.clone()),
            spread(&ceiling),
            median(ceiling) / median(base.clone())
        );
        let (n, m) = (median(ours), median(base));
        lines.push(format!(
            "e2e {}: {n:.0} notifications/s, passthrough: {m:.0}/s, ratio {:.2}",
            guarantee.as_str(),
            n / m
        ));
    }
    for line in lines {
        println!("{line}");
    }
}
