//! callstream: a Kafka stream processor for RingCentral telephony-session notifications.
//!
//! `core` is the pure pipeline (bytes in, records out). `cli` holds the offline commands.

pub mod cli;
pub mod core;
pub mod topics;
pub mod health;
pub mod metrics;
pub mod service;
pub mod generate;
pub mod http;
pub mod logging;
