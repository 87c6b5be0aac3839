//! Configuration: typed settings with defaults, read from a TOML file, then overridden by
//! environment variables (`CALLSTREAM_*`) and flags. Precedence, lowest first:
//! defaults < file (`--config`, `CALLSTREAM_CONFIG`) < environment < flags.
//!
//! The flag and environment layers are parsed by clap into `Option`s (see `cli`); this module
//! holds the file format, the checks, and the translation into the service's settings.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::core::{DecodeLimits, ProcessorConfig};
use crate::logging::LogFormat;
use crate::service::clients::STATISTICS_INTERVAL;
use crate::service::registry::RegistryConfig;
use crate::service::{Guarantee, ServiceConfig};
use crate::topics::TopicNames;

/// What is wrong with a configuration, and where.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid setting {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Everything callstream can be configured with. Every field has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub kafka: KafkaSettings,
    pub topics: TopicNames,
    pub core: CoreSettings,
    pub http: HttpSettings,
    pub log: LogSettings,
    pub schema_registry: RegistrySettings,
}

/// The consumer group, the guarantees, and the connection to the brokers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSettings {
    pub bootstrap_servers: String,
    pub group_id: String,
    pub group_instance_id: Option<String>,
    pub guarantee: Guarantee,
    /// `earliest` or `latest`.
    pub auto_offset_reset: String,
    pub commit_interval_ms: u64,
    pub transactional_id: Option<String>,
    pub max_in_flight_messages: usize,
    pub max_in_flight_bytes: usize,
    pub drain_timeout_ms: u64,
    pub message_timeout_ms: u64,
    pub security: SecuritySettings,
    /// Raw librdkafka properties for every client; they win over everything else.
    pub librdkafka: BTreeMap<String, String>,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            bootstrap_servers: "localhost:9092".into(),
            group_id: "callstream".into(),
            group_instance_id: None,
            guarantee: Guarantee::AtLeastOnce,
            auto_offset_reset: "earliest".into(),
            commit_interval_ms: 100,
            transactional_id: None,
            max_in_flight_messages: 20_000,
            max_in_flight_bytes: 64 * 1024 * 1024,
            drain_timeout_ms: 20_000,
            message_timeout_ms: 30_000,
            security: SecuritySettings::default(),
            librdkafka: BTreeMap::new(),
        }
    }
}

/// TLS and SASL to the brokers, translated into librdkafka properties.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct SecuritySettings {
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`.
    pub protocol: Option<String>,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub sasl_mechanism: Option<String>,
    pub sasl_username: Option<String>,
    pub sasl_password: Option<String>,
    /// CA certificate(s) to verify the brokers (PEM file).
    pub ssl_ca_location: Option<String>,
    /// Client certificate and key for mutual TLS (PEM files).
    pub ssl_certificate_location: Option<String>,
    pub ssl_key_location: Option<String>,
    pub ssl_key_password: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoreSettings {
    pub max_message_bytes: usize,
    pub dedup_window: usize,
}

impl Default for CoreSettings {
    fn default() -> Self {
        Self {
            max_message_bytes: DecodeLimits::default().max_message_bytes,
            dedup_window: ProcessorConfig::default().record_window,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Listener for `/metrics` and `/health/*`; none disables it. Written as `parse_listen_addr`
    /// reads it.
    #[serde(deserialize_with = "listen_addr")]
    pub metrics_addr: Option<SocketAddr>,
}

/// Reads a listen address: `IP:PORT`, `HOST:PORT` (resolved now: its first IPv4 address, else its
/// first address) or `:PORT` (every IPv4 interface, `0.0.0.0:PORT`).
pub fn parse_listen_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    if let Some(port) = text.strip_prefix(':').filter(|rest| !rest.contains(':')) {
        return port
            .parse::<u16>()
            .map(|port| SocketAddr::from(([0, 0, 0, 0], port)))
            .map_err(|_| format!("{text:?}: the port is not a number from 0 to 65535"));
    }
    let resolved: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(text)
        .map_err(|e| format!("{text:?} is not IP:PORT, HOST:PORT or :PORT ({e})"))?
        .collect();
    resolved
        .iter()
        .find(|addr| addr.is_ipv4())
        .or(resolved.first())
        .copied()
        .ok_or_else(|| format!("{text:?}: the host name has no address"))
}

fn listen_addr<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SocketAddr>, D::Error> {
    Option::<String>::deserialize(deserializer)?
        .map(|text| parse_listen_addr(&text).map_err(serde::de::Error::custom))
        .transpose()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    /// A tracing filter; none means `CALLSTREAM_LOG`, `RUST_LOG`, else `info`.
    pub level: Option<String>,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: None,
        }
    }
}

/// Confluent Schema Registry; without a URL, values use Avro single-object encoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrySettings {
    pub url: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Register the schemas (default) or only look up ones registered already.
    pub auto_register: bool,
    /// PEM file of the CAs that sign the registry's certificate; without it, the system's.
    pub ssl_ca_location: Option<String>,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        Self {
            url: None,
            username: None,
            password: None,
            auto_register: true,
            ssl_ca_location: None,
        }
    }
}

const MASK: &str = crate::service::registry::MASK;

impl Settings {
    /// Reads a TOML file; unknown keys are errors, so that a typo does not silently do nothing.
    pub fn from_file(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Defaults, or the file's settings when a path is given.
    pub fn load(path: Option<&Path>) -> Result<Settings, ConfigError> {
        match path {
            Some(path) => Self::from_file(path),
            None => Ok(Settings::default()),
        }
    }

    /// Checks values that the types cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_connection()?;
        let k = &self.kafka;
        if k.group_id.trim().is_empty() {
            return Err(invalid("kafka.group_id", "is empty"));
        }
        if !matches!(k.auto_offset_reset.as_str(), "earliest" | "latest") {
            return Err(invalid(
                "kafka.auto_offset_reset",
                format!("{:?} is not earliest or latest", k.auto_offset_reset),
            ));
        }
        for (field, value) in [
            ("kafka.commit_interval_ms", k.commit_interval_ms as u128),
            (
                "kafka.max_in_flight_messages",
                k.max_in_flight_messages as u128,
            ),
            ("kafka.max_in_flight_bytes", k.max_in_flight_bytes as u128),
            ("kafka.message_timeout_ms", k.message_timeout_ms as u128),
            (
                "core.max_message_bytes",
                self.core.max_message_bytes as u128,
            ),
        ] {
            if value == 0 {
                return Err(invalid(field, "must be greater than 0"));
            }
        }
        if k.group_instance_id
            .as_deref()
            .is_some_and(|id| id.trim().is_empty())
        {
            return Err(invalid(
                "kafka.group_instance_id",
                "is empty (leave it unset for dynamic membership)",
            ));
        }
        for (key, value) in &k.librdkafka {
            if let Some(reason) = owned_property(key, value, k.guarantee) {
                return Err(invalid(
                    "kafka.librdkafka",
                    format!("{key}={value} is refused: {reason}"),
                ));
            }
        }
        self.topics
            .check()
            .map_err(|(field, reason)| invalid(field, reason))?;
        if let Some(level) = &self.log.level {
            // A filter that does not parse would leave only errors logged, silently.
            tracing_subscriber::EnvFilter::try_new(level)
                .map_err(|e| invalid("log.level", format!("{level:?}: {e}")))?;
        }
        if let Some(url) = &self.schema_registry.url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid(
                    "schema_registry.url",
                    format!("{url:?} is not an http:// or https:// URL"),
                ));
            }
        }
        Ok(())
    }

    /// Checks what every Kafka client of callstream needs (the brokers and security), and nothing
    /// else: for the commands that only produce (`generate`).
    pub fn validate_connection(&self) -> Result<(), ConfigError> {
        let k = &self.kafka;
        if k.bootstrap_servers.trim().is_empty() {
            return Err(invalid("kafka.bootstrap_servers", "is empty"));
        }
        let s = &k.security;
        let sasl_protocol = self
            .security_protocol()
            .is_some_and(|p| p.to_ascii_lowercase().starts_with("sasl_"));
        if let Some(protocol) = &s.protocol {
            if !matches!(
                protocol.to_ascii_lowercase().as_str(),
                "plaintext" | "ssl" | "sasl_plaintext" | "sasl_ssl"
            ) {
                return Err(invalid(
                    "kafka.security.protocol",
                    format!("{protocol:?} is not plaintext, ssl, sasl_plaintext or sasl_ssl"),
                ));
            }
        }
        if let Some(mechanism) = &s.sasl_mechanism {
            if !matches!(
                mechanism.to_ascii_uppercase().as_str(),
                "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512"
            ) {
                return Err(invalid(
                    "kafka.security.sasl_mechanism",
                    format!("{mechanism:?} is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"),
                ));
            }
            for (name, value) in [
                ("sasl_username", &s.sasl_username),
                ("sasl_password", &s.sasl_password),
            ] {
                if value.is_none() {
                    return Err(invalid(
                        "kafka.security.sasl_mechanism",
                        format!("needs sasl_username and sasl_password: {name} is not set"),
                    ));
                }
            }
            // Without a SASL protocol librdkafka only warns, connects without authenticating,
            // and the broker's refusal shows up as a time-out much later.
            if !sasl_protocol {
                return Err(invalid(
                    "kafka.security.sasl_mechanism",
                    "needs protocol sasl_plaintext or sasl_ssl",
                ));
            }
        }
        // librdkafka's default mechanism, GSSAPI (Kerberos), is not built in: without a mechanism
        // a SASL protocol would fail only when the clients start, with a message about libsasl2.
        if sasl_protocol
            && s.sasl_mechanism.is_none()
            && !k.librdkafka.contains_key("sasl.mechanisms")
            && !k.librdkafka.contains_key("sasl.mechanism")
        {
            return Err(invalid(
                "kafka.security.protocol",
                "a SASL protocol needs sasl_mechanism (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; or -X sasl.mechanisms=OAUTHBEARER)",
            ));
        }
        Ok(())
    }

    /// The security protocol the clients get: a `-X security.protocol`, which wins, else the
    /// setting (else librdkafka's default, plaintext).
    fn security_protocol(&self) -> Option<&String> {
        self.kafka
            .librdkafka
            .get("security.protocol")
            .or(self.kafka.security.protocol.as_ref())
    }

    /// librdkafka properties for TLS and SASL, then the raw passthrough (which wins).
    pub fn librdkafka_properties(&self) -> BTreeMap<String, String> {
        let s = &self.kafka.security;
        let mut props = BTreeMap::new();
        let mut put = |key: &str, value: &Option<String>| {
            if let Some(v) = value {
                props.insert(key.to_owned(), v.clone());
            }
        };
        put("security.protocol", &s.protocol);
        // librdkafka compares mechanism names case-sensitively; `validate` does not.
        put(
            "sasl.mechanisms",
            &s.sasl_mechanism.as_ref().map(|m| m.to_ascii_uppercase()),
        );
        put("sasl.username", &s.sasl_username);
        put("sasl.password", &s.sasl_password);
        put("ssl.ca.location", &s.ssl_ca_location);
        put("ssl.certificate.location", &s.ssl_certificate_location);
        put("ssl.key.location", &s.ssl_key_location);
        put("ssl.key.password", &s.ssl_key_password);
        props.extend(self.kafka.librdkafka.clone());
        props
    }

    /// The settings of the service loop.
    pub fn service_config(&self) -> ServiceConfig {
        let k = &self.kafka;
        let mut c = ServiceConfig::new(&k.bootstrap_servers, &k.group_id);
        c.group_instance_id = k.group_instance_id.clone();
        c.topics = self.topics.clone();
        c.guarantee = k.guarantee;
        c.auto_offset_reset = k.auto_offset_reset.clone();
        c.commit_interval = Duration::from_millis(k.commit_interval_ms);
        c.transactional_id = k.transactional_id.clone();
        c.max_in_flight_messages = k.max_in_flight_messages;
        c.max_in_flight_bytes = k.max_in_flight_bytes;
        c.drain_timeout = Duration::from_millis(k.drain_timeout_ms);
        c.message_timeout = Duration::from_millis(k.message_timeout_ms);
        c.processor = ProcessorConfig {
            limits: DecodeLimits {
                max_message_bytes: self.core.max_message_bytes,
            },
            notification_window: self.core.dedup_window,
            record_window: self.core.dedup_window,
        };
        c.librdkafka = self.librdkafka_properties();
        c.schema_registry = self.schema_registry.url.as_ref().map(|url| RegistryConfig {
            url: url.clone(),
            username: self.schema_registry.username.clone(),
            password: self.schema_registry.password.clone(),
            auto_register: self.schema_registry.auto_register,
            ssl_ca_location: self.schema_registry.ssl_ca_location.clone(),
        });
        c
    }

    /// A copy safe to print: passwords and secret-looking librdkafka properties masked.
    pub fn masked(&self) -> Settings {
        let mut m = self.clone();
        let s = &mut m.kafka.security;
        // An empty secret shows as empty: masked, it would hide that it is missing.
        let mask = |secret: &mut Option<String>| {
            if secret.as_ref().is_some_and(|v| !v.is_empty()) {
                *secret = Some(MASK.into());
            }
        };
        mask(&mut s.sasl_password);
        mask(&mut s.ssl_key_password);
        mask(&mut m.schema_registry.password);
        if let Some(url) = &mut m.schema_registry.url {
            *url = crate::service::registry::mask_url_password(url);
        }
        for (key, value) in m.kafka.librdkafka.iter_mut() {
            if is_secret_property(key) && !value.is_empty() {
                *value = MASK.into();
            }
        }
        m
    }

    /// The settings as the clients and the logs get them: the security protocol (a `-X
    /// security.protocol`, which wins, else the setting, else librdkafka's `plaintext`), and the log
    /// filter (`log_filter`, worked out by `logging::filter`).
    pub fn effective(&self, log_filter: String) -> Settings {
        let mut e = self.clone();
        e.kafka.security.protocol = Some(
            self.security_protocol()
                .cloned()
                .unwrap_or_else(|| "plaintext".into()),
        );
        e.log.level = Some(log_filter);
        e
    }

    /// The settings as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// Why a raw librdkafka property may not be given, if it may not: callstream sets it for its
/// guarantees (a passthrough giving the same value is accepted), or a setting of its own does.
fn owned_property(key: &str, value: &str, guarantee: Guarantee) -> Option<String> {
    let setting = |name: &str| Some(format!("set {name} instead"));
    let fixed = |accepted: &[&str], why: &str| {
        // librdkafka's spellings of a boolean.
        let given = match value.trim().to_ascii_lowercase().as_str() {
            "1" | "t" => "true".to_owned(),
            "0" | "f" => "false".to_owned(),
            other => other.to_owned(),
        };
        (!accepted.contains(&given.as_str()))
            .then(|| format!("callstream sets {}: {why}", accepted[0]))
    };
    match key.trim() {
        "bootstrap.servers" | "metadata.broker.list" => {
            setting("kafka.bootstrap_servers (--bootstrap-servers)")
        }
        "transaction.timeout.ms" => setting(
            "kafka.message_timeout_ms (--message-timeout-ms): the transaction timeout follows it, and so does how long a rewind waits",
        ),
        "auto.commit.interval.ms"
            if guarantee == Guarantee::AtLeastOnce && value.trim() == "0" =>
        {
            Some("0 turns off the auto-commit that commits the offsets callstream stores".into())
        }
        "partitioner" => fixed(
            &[
                "murmur2_random",
                "murmur2",
                "consistent_random",
                "consistent",
                "fnv1a_random",
                "fnv1a",
            ],
            "a partitioner that ignores the key (random) would scatter an extension's records over partitions, out of order",
        ),
        "group.id" => setting("kafka.group_id (--group-id)"),
        "group.instance.id" => setting("kafka.group_instance_id (--group-instance-id)"),
        "transactional.id" => setting("kafka.transactional_id (--transactional-id, exactly-once)"),
        "auto.offset.reset" => setting("kafka.auto_offset_reset (--auto-offset-reset)"),
        "message.timeout.ms" | "delivery.timeout.ms" => {
            setting("kafka.message_timeout_ms (--message-timeout-ms)")
        }
        "enable.auto.offset.store" => fixed(
            &["false"],
            "an offset is stored only once every record of its message is acknowledged",
        ),
        "enable.auto.commit" => match guarantee {
            Guarantee::AtLeastOnce => fixed(
                &["true"],
                "the offsets callstream stores are committed by librdkafka's auto-commit",
            ),
            Guarantee::ExactlyOnce => fixed(
                &["false"],
                "under exactly-once offsets are committed in the transactions only",
            ),
        },
        "isolation.level" => fixed(
            &["read_committed"],
            "reading aborted upstream records, or under exactly-once a partition before its previous owner's transaction ended, would publish what should not be",
        ),
        "enable.idempotence" => fixed(
            &["true"],
            "without it a retried record can be written twice or out of order",
        ),
        "acks" | "request.required.acks" => fixed(
            &["all", "-1"],
            "a record acknowledged by the leader alone is lost if the leader fails",
        ),
        "enable.partition.eof" => fixed(&["false"], "the consume loop does not take end-of-partition events"),
        "partition.assignment.strategy" => fixed(
            &["cooperative-sticky"],
            "callstream hands partitions over incrementally, and is tested with that strategy only",
        ),
        "group.protocol" => fixed(
            &["classic"],
            "the consumer rebalance protocol (KIP-848) is not supported yet",
        ),
        "statistics.interval.ms" => fixed(
            &[STATISTICS_INTERVAL.as_millis().to_string().as_str()],
            "the lag, leader and producer-queue metrics come from librdkafka's statistics",
        ),
        _ => None,
    }
}

/// librdkafka property names that carry secrets.
fn is_secret_property(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.contains("password")
        || key.contains("secret")
        || key.ends_with(".pem")
        || key.contains("jaas")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_gives_the_defaults() {
        let s: Settings = toml::from_str("").unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(s.topics.input, "telephony.sessions.raw");
        assert!(s.validate().is_ok());
    }

    #[test]
    fn a_file_overrides_the_defaults() {
        let s: Settings = toml::from_str(
            r#"
            [kafka]
            bootstrap_servers = "k1:9092,k2:9092"
            guarantee = "exactly-once"
            [kafka.librdkafka]
            "fetch.min.bytes" = "1024"
            [topics]
            input = "calls.raw"
            "#,
        )
        .unwrap();
        assert_eq!(s.kafka.bootstrap_servers, "k1:9092,k2:9092");
        assert_eq!(s.kafka.guarantee, Guarantee::ExactlyOnce);
        assert_eq!(s.topics.input, "calls.raw");
        assert_eq!(s.topics.parties, "telephony.sessions.parties");
        assert_eq!(s.service_config().librdkafka["fetch.min.bytes"], "1024");
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(toml::from_str::<Settings>("[kafka]\nbootstrap_server = \"x\"").is_err());
    }

    #[test]
    fn a_password_in_the_registry_url_is_masked() {
        let mut s = Settings::default();
        for (url, shown) in [
            (
                "https://u:p@reg:8081/x?y",
                format!("https://u:{MASK}@reg:8081/x?y"),
            ),
            ("https://u:p:q@reg", format!("https://u:{MASK}@reg")),
            ("http://u@reg:8081", "http://u@reg:8081".into()),
            // A password with an unencoded `/`: masked (an `@` in a path is masked too).
            ("https://u:a/b@reg", format!("https://u:{MASK}@reg")),
            ("http://reg:8081/a@b", format!("http://reg:{MASK}@b")),
        ] {
            s.schema_registry.url = Some(url.into());
            assert_eq!(s.masked().schema_registry.url.unwrap(), shown);
        }
    }

    #[test]
    fn passthrough_properties_that_would_break_a_guarantee_are_refused() {
        let refused = |key: &str, value: &str, guarantee: Guarantee| {
            let mut s = Settings::default();
            s.kafka.guarantee = guarantee;
            s.kafka.librdkafka.insert(key.into(), value.into());
            s.validate().err().map(|e| e.to_string())
        };
        for (key, value) in [
            ("enable.auto.offset.store", "true"),
            ("enable.auto.commit", "false"),
            ("isolation.level", "read_uncommitted"),
            ("enable.idempotence", "false"),
            ("acks", "1"),
            ("request.required.acks", "0"),
            ("transactional.id", "x"),
            ("group.id", "other"),
            ("group.protocol", "consumer"),
            ("partition.assignment.strategy", "range"),
            ("message.timeout.ms", "1000"),
        ] {
            let e = refused(key, value, Guarantee::AtLeastOnce)
                .unwrap_or_else(|| panic!("{key}={value} accepted"));
            assert!(
                e.contains("kafka.librdkafka") && e.contains(&format!("{key}={value} is refused")),
                "{e}"
            );
        }
        for (key, value) in [
            ("metadata.broker.list", "x:9092"),
            ("transaction.timeout.ms", "900000"),
            ("auto.commit.interval.ms", "0"),
            ("partitioner", "random"),
        ] {
            assert!(
                refused(key, value, Guarantee::AtLeastOnce).is_some(),
                "{key}={value} accepted"
            );
        }
        // The value callstream sets is accepted, in any case and as librdkafka spells booleans.
        for (key, value) in [
            ("enable.idempotence", "1"),
            ("enable.auto.offset.store", "F"),
            ("auto.commit.interval.ms", "5000"),
            ("partitioner", "consistent_random"),
            ("acks", "ALL"),
            ("acks", "-1"),
            ("enable.idempotence", "true"),
            ("isolation.level", "read_committed"),
            ("linger.ms", "100"),
        ] {
            assert_eq!(refused(key, value, Guarantee::AtLeastOnce), None, "{key}");
        }
        assert_eq!(
            refused("enable.auto.commit", "false", Guarantee::ExactlyOnce),
            None
        );
        assert!(
            refused("enable.auto.commit", "true", Guarantee::ExactlyOnce)
                .is_some_and(|e| e.contains("in the transactions only"))
        );
        assert!(refused("group.id", "g", Guarantee::AtLeastOnce)
            .is_some_and(|e| e.contains("set kafka.group_id (--group-id) instead")));
    }

    #[test]
    fn a_sasl_protocol_needs_a_mechanism() {
        let mut s = Settings::default();
        s.kafka.security.protocol = Some("SASL_SSL".into());
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("a SASL protocol needs sasl_mechanism"), "{e}");
        s.kafka
            .librdkafka
            .insert("sasl.mechanisms".into(), "OAUTHBEARER".into());
        assert!(s.validate().is_ok());
        s.kafka.librdkafka.clear();
        s.kafka.security.sasl_mechanism = Some("PLAIN".into());
        s.kafka.security.sasl_username = Some("cs".into());
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("sasl_password is not set"), "{e}");
        s.kafka.security.sasl_password = Some("pw".into());
        assert!(s.validate().is_ok());
    }

    #[test]
    fn invalid_values_are_named() {
        let mut s = Settings::default();
        s.kafka.auto_offset_reset = "smallest".into();
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("kafka.auto_offset_reset"), "{e}");
        let mut s = Settings::default();
        s.kafka.security.sasl_mechanism = Some("SCRAM-SHA-512".into());
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("sasl_username"));
        // A mechanism without a SASL protocol, from the settings or the passthrough.
        s.kafka.security.sasl_username = Some("cs".into());
        s.kafka.security.sasl_password = Some("pw".into());
        let e = s.validate().unwrap_err().to_string();
        assert!(
            e.contains("needs protocol sasl_plaintext or sasl_ssl"),
            "{e}"
        );
        s.kafka.security.protocol = Some("ssl".into());
        assert!(s.validate().is_err());
        s.kafka
            .librdkafka
            .insert("security.protocol".into(), "SASL_SSL".into());
        assert!(s.validate().is_ok());
    }

    #[test]
    fn sasl_and_tls_become_librdkafka_properties_and_passthrough_wins() {
        let mut s = Settings::default();
        s.kafka.security.protocol = Some("sasl_ssl".into());
        s.kafka.security.sasl_mechanism = Some("scram-sha-256".into());
        s.kafka.security.sasl_username = Some("cs".into());
        s.kafka.security.sasl_password = Some("hunter2".into());
        s.kafka.security.ssl_ca_location = Some("/etc/ca.pem".into());
        s.kafka
            .librdkafka
            .insert("sasl.username".into(), "override".into());
        let p = s.librdkafka_properties();
        assert_eq!(p["security.protocol"], "sasl_ssl");
        assert_eq!(p["sasl.mechanisms"], "SCRAM-SHA-256");
        assert_eq!(p["sasl.password"], "hunter2");
        assert_eq!(p["ssl.ca.location"], "/etc/ca.pem");
        assert_eq!(p["sasl.username"], "override");
        assert!(s.validate().is_ok());
    }

    #[test]
    fn secrets_are_masked_for_printing() {
        let mut s = Settings::default();
        s.kafka.security.sasl_password = Some("hunter2".into());
        s.schema_registry.password = Some("pw".into());
        s.kafka
            .librdkafka
            .insert("sasl.password".into(), "hunter3".into());
        s.kafka
            .librdkafka
            .insert("fetch.min.bytes".into(), "1".into());
        let text = s.masked().to_toml();
        assert!(
            !text.contains("hunter2") && !text.contains("hunter3") && !text.contains("\"pw\""),
            "{text}"
        );
        assert!(text.contains("fetch.min.bytes"));
    }
}
