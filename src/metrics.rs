//! Prometheus metrics: every series callstream exports is declared here, so the names live in one
//! place (the README's observability section lists them).

use crate::core::TopicKind;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// Handles to every metric, registered in one registry.
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Input messages by outcome: processed, rejected, duplicate.
    pub input_messages: IntCounterVec,
    /// Output records by topic.
    pub output_records: IntCounterVec,
    /// Records not emitted as duplicates (`core::Outcome::suppressed`).
    pub records_suppressed: IntCounter,
    /// Dead letters by stage and code.
    pub dead_letters: IntCounterVec,
    pub processing_duration: Histogram,
    /// now - eventTime, and now - envelope timestamp.
    pub lag: HistogramVec,
    pub consumer_lag: IntGaugeVec,
    pub consumer_leaderless: IntGaugeVec,
    pub producer_queue: IntGauge,
    pub in_flight_messages: IntGauge,
    pub in_flight_bytes: IntGauge,
    pub record_limit: IntGauge,
    /// Seconds the oldest input message with unacknowledged records has waited.
    pub oldest_unacknowledged: IntGauge,
    /// 1 while intake is held (not read, then paused) to bound memory (see
    /// `Engine::apply_backpressure`).
    pub intake_paused: IntGauge,
    pub rebalances: IntCounterVec,
    pub offset_commits: IntCounterVec,
    pub transactions: IntCounterVec,
    pub delivery_retries: IntCounter,
    /// Records the producer reported as not delivered (timed out, refused).
    pub delivery_failures: IntCounter,
    /// Producers given up on and replaced, by reason (see `Engine::replace_producer` and
    /// `Engine::replace_stuck_producer`).
    pub producer_replacements: IntCounterVec,
    /// The duplicate windows cleared whole, by reason (`WINDOW_RESET_REASONS`).
    pub window_resets: IntCounterVec,
    pub build_info: IntGaugeVec,
}

/// Why the duplicate windows were cleared whole: `dropped_work` (at-least-once: work of a revoked
/// or lost partition dropped), `rollback_fallback` (exactly-once: an abort that could not forget
/// its own transaction alone, see `Window::keep_undo`).
pub const WINDOW_RESET_REASONS: [&str; 2] = ["dropped_work", "rollback_fallback"];

/// The outcomes of `callstream_input_messages_total`.
const INPUT_OUTCOMES: [&str; 3] = ["processed", "rejected", "duplicate"];

/// The reasons of `callstream_producer_replacements_total`.
const REPLACEMENT_REASONS: [&str; 4] = [
    "record_timeouts",
    "transactions_failing",
    "transaction_not_ending",
    "offsets_call_stuck",
];

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric");
    metric
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let metric = IntGauge::new(name, help).expect("valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric");
    metric
}

impl Metrics {
    /// Creates and registers every metric. Names and labels are constants, so the `expect`s can
    /// only fail on a programming error, caught by the unit test below.
    pub fn new() -> Self {
        let registry = Registry::new();
        let input_messages = counter_vec(
            &registry,
            "callstream_input_messages_total",
            "Input messages by outcome (processed, rejected, duplicate).",
            &["outcome"],
        );
        let output_records = counter_vec(
            &registry,
            "callstream_output_records_total",
            "Records published to the derived topics, by topic.",
            &["topic"],
        );
        let records_suppressed = IntCounter::new(
            "callstream_records_suppressed_total",
            "Derived records not published as duplicates: the same record id and state were already published, or (recordings) nothing newer than what was.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(records_suppressed.clone()))
            .expect("unique metric");
        let dead_letters = counter_vec(
            &registry,
            "callstream_dead_letters_total",
            "Messages sent to the dead-letter topic, by stage and error code.",
            &["stage", "code"],
        );
        let processing_duration = Histogram::with_opts(
            HistogramOpts::new(
                "callstream_processing_duration_seconds",
                "Time to run one message through the core (decode to encode).",
            )
            .buckets(vec![
                1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2,
            ]),
        )
        .expect("valid metric");
        registry
            .register(Box::new(processing_duration.clone()))
            .expect("unique metric");
        let lag = HistogramVec::new(
            HistogramOpts::new(
                "callstream_lag_seconds",
                "Age of a notification when processed: kind=event is now - eventTime, kind=delivery is now - envelope timestamp.",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 60.0, 300.0, 3600.0]),
            &["kind"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(lag.clone()))
            .expect("unique metric");
        let consumer_lag = IntGaugeVec::new(
            Opts::new(
                "callstream_consumer_lag_messages",
                "Input messages not committed yet, per assigned input partition: from the committed offset (under exactly-once, the last transaction's) to the last stable offset (librdkafka statistics).",
            ),
            &["partition"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(consumer_lag.clone()))
            .expect("unique metric");
        let consumer_leaderless = IntGaugeVec::new(
            Opts::new(
                "callstream_consumer_leaderless_seconds",
                "How long the consumer has known no leader for an assigned input partition, as of librdkafka's last statistics; nothing is fetched from it meanwhile. 0 once a leader is known.",
            ),
            &["partition"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(consumer_leaderless.clone()))
            .expect("unique metric");
        let producer_queue = gauge(
            &registry,
            "callstream_producer_queue_messages",
            "Records waiting in the producer queue.",
        );
        let in_flight_messages = gauge(
            &registry,
            "callstream_in_flight_messages",
            "Input messages whose records are not yet acknowledged.",
        );
        let in_flight_bytes = gauge(
            &registry,
            "callstream_in_flight_bytes",
            "Bytes of the input messages in flight and of their records.",
        );
        let record_limit = gauge(
            &registry,
            "callstream_record_limit_bytes",
            "The largest derived record sent (key, value and librdkafka's framing): the producer's message.max.bytes, at most 900,000, lowered to fit the output topics' max.message.bytes (read at start-up, applied before the first input is processed). Larger records are dead letters (record_too_large); dead letters may take the producer's whole message.max.bytes.",
        );
        let oldest_unacknowledged = gauge(
            &registry,
            "callstream_oldest_unacknowledged_seconds",
            "How long the oldest input message whose records are not all acknowledged has waited (0 when none). While records are delivered: under a second here even at full speed, in-flight messages / acknowledgements per second with a slow output broker. Growing while a record is sent again or waits for a missing topic (at-least-once; under exactly-once its transaction aborts and the wait starts over).",
        );
        let intake_paused = gauge(
            &registry,
            "callstream_intake_paused",
            "1 while intake is held (not read, then after half a second paused) because too much is in flight or held behind an unacknowledged record.",
        );
        let rebalances = counter_vec(
            &registry,
            "callstream_rebalances_total",
            "Consumer group rebalance events by kind (assign, revoke, lost, error).",
            &["kind"],
        );
        let offset_commits = counter_vec(
            &registry,
            "callstream_offset_commits_total",
            "Offset commits by result (ok, error).",
            &["result"],
        );
        let transactions = counter_vec(
            &registry,
            "callstream_transactions_total",
            "Kafka transactions by result (committed, aborted).",
            &["result"],
        );
        let delivery_retries = IntCounter::new(
            "callstream_delivery_retries_total",
            "Records sent again after the producer reported a failed delivery, or would not take them for now.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(delivery_retries.clone()))
            .expect("unique metric");
        let delivery_failures = IntCounter::new(
            "callstream_delivery_failures_total",
            "Records the producer reported as not delivered (timed out or refused); each is sent again, or its transaction aborted and its input read again.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(delivery_failures.clone()))
            .expect("unique metric");
        let producer_replacements = counter_vec(
            &registry,
            "callstream_producer_replacements_total",
            "Producers given up on and replaced by a new one, by reason: record_timeouts (at-least-once: a record kept timing out while others were delivered), transactions_failing (exactly-once: three transactions in a row failed), transaction_not_ending (exactly-once: a commit or abort kept failing), offsets_call_stuck (exactly-once: sending the input offsets to the transaction did not return).",
            &["reason"],
        );
        let window_resets = counter_vec(
            &registry,
            "callstream_duplicate_window_resets_total",
            "Times the duplicate windows were cleared whole, by reason: dropped_work (at-least-once: work of a revoked or lost partition was dropped), rollback_fallback (exactly-once: an abort could not forget its own transaction's records alone). Redeliveries of what they remembered may be published again.",
            &["reason"],
        );
        let build_info = IntGaugeVec::new(
            Opts::new(
                "callstream_build_info",
                "Always 1; labels say what is running.",
            ),
            &["version", "revision"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(build_info.clone()))
            .expect("unique metric");
        build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                option_env!("CALLSTREAM_GIT_REVISION").unwrap_or("unknown"),
            ])
            .set(1);
        // Every label value a counter is known to take starts at 0. A series that first appears
        // at 1 has no earlier sample for `increase()` and `rate()`, so its first event would be
        // invisible to the alerts: a replica's first lost assignment, for one.
        for (counter, values) in [
            (&input_messages, &INPUT_OUTCOMES[..]),
            (&output_records, &TopicKind::ALL.map(TopicKind::label)[..]),
            (&rebalances, &["assign", "revoke", "lost", "error"][..]),
            (&offset_commits, &["ok", "error"][..]),
            (&transactions, &["committed", "aborted"][..]),
            (&producer_replacements, &REPLACEMENT_REASONS[..]),
            (&window_resets, &WINDOW_RESET_REASONS[..]),
        ] {
            for value in values {
                counter.with_label_values(&[value]);
            }
        }
        for (stage, code) in crate::core::rejection::CODES {
            dead_letters.with_label_values(&[stage.as_str(), code]);
        }
        Self {
            registry,
            input_messages,
            output_records,
            records_suppressed,
            dead_letters,
            processing_duration,
            lag,
            consumer_lag,
            consumer_leaderless,
            producer_queue,
            in_flight_messages,
            in_flight_bytes,
            record_limit,
            oldest_unacknowledged,
            intake_paused,
            rebalances,
            offset_commits,
            transactions,
            delivery_retries,
            delivery_failures,
            producer_replacements,
            window_resets,
            build_info,
        }
    }

    /// The text exposition format, as served on `/metrics`.
    pub fn render(&self) -> String {
        let families = self.registry.gather();
        prometheus::TextEncoder::new()
            .encode_to_string(&families)
            .unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_registers_and_renders_with_the_prefix() {
        let m = Metrics::new();
        m.input_messages.with_label_values(&["processed"]).inc();
        let text = m.render();
        assert!(text.contains("callstream_input_messages_total{outcome=\"processed\"} 1"));
        assert!(text.contains("callstream_build_info"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("callstream_"), "{line}");
        }
    }

    #[test]
    fn labelled_counters_start_at_zero_so_their_first_event_shows_in_increase() {
        let text = Metrics::new().render();
        for series in [
            "callstream_rebalances_total{kind=\"lost\"} 0",
            "callstream_offset_commits_total{result=\"error\"} 0",
            "callstream_transactions_total{result=\"aborted\"} 0",
            "callstream_producer_replacements_total{reason=\"offsets_call_stuck\"} 0",
            "callstream_input_messages_total{outcome=\"rejected\"} 0",
            "callstream_output_records_total{topic=\"transfers\"} 0",
            "callstream_dead_letters_total{code=\"syntax\",stage=\"decode\"} 0",
            "callstream_dead_letters_total{code=\"output_too_large\",stage=\"encode\"} 0",
        ] {
            assert!(text.contains(series), "{series} in {text}");
        }
    }
}
