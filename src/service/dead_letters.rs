//! What a dead letter carries: the original key, value, headers and timestamp of the rejected
//! message, plus headers that say why it was rejected and where it came from. A value too large
//! for the producer to send is cut to fit, and a header says how large it was: the whole message is
//! still in the input topic at the source partition and offset.

use crate::core::Rejection;

/// Header names on dead-letter records.
pub mod header {
    pub const STAGE: &str = "callstream.error.stage";
    pub const CODE: &str = "callstream.error.code";
    pub const REASON: &str = "callstream.error.reason";
    pub const PATH: &str = "callstream.error.path";
    pub const SOURCE_TOPIC: &str = "callstream.source.topic";
    pub const SOURCE_PARTITION: &str = "callstream.source.partition";
    pub const SOURCE_OFFSET: &str = "callstream.source.offset";
    pub const VERSION: &str = "callstream.version";
    /// Present when the value was cut to fit the producer's record size limit: the original
    /// value's length in bytes.
    pub const VALUE_TRUNCATED: &str = "callstream.value.truncated";
    /// Present when the original key and headers were left out, too large to fit: their size in
    /// bytes.
    pub const ORIGINAL_DROPPED: &str = "callstream.original.dropped";
}

/// Where a rejected message was read.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

/// The headers callstream adds to a dead letter, after the message's own headers.
pub fn headers(rejection: &Rejection, source: Source<'_>) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        (header::STAGE, rejection.stage.as_str().to_owned()),
        (header::CODE, rejection.code.to_owned()),
        (header::REASON, rejection.reason.clone()),
    ];
    if let Some(path) = &rejection.path {
        headers.push((header::PATH, path.clone()));
    }
    headers.extend([
        (header::SOURCE_TOPIC, source.topic.to_owned()),
        (header::SOURCE_PARTITION, source.partition.to_string()),
        (header::SOURCE_OFFSET, source.offset.to_string()),
        (header::VERSION, env!("CARGO_PKG_VERSION").to_owned()),
    ]);
    headers
}

/// Bytes librdkafka counts for one header besides its name and value (two length prefixes), with
/// room to spare.
const PER_HEADER_OVERHEAD: usize = 12;
/// The most `VALUE_TRUNCATED` or `ORIGINAL_DROPPED` can add: a name, a `usize` in decimal and the
/// prefixes.
const NOTE_HEADER_BYTES: usize = 40 + 20 + PER_HEADER_OVERHEAD;

/// The bytes librdkafka counts for headers of these (name, value) lengths.
pub fn header_bytes(headers: impl IntoIterator<Item = (usize, usize)>) -> usize {
    headers
        .into_iter()
        .map(|(name, value)| name + value + PER_HEADER_OVERHEAD)
        .sum()
}

/// What of the rejected message a dead letter can carry within the producer's record size limit
/// (`message.max.bytes`: librdkafka refuses a larger record when it is sent, and refusing a dead
/// letter would stop the service on bad input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fit {
    /// How much of the value is sent.
    pub value_len: usize,
    /// Set when the value is cut: its original length (`VALUE_TRUNCATED`).
    pub truncated_from: Option<usize>,
    /// Set when the original key and headers are left out, because they alone are too large:
    /// their size in bytes (`ORIGINAL_DROPPED`). The value is then empty.
    pub original_dropped: Option<usize>,
}

/// Fits a dead letter into `max_record_bytes`: the value is cut first; if the original key and
/// headers (`original_bytes`) leave no room at all, they are left out too. `own_header_bytes` are
/// the headers callstream adds (`headers`), which always go.
pub fn fit(
    value_len: usize,
    original_bytes: usize,
    own_header_bytes: usize,
    max_record_bytes: usize,
) -> Fit {
    let room = |fixed: usize| {
        max_record_bytes
            .checked_sub(fixed + own_header_bytes + NOTE_HEADER_BYTES)
            .filter(|&room| room > 0)
    };
    match room(original_bytes) {
        Some(room) if value_len <= room => Fit {
            value_len,
            truncated_from: None,
            original_dropped: None,
        },
        Some(room) => Fit {
            value_len: room,
            truncated_from: Some(value_len),
            original_dropped: None,
        },
        None => Fit {
            value_len: 0,
            truncated_from: (value_len > 0).then_some(value_len),
            original_dropped: Some(original_bytes),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Stage;

    #[test]
    fn a_value_that_fits_is_kept_whole() {
        let fit = fit(1_000, 50, 300, 2_000);
        assert_eq!(
            fit,
            Fit {
                value_len: 1_000,
                truncated_from: None,
                original_dropped: None
            }
        );
    }

    #[test]
    fn a_value_too_large_is_cut_so_that_the_whole_record_fits() {
        let (original, own, limit) = (
            10 + header_bytes([(20, 30)]),
            header_bytes([(5, 100)]),
            2_000,
        );
        let fit = fit(5_000, original, own, limit);
        assert_eq!(fit.truncated_from, Some(5_000));
        assert_eq!(fit.original_dropped, None);
        let record = original + fit.value_len + own + NOTE_HEADER_BYTES;
        assert!(record <= limit, "{record} bytes against {limit}");
        assert_eq!(record, limit, "cut more than needed");
    }

    #[test]
    fn original_key_and_headers_too_large_are_left_out() {
        let fit = fit(3, 5_000, 200, 1_000);
        assert_eq!(
            fit,
            Fit {
                value_len: 0,
                truncated_from: Some(3),
                original_dropped: Some(5_000)
            }
        );
    }

    #[test]
    fn names_the_error_and_the_source() {
        let rejection = Rejection::new(
            Stage::Validate,
            "missing_field",
            "required field body.parties is missing".into(),
            Some("body.parties".into()),
        );
        let h = headers(
            &rejection,
            Source {
                topic: "in",
                partition: 2,
                offset: 41,
            },
        );
        let get = |name| h.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str());
        assert_eq!(get(header::STAGE), Some("validate"));
        assert_eq!(get(header::CODE), Some("missing_field"));
        assert_eq!(get(header::PATH), Some("body.parties"));
        assert_eq!(get(header::SOURCE_TOPIC), Some("in"));
        assert_eq!(get(header::SOURCE_PARTITION), Some("2"));
        assert_eq!(get(header::SOURCE_OFFSET), Some("41"));
        assert_eq!(get(header::VERSION), Some(env!("CARGO_PKG_VERSION")));
    }
}
