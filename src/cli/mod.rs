//! The command line: flags and subcommands, dispatched by `main`.

pub mod dead_letters;
pub mod demo;
pub mod generate;
pub mod offline;
pub mod report;
pub mod service;

use std::path::PathBuf;

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};

use crate::config::{parse_listen_addr, ConfigError, Settings};
use crate::core::{DecodeLimits, ProcessorConfig};
use crate::logging::LogFormat;
use crate::service::Guarantee;
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
    /// Work with the dead-letter topic.
    DeadLetters {
        #[command(subcommand)]
        command: DeadLettersCommand,
    },
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeadLettersCommand {
    /// Send dead letters back to the input topic (after an upgrade that accepts them, or once
    /// the upstream fault is fixed), with their original key, value, headers and timestamp.
    ///
    /// Reads the dead-letter topic up to its end as the replay starts, from where this group's
    /// last replay stopped (or --from-beginning, required for a group's first replay). Once what
    /// it sent is acknowledged, it commits each partition up to its first dead letter not sent,
    /// whatever stopped it (a refused or failed send, the brokers silent for 60 s), and then
    /// exits 1 if it stopped early: run again, it goes on from there. A dead
    /// letter whose value was cut to fit, or whose key and headers were left out, is not sent: the
    /// command prints where the whole message is in the input topic.
    Replay(DeadLettersReplayArgs),
}

/// Options of `dead-letters replay`.
#[derive(Debug, Args)]
pub struct DeadLettersReplayArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[command(flatten)]
    pub topics: TopicArgs,
    /// Only dead letters of this stage (repeatable): decode, envelope, validate or encode
    #[arg(long)]
    pub stage: Vec<String>,
    /// Only dead letters with this code (repeatable), e.g. wrong_type
    #[arg(long)]
    pub code: Vec<String>,
    /// Consumer group that remembers how far replays got
    #[arg(long, default_value = "callstream-dead-letter-replay")]
    pub group_id: String,
    /// Start at the beginning of the dead-letter topic, not where the group's last replay stopped
    /// (required when the group has no offsets: its first replay, or expired)
    #[arg(long)]
    pub from_beginning: bool,
    /// Count what would be sent; send and commit nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create the output and dead-letter topics (and with --include-input the input) if missing.
    Create(TopicsCreateArgs),
}

/// Topic names; each overrides the configuration file.
#[derive(Debug, Clone, Default, Args)]
pub struct TopicArgs {
    /// Topic of raw notifications [default: telephony.sessions.raw]
    #[arg(long, env = "CALLSTREAM_INPUT_TOPIC")]
    pub input_topic: Option<String>,
    /// Topic of per-party records [default: telephony.sessions.parties]
    #[arg(long, env = "CALLSTREAM_PARTIES_TOPIC")]
    pub parties_topic: Option<String>,
    /// Topic of missed calls [default: telephony.calls.missed]
    #[arg(long, env = "CALLSTREAM_MISSED_TOPIC")]
    pub missed_topic: Option<String>,
    /// Topic of recorded calls [default: telephony.calls.recorded]
    #[arg(long, env = "CALLSTREAM_RECORDED_TOPIC")]
    pub recorded_topic: Option<String>,
    /// Topic of transfers [default: telephony.calls.transfers]
    #[arg(long, env = "CALLSTREAM_TRANSFERS_TOPIC")]
    pub transfers_topic: Option<String>,
    /// Dead-letter topic [default: telephony.sessions.dlq]
    #[arg(long, env = "CALLSTREAM_DEAD_LETTER_TOPIC")]
    pub dead_letter_topic: Option<String>,
}

fn set<T: Clone>(target: &mut T, value: &Option<T>) {
    if let Some(v) = value {
        *target = v.clone();
    }
}

fn set_some<T: Clone>(target: &mut Option<T>, value: &Option<T>) {
    if value.is_some() {
        *target = value.clone();
    }
}

impl TopicArgs {
    pub fn apply(&self, t: &mut TopicNames) {
        set(&mut t.input, &self.input_topic);
        set(&mut t.parties, &self.parties_topic);
        set(&mut t.missed, &self.missed_topic);
        set(&mut t.recorded, &self.recorded_topic);
        set(&mut t.transfers, &self.transfers_topic);
        set(&mut t.dead_letters, &self.dead_letter_topic);
    }
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

/// The configuration file and how to reach the brokers.
#[derive(Debug, Clone, Default, Args)]
pub struct ConnectionArgs {
    /// Kafka bootstrap servers [default: localhost:9092]
    #[arg(long, env = "CALLSTREAM_BOOTSTRAP_SERVERS")]
    pub bootstrap_servers: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

impl ConnectionArgs {
    /// The file's settings (or the defaults) with these flags applied.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let mut s = self.client.settings()?;
        set(&mut s.kafka.bootstrap_servers, &self.bootstrap_servers);
        Ok(s)
    }
}

/// The configuration file and the client settings besides the brokers' addresses: security and
/// raw librdkafka properties.
#[derive(Debug, Clone, Default, Args)]
pub struct ClientArgs {
    /// TOML configuration file; environment variables and flags override it
    #[arg(long, env = "CALLSTREAM_CONFIG")]
    pub config: Option<PathBuf>,
    /// plaintext, ssl, sasl_plaintext or sasl_ssl
    #[arg(long, env = "CALLSTREAM_SECURITY_PROTOCOL")]
    pub security_protocol: Option<String>,
    /// PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
    #[arg(long, env = "CALLSTREAM_SASL_MECHANISM")]
    pub sasl_mechanism: Option<String>,
    #[arg(long, env = "CALLSTREAM_SASL_USERNAME")]
    pub sasl_username: Option<String>,
    #[arg(long, env = "CALLSTREAM_SASL_PASSWORD", hide_env_values = true)]
    pub sasl_password: Option<String>,
    /// CA certificate file (PEM) to verify the brokers
    #[arg(long, env = "CALLSTREAM_SSL_CA_LOCATION")]
    pub ssl_ca_location: Option<String>,
    /// Client certificate file (PEM) for mutual TLS with the brokers
    #[arg(long, env = "CALLSTREAM_SSL_CERTIFICATE_LOCATION")]
    pub ssl_certificate_location: Option<String>,
    /// Client private key file (PEM) for mutual TLS with the brokers
    #[arg(long, env = "CALLSTREAM_SSL_KEY_LOCATION")]
    pub ssl_key_location: Option<String>,
    /// Password of the client private key
    #[arg(long, env = "CALLSTREAM_SSL_KEY_PASSWORD", hide_env_values = true)]
    pub ssl_key_password: Option<String>,
    /// Raw librdkafka property for every client, as kcat takes it (repeatable): -X fetch.min.bytes=1024
    #[arg(short = 'X', value_parser = parse_property)]
    pub librdkafka: Vec<(String, String)>,
}

impl ClientArgs {
    /// The file's settings (or the defaults) with these flags applied.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let mut s = Settings::load(self.config.as_deref())?;
        self.apply(&mut s);
        Ok(s)
    }

    fn apply(&self, s: &mut Settings) {
        let sec = &mut s.kafka.security;
        set_some(&mut sec.protocol, &self.security_protocol);
        set_some(&mut sec.sasl_mechanism, &self.sasl_mechanism);
        set_some(&mut sec.sasl_username, &self.sasl_username);
        set_some(&mut sec.sasl_password, &self.sasl_password);
        set_some(&mut sec.ssl_ca_location, &self.ssl_ca_location);
        set_some(
            &mut sec.ssl_certificate_location,
            &self.ssl_certificate_location,
        );
        set_some(&mut sec.ssl_key_location, &self.ssl_key_location);
        set_some(&mut sec.ssl_key_password, &self.ssl_key_password);
        s.kafka.librdkafka.extend(self.librdkafka.iter().cloned());
    }
}

/// Options of `run` (and `config check`). Every option also comes from the configuration file;
/// precedence is flag > environment variable > file > default.
#[derive(Debug, Clone, Default, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Consumer group id [default: callstream]
    #[arg(long, env = "CALLSTREAM_GROUP_ID")]
    pub group_id: Option<String>,
    /// Static membership id (group.instance.id)
    #[arg(long, env = "CALLSTREAM_GROUP_INSTANCE_ID")]
    pub group_instance_id: Option<String>,
    #[command(flatten)]
    pub topics: TopicArgs,
    /// Delivery guarantee [default: at-least-once]
    #[arg(long, env = "CALLSTREAM_GUARANTEE", value_enum)]
    pub guarantee: Option<Guarantee>,
    /// Where a group without committed offsets starts [default: earliest]
    #[arg(long, env = "CALLSTREAM_AUTO_OFFSET_RESET", value_parser = ["earliest", "latest"])]
    pub auto_offset_reset: Option<String>,
    /// Exactly-once: transaction commit interval [default: 100]
    #[arg(long, env = "CALLSTREAM_COMMIT_INTERVAL_MS")]
    pub commit_interval_ms: Option<u64>,
    /// Exactly-once: transactional.id [default: callstream-<group>-<instance id>, or callstream-<group>-<host>-<pid>]
    #[arg(long, env = "CALLSTREAM_TRANSACTIONAL_ID")]
    pub transactional_id: Option<String>,
    /// Most input messages awaiting acknowledgement before intake is held [default: 20000]
    #[arg(long, env = "CALLSTREAM_MAX_IN_FLIGHT_MESSAGES")]
    pub max_in_flight_messages: Option<usize>,
    /// Most bytes of input awaiting acknowledgement, with their records, before intake is held [default: 67108864]
    #[arg(long, env = "CALLSTREAM_MAX_IN_FLIGHT_BYTES")]
    pub max_in_flight_bytes: Option<usize>,
    /// Deadline for draining in-flight work on revoke and shutdown [default: 20000]
    #[arg(long, env = "CALLSTREAM_DRAIN_TIMEOUT_MS")]
    pub drain_timeout_ms: Option<u64>,
    /// librdkafka message.timeout.ms for produced records [default: 30000]
    #[arg(long, env = "CALLSTREAM_MESSAGE_TIMEOUT_MS")]
    pub message_timeout_ms: Option<u64>,
    /// Input messages larger than this are dead letters [default: 1048576]
    #[arg(long, env = "CALLSTREAM_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Recent notifications, records and recordings remembered (each) to suppress duplicates, 0 = off [default: 100000]
    #[arg(long, env = "CALLSTREAM_DEDUP_WINDOW")]
    pub dedup_window: Option<usize>,
    /// HTTP listener for /metrics and /health/*: IP:PORT, HOST:PORT or :PORT (all IPv4 interfaces) [default: none]
    #[arg(long, env = "CALLSTREAM_METRICS_ADDR", value_parser = parse_listen_addr)]
    pub metrics_addr: Option<SocketAddr>,
    /// Confluent Schema Registry URL; without it, values use Avro single-object encoding
    #[arg(long, env = "CALLSTREAM_SCHEMA_REGISTRY_URL")]
    pub schema_registry_url: Option<String>,
    /// Schema Registry user (HTTP basic authentication)
    #[arg(long, env = "CALLSTREAM_SCHEMA_REGISTRY_USERNAME")]
    pub schema_registry_username: Option<String>,
    /// Schema Registry password
    #[arg(
        long,
        env = "CALLSTREAM_SCHEMA_REGISTRY_PASSWORD",
        hide_env_values = true
    )]
    pub schema_registry_password: Option<String>,
    /// CA certificate file (PEM) to verify the Schema Registry [default: the system's CAs]
    #[arg(long, env = "CALLSTREAM_SCHEMA_REGISTRY_SSL_CA_LOCATION")]
    pub schema_registry_ssl_ca_location: Option<String>,
    /// Log format [default: text]
    #[arg(long, env = "CALLSTREAM_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter, e.g. `info` or `callstream=debug,warn` [default: info]
    #[arg(long, env = "CALLSTREAM_LOG")]
    pub log_level: Option<String>,
}

impl RunArgs {
    /// Defaults, then the file, then environment variables and flags; validated.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let mut s = self.connection.settings()?;
        let k = &mut s.kafka;
        set(&mut k.group_id, &self.group_id);
        set_some(&mut k.group_instance_id, &self.group_instance_id);
        set(&mut k.guarantee, &self.guarantee);
        set(&mut k.auto_offset_reset, &self.auto_offset_reset);
        set(&mut k.commit_interval_ms, &self.commit_interval_ms);
        set_some(&mut k.transactional_id, &self.transactional_id);
        set(&mut k.max_in_flight_messages, &self.max_in_flight_messages);
        set(&mut k.max_in_flight_bytes, &self.max_in_flight_bytes);
        set(&mut k.drain_timeout_ms, &self.drain_timeout_ms);
        set(&mut k.message_timeout_ms, &self.message_timeout_ms);
        self.topics.apply(&mut s.topics);
        set(&mut s.core.max_message_bytes, &self.max_message_bytes);
        set(&mut s.core.dedup_window, &self.dedup_window);
        set_some(&mut s.http.metrics_addr, &self.metrics_addr);
        set_some(&mut s.schema_registry.url, &self.schema_registry_url);
        set_some(
            &mut s.schema_registry.username,
            &self.schema_registry_username,
        );
        set_some(
            &mut s.schema_registry.password,
            &self.schema_registry_password,
        );
        set_some(
            &mut s.schema_registry.ssl_ca_location,
            &self.schema_registry_ssl_ca_location,
        );
        set(&mut s.log.format, &self.log_format);
        set_some(&mut s.log.level, &self.log_level);
        s.validate()?;
        Ok(s)
    }
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (secrets masked); exit 2 with the reason if it is invalid.
    Check(RunArgs),
}

/// Logging options of `demo`.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter [default: callstream=info,warn]
    #[arg(long)]
    pub log_level: Option<String>,
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
    /// Address of the HTTP listener for /metrics and /health/*: IP:PORT, HOST:PORT or :PORT.
    #[arg(long, value_parser = parse_listen_addr)]
    pub metrics_addr: Option<SocketAddr>,
    #[command(flatten)]
    pub log: LogArgs,
}

/// Options of `topics create`.
#[derive(Debug, Args)]
pub struct TopicsCreateArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Partitions of each topic created (existing topics are left as they are). Records are keyed
    /// by extension: more partitions spread them over more consumers.
    #[arg(long, default_value_t = 6)]
    pub partitions: i32,
    /// Replicas of each partition; -1 takes the brokers' `default.replication.factor`.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub replication_factor: i32,
    /// Also create the input topic (useful in development; in production the connector owns it).
    #[arg(long)]
    pub include_input: bool,
    #[command(flatten)]
    pub topics: TopicArgs,
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
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    pub duplicates: f64,
    /// Share of notifications delivered out of order, 0 to 1.
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    pub reorder: f64,
    /// Only the webhook shape (default: all four shapes).
    #[arg(long)]
    pub webhook_only: bool,
    /// Relative weights of the call flows, e.g. `inbound=5,missed=2,recorded=1` (flows not named
    /// get 0). Flows: inbound, missed, queue, blind-transfer, attended-transfer, recorded,
    /// conference, outbound [default: inbound=30,missed=15,queue=13,blind-transfer=8,
    /// attended-transfer=6,recorded=10,conference=6,outbound=12]
    #[arg(long)]
    pub mix: Option<crate::generate::FlowMix>,
    /// Produce to the input topic of these brokers instead of writing to stdout. Only as a flag:
    /// `CALLSTREAM_BOOTSTRAP_SERVERS`, set for `run`, must not turn a file export into traffic
    /// produced to the live input topic.
    #[arg(long)]
    pub bootstrap_servers: Option<String>,
    /// Topic produced to (with --bootstrap-servers) [default: the configuration's input topic,
    /// telephony.sessions.raw]
    #[arg(long, env = "CALLSTREAM_INPUT_TOPIC")]
    pub input_topic: Option<String>,
    // The configuration file, security and -X properties, as for `run`.
    #[command(flatten)]
    pub client: ClientArgs,
    /// Live traffic at about this many notifications per second, at most 5000 (with
    /// --bootstrap-servers; without --count, runs until stopped): calls overlap, and each
    /// notification is sent at its envelope timestamp, so lag metrics are real. Without it,
    /// --count notifications are written at once, as a backlog (their times run ahead of the clock).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..), requires = "bootstrap_servers")]
    pub rate: Option<u64>,
}

/// A share from 0 to 1.
fn parse_share(text: &str) -> Result<f64, String> {
    let share: f64 = text.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&share) {
        Ok(share)
    } else {
        Err(format!("{text} is not a share from 0 to 1"))
    }
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
    /// How many recent notifications, records and recordings are remembered (each) to suppress duplicates (0: off).
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
