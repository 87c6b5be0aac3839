//! Why a message was not accepted: the stage that refused it, a human-readable reason, the JSON
//! path of the offending field, and a short stable code for metrics labels and headers.

use std::fmt;

use super::decode::DecodeError;
use super::envelope::EnvelopeError;
use super::validate::ValidationError;

/// The stage of the pipeline that refused a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// The bytes are not a JSON document of the expected types.
    Decode,
    /// The JSON is not a telephony-sessions notification in any known shape.
    Envelope,
    /// A required field is missing or a value cannot be normalized.
    Validate,
    /// A record could not be encoded for its topic.
    Encode,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Envelope => "envelope",
            Stage::Validate => "validate",
            Stage::Encode => "encode",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message that goes to the dead-letter topic, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub stage: Stage,
    /// A bounded set of values (`missing_field`, `not_utf8`, ...), safe as a metrics label.
    pub code: &'static str,
    /// What was wrong, for people.
    pub reason: String,
    /// JSON path of the offending field (`body.parties[0].status.code`), when there is one.
    pub path: Option<String>,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error: {}", self.stage, self.reason)?;
        if let Some(path) = &self.path {
            if !path.is_empty() {
                write!(f, " (at {path})")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Rejection {}

/// Every stage and code a rejection can carry, so that the metrics can start each series at 0
/// (a series that first appears at 1 is invisible to `increase()`). The tests below check each
/// error's code is listed.
pub const CODES: [(Stage, &str); 18] = [
    (Stage::Decode, "empty"),
    (Stage::Decode, "too_large"),
    (Stage::Decode, "not_utf8"),
    (Stage::Decode, "too_deep"),
    (Stage::Decode, "truncated"),
    (Stage::Decode, "syntax"),
    (Stage::Decode, "wrong_type"),
    (Stage::Envelope, "not_an_object"),
    (Stage::Envelope, "not_a_frame"),
    (Stage::Envelope, "no_body"),
    (Stage::Envelope, "wrong_event"),
    (Stage::Validate, "missing_field"),
    (Stage::Validate, "empty_field"),
    (Stage::Validate, "no_parties"),
    (Stage::Validate, "invalid_value"),
    (Stage::Validate, "over_limit"),
    (Stage::Encode, "record_too_large"),
    (Stage::Encode, "output_too_large"),
];

impl Rejection {
    pub fn new(stage: Stage, code: &'static str, reason: String, path: Option<String>) -> Self {
        Self {
            stage,
            code,
            reason,
            path,
        }
    }
}

impl From<DecodeError> for Rejection {
    fn from(e: DecodeError) -> Self {
        let code = match &e {
            DecodeError::Empty => "empty",
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::NotUtf8 { .. } => "not_utf8",
            DecodeError::TooDeep { .. } => "too_deep",
            DecodeError::Truncated { .. } => "truncated",
            DecodeError::Syntax { .. } => "syntax",
            DecodeError::WrongType { .. } => "wrong_type",
        };
        let path = e.path().map(str::to_owned);
        Rejection::new(Stage::Decode, code, e.to_string(), path)
    }
}

impl From<EnvelopeError> for Rejection {
    fn from(e: EnvelopeError) -> Self {
        let code = match &e {
            EnvelopeError::NotAnObject { .. } => "not_an_object",
            EnvelopeError::NotAFrame { .. } => "not_a_frame",
            EnvelopeError::NoBody { .. } => "no_body",
            EnvelopeError::WrongEvent { .. } => "wrong_event",
        };
        let path = e.path().map(str::to_owned);
        Rejection::new(Stage::Envelope, code, e.to_string(), path)
    }
}

impl From<ValidationError> for Rejection {
    fn from(e: ValidationError) -> Self {
        let code = match &e {
            ValidationError::Missing { .. } => "missing_field",
            ValidationError::Empty { .. } => "empty_field",
            ValidationError::NoParties { .. } => "no_parties",
            ValidationError::Invalid { .. } => "invalid_value",
            ValidationError::OverLimit { .. } => "over_limit",
        };
        let path = Some(e.path().to_owned());
        Rejection::new(Stage::Validate, code, e.to_string(), path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(rejection: Rejection) {
        assert!(
            CODES.contains(&(rejection.stage, rejection.code)),
            "{:?} {} is not in CODES",
            rejection.stage,
            rejection.code
        );
    }

    #[test]
    fn every_code_an_error_maps_to_is_listed() {
        let text = || String::from("x");
        let path = || String::from("body");
        for e in [
            DecodeError::Empty,
            DecodeError::TooLarge { size: 2, limit: 1 },
            DecodeError::NotUtf8 { offset: 0 },
            DecodeError::TooDeep { path: path() },
            DecodeError::Truncated { message: text() },
            DecodeError::Syntax { message: text() },
            DecodeError::WrongType {
                message: text(),
                path: path(),
            },
        ] {
            listed(e.into());
        }
        for e in [
            EnvelopeError::NotAnObject { found: "array" },
            EnvelopeError::NotAFrame { reason: text() },
            EnvelopeError::NoBody { path: path() },
            EnvelopeError::WrongEvent {
                event: text(),
                path: path(),
            },
        ] {
            listed(e.into());
        }
        for e in [
            ValidationError::Missing { path: path() },
            ValidationError::Empty { path: path() },
            ValidationError::NoParties { path: path() },
            ValidationError::Invalid {
                path: path(),
                reason: text(),
            },
            ValidationError::OverLimit {
                path: path(),
                found: text(),
                limit: 1,
            },
        ] {
            listed(e.into());
        }
        // A variant added to an error type fails to compile here, as a reminder to add an
        // example of it above.
        let _reminder = |d: &DecodeError, e: &EnvelopeError, v: &ValidationError| {
            match d {
                DecodeError::Empty
                | DecodeError::TooLarge { .. }
                | DecodeError::NotUtf8 { .. }
                | DecodeError::TooDeep { .. }
                | DecodeError::Truncated { .. }
                | DecodeError::Syntax { .. }
                | DecodeError::WrongType { .. } => {}
            }
            match e {
                EnvelopeError::NotAnObject { .. }
                | EnvelopeError::NotAFrame { .. }
                | EnvelopeError::NoBody { .. }
                | EnvelopeError::WrongEvent { .. } => {}
            }
            match v {
                ValidationError::Missing { .. }
                | ValidationError::Empty { .. }
                | ValidationError::NoParties { .. }
                | ValidationError::Invalid { .. }
                | ValidationError::OverLimit { .. } => {}
            }
        };
        // The encode stage's codes are checked where they are made (`budget`'s tests).
        let mut pairs = CODES.to_vec();
        pairs.sort_by_key(|(stage, code)| (stage.as_str(), *code));
        pairs.dedup();
        assert_eq!(pairs.len(), CODES.len(), "a pair is listed twice");
    }
}
