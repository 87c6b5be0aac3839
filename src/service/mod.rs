//! The imperative shell around the core: the Kafka consumer group, producer, offsets,
//! transactions and dead letters.

pub mod admin;
pub mod clients;
pub mod config;
pub mod dead_letters;
pub mod engine;
pub mod offsets;
pub mod pipeline;
pub mod registry;
pub mod retries;

pub use config::{Guarantee, ServiceConfig};
pub use engine::{run, RunSummary, ServiceError};
