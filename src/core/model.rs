//! The normalized notification: canonical values (string ids, epoch-millisecond UTC times,
//! normalized enums that keep the raw string beside them), produced by `normalize` and read by
//! `split` and `classify`.

use std::borrow::Cow;

/// An Avro enum of the data contract: the Rust variants are in the order of the schema's symbols.
pub trait AvroEnum: Copy {
    /// The schema's symbols, in order; the last one is the default.
    const SYMBOLS: &'static [&'static str];
    /// Position of this value among `SYMBOLS`, which is what Avro writes.
    fn index(self) -> usize;
    fn as_str(self) -> &'static str {
        Self::SYMBOLS[self.index()]
    }
}

/// Defines an enum of the contract with a trailing `Unknown` (symbol `UNKNOWN`, the schema's
/// default) and a lenient parser: case-insensitive, with known alternative spellings.
macro_rules! contract_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident $(| $alias:literal)*),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant,)+
            /// A value the contract does not list yet; the raw string is kept beside it.
            Unknown,
        }

        impl $name {
            /// Normalizes a value as sent; never fails.
            pub fn parse(raw: &str) -> Self {
                // Spelled as in the contract: the common case, one `match`.
                match raw {
                    $(stringify!($variant) => return Self::$variant,)+
                    _ => {}
                }
                // Any case, and the alternative spellings, in the same order. A table rather than
                // a chain of inlined comparisons: this runs for every enum field of every party.
                const SPELLINGS: &[(&str, $name)] = &[
                    $((stringify!($variant), $name::$variant), $(($alias, $name::$variant),)*)+
                ];
                SPELLINGS
                    .iter()
                    .find(|(spelling, _)| spelling.eq_ignore_ascii_case(raw))
                    .map_or(Self::Unknown, |&(_, value)| value)
            }
        }

        impl AvroEnum for $name {
            const SYMBOLS: &'static [&'static str] = &[$(stringify!($variant),)+ "UNKNOWN"];
            fn index(self) -> usize {
                self as usize
            }
        }
    };
}

contract_enum!(
    /// A party's status code (`status.code`).
    StatusCode {
        Setup, Proceeding, Answered, Disconnected, Gone, Parked, Hold,
        VoiceMail,
        FaxReceive,
        VoiceMailScreening | "VMScreening",
        Tds,
    }
);

contract_enum!(
    /// Why a party is in its status (`status.reason`); production shows values beyond the
    /// documented list (`Conference`, `Undefined`, `Voicemail`, `CallSwitch`).
    StatusReason {
        Pickup, Supervising, TakeOver, Timeout, BlindTransfer, RccTransfer, AttendedTransfer,
        CallerInputRedirect, CallFlip, ParkLocation, DtmfTransfer, AgentAnswered, AgentDropped,
        Rejected, Cancelled, InternalError, NoAnswer, TargetBusy, InvalidNumber,
        InternationalDisabled, DestinationBlocked, NotEnoughFunds, NoSuchUser, CallRedirected,
        CallReplied, CallFinished, CallDropped, Conference, Undefined, Voicemail, CallSwitch,
    }
);

contract_enum!(
    /// Why the session was created (`origin.type`).
    OriginType { Call, RingOut, RingMe, Conference, GreetingsRecording, VerificationCall, TestCall }
);

contract_enum!(
    /// The party's own point of view.
    Direction { Inbound, Outbound }
);

contract_enum!(
    /// Role in a server-side conference.
    ConferenceRole { Host, Participant }
);

contract_enum!(
    /// Role in a RingOut or RingMe call.
    RingRole { Initiator, Target }
);

contract_enum!(
    /// How the notification arrived (docs/domain.md §1).
    InputShape { Webhook, ApplePush, WebSocket, BareBody }
);

contract_enum!(
    /// The kind of a transfer, from `status.reason`.
    TransferType { BlindTransfer, AttendedTransfer, RccTransfer, DtmfTransfer }
);

/// What kind of number a phone number is; it is kept as sent either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PhoneNumberKind {
    /// `+` followed by 1 to 15 digits.
    E164,
    /// 1 to 8 digits: an internal short number.
    Extension,
    /// Anything else (national format, SIP URI, "anonymous", ...).
    Other,
}

impl AvroEnum for PhoneNumberKind {
    const SYMBOLS: &'static [&'static str] = &["E164", "Extension", "Other"];
    fn index(self) -> usize {
        self as usize
    }
}

/// A normalized enum value together with the string it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coded<'a, E> {
    pub value: E,
    pub raw: Cow<'a, str>,
}

/// A notification after validation and normalization.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification<'a> {
    pub shape: InputShape,
    pub envelope: Envelope<'a>,
    pub session: Session<'a>,
    /// Never empty: validation rejects a notification without parties.
    pub parties: Vec<Party<'a>>,
}

/// Transport fields; all optional (the bare-body shape has none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope<'a> {
    pub uuid: Option<Cow<'a, str>>,
    pub subscription_id: Option<Cow<'a, str>>,
    pub owner_id: Option<Cow<'a, str>>,
    pub event: Option<Cow<'a, str>>,
    /// When RingCentral sent the notification, epoch milliseconds UTC.
    pub sent_at_ms: Option<i64>,
}

/// Session-level fields shared by every party of the notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session<'a> {
    pub telephony_session_id: Cow<'a, str>,
    pub session_id: Option<Cow<'a, str>>,
    pub server_id: Option<Cow<'a, str>>,
    pub sequence: Option<i64>,
    /// Time of this state change, epoch milliseconds UTC.
    pub event_time_ms: Option<i64>,
    pub origin: Option<Coded<'a, OriginType>>,
    /// The body's `accountId`, else the account in the event filter path.
    pub account_id: Option<Cow<'a, str>>,
}

/// One party, normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party<'a> {
    pub id: Cow<'a, str>,
    /// The party's `accountId`, else the session's.
    pub account_id: Option<Cow<'a, str>>,
    /// `None` for an external party.
    pub extension_id: Option<Cow<'a, str>>,
    pub direction: Option<Coded<'a, Direction>>,
    pub status: Coded<'a, StatusCode>,
    pub reason: Option<Coded<'a, StatusReason>>,
    pub description: Option<Cow<'a, str>>,
    pub rcc: Option<bool>,
    pub peer: Option<LinkedSession<'a>>,
    pub park_id: Option<Cow<'a, str>>,
    pub missed_call: Option<bool>,
    pub stand_alone: Option<bool>,
    pub muted: Option<bool>,
    pub queue_call: Option<bool>,
    pub conference_role: Option<Coded<'a, ConferenceRole>>,
    pub ring_out_role: Option<Coded<'a, RingRole>>,
    pub ring_me_role: Option<Coded<'a, RingRole>>,
    pub from: Option<Endpoint<'a>>,
    pub to: Option<Endpoint<'a>>,
    pub recordings: Vec<Recording<'a>>,
    pub sip: Option<SipData<'a>>,
    pub ui_call_info: Option<UiCallInfo<'a>>,
}

impl Party<'_> {
    /// A party without an extension is an external number.
    pub fn is_external(&self) -> bool {
        self.extension_id.is_none()
    }

    /// The caller is at this party's voicemail: status `VoiceMail` or reason `Voicemail` (both
    /// spellings normalized already).
    pub fn in_voicemail(&self) -> bool {
        self.status.value == StatusCode::VoiceMail
            || self
                .reason
                .as_ref()
                .is_some_and(|r| r.value == StatusReason::Voicemail)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endpoint<'a> {
    pub phone_number: Option<Cow<'a, str>>,
    pub phone_number_kind: Option<PhoneNumberKind>,
    pub name: Option<Cow<'a, str>>,
    pub extension_id: Option<Cow<'a, str>>,
    pub device_id: Option<Cow<'a, str>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkedSession<'a> {
    pub telephony_session_id: Option<Cow<'a, str>>,
    pub session_id: Option<Cow<'a, str>>,
    pub party_id: Option<Cow<'a, str>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording<'a> {
    /// `None` when RingCentral sent none; such a recording yields no recorded-call record.
    pub id: Option<Cow<'a, str>>,
    /// `Some(false)` means paused, not absent.
    pub active: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SipData<'a> {
    pub call_id: Option<Cow<'a, str>>,
    pub to_tag: Option<Cow<'a, str>>,
    pub from_tag: Option<Cow<'a, str>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UiCallInfo<'a> {
    pub primary_type: Option<Cow<'a, str>>,
    pub primary_value: Option<Cow<'a, str>>,
    pub additional_type: Option<Cow<'a, str>>,
    pub additional_value: Option<Cow<'a, str>>,
}
