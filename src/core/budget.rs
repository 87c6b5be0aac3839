//! Stage 7's bounds: what the encoded records of one message may take. Each record, with its key,
//! must fit the producer's record limit, and all of them together must stay proportionate to the
//! message. The service and the offline commands apply the same checks, so both refuse the same
//! messages (measured with the service's default framing and limits offline).

use super::rejection::{Rejection, Stage};

/// Records larger than this (key, value and librdkafka's framing) are refused here rather than by
/// the broker, whose default limit per topic is about a megabyte. The producer's own limit
/// (`message.max.bytes`) applies too, where it is lower: a record it refuses would stop the
/// service, and the message would stop it again after each restart.
pub const MAX_RECORD_BYTES: usize = 900_000;

/// What librdkafka adds to a record's key, value and headers when it checks the record against
/// `message.max.bytes` (`RD_KAFKAP_MESSAGE_V2_MAX_OVERHEAD`: the varints of the record's framing at
/// their longest, and its attributes byte).
pub const RECORD_OVERHEAD: usize = 36;

/// The records of one message may take this many times its own size, plus
/// `OUTPUT_ALLOWANCE_BYTES`, encoded (keys included); more, and the message is refused. Real
/// notifications derive less than their own size; hostile ones within the limits of `validate`
/// could repeat a long string in hundreds of records, and the service holds the records of many
/// messages at once.
pub const OUTPUT_PER_INPUT_BYTE: usize = 16;
pub const OUTPUT_ALLOWANCE_BYTES: usize = 16 * 1024;

/// The encoded bytes one message's records may still take.
#[derive(Debug, Clone)]
pub struct OutputBudget {
    message_bytes: usize,
    limit: usize,
    used: usize,
    max_record_bytes: usize,
}

impl OutputBudget {
    /// For a message of `message_bytes`, sent by a producer whose `message.max.bytes` is
    /// `producer_max_record_bytes`.
    pub fn new(message_bytes: usize, producer_max_record_bytes: usize) -> Self {
        Self {
            message_bytes,
            limit: message_bytes
                .saturating_mul(OUTPUT_PER_INPUT_BYTE)
                .saturating_add(OUTPUT_ALLOWANCE_BYTES),
            used: 0,
            max_record_bytes: producer_max_record_bytes.min(MAX_RECORD_BYTES),
        }
    }

    /// Charges one encoded record (`record_id` names it in a refusal): its key and its value
    /// (framing included).
    pub fn charge(
        &mut self,
        record_id: &str,
        key_bytes: usize,
        value_bytes: usize,
    ) -> Result<(), Rejection> {
        // Counted as librdkafka counts it against `message.max.bytes`.
        let size = RECORD_OVERHEAD + key_bytes + value_bytes;
        if size > self.max_record_bytes {
            return Err(Rejection::new(
                Stage::Encode,
                "record_too_large",
                format!(
                    "record {record_id} is {size} bytes with its key, over the limit of {}",
                    self.max_record_bytes
                ),
                None,
            ));
        }
        self.used += key_bytes + value_bytes;
        if self.used > self.limit {
            return Err(Rejection::new(
                Stage::Encode,
                "output_too_large",
                format!(
                    "its records take more than {} bytes by record {record_id} ({} bytes so far; the limit is {OUTPUT_PER_INPUT_BYTE} times the message's {} bytes, plus {OUTPUT_ALLOWANCE_BYTES})",
                    self.limit,
                    self.used,
                    self.message_bytes,
                ),
                None,
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::rejection::CODES;
    use super::*;

    #[test]
    fn records_may_take_up_to_the_budget_and_not_a_byte_more() {
        let message = 1_000;
        let limit = message * OUTPUT_PER_INPUT_BYTE + OUTPUT_ALLOWANCE_BYTES;
        let mut budget = OutputBudget::new(message, 1_000_000);
        budget.charge("a", 10, limit - 10 - 1).unwrap();
        budget.charge("b", 1, 0).unwrap();
        let refused = budget.charge("c", 0, 1).unwrap_err();
        assert_eq!(refused.code, "output_too_large");
        assert_eq!(refused.stage, Stage::Encode);
        assert!(CODES.contains(&(refused.stage, refused.code)));
        assert!(
            refused.reason.contains(&format!(
                "more than {limit} bytes by record c ({} bytes so far",
                limit + 1
            )),
            "{refused}"
        );
    }

    #[test]
    fn a_record_is_measured_with_its_key_and_framing_against_the_lower_limit() {
        let mut budget = OutputBudget::new(1_000_000, 1_000_000);
        let fits = MAX_RECORD_BYTES - RECORD_OVERHEAD;
        budget.charge("a", 100, fits - 100).unwrap();
        let refused = budget.charge("b", 101, fits - 100).unwrap_err();
        assert_eq!(refused.code, "record_too_large");
        assert!(CODES.contains(&(refused.stage, refused.code)));
        assert!(
            refused
                .reason
                .contains("record b is 900001 bytes with its key, over the limit of 900000"),
            "{refused}"
        );
        // A producer limit below the built-in one is the limit.
        let mut budget = OutputBudget::new(1_000, 500);
        budget.charge("a", 4, 500 - RECORD_OVERHEAD - 4).unwrap();
        assert!(budget.charge("b", 4, 500 - RECORD_OVERHEAD - 3).is_err());
    }
}
