//! Stage 7, encode: records to Avro binary (what the Kafka topics carry) or to JSON (what the
//! offline CLI prints). Both walk the same field list (`Record::write`).
//!
//! The schemas are the files in `schemas/`, compiled into the binary with `include_str!` and
//! parsed once. The binary encoder writes the Avro encoding directly instead of building
//! `apache_avro::Value` trees, which would allocate a string per field name; `tests/contract.rs`
//! decodes its output with `apache_avro` against these schemas to prove they agree.

use std::sync::OnceLock;

use apache_avro::Schema;
use serde_json::{Map, Value};
use thiserror::Error;

use super::model::AvroEnum;
use super::records::{FieldSink, Record, TopicKind};

/// The `.avsc` text of each derived topic's value schema.
pub fn schema_text(topic: TopicKind) -> &'static str {
    match topic {
        TopicKind::Parties => include_str!("../../schemas/party_event.avsc"),
        TopicKind::Missed => include_str!("../../schemas/missed_call.avsc"),
        TopicKind::Recorded => include_str!("../../schemas/recorded_call.avsc"),
        TopicKind::Transfers => include_str!("../../schemas/transfer.avsc"),
    }
}

/// A schema file that does not parse: a build defect, reported at start-up.
#[derive(Debug, Error)]
#[error("schema of topic {topic} does not parse: {source}")]
pub struct SchemaError {
    pub topic: &'static str,
    #[source]
    pub source: apache_avro::Error,
}

/// The parsed schema of each derived topic.
pub fn schema(topic: TopicKind) -> Result<&'static Schema, &'static SchemaError> {
    static SCHEMAS: OnceLock<Vec<Result<Schema, SchemaError>>> = OnceLock::new();
    let schemas = SCHEMAS.get_or_init(|| {
        TopicKind::ALL
            .iter()
            .map(|&t| {
                Schema::parse_str(schema_text(t)).map_err(|source| SchemaError {
                    topic: t.label(),
                    source,
                })
            })
            .collect()
    });
    let index = TopicKind::ALL
        .iter()
        .position(|&t| t == topic)
        .unwrap_or_default();
    schemas[index].as_ref()
}

/// Appends the Avro binary encoding (the datum alone, no framing) of a record to `out`.
#[inline]
pub fn write_avro<R: Record>(record: &R, out: &mut Vec<u8>) {
    record.write(&mut AvroSink { out });
}

/// The record as a plain JSON object: unions unwrapped, enums as their symbols, timestamps as
/// epoch milliseconds.
pub fn to_json<R: Record>(record: &R) -> Value {
    let mut sink = JsonSink::default();
    record.write(&mut sink);
    Value::Object(sink.fields)
}

struct AvroSink<'b> {
    out: &'b mut Vec<u8>,
}

// The methods are `#[inline]`: `Record::write` is generic, so it is compiled in the crate that
// encodes, and without the attribute every field would be a call into this crate.
impl AvroSink<'_> {
    /// Avro `long`/`int`: zig-zag, then little-endian base-128 varint.
    #[inline]
    fn long(&mut self, value: i64) {
        let mut n = ((value << 1) ^ (value >> 63)) as u64;
        while n >= 0x80 {
            self.out.push((n as u8) | 0x80);
            n >>= 7;
        }
        self.out.push(n as u8);
    }

    #[inline]
    fn bytes(&mut self, value: &str) {
        self.long(value.len() as i64);
        self.out.extend_from_slice(value.as_bytes());
    }

    /// Union branch: every nullable field of the contract is `["null", T]`.
    #[inline]
    fn branch(&mut self, present: bool) {
        self.out.push(if present { 2 } else { 0 });
    }
}

impl FieldSink for AvroSink<'_> {
    #[inline]
    fn string(&mut self, _: &'static str, value: &str) {
        self.bytes(value);
    }
    #[inline]
    fn opt_string(&mut self, _: &'static str, value: Option<&str>) {
        self.branch(value.is_some());
        if let Some(v) = value {
            self.bytes(v);
        }
    }
    #[inline]
    fn boolean(&mut self, _: &'static str, value: bool) {
        self.out.push(u8::from(value));
    }
    #[inline]
    fn opt_boolean(&mut self, _: &'static str, value: Option<bool>) {
        self.branch(value.is_some());
        if let Some(v) = value {
            self.out.push(u8::from(v));
        }
    }
    #[inline]
    fn opt_long(&mut self, _: &'static str, value: Option<i64>) {
        self.branch(value.is_some());
        if let Some(v) = value {
            self.long(v);
        }
    }
    #[inline]
    fn enumeration<E: AvroEnum>(&mut self, _: &'static str, value: E) {
        self.long(value.index() as i64);
    }
    #[inline]
    fn opt_enumeration<E: AvroEnum>(&mut self, _: &'static str, value: Option<E>) {
        self.branch(value.is_some());
        if let Some(v) = value {
            self.long(v.index() as i64);
        }
    }
    #[inline]
    fn opt_record<R: Record>(&mut self, _: &'static str, value: Option<&R>) {
        self.branch(value.is_some());
        if let Some(v) = value {
            v.write(self);
        }
    }
    #[inline]
    fn array<R: Record>(&mut self, _: &'static str, items: &[R]) {
        // One block holding every item, then the empty block that ends the array.
        if !items.is_empty() {
            self.long(items.len() as i64);
            for item in items {
                item.write(self);
            }
        }
        self.out.push(0);
    }
}

#[derive(Default)]
struct JsonSink {
    fields: Map<String, Value>,
}

impl JsonSink {
    fn put(&mut self, name: &'static str, value: Value) {
        self.fields.insert(name.to_owned(), value);
    }
}

impl FieldSink for JsonSink {
    fn string(&mut self, name: &'static str, value: &str) {
        self.put(name, Value::from(value));
    }
    fn opt_string(&mut self, name: &'static str, value: Option<&str>) {
        self.put(name, value.map_or(Value::Null, Value::from));
    }
    fn boolean(&mut self, name: &'static str, value: bool) {
        self.put(name, Value::from(value));
    }
    fn opt_boolean(&mut self, name: &'static str, value: Option<bool>) {
        self.put(name, value.map_or(Value::Null, Value::from));
    }
    fn opt_long(&mut self, name: &'static str, value: Option<i64>) {
        self.put(name, value.map_or(Value::Null, Value::from));
    }
    fn enumeration<E: AvroEnum>(&mut self, name: &'static str, value: E) {
        self.put(name, Value::from(value.as_str()));
    }
    fn opt_enumeration<E: AvroEnum>(&mut self, name: &'static str, value: Option<E>) {
        self.put(name, value.map_or(Value::Null, |v| Value::from(v.as_str())));
    }
    fn opt_record<R: Record>(&mut self, name: &'static str, value: Option<&R>) {
        self.put(name, value.map_or(Value::Null, to_json));
    }
    fn array<R: Record>(&mut self, name: &'static str, items: &[R]) {
        self.put(name, Value::Array(items.iter().map(to_json).collect()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_parses() {
        for topic in TopicKind::ALL {
            assert!(schema(topic).is_ok(), "{topic:?}");
        }
    }

    #[test]
    fn longs_are_zigzag_varints() {
        let mut out = Vec::new();
        let mut sink = AvroSink { out: &mut out };
        for v in [0i64, -1, 1, 63, -64, 64, i64::MAX, i64::MIN] {
            sink.long(v);
        }
        assert_eq!(
            out,
            [
                vec![0x00, 0x01, 0x02, 0x7e, 0x7f, 0x80, 0x01],
                vec![0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
                vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ]
            .concat()
        );
    }
}
