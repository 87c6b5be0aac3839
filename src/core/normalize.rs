//! Stage 4, normalize: canonical values from validated raw input. Ids become strings, times epoch
//! milliseconds UTC, enum spellings one symbol (the raw string kept beside it), phone numbers are
//! kept as sent with their kind stated, and string booleans become booleans.

use std::borrow::Cow;

use super::envelope::Unwrapped;
use super::model::{
    Coded, ConferenceRole, Direction, Endpoint, Envelope, LinkedSession, Notification, OriginType,
    Party, PhoneNumberKind, Recording, RingRole, Session, SipData, StatusCode, StatusReason,
    UiCallInfo,
};
use super::raw::{Flag, Id, RawEndpoint, RawParty, Str, Text};
use super::validate::{join_path, ValidationError};

/// Normalizes a message that `validate` accepted. Fails only for values that are present but
/// unusable (a time that is not ISO 8601), reported as validation errors with their path.
pub fn normalize(message: Unwrapped<'_>) -> Result<Notification<'_>, ValidationError> {
    let Unwrapped {
        shape,
        envelope,
        body,
        body_path,
    } = message;

    let sent_at_ms = parse_time_field(envelope.timestamp.as_ref(), || {
        envelope_field_path(body_path, "timestamp")
    })?;
    let event_time_ms = parse_time_field(body.event_time.as_ref(), || {
        join_path(body_path, "eventTime")
    })?;

    let event = envelope.event.map(|e| e.0);
    let account_id = body.account_id.map(|a| a.0).or_else(|| match &event {
        // Borrowed from the message when the filter is: no allocation, cheap clones per party.
        Some(Cow::Borrowed(event)) => account_in_event(event).map(Cow::Borrowed),
        Some(Cow::Owned(event)) => account_in_event(event).map(|a| Cow::Owned(a.to_owned())),
        None => None,
    });

    let session = Session {
        telephony_session_id: body.telephony_session_id.map(|id| id.0).ok_or_else(|| {
            ValidationError::Missing {
                path: join_path(body_path, "telephonySessionId"),
            }
        })?,
        session_id: id(body.session_id),
        server_id: id(body.server_id),
        sequence: body.sequence.map(|s| s.0),
        event_time_ms,
        origin: body.origin.and_then(|o| coded(o.kind, OriginType::parse)),
        account_id,
    };

    let raw_parties = body.parties.unwrap_or_default();
    let mut parties = Vec::with_capacity(raw_parties.len());
    for (index, raw) in raw_parties.into_iter().enumerate() {
        parties.push(normalize_party(raw, &session, body_path, index)?);
    }

    Ok(Notification {
        shape,
        envelope: Envelope {
            uuid: id(envelope.uuid),
            subscription_id: id(envelope.subscription_id),
            owner_id: id(envelope.owner_id),
            event,
            sent_at_ms,
        },
        session,
        parties,
    })
}

fn normalize_party<'a>(
    raw: RawParty<'a>,
    session: &Session<'a>,
    body_path: &str,
    index: usize,
) -> Result<Party<'a>, ValidationError> {
    let missing = |field: &str| ValidationError::Missing {
        path: join_path(body_path, &format!("parties[{index}].{field}")),
    };
    let status = raw.status.unwrap_or_default();
    let status_code = status.code.ok_or_else(|| missing("status.code"))?;
    Ok(Party {
        id: raw.id.ok_or_else(|| missing("id"))?.0,
        account_id: raw
            .account_id
            .map(|a| a.0)
            .or_else(|| session.account_id.clone()),
        extension_id: id(raw.extension_id).filter(|e| !e.trim().is_empty()),
        direction: coded(raw.direction, Direction::parse),
        status: Coded {
            value: StatusCode::parse(&status_code.0),
            raw: status_code.0,
        },
        reason: coded(status.reason, StatusReason::parse),
        description: display(status.description),
        rcc: flag(status.rcc),
        peer: status.peer_id.map(|p| LinkedSession {
            telephony_session_id: id(p.telephony_session_id),
            session_id: id(p.session_id),
            party_id: id(p.party_id),
        }),
        park_id: raw.park.and_then(|p| id(p.id)),
        missed_call: flag(raw.missed_call),
        stand_alone: flag(raw.stand_alone),
        muted: flag(raw.muted),
        queue_call: flag(raw.queue_call),
        conference_role: coded(raw.conference_role, ConferenceRole::parse),
        ring_out_role: coded(raw.ring_out_role, RingRole::parse),
        ring_me_role: coded(raw.ring_me_role, RingRole::parse),
        from: raw.from.map(endpoint),
        to: raw.to.map(endpoint),
        recordings: raw
            .recordings
            .unwrap_or_default()
            .into_iter()
            .map(|r| Recording {
                id: id(r.id),
                active: flag(r.active),
            })
            .collect(),
        sip: raw.sip_data.map(|s| SipData {
            call_id: id(s.call_id),
            to_tag: id(s.to_tag),
            from_tag: id(s.from_tag),
        }),
        ui_call_info: raw.ui_call_info.map(|ui| {
            let (primary_type, primary_value) = ui_value(ui.primary);
            let (additional_type, additional_value) = ui_value(ui.additional);
            UiCallInfo {
                primary_type,
                primary_value,
                additional_type,
                additional_value,
            }
        }),
    })
}

fn ui_value<'a>(
    value: Option<super::raw::RawUiValue<'a>>,
) -> (Option<Cow<'a, str>>, Option<Cow<'a, str>>) {
    match value {
        Some(v) => (text(v.kind), display(v.value)),
        None => (None, None),
    }
}

fn endpoint(raw: RawEndpoint<'_>) -> Endpoint<'_> {
    let phone_number = display(raw.phone_number);
    Endpoint {
        phone_number_kind: phone_number.as_deref().map(phone_number_kind),
        phone_number,
        name: display(raw.name),
        extension_id: id(raw.extension_id),
        device_id: id(raw.device_id),
    }
}

fn id(value: Option<Id<'_>>) -> Option<Cow<'_, str>> {
    value.map(|v| v.0)
}

fn text(value: Option<Str<'_>>) -> Option<Cow<'_, str>> {
    value.map(|v| v.0)
}

fn display(value: Option<Text<'_>>) -> Option<Cow<'_, str>> {
    value.map(|v| v.0)
}

fn flag(value: Option<Flag>) -> Option<bool> {
    value.map(|f| f.0)
}

fn coded<'a, E>(value: Option<Str<'a>>, parse: fn(&str) -> E) -> Option<Coded<'a, E>> {
    value.map(|raw| Coded {
        value: parse(&raw.0),
        raw: raw.0,
    })
}

fn envelope_field_path(body_path: &str, field: &str) -> String {
    // The envelope sits beside a `body` (`pn_apns.body` -> `pn_apns.timestamp`), or, around a body
    // without that key, is the body's own node (`[1]` -> `[1].timestamp`).
    let envelope = match body_path.rsplit_once('.') {
        Some((parent, "body")) => parent,
        None if body_path == "body" => "",
        _ => body_path,
    };
    if envelope.is_empty() {
        field.to_owned()
    } else {
        format!("{envelope}.{field}")
    }
}

fn parse_time_field(
    value: Option<&Str<'_>>,
    path: impl FnOnce() -> String,
) -> Result<Option<i64>, ValidationError> {
    match value {
        None => Ok(None),
        Some(s) => {
            parse_iso8601_millis(s.as_str())
                .map(Some)
                .ok_or_else(|| ValidationError::Invalid {
                    path: path(),
                    reason: format!("{:?} is not an ISO 8601 date-time", s.as_str()),
                })
        }
    }
}

/// The account id inside an event filter path (`/restapi/v1.0/account/{id}/...`), unless it is
/// the `~` placeholder.
pub fn account_in_event(event: &str) -> Option<&str> {
    const MARKER: &str = "/account/";
    // Every filter RingCentral documents starts with this; the search is the fallback.
    let rest = match event.strip_prefix("/restapi/v1.0/account/") {
        Some(rest) => rest,
        None => &event[event.find(MARKER)? + MARKER.len()..],
    };
    let account = rest.split('/').next()?;
    (!account.is_empty() && account != "~").then_some(account)
}

/// Classifies a phone number as sent; never rewrites it.
pub fn phone_number_kind(number: &str) -> PhoneNumberKind {
    let bytes = number.as_bytes();
    match bytes.split_first() {
        Some((b'+', digits))
            if (1..=15).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit) =>
        {
            PhoneNumberKind::E164
        }
        _ if (1..=8).contains(&bytes.len()) && bytes.iter().all(u8::is_ascii_digit) => {
            PhoneNumberKind::Extension
        }
        _ => PhoneNumberKind::Other,
    }
}

/// Parses an ISO 8601 / RFC 3339 date-time (`2018-06-05T00:14:50.147Z`, any number of fraction
/// digits, `Z` or a `±hh:mm` offset) to epoch milliseconds UTC. Fractions below a millisecond are
/// truncated.
pub fn parse_iso8601_millis(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let year = digits(&b[0..4])?;
    let month = digits(&b[5..7])?;
    let day = digits(&b[8..10])?;
    let hour = digits(&b[11..13])?;
    let minute = digits(&b[14..16])?;
    let second = digits(&b[17..19])?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let mut rest = &b[19..];
    let mut millis = 0i64;
    if let Some((b'.', fraction)) = rest.split_first() {
        let len = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if len == 0 {
            return None;
        }
        for (i, c) in fraction[..len].iter().enumerate().take(3) {
            millis += i64::from(c - b'0') * [100, 10, 1][i];
        }
        rest = &fraction[len..];
    }
    // ISO 8601 writes an offset as `+hh:mm`, `+hhmm` or `+hh`.
    let (sign, hours, minutes) = match rest {
        [b'Z' | b'z'] => (b'+', 0, 0),
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] | [sign @ (b'+' | b'-'), h1, h2, m1, m2] => {
            (*sign, digits(&[*h1, *h2])?, digits(&[*m1, *m2])?)
        }
        [sign @ (b'+' | b'-'), h1, h2] => (*sign, digits(&[*h1, *h2])?, 0),
        _ => return None,
    };
    if hours > 23 || minutes > 59 {
        return None;
    }
    let offset_minutes = if sign == b'+' {
        hours * 60 + minutes
    } else {
        -(hours * 60 + minutes)
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1_000 + millis)
}

fn digits(b: &[u8]) -> Option<i64> {
    b.iter().try_fold(0i64, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_times_to_epoch_millis_utc() {
        assert_eq!(parse_iso8601_millis("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_iso8601_millis("2018-06-05T00:14:50.147Z"),
            Some(1_528_157_690_147)
        );
        for offset_form in [
            "2018-06-05T02:14:50.147+02:00",
            "2018-06-05T02:14:50.147+0200",
            "2018-06-05T02:14:50.147+02",
            "2018-06-04T23:44:50.147-00:30",
        ] {
            assert_eq!(
                parse_iso8601_millis(offset_form),
                Some(1_528_157_690_147),
                "{offset_form}"
            );
        }
        assert_eq!(
            parse_iso8601_millis("2018-06-05T00:14:50.1479999Z"),
            Some(1_528_157_690_147)
        );
        assert_eq!(
            parse_iso8601_millis("2024-02-29T00:00:00Z"),
            Some(1_709_164_800_000)
        );
    }

    #[test]
    fn envelope_fields_are_named_where_they_sit() {
        for (body_path, want) in [
            ("body", "timestamp"),
            ("pn_apns.body", "pn_apns.timestamp"),
            ("[1].body", "[1].timestamp"),
            // A body without the `body` key: the envelope is the same node.
            ("[1]", "[1].timestamp"),
            ("pn_apns", "pn_apns.timestamp"),
            ("", "timestamp"),
        ] {
            assert_eq!(
                envelope_field_path(body_path, "timestamp"),
                want,
                "{body_path}"
            );
        }
    }

    #[test]
    fn rejects_malformed_times() {
        for bad in [
            "",
            "yesterday",
            "2018-06-05",
            "2018-13-05T00:14:50Z",
            "2023-02-29T00:00:00Z",
            "2018-06-05T00:14:50",
            "2018-06-05T00:14:50.Z",
            "2018-06-05T24:00:00Z",
            "2018-06-05T00:14:50Zjunk",
            "2018-06-05T00:14:50+2",
            "2018-06-05T00:14:50+02:0",
            "2018-06-05T00:14:50+0260",
        ] {
            assert_eq!(parse_iso8601_millis(bad), None, "{bad}");
        }
    }

    #[test]
    fn states_the_kind_of_phone_numbers_without_rewriting_them() {
        assert_eq!(phone_number_kind("+17205551234"), PhoneNumberKind::E164);
        assert_eq!(phone_number_kind("101"), PhoneNumberKind::Extension);
        assert_eq!(phone_number_kind("11104"), PhoneNumberKind::Extension);
        assert_eq!(phone_number_kind("7205551234"), PhoneNumberKind::Other);
        assert_eq!(phone_number_kind("anonymous"), PhoneNumberKind::Other);
        assert_eq!(phone_number_kind("+"), PhoneNumberKind::Other);
        assert_eq!(
            phone_number_kind("#[email protected]:5060"),
            PhoneNumberKind::Other
        );
    }

    #[test]
    fn finds_the_account_in_an_event_filter() {
        assert_eq!(
            account_in_event("/restapi/v1.0/account/400144452008/extension/1/telephony/sessions"),
            Some("400144452008")
        );
        assert_eq!(
            account_in_event("/restapi/v1.0/account/~/telephony/sessions"),
            None
        );
        assert_eq!(account_in_event("/telephony/sessions"), None);
        assert_eq!(
            account_in_event("/restapi/v1.1/account/42/telephony/sessions"),
            Some("42")
        );
        assert_eq!(account_in_event("/restapi/v1.0/account/"), None);
        assert_eq!(account_in_event("/account//account/1"), None);
    }
}
