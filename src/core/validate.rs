//! Stage 3, validate: the few fields without which a notification cannot be processed.
//!
//! RingCentral's specification marks no field of this event as required (docs/domain.md §2), so
//! this module is the one place that decides what is: a telephony session id (the key of everything
//! derived), at least one party, and for each party an id and a status code (without them a party
//! event says nothing). Every other field is optional. Values that are present but cannot be
//! normalized (a malformed time) are reported by `normalize` with the same stage.

use thiserror::Error;

use super::envelope::Unwrapped;
use super::raw::{Id, Str};

/// What is missing or unusable, and where (a JSON path in the original message).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ValidationError {
    #[error("required field {path} is missing")]
    Missing { path: String },
    #[error("required field {path} is empty")]
    Empty { path: String },
    #[error("{path} has no parties: at least one is required")]
    NoParties { path: String },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
    /// More of something than one notification may carry (`MAX_PARTIES` and the like).
    #[error("{path} {found}, over the limit of {limit}")]
    OverLimit {
        path: String,
        found: String,
        limit: usize,
    },
}

impl ValidationError {
    pub fn path(&self) -> &str {
        match self {
            ValidationError::Missing { path }
            | ValidationError::Empty { path }
            | ValidationError::NoParties { path }
            | ValidationError::Invalid { path, .. }
            | ValidationError::OverLimit { path, .. } => path,
        }
    }
}

/// Joins a JSON path and a field name (`body` + `parties` = `body.parties`).
pub fn join_path(base: &str, field: &str) -> String {
    if base.is_empty() {
        field.to_owned()
    } else if field.starts_with('[') {
        format!("{base}{field}")
    } else {
        format!("{base}.{field}")
    }
}

/// Most parties one notification may carry. Real ones carry a few (a conference some tens).
pub const MAX_PARTIES: usize = 256;
/// Most recordings, over all its parties, one notification may carry.
pub const MAX_RECORDINGS: usize = 256;
/// Longest id (telephony session, party, recording) in bytes; real ones are tens of bytes.
pub const MAX_ID_BYTES: usize = 1024;

/// Checks the required fields of an unwrapped message, and that what it derives stays
/// proportionate to it. Every record repeats its session's id and its party's, and duplicates
/// are looked for among the records of one notification pair by pair: within the message size
/// limit, hostile input could otherwise derive gigabytes, or take seconds of the core.
pub fn validate(message: &Unwrapped<'_>) -> Result<(), ValidationError> {
    let base = message.body_path;
    let body = &message.body;
    required_id(
        body.telephony_session_id.as_ref(),
        base,
        "telephonySessionId",
    )?;
    let parties = match &body.parties {
        None => {
            return Err(ValidationError::Missing {
                path: join_path(base, "parties"),
            })
        }
        Some(parties) if parties.is_empty() => {
            return Err(ValidationError::NoParties {
                path: join_path(base, "parties"),
            })
        }
        Some(parties) => parties,
    };
    if parties.len() > MAX_PARTIES {
        return Err(ValidationError::OverLimit {
            path: join_path(base, "parties"),
            found: format!("has {} parties", parties.len()),
            limit: MAX_PARTIES,
        });
    }
    id_within_limit(body.telephony_session_id.as_ref(), || {
        join_path(base, "telephonySessionId")
    })?;
    let mut recordings = 0;
    for (i, party) in parties.iter().enumerate() {
        // Paths are built only on failure; the happy path allocates nothing here.
        let party_path = || join_path(base, &format!("parties[{i}]"));
        if id_is_blank(party.id.as_ref()) {
            return required_id(party.id.as_ref(), &party_path(), "id");
        }
        id_within_limit(party.id.as_ref(), || join_path(&party_path(), "id"))?;
        let party_recordings = party.recordings.as_deref().unwrap_or_default();
        recordings += party_recordings.len();
        if recordings > MAX_RECORDINGS {
            return Err(ValidationError::OverLimit {
                path: join_path(&party_path(), "recordings"),
                found: format!("brings the notification's recordings to {recordings}"),
                limit: MAX_RECORDINGS,
            });
        }
        for (j, recording) in party_recordings.iter().enumerate() {
            id_within_limit(recording.id.as_ref(), || {
                join_path(&party_path(), &format!("recordings[{j}].id"))
            })?;
        }
        let code = party.status.as_ref().and_then(|s| s.code.as_ref());
        if str_is_blank(code) {
            let status_path = join_path(&party_path(), "status");
            if party.status.is_none() {
                return Err(ValidationError::Missing { path: status_path });
            }
            return required_str(code, &status_path, "code");
        }
    }
    Ok(())
}

fn id_within_limit(
    id: Option<&Id<'_>>,
    path: impl FnOnce() -> String,
) -> Result<(), ValidationError> {
    match id.map(|id| id.as_str().len()) {
        Some(len) if len > MAX_ID_BYTES => Err(ValidationError::OverLimit {
            path: path(),
            found: format!("is {len} bytes long"),
            limit: MAX_ID_BYTES,
        }),
        _ => Ok(()),
    }
}

fn id_is_blank(id: Option<&Id<'_>>) -> bool {
    id.is_none_or(|id| id.as_str().trim().is_empty())
}

fn str_is_blank(s: Option<&Str<'_>>) -> bool {
    s.is_none_or(|s| s.as_str().trim().is_empty())
}

fn required_id(id: Option<&Id<'_>>, base: &str, field: &str) -> Result<(), ValidationError> {
    match id {
        None => Err(ValidationError::Missing {
            path: join_path(base, field),
        }),
        Some(id) if id.as_str().trim().is_empty() => Err(ValidationError::Empty {
            path: join_path(base, field),
        }),
        Some(_) => Ok(()),
    }
}

fn required_str(s: Option<&Str<'_>>, base: &str, field: &str) -> Result<(), ValidationError> {
    match s {
        None => Err(ValidationError::Missing {
            path: join_path(base, field),
        }),
        Some(s) if s.as_str().trim().is_empty() => Err(ValidationError::Empty {
            path: join_path(base, field),
        }),
        Some(_) => Ok(()),
    }
}
