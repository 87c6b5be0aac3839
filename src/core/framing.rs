//! How an encoded record is framed on its topic, so that readers can find its schema:
//!
//! - Avro single-object encoding (the default, no registry needed): `C3 01`, the 8-byte
//!   little-endian CRC-64-AVRO (Rabin) fingerprint of the schema's Parsing Canonical Form, then the
//!   datum;
//! - the Confluent wire format (with a Schema Registry): byte 0, the 4-byte big-endian schema id,
//!   then the datum.

use std::sync::OnceLock;

use apache_avro::headers::{HeaderBuilder, RabinFingerprintHeader};
use apache_avro::rabin::Rabin;
use apache_avro::types::Value;
use apache_avro::Schema;
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
        Self::single_object_with(single_object_header)
    }

    /// The single-object prefixes callstream wrote before it followed the specification: with
    /// apache-avro's fingerprint (see `parsing_canonical_form`). Still read, not written.
    fn legacy_single_object() -> Result<Self, FramingError> {
        Self::single_object_with(|schema| {
            Ok(RabinFingerprintHeader::from_schema(schema).build_header())
        })
    }

    fn single_object_with(
        header: impl Fn(&Schema) -> Result<Vec<u8>, FramingError>,
    ) -> Result<Self, FramingError> {
        let mut prefixes: [Vec<u8>; 4] = Default::default();
        for kind in TopicKind::ALL {
            let schema = schema(kind).map_err(|e| FramingError::Schema(e.to_string()))?;
            prefixes[kind.index()] = header(schema)?;
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

/// The schema's Parsing Canonical Form, as the Avro specification defines it and Java computes it
/// (`SchemaNormalization.toParsingForm`). apache-avro's `canonical_form` leaves a primitive with a
/// logical type as `{"type":"long"}` where the specification's [PRIMITIVES] rule makes it `"long"`
/// (AVRO-4004), so its fingerprint of a schema with a timestamp differs from every other
/// implementation's, and Java's single-object decoder refuses the record. Names, symbols and the
/// other attributes the form keeps cannot contain that text, so replacing it is exact.
pub fn parsing_canonical_form(schema: &Schema) -> String {
    let mut form = schema.canonical_form();
    for primitive in [
        "null", "boolean", "int", "long", "float", "double", "bytes", "string",
    ] {
        form = form.replace(
            &format!(r#"{{"type":"{primitive}"}}"#),
            &format!(r#""{primitive}""#),
        );
    }
    form
}

/// `C3 01` and the schema's CRC-64-AVRO fingerprint, little-endian, as the specification says.
fn single_object_header(schema: &Schema) -> Result<Vec<u8>, FramingError> {
    // The fingerprint of the form is that of the schema it parses to: it has no logical types left,
    // so apache-avro's canonical form of it is the form itself (checked by a test).
    let plain = Schema::parse_str(&parsing_canonical_form(schema))
        .map_err(|e| FramingError::Schema(e.to_string()))?;
    let fingerprint = plain.fingerprint::<Rabin>();
    let mut header = vec![0xC3, 0x01];
    header.extend_from_slice(&fingerprint.bytes);
    Ok(header)
}

/// Reads a framed value of a derived topic (either framing) back into an Avro value.
pub fn decode_value(topic: TopicKind, bytes: &[u8]) -> Result<Value, FramingError> {
    let schema = schema(topic).map_err(|e| FramingError::Schema(e.to_string()))?;
    let datum = match bytes {
        [0xC3, 0x01, rest @ ..] if rest.len() >= 8 => {
            // The fingerprints are computed once per process, not per value; records written
            // with the fingerprint of earlier versions are read too.
            static SINGLE_OBJECT: OnceLock<Result<[ValueFormat; 2], String>> = OnceLock::new();
            let formats = SINGLE_OBJECT
                .get_or_init(|| {
                    Ok([
                        ValueFormat::single_object().map_err(|e| e.to_string())?,
                        ValueFormat::legacy_single_object().map_err(|e| e.to_string())?,
                    ])
                })
                .as_ref()
                .map_err(|e| FramingError::Schema(e.clone()))?;
            if !formats
                .iter()
                .any(|format| bytes[..10] == *format.prefix(topic))
            {
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
            // apache-avro's reader checks its own fingerprint (AVRO-4004): given the datum
            // behind a header it computes, it reads what `decode_value` reads.
            let reader =
                apache_avro::GenericSingleObjectReader::new(schema(kind).unwrap().clone()).unwrap();
            let mut legacy =
                RabinFingerprintHeader::from_schema(schema(kind).unwrap()).build_header();
            legacy.extend_from_slice(&value[10..]);
            let read = reader.read_value(&mut legacy.as_slice()).unwrap();
            assert_eq!(read, decode_value(kind, &value).unwrap());
            // Records of earlier versions, framed so, are still read.
            assert_eq!(read, decode_value(kind, &legacy).unwrap());
        }
    }

    #[test]
    fn the_fingerprint_is_of_the_specifications_parsing_canonical_form() {
        // The specification's rules: attributes other than type, name, fields, symbols, items,
        // values and size stripped (a logical type among them), and a primitive in its simple form.
        let schema = Schema::parse_str(
            r#"{"type":"record","name":"R","namespace":"n","doc":"d","fields":[
                {"name":"t","type":{"type":"long","logicalType":"timestamp-millis"},"doc":"x"},
                {"name":"o","type":["null",{"type":"long","logicalType":"timestamp-millis"}],"default":null}]}"#,
        )
        .unwrap();
        let form = parsing_canonical_form(&schema);
        assert_eq!(
            form,
            r#"{"name":"n.R","type":"record","fields":[{"name":"t","type":"long"},{"name":"o","type":["null","long"]}]}"#
        );
        // The header's fingerprint is the form's, as its own canonical form is the form.
        let plain = Schema::parse_str(&form).unwrap();
        assert_eq!(plain.canonical_form(), form);
        let header = single_object_header(&schema).unwrap();
        assert_eq!(header[..2], [0xC3, 0x01]);
        assert_eq!(header[2..], plain.fingerprint::<Rabin>().bytes[..]);
        for kind in TopicKind::ALL {
            let form = parsing_canonical_form(schema_of(kind));
            assert!(!form.contains(r#"{"type":"long"}"#), "{kind:?}: {form}");
            // Attributes apache-avro keeps that the specification strips (a decimal's), which
            // the replacement above would not cover.
            for kept in [r#""precision""#, r#""scale""#, r#""logicalType""#] {
                assert!(!form.contains(kept), "{kind:?}: {form}");
            }
            assert_eq!(Schema::parse_str(&form).unwrap().canonical_form(), form);
        }
    }

    /// The fingerprints Java's `SchemaNormalization.parsingFingerprint64` gives the shipped
    /// schemas (Avro 1.12.2; `tests/java`, run by `tests/contract.rs`, checks the same against
    /// Java each time). A schema change changes them: take the new ones from Java.
    #[test]
    fn the_fingerprints_are_javas() {
        let format = ValueFormat::single_object().unwrap();
        for (kind, java) in [
            (TopicKind::Parties, -6_518_152_522_416_330_244_i64),
            (TopicKind::Missed, -3_517_589_818_246_730_432),
            (TopicKind::Recorded, -413_796_187_646_406_131),
            (TopicKind::Transfers, 5_869_810_830_150_287_351),
        ] {
            let prefix = format.prefix(kind);
            assert_eq!(prefix[..2], [0xC3, 0x01]);
            assert_eq!(prefix[2..], java.to_le_bytes(), "{kind:?}");
        }
    }

    fn schema_of(kind: TopicKind) -> &'static Schema {
        schema(kind).unwrap()
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
