//! Warnings of the commands that are not the service: through the log where one is set up
//! (`demo`), else on standard error.

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;

use crate::service::clients::ErrorLog;

/// librdkafka's warnings and errors, as `report`s (its level is set to Warning).
pub fn report_librdkafka_log(level: RDKafkaLogLevel, facility: &str, message: &str) {
    if (level as i32) <= (RDKafkaLogLevel::Warning as i32) {
        report(&format!("librdkafka {facility}: {message}"));
    }
}

/// librdkafka's error callback, as `report`s: the same error and reason once per `ErrorLog`'s
/// window, with how many were held back since.
pub fn report_librdkafka_error(errors: &ErrorLog, error: &KafkaError, reason: &str) {
    match errors.admit(error, reason) {
        Some(0) => report(&format!("{error}: {reason}")),
        Some(held) => report(&format!("{error}: {reason} (also {held} times since)")),
        None => {}
    }
}

/// Milliseconds since the epoch, by the wall clock (0 before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A warning: through the log of `demo`, which has one, else on standard error.
pub fn report(message: &str) {
    if tracing::dispatcher::has_been_set() {
        tracing::warn!("{message}");
    } else {
        eprintln!("callstream: {message}");
    }
}
