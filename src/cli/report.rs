//! Warnings of the commands that are not the service: through the log where one is set up
//! (`demo`), else on standard error.

use rdkafka::config::RDKafkaLogLevel;

/// librdkafka's warnings and errors, as `report`s (its level is set to Warning).
pub fn report_librdkafka_log(level: RDKafkaLogLevel, facility: &str, message: &str) {
    if (level as i32) <= (RDKafkaLogLevel::Warning as i32) {
        report(&format!("librdkafka {facility}: {message}"));
    }
}

/// A warning: through the log of `demo`, which has one, else on standard error.
pub fn report(message: &str) {
    if tracing::dispatcher::has_been_set() {
        tracing::warn!("{message}");
    } else {
        eprintln!("callstream: {message}");
    }
}
