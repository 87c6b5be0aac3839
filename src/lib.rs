//! callstream: a Kafka stream processor for RingCentral telephony-session notifications.
//!
//! `core` is the pure pipeline (bytes in, records out). `cli` holds the offline commands.

pub mod cli;
pub mod config;
pub mod core;
pub mod generate;
pub mod health;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod service;
pub mod topics;
