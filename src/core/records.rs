//! The output records of the data contract (`schemas/*.avsc`), as views over a normalized
//! notification.
//!
//! Each record lists its fields exactly once, in schema order, through `Record::write`; the Avro
//! encoder and the JSON form are two `FieldSink`s over that one list, so they cannot disagree,
//! and `tests/contract.rs` proves every record decodes with its schema.

use super::dedup::{digest, KeyHasher};
use super::model::{
    AvroEnum, Coded, Endpoint, LinkedSession, Notification, Party, Recording, SipData,
    TransferType, UiCallInfo,
};

/// The derived topics, by role. Names are configured in `TopicNames`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TopicKind {
    Parties,
    Missed,
    Recorded,
    Transfers,
}

impl TopicKind {
    pub const ALL: [TopicKind; 4] = [
        TopicKind::Parties,
        TopicKind::Missed,
        TopicKind::Recorded,
        TopicKind::Transfers,
    ];

    /// The position in `ALL`, for tables indexed by topic.
    pub fn index(self) -> usize {
        self as usize
    }

    /// A short stable name, for metrics labels and logs.
    pub fn label(self) -> &'static str {
        match self {
            TopicKind::Parties => "parties",
            TopicKind::Missed => "missed",
            TopicKind::Recorded => "recorded",
            TopicKind::Transfers => "transfers",
        }
    }
}

/// Receives a record's fields in schema order.
pub trait FieldSink {
    fn string(&mut self, name: &'static str, value: &str);
    fn opt_string(&mut self, name: &'static str, value: Option<&str>);
    fn boolean(&mut self, name: &'static str, value: bool);
    fn opt_boolean(&mut self, name: &'static str, value: Option<bool>);
    /// A nullable `long` (also `timestamp-millis`).
    fn opt_long(&mut self, name: &'static str, value: Option<i64>);
    fn enumeration<E: AvroEnum>(&mut self, name: &'static str, value: E);
    fn opt_enumeration<E: AvroEnum>(&mut self, name: &'static str, value: Option<E>);
    fn opt_record<R: Record>(&mut self, name: &'static str, value: Option<&R>);
    fn array<R: Record>(&mut self, name: &'static str, items: &[R]);
}

/// Something with a schema: writes its fields, in schema order, to a sink.
pub trait Record {
    fn write<S: FieldSink>(&self, sink: &mut S);
}

/// Where a record stands among the states published under its record id (`ordered_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderedState {
    /// Digest of the topic and the record id.
    pub id: u64,
    /// The notification's sequence.
    pub sequence: i64,
    /// Whether the record says what the state is (a recording without `active` does not).
    pub informative: bool,
}

/// A derived record of any topic.
#[derive(Debug, Clone)]
pub enum OutputRecord<'n> {
    Party(PartyEvent<'n>),
    Missed(MissedCall<'n>),
    Recorded(RecordedCall<'n>),
    Transfer(Transfer<'n>),
}

/// Fields every derived record starts with: its id and the call it came from.
#[derive(Debug, Clone)]
pub struct CallRef<'n> {
    pub record_id: String,
    pub notification: &'n Notification<'n>,
    pub party: &'n Party<'n>,
}

#[derive(Debug, Clone)]
pub struct PartyEvent<'n> {
    pub call: CallRef<'n>,
}

#[derive(Debug, Clone)]
pub struct MissedCall<'n> {
    pub call: CallRef<'n>,
    pub reached_voicemail: bool,
}

#[derive(Debug, Clone)]
pub struct RecordedCall<'n> {
    pub call: CallRef<'n>,
    pub recording_id: &'n str,
    pub active: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct Transfer<'n> {
    pub call: CallRef<'n>,
    pub transfer_type: Coded<'n, TransferType>,
}

impl<'n> OutputRecord<'n> {
    pub fn topic(&self) -> TopicKind {
        match self {
            OutputRecord::Party(_) => TopicKind::Parties,
            OutputRecord::Missed(_) => TopicKind::Missed,
            OutputRecord::Recorded(_) => TopicKind::Recorded,
            OutputRecord::Transfer(_) => TopicKind::Transfers,
        }
    }

    pub fn call(&self) -> &CallRef<'n> {
        match self {
            OutputRecord::Party(r) => &r.call,
            OutputRecord::Missed(r) => &r.call,
            OutputRecord::Recorded(r) => &r.call,
            OutputRecord::Transfer(r) => &r.call,
        }
    }

    pub fn record_id(&self) -> &str {
        &self.call().record_id
    }

    /// The Kafka key: the party's extension id, or the telephony session id for an external
    /// party, so that all events of one extension stay in order on one partition
    /// (docs/domain.md §5).
    pub fn key(&self) -> &'n str {
        let call = self.call();
        call.party
            .extension_id
            .as_deref()
            .unwrap_or(&call.notification.session.telephony_session_id)
    }

    /// Feeds what makes this emission distinct from an earlier one with the same record id: a
    /// record is a duplicate only if both its id and this state were already emitted.
    pub fn hash_state<H: std::hash::Hasher>(&self, h: &mut H) {
        use std::hash::Hash;
        self.topic().hash(h);
        self.record_id().hash(h);
        let party = self.call().party;
        match self {
            OutputRecord::Party(_) => {
                party.status.raw.hash(h);
                self.call().notification.session.event_time_ms.hash(h);
            }
            OutputRecord::Missed(r) => r.reached_voicemail.hash(h),
            OutputRecord::Recorded(r) => r.active.hash(h),
            OutputRecord::Transfer(r) => {
                r.transfer_type.raw.hash(h);
                party.status.raw.hash(h);
            }
        }
    }
}

impl OutputRecord<'_> {
    /// For a missed call without voicemail, the `hash_state` of the same missed call with it.
    /// Once that was emitted, this one tells nothing new: the flag only gains (RingCentral's
    /// `Disconnected` after `VoiceMail` no longer says voicemail), or the latest record of the
    /// missed call would say the caller never reached it.
    pub fn superseded_by(&self) -> Option<u64> {
        match self {
            OutputRecord::Missed(r) if !r.reached_voicemail => {
                let with_voicemail = MissedCall {
                    reached_voicemail: true,
                    ..r.clone()
                };
                Some(OutputRecord::Missed(with_voicemail).state_key())
            }
            _ => None,
        }
    }

    /// For a record whose state can return to an earlier value (a recording paused, then
    /// resumed), the digest of its topic and record id, and the sequence that orders its states.
    /// Such a record is published when it says something new against the latest state published
    /// under its id, in a later notification of the call; see `Processor::process`.
    pub fn ordered_state(&self) -> Option<OrderedState> {
        match self {
            OutputRecord::Recorded(r) => Some(OrderedState {
                id: digest(&(self.topic(), self.record_id())),
                sequence: self.call().notification.session.sequence?,
                informative: r.active.is_some(),
            }),
            _ => None,
        }
    }

    /// The duplicate window's key of this record: the digest of `hash_state`.
    pub fn state_key(&self) -> u64 {
        let mut h = KeyHasher::default();
        self.hash_state(&mut h);
        std::hash::Hasher::finish(&h)
    }
}

impl Record for OutputRecord<'_> {
    fn write<S: FieldSink>(&self, sink: &mut S) {
        match self {
            OutputRecord::Party(r) => r.write(sink),
            OutputRecord::Missed(r) => r.write(sink),
            OutputRecord::Recorded(r) => r.write(sink),
            OutputRecord::Transfer(r) => r.write(sink),
        }
    }
}

fn opt_coded<E: AvroEnum, S: FieldSink>(
    sink: &mut S,
    name: &'static str,
    raw_name: &'static str,
    value: Option<&Coded<'_, E>>,
) {
    sink.opt_enumeration(name, value.map(|c| c.value));
    sink.opt_string(raw_name, value.map(|c| c.raw.as_ref()));
}

impl CallRef<'_> {
    /// The key under which the duplicate window remembers that the caller reached this party's
    /// voicemail. RingCentral's missed-call flag may first come on the `Disconnected` after
    /// `VoiceMail`, which no longer says voicemail: the missed call looks the key up.
    pub fn voicemail_key(&self) -> u64 {
        digest(&(
            "voicemail",
            &self.notification.session.telephony_session_id,
            &self.party.id,
        ))
    }

    fn write<S: FieldSink>(&self, sink: &mut S) {
        let session = &self.notification.session;
        sink.string("record_id", &self.record_id);
        sink.string("telephony_session_id", &session.telephony_session_id);
        sink.opt_string("session_id", session.session_id.as_deref());
        sink.opt_string("account_id", self.party.account_id.as_deref());
        sink.opt_string("extension_id", self.party.extension_id.as_deref());
        sink.boolean("external", self.party.is_external());
        sink.string("party_id", &self.party.id);
        sink.opt_long("sequence", session.sequence);
        sink.opt_long("event_time", session.event_time_ms);
    }
}

impl Record for PartyEvent<'_> {
    fn write<S: FieldSink>(&self, sink: &mut S) {
        let n = self.call.notification;
        let p = self.call.party;
        let session = &n.session;
        sink.string("record_id", &self.call.record_id);
        sink.string("telephony_session_id", &session.telephony_session_id);
        sink.opt_string("session_id", session.session_id.as_deref());
        sink.opt_string("server_id", session.server_id.as_deref());
        sink.opt_long("sequence", session.sequence);
        sink.opt_long("event_time", session.event_time_ms);
        opt_coded(
            sink,
            "origin_type",
            "origin_type_raw",
            session.origin.as_ref(),
        );
        sink.opt_string("account_id", p.account_id.as_deref());
        sink.opt_string("extension_id", p.extension_id.as_deref());
        sink.boolean("external", p.is_external());
        sink.string("party_id", &p.id);
        opt_coded(sink, "direction", "direction_raw", p.direction.as_ref());
        sink.enumeration("status_code", p.status.value);
        sink.string("status_code_raw", &p.status.raw);
        opt_coded(
            sink,
            "status_reason",
            "status_reason_raw",
            p.reason.as_ref(),
        );
        sink.opt_string("status_description", p.description.as_deref());
        sink.opt_boolean("rcc", p.rcc);
        sink.opt_record("peer", p.peer.as_ref());
        sink.opt_string("park_id", p.park_id.as_deref());
        sink.opt_boolean("missed_call", p.missed_call);
        sink.opt_boolean("stand_alone", p.stand_alone);
        sink.opt_boolean("muted", p.muted);
        sink.opt_boolean("queue_call", p.queue_call);
        opt_coded(
            sink,
            "conference_role",
            "conference_role_raw",
            p.conference_role.as_ref(),
        );
        opt_coded(
            sink,
            "ring_out_role",
            "ring_out_role_raw",
            p.ring_out_role.as_ref(),
        );
        opt_coded(
            sink,
            "ring_me_role",
            "ring_me_role_raw",
            p.ring_me_role.as_ref(),
        );
        sink.opt_record("from", p.from.as_ref());
        sink.opt_record("to", p.to.as_ref());
        sink.array("recordings", &p.recordings);
        sink.opt_record("sip", p.sip.as_ref());
        sink.opt_record("ui_call_info", p.ui_call_info.as_ref());
        let envelope = &n.envelope;
        sink.opt_string("notification_uuid", envelope.uuid.as_deref());
        sink.opt_string("subscription_id", envelope.subscription_id.as_deref());
        sink.opt_string("owner_id", envelope.owner_id.as_deref());
        sink.opt_string("event_filter", envelope.event.as_deref());
        sink.opt_long("sent_at", envelope.sent_at_ms);
        sink.enumeration("input_shape", n.shape);
    }
}

impl Record for MissedCall<'_> {
    fn write<S: FieldSink>(&self, sink: &mut S) {
        let p = self.call.party;
        self.call.write(sink);
        opt_coded(sink, "direction", "direction_raw", p.direction.as_ref());
        sink.enumeration("status_code", p.status.value);
        sink.string("status_code_raw", &p.status.raw);
        opt_coded(
            sink,
            "status_reason",
            "status_reason_raw",
            p.reason.as_ref(),
        );
        sink.boolean("reached_voicemail", self.reached_voicemail);
        sink.opt_boolean("queue_call", p.queue_call);
        sink.opt_record("from", p.from.as_ref());
        sink.opt_record("to", p.to.as_ref());
    }
}

impl Record for RecordedCall<'_> {
    fn write<S: FieldSink>(&self, sink: &mut S) {
        let p = self.call.party;
        self.call.write(sink);
        sink.string("recording_id", self.recording_id);
        sink.opt_boolean("active", self.active);
        opt_coded(sink, "direction", "direction_raw", p.direction.as_ref());
        sink.enumeration("status_code", p.status.value);
        sink.string("status_code_raw", &p.status.raw);
        sink.opt_record("from", p.from.as_ref());
        sink.opt_record("to", p.to.as_ref());
    }
}

impl Record for Transfer<'_> {
    fn write<S: FieldSink>(&self, sink: &mut S) {
        let p = self.call.party;
        self.call.write(sink);
        sink.enumeration("transfer_type", self.transfer_type.value);
        sink.string("transfer_type_raw", &self.transfer_type.raw);
        sink.enumeration("status_code", p.status.value);
        sink.string("status_code_raw", &p.status.raw);
        sink.opt_record("linked", p.peer.as_ref());
        opt_coded(sink, "direction", "direction_raw", p.direction.as_ref());
        sink.opt_record("from", p.from.as_ref());
        sink.opt_record("to", p.to.as_ref());
    }
}

impl Record for Endpoint<'_> {
    fn write<S: FieldSink>(&self, sink: &mut S) {
        sink.opt_string("phone_number", self.phone_number.as_deref());
        sink.opt_enumeration("phone_number_kind", self.phone_number_kind);
        sink.opt_string("name", self.name.as_deref());
        sink.opt_string("extension_id", self.extension_id.as_deref());
        sink.opt_string("device_id", self.device_id.as_deref());
    }
}

impl Record for LinkedSession<'_> {
    fn write<S: FieldSink>(&self, sink: &mut S) {
        sink.opt_string("telephony_session_id", self.telephony_session_id.as_deref());
        sink.opt_string("session_id", self.session_id.as_deref());
        sink.opt_string("party_id", self.party_id.as_deref());
    }
}

impl Record for Recording<'_> {
    fn write<S: FieldSink>(&self, sink: &mut S) {
        sink.opt_string("id", self.id.as_deref());
        sink.opt_boolean("active", self.active);
    }
}

impl Record for SipData<'_> {
    fn write<S: FieldSink>(&self, sink: &mut S) {
        sink.opt_string("call_id", self.call_id.as_deref());
        sink.opt_string("to_tag", self.to_tag.as_deref());
        sink.opt_string("from_tag", self.from_tag.as_deref());
    }
}

impl Record for UiCallInfo<'_> {
    fn write<S: FieldSink>(&self, sink: &mut S) {
        sink.opt_string("primary_type", self.primary_type.as_deref());
        sink.opt_string("primary_value", self.primary_value.as_deref());
        sink.opt_string("additional_type", self.additional_type.as_deref());
        sink.opt_string("additional_value", self.additional_value.as_deref());
    }
}

#[cfg(test)]
mod tests {
    use super::TopicKind;

    #[test]
    fn index_is_the_position_in_all() {
        for (position, kind) in TopicKind::ALL.iter().enumerate() {
            assert_eq!(kind.index(), position);
        }
    }
}
