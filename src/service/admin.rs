//! `callstream topics create`: the output and dead-letter topics, created if missing.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// Creates each topic that does not exist yet; returns the names of those it created.
pub async fn create_topics(
    bootstrap_servers: &str,
    names: &[&str],
    partitions: i32,
    replication: i32,
    overrides: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<String>, KafkaError> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap_servers);
    for (k, v) in overrides {
        config.set(k, v);
    }
    let admin: AdminClient<DefaultClientContext> = config.create()?;
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|name| NewTopic::new(name, partitions, TopicReplication::Fixed(replication)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin.create_topics(&topics, &options).await?;
    let mut created = Vec::new();
    for result in results {
        match result {
            Ok(name) => created.push(name),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                tracing::error!(topic = name, %code, "topic creation failed");
                return Err(KafkaError::AdminOp(code));
            }
        }
    }
    Ok(created)
}
