//! Stage 1, decode: message bytes to the raw JSON model, or a `DecodeError` that says what is wrong
//! with the bytes and where.
//!
//! Three readers, each used only when the one before declines: `reader`, hand-written, for the
//! messages real traffic consists of; a plain `serde_json` parse of the same model, which decides
//! what is accepted; and, only when that fails, a parse through `serde_path_to_error`, so that the
//! error can name the JSON path of the offending field without slowing down the messages that are
//! fine.

use thiserror::Error;

use super::raw::RawMessage;

/// Limits applied before a message is parsed.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Messages larger than this are rejected without being parsed.
    pub max_message_bytes: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        // RingCentral notifications are about 1 KB; 1 MiB is Kafka's default max message size.
        Self {
            max_message_bytes: 1024 * 1024,
        }
    }
}

/// Why bytes could not be read as a JSON notification.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("empty message")]
    Empty,
    #[error("message is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("message is not valid UTF-8 (invalid byte at offset {offset})")]
    NotUtf8 { offset: usize },
    #[error("JSON nested too deeply (more than 128 levels)")]
    TooDeep { path: String },
    #[error("truncated JSON: {message}")]
    Truncated { message: String },
    #[error("invalid JSON syntax: {message}")]
    Syntax { message: String },
    #[error("wrong type or value: {message}")]
    WrongType { message: String, path: String },
}

impl DecodeError {
    /// The JSON path of the offending field, when the error is about one field.
    pub fn path(&self) -> Option<&str> {
        match self {
            DecodeError::WrongType { path, .. } | DecodeError::TooDeep { path } => {
                Some(path.as_str())
            }
            _ => None,
        }
    }
}

/// Parses one message. Never panics, whatever the bytes.
pub fn decode<'a>(bytes: &'a [u8], limits: &DecodeLimits) -> Result<RawMessage<'a>, DecodeError> {
    if bytes.len() > limits.max_message_bytes {
        return Err(DecodeError::TooLarge {
            size: bytes.len(),
            limit: limits.max_message_bytes,
        });
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(DecodeError::Empty);
    }
    // JSON text is UTF-8 (RFC 8259). Checked over the whole message, not per string: serde_json
    // skips the strings of fields it ignores without checking them, so invalid bytes in an
    // unknown field would otherwise pass. Parsing from `str` then skips the per-string checks.
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => return Err(explain_bad_utf8(bytes, e)),
    };
    if let Some(message) = super::reader::read(text) {
        return Ok(message);
    }
    match serde_json::from_str(text) {
        Ok(message) => Ok(message),
        Err(_) => Err(explain_failure(text)),
    }
}

/// A message cut inside a multi-byte character is truncated, not badly encoded, if the JSON
/// before the cut is unfinished.
fn explain_bad_utf8(bytes: &[u8], e: std::str::Utf8Error) -> DecodeError {
    let offset = e.valid_up_to();
    if e.error_len().is_none() {
        // The bytes end inside a character; everything before it is valid UTF-8.
        let prefix = std::str::from_utf8(&bytes[..offset]).unwrap_or_default();
        if !prefix.trim().is_empty() {
            if let truncated @ DecodeError::Truncated { .. } = explain_failure(prefix) {
                return truncated;
            }
        }
    }
    DecodeError::NotUtf8 { offset }
}

/// The slow path: parse again, tracking the path, to say precisely what failed.
fn explain_failure(text: &str) -> DecodeError {
    let mut de = serde_json::Deserializer::from_str(text);
    let err = match serde_path_to_error::deserialize::<_, RawMessage<'_>>(&mut de) {
        Ok(_) => {
            // The value parsed, so what failed the first parse came after it.
            let message = match de.end() {
                Err(e) => e.to_string(),
                Ok(()) => "unparseable message".to_owned(),
            };
            return DecodeError::Syntax { message };
        }
        Err(err) => err,
    };
    let path = normalize_path(&err.path().to_string());
    let inner = err.into_inner();
    let message = inner.to_string();
    if message.starts_with("recursion limit exceeded") {
        return DecodeError::TooDeep { path };
    }
    match inner.classify() {
        serde_json::error::Category::Eof => DecodeError::Truncated { message },
        serde_json::error::Category::Syntax | serde_json::error::Category::Io => {
            DecodeError::Syntax { message }
        }
        serde_json::error::Category::Data => {
            let path = match duplicated_field(&message) {
                // serde names the object; the field repeated in it is what is wrong.
                Some(field) if path.is_empty() => field.to_owned(),
                Some(field) => format!("{path}.{field}"),
                None => path,
            };
            DecodeError::WrongType { message, path }
        }
    }
}

/// The field a "duplicate field `x`" error names.
fn duplicated_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("duplicate field `")?;
    rest.split_once('`').map(|(field, _)| field)
}

/// `serde_path_to_error` writes `.` for the root and `?` for positions it cannot name.
fn normalize_path(path: &str) -> String {
    if path == "." {
        String::new()
    } else {
        path.to_owned()
    }
}
