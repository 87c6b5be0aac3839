//! Administrative requests: `callstream topics create` (the output and dead-letter topics, created
//! if missing), and topics' configurations: the output topics' record size limits, which `run`
//! reads at start-up, and the input topic's timestamp limits, which `dead-letters replay` reads.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
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
    // Both bounded: a request to brokers out of reach would otherwise wait out librdkafka's
    // 60 s socket time-out. The request's includes the brokers' 30 s for the operation.
    let options = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(30)))
        .request_timeout(Some(Duration::from_secs(35)));
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

/// The header of a Kafka record batch (magic 2). A topic's `max.message.bytes` limits whole
/// batches, this header included.
pub const RECORD_BATCH_OVERHEAD: usize = 61;

/// A topic's `max.message.bytes` (`None`: no such topic), or why it could not be read.
pub type TopicLimit = Result<Option<usize>, String>;

/// A topic's configuration, by name (`None`: no such topic), or why it could not be read.
pub type TopicConfig = Result<Option<BTreeMap<String, String>>, String>;

/// Each topic's configuration as the brokers report it (`None`: no such topic), or why it could
/// not be read (a principal not allowed to describe it, for one). An error for the whole request
/// (brokers unreachable within `timeout`) is returned as such. Takes at most about `timeout` for
/// the request and `timeout` for the metadata of topics described without their configuration.
pub fn topic_configs(
    client: &ClientConfig,
    topics: &[&str],
    timeout: Duration,
) -> Result<Vec<(String, TopicConfig)>, KafkaError> {
    let admin: AdminClient<DefaultClientContext> = client.create()?;
    let resources: Vec<ResourceSpecifier<'_>> =
        topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let options = AdminOptions::new().request_timeout(Some(timeout));
    let results = wait(admin.describe_configs(&resources, &options))?;
    let metadata_deadline = Instant::now() + timeout;
    Ok(topics
        .iter()
        .zip(results)
        .map(|(topic, result)| {
            let config = match result {
                Ok(resource) if !resource.entries.is_empty() => Ok(Some(
                    resource
                        .entries
                        .into_iter()
                        .filter_map(|entry| Some((entry.name, entry.value?)))
                        .collect(),
                )),
                // rust-rdkafka does not pass on a resource's own error: a topic that does not
                // exist and one this principal may not describe both come back without
                // entries. The metadata tells them apart.
                Ok(_) => undescribed(
                    &admin,
                    topic,
                    metadata_deadline.saturating_duration_since(Instant::now()),
                )
                .map(|()| None),
                Err(RDKafkaErrorCode::UnknownTopicOrPartition) => Ok(None),
                Err(code) => Err(code.to_string()),
            };
            (topic.to_string(), config)
        })
        .collect())
}

/// Each topic's `max.message.bytes` as the brokers report it (`topic_configs`).
pub fn max_message_bytes(
    client: &ClientConfig,
    topics: &[&str],
    timeout: Duration,
) -> Result<Vec<(String, TopicLimit)>, KafkaError> {
    Ok(topic_configs(client, topics, timeout)?
        .into_iter()
        .map(|(topic, config)| {
            let limit = config.and_then(|config| {
                config
                    .map(|entries| match entries.get("max.message.bytes") {
                        Some(value) => value
                            .trim()
                            .parse()
                            .map_err(|_| format!("max.message.bytes is {value:?}")),
                        None => Err("max.message.bytes was not described".to_owned()),
                    })
                    .transpose()
            });
            (topic, limit)
        })
        .collect())
}

/// A topic described without its configuration: `Ok` if it does not exist, otherwise why not.
fn undescribed(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
    timeout: Duration,
) -> Result<(), String> {
    let metadata = admin
        .inner()
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| format!("not described, and its metadata could not be read: {e}"))?;
    let missing = metadata.topics().iter().any(|t| {
        t.name() == topic
            && t.error().map(RDKafkaErrorCode::from)
                == Some(RDKafkaErrorCode::UnknownTopicOrPartition)
    });
    if missing {
        Ok(())
    } else {
        Err("its configuration was not described (is DescribeConfigs on the topic allowed to this principal? or was the topic created just now?)".into())
    }
}

/// Runs a future to completion on this thread. rdkafka's admin futures are completed by the admin
/// client's own thread, so they need no runtime; `run` works on a plain thread.
fn wait<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}
