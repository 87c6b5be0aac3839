//! `callstream generate`: synthetic traffic to stdout, or produced to the input topic.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

use super::report::{now_ms, report, report_librdkafka_error, report_librdkafka_log};
use super::GenerateArgs;
use crate::generate::{Generator, GeneratorConfig, MAX_LIVE_RATE};
use crate::service::clients::ErrorLog;

/// `callstream generate`.
pub fn generate(args: GenerateArgs) -> ExitCode {
    let generator = Generator::new(GeneratorConfig {
        seed: args.seed,
        duplicate_rate: args.duplicates,
        reorder_rate: args.reorder,
        webhook_only: args.webhook_only,
        // Traffic produced to Kafka is live: its times start now, so that lag metrics mean
        // something. Traffic written to stdout stays reproducible byte for byte.
        start_ms: args.bootstrap_servers.as_ref().map(|_| now_ms()),
        mix: args.mix.clone().unwrap_or_default(),
    });
    let result = match &args.bootstrap_servers {
        None => {
            let Some(count) = args.count else {
                eprintln!("callstream: --count is required when writing to stdout");
                return ExitCode::from(2);
            };
            to_stdout(generator, count)
        }
        Some(bootstrap) => {
            if args.count.is_none() && args.rate.is_none() {
                eprintln!("callstream: give --count, --rate, or both");
                return ExitCode::from(2);
            }
            if args.rate.is_some_and(|rate| rate as f64 > MAX_LIVE_RATE) {
                eprintln!(
                    "callstream: --rate is at most {MAX_LIVE_RATE} (live traffic holds the calls in \
                     progress in memory); for more, write a backlog with --count and no --rate"
                );
                return ExitCode::from(2);
            }
            let settings = match args.client.settings().and_then(|mut s| {
                s.kafka.bootstrap_servers.clone_from(bootstrap);
                s.validate_connection().map(|()| s)
            }) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("callstream: {e}");
                    return ExitCode::from(2);
                }
            };
            let topic = args.input_topic.as_ref().unwrap_or(&settings.topics.input);
            let target = Target {
                bootstrap,
                topic,
                properties: &settings.librdkafka_properties(),
            };
            to_kafka(generator, &target, args.count, args.rate)
        }
    };
    match result {
        Ok(n) => {
            eprintln!("generated {n} notifications");
            ExitCode::SUCCESS
        }
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("callstream: {e}");
            ExitCode::from(1)
        }
    }
}

fn to_stdout(generator: Generator, count: u64) -> io::Result<u64> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut n = 0;
    for line in generator.take(count as usize) {
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
        n += 1;
    }
    out.flush()?;
    Ok(n)
}

/// Where generated traffic goes: a topic, and the client settings that reach it.
pub struct Target<'a> {
    pub bootstrap: &'a str,
    pub topic: &'a str,
    /// Security settings and `-X` properties, applied last.
    pub properties: &'a BTreeMap<String, String>,
}

/// Produces lines to a topic; a line with a send time (epoch milliseconds) waits for it.
pub fn produce_lines(
    lines: impl Iterator<Item = (Option<i64>, String)>,
    target: &Target<'_>,
) -> io::Result<u64> {
    let mut config = ClientConfig::new();
    config
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set_log_level(RDKafkaLogLevel::Warning);
    for (key, value) in target.properties {
        // The brokers are the ones named on the command line, whatever a configuration file
        // says (`metadata.broker.list` is librdkafka's other name for them).
        if matches!(key.as_str(), "bootstrap.servers" | "metadata.broker.list") {
            report(&format!("{key} of the configuration or -X ignored: the brokers are those of --bootstrap-servers"));
            continue;
        }
        config.set(key, value);
    }
    config.set("bootstrap.servers", target.bootstrap);
    let topic = target.topic;
    let producer: ThreadedProducer<ReportingContext> = config
        .create_with_context(ReportingContext::default())
        .map_err(io::Error::other)?;
    // Send times are waited for on the monotonic clock, from one reading of both clocks: a
    // change of the wall clock neither stalls nor bursts the traffic.
    let (anchor, anchor_ms) = (Instant::now(), now_ms());
    let mut n = 0u64;
    for (send_at, line) in lines {
        if let Some(at) = send_at {
            let due = anchor + Duration::from_millis(at.saturating_sub(anchor_ms).max(0) as u64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        let mut record: BaseRecord<'_, (), String> = BaseRecord::to(topic).payload(&line);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(io::Error::other(e)),
            }
        }
        n += 1;
    }
    let flushed = producer.flush(Duration::from_secs(60));
    let failed = producer.context().failed.load(Ordering::Relaxed);
    if let Err(error) = flushed {
        return Err(io::Error::other(format!(
            "{error}: {} notifications still unsent, {failed} failed",
            producer.in_flight_count()
        )));
    }
    match failed {
        0 => Ok(n),
        failed => Err(io::Error::other(format!(
            "{failed} of {n} notifications were not delivered"
        ))),
    }
}

/// Says what goes wrong: librdkafka's warnings and errors, and failed deliveries (the first, then
/// one in 10,000), which are counted.
#[derive(Default)]
struct ReportingContext {
    failed: AtomicU64,
    errors: ErrorLog,
}

impl ClientContext for ReportingContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        report_librdkafka_log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        report_librdkafka_error(&self.errors, &error, reason);
    }
}

impl ProducerContext for ReportingContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result {
            let failed = self.failed.fetch_add(1, Ordering::Relaxed) + 1;
            if failed % 10_000 == 1 {
                report(&format!("delivery failed ({failed} so far): {error}"));
            }
        }
    }
}

fn to_kafka(
    generator: Generator,
    target: &Target<'_>,
    count: Option<u64>,
    rate: Option<u64>,
) -> io::Result<u64> {
    let count = count.map_or(usize::MAX, |n| n as usize);
    match rate.filter(|r| *r > 0) {
        // Live: overlapping calls, each notification sent at its envelope time.
        Some(rate) => produce_lines(
            generator
                .live(rate as f64)
                .map(|(at, line)| (Some(at), line))
                .take(count),
            target,
        ),
        None => produce_lines(generator.map(|line| (None, line)).take(count), target),
    }
}
