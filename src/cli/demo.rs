//! `callstream demo`: the real service loop against librdkafka's in-process mock cluster, fed with
//! the bundled samples and generated call traffic. Nothing to install.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::{Offset, TopicPartitionList};

use super::generate::{produce_lines, Target};
use super::report::now_ms;
use super::service::{run_service, start_http, stop_on_signal};
use super::DemoArgs;
use crate::core::framing::decode_value;
use crate::core::TopicKind;
use crate::generate::{Generator, GeneratorConfig};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::service::dead_letters::header;
use crate::service::ServiceConfig;
use crate::topics::TopicNames;

/// Sample notifications shipped with the binary: the official example, one of each other shape,
/// and a few that are rejected, so that the dead-letter topic is not empty.
const SAMPLES: &str = include_str!("../../samples/demo.jsonl");
const PARTITIONS: i32 = 3;

/// `callstream demo`.
pub fn demo(args: DemoArgs) -> ExitCode {
    let level = args
        .log
        .log_level
        .clone()
        .unwrap_or_else(|| "callstream=info,warn".into());
    // As `run` refuses it: a filter that does not parse would leave only errors logged.
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&level) {
        eprintln!("callstream demo: invalid setting log.level: {level:?}: {e}");
        return ExitCode::from(2);
    }
    crate::logging::init(args.log.log_format, Some(&level));
    match run_demo(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("callstream demo: {e}");
            ExitCode::from(1)
        }
    }
}

fn run_demo(args: &DemoArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let cluster: MockCluster<'static, DefaultProducerContext> = MockCluster::new(1)?;
    let bootstrap = cluster.bootstrap_servers();
    let topics = TopicNames::default();
    cluster.create_topic(&topics.input, PARTITIONS, 1)?;
    for topic in topics.outputs() {
        cluster.create_topic(topic, PARTITIONS, 1)?;
    }
    println!("mock Kafka cluster at {bootstrap}");

    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let stop = Arc::new(AtomicBool::new(false));
    let feed = Arc::new(Feed::default());
    let mut config = ServiceConfig::new(&bootstrap, "callstream-demo");
    // The mock cluster does not describe topic configurations: asking would wait out a timeout.
    config.read_topic_limits = false;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let started = Instant::now();
    let mut feeder = None;
    let code = runtime.block_on(async {
        start_http(args.metrics_addr, &metrics, &health).await?;
        tokio::spawn(stop_on_signal(stop.clone()));
        feeder = Some(spawn_feeder(
            &bootstrap,
            &topics.input,
            args,
            &metrics,
            &stop,
            &feed,
        ));
        let watcher = {
            let (metrics, stop, feed) = (metrics.clone(), stop.clone(), feed.clone());
            let deadline = started + Duration::from_secs(args.duration);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                loop {
                    tick.tick().await;
                    let fed_all = matches!(feed.result.get(), Some(Ok(_)));
                    if fed_all
                        && done(&metrics) >= feed.delivered()
                        && metrics.in_flight_messages.get() == 0
                    {
                        break;
                    }
                    if feed.result.get().is_some_and(Result::is_err)
                        || Instant::now() >= deadline
                        || stop.load(Ordering::Relaxed)
                    {
                        break;
                    }
                }
                stop.store(true, Ordering::Relaxed);
            })
        };
        let code = run_service(config, metrics.clone(), health, stop.clone()).await;
        watcher.abort();
        Ok::<_, std::io::Error>(code)
    })?;
    // The service has stopped: a feeder waiting for it to catch up gives up.
    stop.store(true, Ordering::Relaxed);
    if let Some(feeder) = feeder {
        let _ = feeder.join();
    }
    let (read, fed) = (done(&metrics), feed.delivered());
    let complete =
        matches!(feed.result.get(), Some(Ok(_))) && !feed.cut_short.load(Ordering::Relaxed);
    if complete {
        println!("fed {fed} notifications to {}", topics.input);
    } else {
        println!(
            "fed {fed} notifications to {} before stopping",
            topics.input
        );
    }
    println!("ran for {:.1}s", started.elapsed().as_secs_f64());
    print_summary(&bootstrap, &topics, &metrics, args.examples)?;
    drop(cluster);
    if read < fed || !complete {
        let why = if feed.result.get().is_some_and(Result::is_err) {
            "feeding failed, see above".to_owned()
        } else if started.elapsed() >= Duration::from_secs(args.duration) {
            format!("--duration {} s", args.duration)
        } else {
            "a signal, or an error above".to_owned()
        };
        println!(
            "\nstopped before the end ({why}): {read} of the {} notifications were read",
            SAMPLES.lines().filter(|l| !l.is_empty()).count() + args.count,
        );
        return Ok(ExitCode::from(1));
    }
    Ok(code)
}

/// Feeds the samples and `count` generated notifications to the input topic on a thread of its
/// own, at most `FEED_AHEAD` ahead of what the service has read, until done or `stop`.
fn spawn_feeder(
    bootstrap: &str,
    topic: &str,
    args: &DemoArgs,
    metrics: &Arc<Metrics>,
    stop: &Arc<AtomicBool>,
    feed: &Arc<Feed>,
) -> std::thread::JoinHandle<()> {
    let (metrics, stop, feed) = (metrics.clone(), stop.clone(), feed.clone());
    let (bootstrap, topic, seed, count) = (
        bootstrap.to_owned(),
        topic.to_owned(),
        args.seed,
        args.count,
    );
    std::thread::spawn(move || {
        let samples = SAMPLES.lines().filter(|l| !l.is_empty()).map(str::to_owned);
        let generated = Generator::new(GeneratorConfig {
            seed,
            duplicate_rate: 0.01,
            reorder_rate: 0.02,
            webhook_only: false,
            // Times from now, not the generator's fixed 2023: the lag metrics then read
            // seconds, not years.
            start_ms: Some(now_ms()),
            mix: Default::default(),
        })
        .take(count);
        let target = Target {
            bootstrap: &bootstrap,
            topic: &topic,
            properties: &Default::default(),
        };
        // Fed while the service reads: the mock cluster keeps only the last 5 MiB of each
        // partition, so a backlog fed whole first would lose its oldest messages.
        let paced = samples.chain(generated).map_while(|line| {
            loop {
                if stop.load(Ordering::Relaxed) {
                    feed.cut_short.store(true, Ordering::Relaxed);
                    return None;
                }
                let ahead = feed
                    .sent
                    .load(Ordering::Relaxed)
                    .saturating_sub(done(&metrics));
                if ahead < FEED_AHEAD {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            feed.sent.fetch_add(1, Ordering::Relaxed);
            Some((None, line))
        });
        let result = produce_lines(paced, &target);
        if let Err(e) = &result {
            eprintln!("callstream demo: feeding {topic} failed: {e}");
            stop.store(true, Ordering::Relaxed);
        }
        feed.result.set(result.map_err(|e| e.to_string())).ok();
    })
}

/// How far the service reading the demo's input may fall behind the feeder, in notifications:
/// about 4 MB, well within what the mock cluster keeps of the input's three partitions.
const FEED_AHEAD: u64 = 5_000;

/// What the feeder has done.
#[derive(Default)]
struct Feed {
    /// Notifications handed to the producer so far.
    sent: std::sync::atomic::AtomicU64,
    /// Set when feeding ends: how many were delivered, or why it failed.
    result: std::sync::OnceLock<Result<u64, String>>,
    /// Set when feeding stopped with the service, before the last notification.
    cut_short: AtomicBool,
}

impl Feed {
    /// Notifications delivered to the input topic: all of those sent, until feeding ends.
    fn delivered(&self) -> u64 {
        match self.result.get() {
            Some(Ok(n)) => *n,
            _ => self.sent.load(Ordering::Relaxed),
        }
    }
}

/// Input messages the service has read through: processed, rejected or suppressed.
fn done(metrics: &Metrics) -> u64 {
    ["processed", "rejected", "duplicate"]
        .iter()
        .map(|o| metrics.input_messages.with_label_values(&[o]).get())
        .sum()
}

/// Reads every output topic back and prints counts and decoded examples.
fn print_summary(
    bootstrap: &str,
    topics: &TopicNames,
    metrics: &Metrics,
    examples: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let input: BTreeMap<&str, u64> = ["processed", "rejected", "duplicate"]
        .iter()
        .map(|o| (*o, metrics.input_messages.with_label_values(&[o]).get()))
        .collect();
    println!(
        "\ninput: {} processed, {} rejected (dead letters), {} duplicate notifications suppressed",
        input["processed"], input["rejected"], input["duplicate"]
    );
    println!(
        "records suppressed as duplicates: {}\n",
        metrics.records_suppressed.get()
    );
    let kinds: Vec<(Option<TopicKind>, &str)> = TopicKind::ALL
        .iter()
        .map(|&k| (Some(k), topics.of(k)))
        .chain(std::iter::once((None, topics.dead_letters.as_str())))
        .collect();
    for (kind, topic) in kinds {
        let (count, samples) = read_topic(bootstrap, topic, examples)?;
        println!("{topic}: {count} records");
        for Sample { key, value, why } in samples {
            let shown = match kind {
                Some(kind) => {
                    let datum = decode_value(kind, &value)?;
                    serde_json::Value::try_from(datum)?.to_string()
                }
                None => String::from_utf8_lossy(&value).into_owned(),
            };
            println!("  key={key}  {shown}");
            if let Some(why) = why {
                println!("    {why}");
            }
        }
    }
    Ok(())
}

/// A record's key (as text) and value, and for a dead letter why it is one (from its headers).
struct Sample {
    key: String,
    value: Vec<u8>,
    why: Option<String>,
}

/// `code: reason` of a dead letter, from the headers callstream gives it.
fn dead_letter_reason(message: &impl Message) -> Option<String> {
    use rdkafka::message::Headers;
    let headers = message.headers()?;
    let text = |name: &str| {
        headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    let code = text(header::CODE)?;
    Some(match text(header::REASON) {
        Some(reason) => format!("{code}: {reason}"),
        None => code,
    })
}

fn read_topic(
    bootstrap: &str,
    topic: &str,
    examples: usize,
) -> Result<(u64, Vec<Sample>), Box<dyn std::error::Error>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "callstream-demo-summary")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    let mut remaining = 0i64;
    let mut written = 0i64;
    let mut ends = BTreeMap::new();
    for partition in 0..PARTITIONS {
        let (low, high) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))?;
        // Offsets start at 0 in the demo's new cluster: the end is how many were written, of
        // which the mock cluster keeps the last 5 MiB.
        written += high;
        if high > low {
            assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
            remaining += high - low;
            ends.insert(partition, high);
        }
    }
    let total = written as u64;
    let mut samples = Vec::new();
    if remaining == 0 || examples == 0 {
        return Ok((total, samples));
    }
    consumer.assign(&assignment)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while samples.len() < examples && Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            let key = message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_else(|| "null".into());
            samples.push(Sample {
                key,
                value: message.payload().unwrap_or_default().to_vec(),
                why: dead_letter_reason(&message),
            });
        }
    }
    Ok((total, samples))
}
