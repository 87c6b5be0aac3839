//! How an encoded record is framed on its topic, so that readers can find its schema:
//!
//! - Avro single-object encoding (the default, no registry needed): `C3 01`, the 8-byte
//!   little-endian CRC-64-AVRO (Rabin) fingerprint of the schema's canonical form, then the datum;
//! - the Confluent wire format (with a Schema Registry): byte 0, the 4-byte big-endian schema id,
//!   then the datum.

use std::sync::OnceLock;

use apache_avro::headers::{HeaderBuilder, RabinFingerprintHeader};
use apache_avro::types::Value;
use thiserror::Error;

use super::encode::{schema, write_avro};
use super::records::{OutputRecord, TopicKind};

/// The prefix written before every datum, per derived topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueFormat {
    prefixes: [Vec<u8>; 4],
    kind: FormatKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatKind {
    SingleObject,
    Confluent,
}

/// Why a framed value could not be read.
#[derive(Debug, Error)]
pub enum FramingError {
    #[error("value is {0} bytes, too short for a framed Avro record")]
    TooShort(usize),
    #[error("value does not start with a single-object (C3 01) or Confluent (00) header")]
    UnknownHeader,
    #[error("single-object fingerprint does not match the {topic} schema")]
    WrongFingerprint { topic: &'static str },
    #[error("the schema does not parse: {0}")]
    Schema(String),
    #[error("datum does not decode with the {topic} schema: {message}")]
    Datum {
        topic: &'static str,
        message: String,
    },
}

impl ValueFormat {
    /// Avro single-object encoding with each topic's schema fingerprint.
    pub fn single_object() -> Result<Self, FramingError> {
        let mut prefixes: [Vec<u8>; 4] = Default::default();
        for kind in TopicKind::ALL {
            let schema = schema(kind).map_err(|e| FramingError::Schema(e.to_string()))?;
            prefixes[kind.index()] = RabinFingerprintHeader::from_schema(schema).build_header();
        }
        Ok(Self {
            prefixes,
            kind: FormatKind::SingleObject,
        })
    }

    /// The Confluent wire format with the ids the registry gave each topic's value schema, in
    /// `TopicKind::ALL` order.
    pub fn confluent(ids: [u32; 4]) -> Self {
        let prefixes = ids.map(|id| {
            let mut p = vec![0u8];
            p.extend_from_slice(&id.to_be_bytes());
            p
        });
        Self {
            prefixes,
            kind: FormatKind::Confluent,
        }
    }

    pub fn kind(&self) -> FormatKind {
        self.kind
    }

    /// The bytes that precede the datum of a record of `topic`.
    pub fn prefix(&self, topic: TopicKind) -> &[u8] {
        &self.prefixes[topic.index()]
    }

    /// Appends a record's value as its topic carries it: the prefix, then the Avro datum.
    pub fn write_value(&self, record: &OutputRecord<'_>, out: &mut Vec<u8>) {
        out.extend_from_slice(self.prefix(record.topic()));
        write_avro(record, out);
    }
}

/// Reads a framed value of a derived topic (either framing) back into an Avro value.
pub fn decode_value(topic: TopicKind, bytes: &[u8]) -> Result<Value, FramingError> {
    let schema = schema(topic).map_err(|e| FramingError::Schema(e.to_string()))?;
    let datum = match bytes {
        [0xC3, 0x01, rest @ ..] if rest.len() >= 8 => {
            // The fingerprint of the canonical form is computed once per process, not per value.
            static SINGLE_OBJECT: OnceLock<Result<ValueFormat, String>> = OnceLock::new();
            let format = SINGLE_OBJECT
                .get_or_init(|| ValueFormat::single_object().map_err(|e| e.to_string()))
                .as_ref()
                .map_err(|e| FramingError::Schema(e.clone()))?;
            if bytes[..10] != *format.prefix(topic) {
                return Err(FramingError::WrongFingerprint {
                    topic: topic.label(),
                });
            }
            &rest[8..]
        }
        [0x00, rest @ ..] if rest.len() >= 4 => &rest[4..],
        _ if bytes.len() < 5 => return Err(FramingError::TooShort(bytes.len())),
        _ => return Err(FramingError::UnknownHeader),
    };
    let mut reader = datum;
    let value = apache_avro::from_avro_datum(schema, &mut reader, None).map_err(|e| {
        FramingError::Datum {
            topic: topic.label(),
            message: e.to_string(),
        }
    })?;
    if !reader.is_empty() {
        return Err(FramingError::Datum {
            topic: topic.label(),
            message: format!("{} bytes left over after the datum", reader.len()),
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_object_values_read_back_with_apache_avros_single_object_reader() {
        let line = br#"{"uuid":"1","subscriptionId":"s","body":{"telephonySessionId":"s-1","sequence":3,"parties":[{"id":"p-1","extensionId":"101","missedCall":true,"recordings":[{"id":"r1","active":true}],"status":{"code":"Disconnected","reason":"BlindTransfer"}}]}}"#;
        let format = ValueFormat::single_object().unwrap();
        let notification = crate::core::parse(line, &Default::default()).unwrap();
        let mut records = Vec::new();
        crate::core::derive(&notification, &mut records);
        assert_eq!(records.len(), 4, "one record of each topic");
        for record in &records {
            let kind = record.topic();
            let mut value = Vec::new();
            format.write_value(record, &mut value);
            let reader =
                apache_avro::GenericSingleObjectReader::new(schema(kind).unwrap().clone()).unwrap();
            let read = reader.read_value(&mut value.as_slice()).unwrap();
            assert_eq!(read, decode_value(kind, &value).unwrap());
        }
    }

    #[test]
    fn confluent_prefix_is_magic_zero_and_a_big_endian_id() {
        let format = ValueFormat::confluent([1, 2, 3, 0x01020304]);
        assert_eq!(format.prefix(TopicKind::Parties), &[0, 0, 0, 0, 1]);
        assert_eq!(format.prefix(TopicKind::Transfers), &[0, 1, 2, 3, 4]);
    }

    #[test]
    fn short_or_unknown_values_are_refused() {
        assert!(matches!(
            decode_value(TopicKind::Missed, &[1, 2]),
            Err(FramingError::TooShort(2))
        ));
        assert!(matches!(
            decode_value(TopicKind::Missed, &[9, 9, 9, 9, 9, 9]),
            Err(FramingError::UnknownHeader)
        ));
    }
}
