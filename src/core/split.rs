//! Stage 5, split: one per-party record for every party of a notification, each carrying the
//! session-level fields. No party is ever dropped (domain.md §5).

use super::model::Notification;
use super::records::{CallRef, PartyEvent};

/// The per-party records of a notification, in party order.
pub fn split<'n>(notification: &'n Notification<'n>) -> impl Iterator<Item = PartyEvent<'n>> + 'n {
    notification.parties.iter().map(move |party| PartyEvent {
        call: CallRef {
            record_id: party_event_id(
                &notification.session.telephony_session_id,
                &party.id,
                notification.session.sequence,
            ),
            notification,
            party,
        },
    })
}

/// `(telephonySessionId, party id, sequence)` identifies a party event semantically
/// (domain.md §3); `-` stands for a missing sequence.
fn party_event_id(telephony_session_id: &str, party_id: &str, sequence: Option<i64>) -> String {
    match sequence {
        Some(seq) => format!("{telephony_session_id}:{party_id}:{seq}"),
        None => format!("{telephony_session_id}:{party_id}:-"),
    }
}
