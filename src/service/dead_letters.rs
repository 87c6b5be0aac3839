//! What a dead letter carries: the original key, value, headers and timestamp of the rejected
//! message, plus headers that say why it was rejected and where it came from.

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Stage;

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
