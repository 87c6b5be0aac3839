//! Stage 6, classify: derive missed calls, recorded calls and transfers from a per-party record
//! by the rules of docs/domain.md §4. Each derived record gets a deterministic `record_id`.

use super::model::{Coded, StatusCode, StatusReason, TransferType};
use super::records::{CallRef, MissedCall, OutputRecord, PartyEvent, RecordedCall, Transfer};
use super::split::record_id;

/// Appends the records derived from one party event to `out`.
pub fn classify<'n>(event: &PartyEvent<'n>, out: &mut Vec<OutputRecord<'n>>) {
    let party = event.call.party;
    let session_id = &event.call.notification.session.telephony_session_id;
    let derived = |record_id: String| CallRef {
        record_id,
        notification: event.call.notification,
        party,
    };

    // Missed: the party says so. No status is required (which one first carries the flag is not
    // documented), and a disconnect without answer is not enough: routing legs end that way.
    if party.missed_call == Some(true) {
        out.push(OutputRecord::Missed(MissedCall {
            call: derived(record_id(session_id, &party.id, "missed", "")),
            reached_voicemail: party.in_voicemail(),
        }));
    }

    // Recorded: one record per recording id; `active: false` is a paused recording.
    for recording in &party.recordings {
        if let Some(recording_id) = recording.id.as_deref() {
            out.push(OutputRecord::Recorded(RecordedCall {
                call: derived(record_id(session_id, &party.id, "recording:", recording_id)),
                recording_id,
                active: recording.active,
            }));
        }
    }

    if let Some(transfer_type) = transfer_type(event) {
        out.push(OutputRecord::Transfer(Transfer {
            call: derived(record_id(session_id, &party.id, "transfer", "")),
            transfer_type,
        }));
    }
}

/// A transfer is a transfer reason on `Disconnected` or `Gone`. Everything else that ends a party
/// (`Conference`, `Supervising`, `Pickup`, `CallFlip`, `CallSwitch`) is not one.
fn transfer_type<'n>(event: &PartyEvent<'n>) -> Option<Coded<'n, TransferType>> {
    let party = event.call.party;
    if !matches!(
        party.status.value,
        StatusCode::Disconnected | StatusCode::Gone
    ) {
        return None;
    }
    let reason = party.reason.as_ref()?;
    let value = match reason.value {
        StatusReason::BlindTransfer => TransferType::BlindTransfer,
        StatusReason::AttendedTransfer => TransferType::AttendedTransfer,
        StatusReason::RccTransfer => TransferType::RccTransfer,
        StatusReason::DtmfTransfer => TransferType::DtmfTransfer,
        _ => return None,
    };
    Some(Coded {
        value,
        raw: reason.raw.clone(),
    })
}
