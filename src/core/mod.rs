//! The functional core: message bytes in, records for the derived topics out. No I/O, no clocks,
//! no Kafka: every function here is tested with plain values.
//!
//! The pipeline, one module per stage:
//!
//! ```text
//! bytes ─ decode ─ envelope ─ validate ─ normalize ─ split ─ classify ─ encode ─ records
//!           │         │          │          │
//!           └─────────┴──────────┴──────────┴──▶ Rejection (stage, reason, JSON path) ─▶ dead letters
//! ```
//!
//! `raw` is the input model (read by `reader`, or by serde when `reader` declines), `model` the normalized one, `records` the output contract, `dedup`
//! the duplicate window and `processor` ties the stages together. `budget` bounds what one
//! message's encoded records may take; the service and the offline commands apply it as they
//! encode.

pub mod budget;
pub mod classify;
pub mod decode;
pub mod dedup;
pub mod encode;
pub mod envelope;
pub mod framing;
pub mod model;
pub mod normalize;
pub mod processor;
pub mod raw;
pub mod reader;
pub mod records;
pub mod rejection;
pub mod split;
pub mod validate;

pub use decode::DecodeLimits;
pub use model::Notification;
pub use processor::{Outcome, Processor, ProcessorConfig, ProcessorMark};
pub use records::{OutputRecord, TopicKind};
pub use rejection::{Rejection, Stage};

/// Stages 1 to 4: bytes to a validated, normalized notification.
pub fn parse<'a>(bytes: &'a [u8], limits: &DecodeLimits) -> Result<Notification<'a>, Rejection> {
    let message = decode::decode(bytes, limits)?;
    let unwrapped = envelope::unwrap(message)?;
    validate::validate(&unwrapped)?;
    Ok(normalize::normalize(unwrapped)?)
}

/// Stages 5 and 6: every record a notification yields, per party its party event first.
pub fn derive<'n>(notification: &'n Notification<'n>, out: &mut Vec<OutputRecord<'n>>) {
    for event in split::split(notification) {
        let first = out.len();
        classify::classify(&event, out);
        out.insert(first, OutputRecord::Party(event));
    }
}
