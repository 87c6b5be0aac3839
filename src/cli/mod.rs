//! The command line: flags and subcommands, dispatched by `main`.

pub mod demo;
pub mod generate;
pub mod offline;
pub mod service;

use std::path::PathBuf;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::core::{DecodeLimits, ProcessorConfig};
use crate::logging::LogFormat;
use crate::service::{Guarantee, ServiceConfig};
use crate::topics::TopicNames;

/// Kafka stream processor for RingCentral telephony-session notifications.
#[derive(Debug, Parser)]
#[command(name = "callstream", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Process JSON Lines offline and print every output record as JSON.
    ///
    /// Reads one notification per line from the files (or stdin when none or `-` is given) and
    /// writes `{"topic", "key", "value"}` per output record; a rejected line becomes
    /// `{"topic": <dead letters>, "key": null, "value": <line>, "error": {...}}`. A summary goes to
    /// stderr. Exits 0 when all input was read, whatever was rejected; 2 on an I/O error.
    Process(OfflineArgs),
    /// Check JSON Lines offline: print each rejected line with its number and reason.
    ///
    /// Exits 0 when every line is accepted, 1 when any is rejected, 2 on an I/O error.
    Validate(OfflineArgs),
    /// Run the service: join the consumer group and publish the derived topics.
    Run(RunArgs),
    /// Run the whole service against an embedded mock Kafka cluster: nothing to install.
    ///
    /// Starts librdkafka's in-process mock cluster, creates the topics, feeds the bundled sample
    /// notifications plus generated call traffic, runs the real service loop, and prints a
    /// per-topic summary with decoded example records.
    Demo(DemoArgs),
    /// Manage the topics callstream writes to.
    Topics {
        #[command(subcommand)]
        command: TopicsCommand,
    },
    /// Generate realistic synthetic RingCentral traffic, to stdout or to the input topic.
    Generate(GenerateArgs),
}

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create the output and dead-letter topics (and with --include-input the input) if missing.
    Create(TopicsCreateArgs),
}

/// Names of the topics, each overridable.
#[derive(Debug, Clone, Args)]
pub struct TopicArgs {
    /// Topic of raw notifications.
    #[arg(long, env = "CALLSTREAM_INPUT_TOPIC", default_value_t = TopicNames::default().input)]
    pub input_topic: String,
    /// Topic of per-party records.
    #[arg(long, env = "CALLSTREAM_PARTIES_TOPIC", default_value_t = TopicNames::default().parties)]
    pub parties_topic: String,
    /// Topic of missed calls.
    #[arg(long, env = "CALLSTREAM_MISSED_TOPIC", default_value_t = TopicNames::default().missed)]
    pub missed_topic: String,
    /// Topic of recorded calls.
    #[arg(long, env = "CALLSTREAM_RECORDED_TOPIC", default_value_t = TopicNames::default().recorded)]
    pub recorded_topic: String,
    /// Topic of transfers.
    #[arg(long, env = "CALLSTREAM_TRANSFERS_TOPIC", default_value_t = TopicNames::default().transfers)]
    pub transfers_topic: String,
    /// Dead-letter topic.
    #[arg(long, env = "CALLSTREAM_DEAD_LETTER_TOPIC", default_value_t = TopicNames::default().dead_letters)]
    pub dead_letter_topic: String,
}

impl TopicArgs {
    pub fn names(&self) -> TopicNames {
        TopicNames {
            input: self.input_topic.clone(),
            parties: self.parties_topic.clone(),
            missed: self.missed_topic.clone(),
            recorded: self.recorded_topic.clone(),
            transfers: self.transfers_topic.clone(),
            dead_letters: self.dead_letter_topic.clone(),
        }
    }
}

/// Logging options.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log format.
    #[arg(long, env = "CALLSTREAM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter (`info`, `callstream=debug,rdkafka=warn`, ...); default from CALLSTREAM_LOG or RUST_LOG, else info.
    #[arg(long)]
    pub log_level: Option<String>,
}

/// Parses `key=value` for `-X`.
fn parse_property(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected key=value, got {s:?}"))?;
    if k.trim().is_empty() {
        return Err(format!("empty key in {s:?}"));
    }
    Ok((k.trim().to_owned(), v.to_owned()))
}

/// Options of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Kafka bootstrap servers.
    #[arg(long, env = "CALLSTREAM_BOOTSTRAP_SERVERS")]
    pub bootstrap_servers: String,
    /// Consumer group id.
    #[arg(long, env = "CALLSTREAM_GROUP_ID", default_value = "callstream")]
    pub group_id: String,
    /// Static membership id (group.instance.id); also the default transactional id's suffix.
    #[arg(long, env = "CALLSTREAM_GROUP_INSTANCE_ID")]
    pub group_instance_id: Option<String>,
    #[command(flatten)]
    pub topics: TopicArgs,
    /// Delivery guarantee.
    #[arg(long, env = "CALLSTREAM_GUARANTEE", value_enum, default_value_t = Guarantee::AtLeastOnce)]
    pub guarantee: Guarantee,
    /// Where a group without committed offsets starts (earliest or latest).
    #[arg(long, default_value = "earliest", value_parser = ["earliest", "latest"])]
    pub auto_offset_reset: String,
    /// Exactly-once: transaction commit interval.
    #[arg(long, default_value_t = 100)]
    pub commit_interval_ms: u64,
    /// Exactly-once: transactional.id (default: callstream-<group>-<instance or host>-<pid>).
    #[arg(long, env = "CALLSTREAM_TRANSACTIONAL_ID")]
    pub transactional_id: Option<String>,
    /// Most input messages in flight (produced, not yet acknowledged) before intake pauses.
    #[arg(long, default_value_t = 10_000)]
    pub max_in_flight_messages: usize,
    /// Most bytes of input messages in flight before intake pauses.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    pub max_in_flight_bytes: usize,
    /// Deadline for draining in-flight work on revoke and shutdown.
    #[arg(long, default_value_t = 20_000)]
    pub drain_timeout_ms: u64,
    /// librdkafka message.timeout.ms for produced records.
    #[arg(long, default_value_t = 30_000)]
    pub message_timeout_ms: u64,
    /// Raw librdkafka property for every client, as kcat takes it (repeatable): -X security.protocol=SASL_SSL
    #[arg(short = 'X', value_parser = parse_property)]
    pub librdkafka: Vec<(String, String)>,
    /// Address of the HTTP listener for /metrics and /health/*; none to disable.
    #[arg(long, env = "CALLSTREAM_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    #[command(flatten)]
    pub core: CoreArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

impl RunArgs {
    pub fn service_config(&self) -> ServiceConfig {
        let mut c = ServiceConfig::new(&self.bootstrap_servers, &self.group_id);
        c.group_instance_id = self.group_instance_id.clone();
        c.topics = self.topics.names();
        c.guarantee = self.guarantee;
        c.auto_offset_reset = self.auto_offset_reset.clone();
        c.commit_interval = Duration::from_millis(self.commit_interval_ms);
        c.transactional_id = self.transactional_id.clone();
        c.max_in_flight_messages = self.max_in_flight_messages.max(1);
        c.max_in_flight_bytes = self.max_in_flight_bytes.max(1);
        c.drain_timeout = Duration::from_millis(self.drain_timeout_ms);
        c.message_timeout = Duration::from_millis(self.message_timeout_ms);
        c.processor = self.core.processor_config();
        c.librdkafka = self.librdkafka.iter().cloned().collect::<BTreeMap<_, _>>();
        c
    }
}

/// Options of `demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Stop after this many seconds even if not caught up.
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// Generated notifications fed besides the bundled samples.
    #[arg(long, default_value_t = 5_000)]
    pub count: usize,
    /// Seed of the generated traffic.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Example records printed per topic.
    #[arg(long, default_value_t = 1)]
    pub examples: usize,
    /// Address of the HTTP listener for /metrics and /health/*.
    #[arg(long)]
    pub metrics_addr: Option<SocketAddr>,
    #[command(flatten)]
    pub log: LogArgs,
}

/// Options of `topics create`.
#[derive(Debug, Args)]
pub struct TopicsCreateArgs {
    #[arg(long, env = "CALLSTREAM_BOOTSTRAP_SERVERS")]
    pub bootstrap_servers: String,
    #[arg(long, default_value_t = 6)]
    pub partitions: i32,
    #[arg(long, default_value_t = 1)]
    pub replication_factor: i32,
    /// Also create the input topic (useful in development; in production the connector owns it).
    #[arg(long)]
    pub include_input: bool,
    #[command(flatten)]
    pub topics: TopicArgs,
    /// Raw librdkafka property (repeatable).
    #[arg(short = 'X', value_parser = parse_property)]
    pub librdkafka: Vec<(String, String)>,
}

/// Options of `generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Notifications to write (required unless --rate is given with --bootstrap-servers).
    #[arg(long)]
    pub count: Option<u64>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Share of notifications delivered twice, 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    pub duplicates: f64,
    /// Share of notifications delivered out of order, 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    pub reorder: f64,
    /// Only the webhook shape (default: all four shapes).
    #[arg(long)]
    pub webhook_only: bool,
    /// Produce to the input topic of these brokers instead of writing to stdout.
    #[arg(long, env = "CALLSTREAM_BOOTSTRAP_SERVERS")]
    pub bootstrap_servers: Option<String>,
    #[arg(long, default_value_t = TopicNames::default().input)]
    pub input_topic: String,
    /// Notifications per second (with --bootstrap-servers; without --count, runs until stopped).
    #[arg(long)]
    pub rate: Option<u64>,
}

/// Options of the offline commands.
#[derive(Debug, Args)]
pub struct OfflineArgs {
    /// JSON Lines files; none or `-` reads stdin.
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub core: CoreArgs,
}

/// Settings of the core pipeline.
#[derive(Debug, Clone, Args)]
pub struct CoreArgs {
    /// Messages larger than this many bytes are rejected without being parsed.
    #[arg(long, default_value_t = DecodeLimits::default().max_message_bytes)]
    pub max_message_bytes: usize,
    /// How many recent notifications and records are remembered to suppress duplicates (0: off).
    #[arg(long, default_value_t = ProcessorConfig::default().record_window)]
    pub dedup_window: usize,
}

impl CoreArgs {
    pub fn processor_config(&self) -> ProcessorConfig {
        ProcessorConfig {
            limits: DecodeLimits {
                max_message_bytes: self.max_message_bytes,
            },
            notification_window: self.dedup_window,
            record_window: self.dedup_window,
        }
    }
}
