//! Settings of the Kafka service, with defaults chosen for a processor that must not lose data.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::registry::RegistryConfig;
use crate::core::ProcessorConfig;
use crate::topics::TopicNames;

/// Delivery guarantee of `run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Guarantee {
    /// Offsets are committed only after every record they produced is acknowledged; a crash can
    /// publish a record twice, never lose one.
    AtLeastOnce,
    /// Output records, dead letters and input offsets commit atomically in Kafka transactions.
    /// Readers must use `isolation.level=read_committed`.
    ExactlyOnce,
}

impl Guarantee {
    pub fn as_str(self) -> &'static str {
        match self {
            Guarantee::AtLeastOnce => "at-least-once",
            Guarantee::ExactlyOnce => "exactly-once",
        }
    }
}

/// Everything `run` needs.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub bootstrap_servers: String,
    pub group_id: String,
    /// Static membership (`group.instance.id`): a restart within the session timeout keeps the
    /// assignment without a rebalance.
    pub group_instance_id: Option<String>,
    pub topics: TopicNames,
    pub guarantee: Guarantee,
    /// Where a group without committed offsets starts: `earliest` (default: a processor that
    /// must not lose data does not skip a backlog) or `latest`.
    pub auto_offset_reset: String,
    /// Exactly-once: how often the open transaction is committed.
    pub commit_interval: Duration,
    /// Exactly-once: the transactional id; default derived from the group and host.
    pub transactional_id: Option<String>,
    /// Upper bound on input messages whose records are not yet acknowledged.
    pub max_in_flight_messages: usize,
    /// Upper bound on the bytes of those messages and their records.
    pub max_in_flight_bytes: usize,
    /// On revoke and shutdown, how long in-flight work may take to drain.
    pub drain_timeout: Duration,
    /// librdkafka `message.timeout.ms` for produced records: how long librdkafka itself retries
    /// before reporting a failure (which callstream then retries again).
    pub message_timeout: Duration,
    pub processor: ProcessorConfig,
    /// Confluent Schema Registry; without it values use Avro single-object encoding.
    pub schema_registry: Option<RegistryConfig>,
    /// Raw librdkafka properties applied to every client, last (they win).
    pub librdkafka: BTreeMap<String, String>,
    /// At start-up, read the output topics' `max.message.bytes` and keep records within it. Off
    /// only against librdkafka's mock cluster, which does not answer that request (it would wait
    /// out a timeout).
    pub read_topic_limits: bool,
}

impl ServiceConfig {
    pub fn new(bootstrap_servers: impl Into<String>, group_id: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            group_id: group_id.into(),
            group_instance_id: None,
            topics: TopicNames::default(),
            guarantee: Guarantee::AtLeastOnce,
            auto_offset_reset: "earliest".into(),
            commit_interval: Duration::from_millis(100),
            transactional_id: None,
            max_in_flight_messages: 20_000,
            max_in_flight_bytes: 64 * 1024 * 1024,
            drain_timeout: Duration::from_secs(20),
            message_timeout: Duration::from_secs(30),
            processor: ProcessorConfig::default(),
            schema_registry: None,
            librdkafka: BTreeMap::new(),
            read_topic_limits: true,
        }
    }
}
