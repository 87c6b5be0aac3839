//! Stage 5, split: one per-party record for every party of a notification, each carrying the
//! session-level fields. No party is ever dropped (docs/domain.md §5).

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
                notification.session.event_time_ms,
            ),
            notification,
            party,
        },
    })
}

/// `(telephonySessionId, party id, sequence)` identifies a party event semantically
/// (docs/domain.md §3). Without a sequence, `-` and the event time (`-@1700000016095`), so that the
/// events of a party do not all share one id; `-` alone when neither is known.
fn party_event_id(
    telephony_session_id: &str,
    party_id: &str,
    sequence: Option<i64>,
    event_time_ms: Option<i64>,
) -> String {
    let mut id = record_id(telephony_session_id, party_id, "", "");
    match (sequence, event_time_ms) {
        (Some(seq), _) => push_decimal(&mut id, seq),
        (None, Some(ms)) => {
            id.push_str("-@");
            push_decimal(&mut id, ms);
        }
        (None, None) => id.push('-'),
    }
    id
}

/// `{telephony session id}:{party id}:{kind}{item}`: the shape of every record id, `kind` a
/// literal (`missed`, `recording:`), the ids and `item` escaped (`push_id`), so that two different
/// facts never share an id however their ids are spelled. Built with one allocation and without
/// the formatting machinery, which costs more than the rest of the id (this runs for every
/// record).
pub(super) fn record_id(
    telephony_session_id: &str,
    party_id: &str,
    kind: &str,
    item: &str,
) -> String {
    // Two colons, and up to 20 bytes of sequence number.
    let mut id = String::with_capacity(
        telephony_session_id.len() + party_id.len() + kind.len() + item.len() + 22,
    );
    push_id(&mut id, telephony_session_id);
    id.push(':');
    push_id(&mut id, party_id);
    id.push(':');
    id.push_str(kind);
    push_id(&mut id, item);
    id
}

/// Appends an id with `%` and `:` percent-encoded (`%25`, `%3A`): `:` separates an id's parts.
/// Real ids contain neither, and are appended as they are.
fn push_id(out: &mut String, id: &str) {
    if !id.bytes().any(|b| b == b':' || b == b'%') {
        out.push_str(id);
        return;
    }
    for c in id.chars() {
        match c {
            ':' => out.push_str("%3A"),
            '%' => out.push_str("%25"),
            c => out.push(c),
        }
    }
}

/// Appends the decimal form of `n`, as `format!("{n}")` would.
fn push_decimal(out: &mut String, n: i64) {
    if n < 0 {
        out.push('-');
    }
    let mut digits = [0u8; 20];
    let mut rest = n.unsigned_abs();
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    for &d in &digits[start..] {
        out.push(char::from(d));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn party_event_ids_are_session_party_and_sequence() {
        assert_eq!(party_event_id("s-1", "p-1", Some(7), Some(99)), "s-1:p-1:7");
        // Without a sequence the event time tells a party's events apart.
        assert_eq!(
            party_event_id("s-1", "p-1", None, Some(1_700_000_016_095)),
            "s-1:p-1:-@1700000016095"
        );
        assert_eq!(party_event_id("s-1", "p-1", None, None), "s-1:p-1:-");
        for n in [0, 9, 10, 1_000_007, -1, -10, i64::MAX, i64::MIN] {
            assert_eq!(party_event_id("s", "p", Some(n), None), format!("s:p:{n}"));
        }
        assert_eq!(
            record_id("s", "p", "recording:", "r-1"),
            "s:p:recording:r-1"
        );
    }

    #[test]
    fn ids_spelled_with_separators_do_not_share_a_record_id() {
        // Unescaped, both were `a:b:c:1`, and the second fact was suppressed as a duplicate.
        let first = party_event_id("a:b", "c", Some(1), None);
        let second = party_event_id("a", "b:c", Some(1), None);
        assert_eq!(first, "a%3Ab:c:1");
        assert_eq!(second, "a:b%3Ac:1");
        assert_ne!(first, second);
        // `%` is escaped too, so an escape cannot be spelled out by hand.
        assert_ne!(
            party_event_id("a%3Ab", "c", Some(1), None),
            party_event_id("a:b", "c", Some(1), None)
        );
        assert_eq!(
            record_id("s", "p", "recording:", "r:1%"),
            "s:p:recording:r%3A1%25"
        );
        // Other characters, multi-byte ones included, are kept.
        assert_eq!(record_id("s-é", "p", "missed", ""), "s-é:p:missed");
    }
}
