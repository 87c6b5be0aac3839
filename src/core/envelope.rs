//! Stage 2, envelope: find the notification body and its transport fields in whichever of the four
//! input shapes the message has (docs/domain.md §1).

use thiserror::Error;

use super::model::InputShape;
use super::raw::{Id, RawMessage, RawNode, Str};

/// The suffix every telephony-sessions event filter ends with, on the extension and account paths.
const TELEPHONY_SESSIONS_SUFFIX: &str = "/telephony/sessions";

/// Why a parsed JSON value is not a telephony-session notification.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("expected a JSON object or a WebSocket frame array, found {found}")]
    NotAnObject { found: &'static str },
    #[error("JSON array is not a WebSocket notification frame [meta, payload]: {reason}")]
    NotAFrame { reason: String },
    #[error("no notification body: expected body, pn_apns.body, or body fields at the top level")]
    NoBody { path: String },
    #[error("event {event:?} is not a telephony-sessions event filter")]
    WrongEvent { event: String, path: String },
}

impl EnvelopeError {
    /// The JSON path of the offending field, when there is one.
    pub fn path(&self) -> Option<&str> {
        match self {
            EnvelopeError::NoBody { path } | EnvelopeError::WrongEvent { path, .. } => {
                Some(path.as_str())
            }
            EnvelopeError::NotAnObject { .. } | EnvelopeError::NotAFrame { .. } => None,
        }
    }
}

/// Transport fields as they were found, before normalization.
#[derive(Debug, Default)]
pub struct RawEnvelope<'a> {
    pub uuid: Option<Id<'a>>,
    pub event: Option<Str<'a>>,
    pub timestamp: Option<Str<'a>>,
    pub subscription_id: Option<Id<'a>>,
    pub owner_id: Option<Id<'a>>,
}

/// A message whose shape is known: its envelope, its body, and where the body sits in the JSON.
#[derive(Debug)]
pub struct Unwrapped<'a> {
    pub shape: InputShape,
    pub envelope: RawEnvelope<'a>,
    /// Boxed as parsed: moving a `RawNode` out of its box costs a copy of a few hundred bytes.
    pub body: Box<RawNode<'a>>,
    /// JSON path of the body (`body`, `pn_apns.body`, `[1].body`, or empty for a bare body), so
    /// that later stages can name fields as they appear in the original message.
    pub body_path: &'static str,
}

/// Finds the body and envelope of a parsed message.
pub fn unwrap(message: RawMessage<'_>) -> Result<Unwrapped<'_>, EnvelopeError> {
    let unwrapped = match message {
        RawMessage::NotAnObject(found) => return Err(EnvelopeError::NotAnObject { found }),
        RawMessage::NotAFrame(reason) => return Err(EnvelopeError::NotAFrame { reason }),
        RawMessage::Frame(payload) => {
            from_node(payload, InputShape::WebSocket, "[1].body", "[1]", "[1]")?
        }
        RawMessage::Object(mut node) => match node.pn_apns.take() {
            Some(inner) => {
                // The wrapper repeats uuid, subscriptionId and ownerId outside pn_apns.
                let mut unwrapped = from_node(
                    *inner,
                    InputShape::ApplePush,
                    "pn_apns.body",
                    "pn_apns",
                    "pn_apns",
                )?;
                let envelope = &mut unwrapped.envelope;
                envelope.uuid = envelope.uuid.take().or(node.uuid);
                envelope.subscription_id = envelope.subscription_id.take().or(node.subscription_id);
                envelope.owner_id = envelope.owner_id.take().or(node.owner_id);
                unwrapped
            }
            None => from_node(node, InputShape::Webhook, "body", "", "")?,
        },
    };
    check_event(&unwrapped)?;
    Ok(unwrapped)
}

/// Reads an envelope-level object: its `body` if it has one, else itself as a bare body.
fn from_node<'a>(
    mut node: RawNode<'a>,
    shape: InputShape,
    body_path: &'static str,
    bare_path: &'static str,
    node_path: &'static str,
) -> Result<Unwrapped<'a>, EnvelopeError> {
    let envelope = RawEnvelope {
        uuid: node.uuid.take(),
        event: node.event.take(),
        timestamp: node.timestamp.take(),
        subscription_id: node.subscription_id.take(),
        owner_id: node.owner_id.take(),
    };
    if let Some(body) = node.body.take() {
        return Ok(Unwrapped {
            shape,
            envelope,
            body,
            body_path,
        });
    }
    if node.looks_like_body() {
        // A bare body at the top level is its own shape; inside a frame or a wrapper it keeps the
        // shape of its container.
        let shape = if shape == InputShape::Webhook {
            InputShape::BareBody
        } else {
            shape
        };
        return Ok(Unwrapped {
            shape,
            envelope,
            body: Box::new(node),
            body_path: bare_path,
        });
    }
    Err(EnvelopeError::NoBody {
        path: node_path.to_owned(),
    })
}

/// The event filter may be missing, but when present it must be a telephony-sessions filter.
/// The extension and account filters differ in their prefix, so only the suffix is matched.
fn check_event(unwrapped: &Unwrapped<'_>) -> Result<(), EnvelopeError> {
    let Some(event) = &unwrapped.envelope.event else {
        return Ok(());
    };
    let filter = event.as_str();
    let path_only = filter.split('?').next().unwrap_or(filter);
    if path_only.ends_with(TELEPHONY_SESSIONS_SUFFIX) {
        return Ok(());
    }
    let envelope_path = match unwrapped.shape {
        InputShape::ApplePush => "pn_apns.event",
        InputShape::WebSocket => "[1].event",
        _ => "event",
    };
    Err(EnvelopeError::WrongEvent {
        event: filter.to_owned(),
        path: envelope_path.to_owned(),
    })
}
