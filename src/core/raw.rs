//! The input as RingCentral sends it: serde types that borrow from the message bytes.
//!
//! These types accept what real traffic does (docs/domain.md §2) rather than what the official page
//! promises: every field is optional, ids may be strings or numbers, booleans may be the strings
//! `"True"`/`"False"`, and unknown fields are skipped. They do no checking beyond JSON types;
//! `validate` decides what is required and `normalize` turns values into canonical form.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// A JSON string, borrowed from the input when it has no escapes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Str<'a>(pub Cow<'a, str>);

/// An id: a string (usually of digits) or a JSON integer, kept as a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Id<'a>(pub Cow<'a, str>);

/// Text meant for people (a name, a phone number as sent, a description): a string, or a JSON
/// number: an integer kept as its digits, another number as its value in decimal (`1.5e3` reads
/// `1500`). A display value in an unexpected form is no reason to refuse a
/// call's notification (docs/domain.md §2: only what the processor cannot work without is
/// required).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text<'a>(pub Cow<'a, str>);

/// A boolean, also accepted as the strings `"True"`/`"False"` (any case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag(pub bool);

/// An integer, also accepted as a string of digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Int(pub i64);

impl<'a> Str<'a> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'a> Id<'a> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Which JSON values read as text, besides strings.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Accepts {
    Strings,
    /// Integers, as their digits.
    Integers,
    /// Any number: integers as their digits, others as their value in decimal.
    Numbers,
}

struct StrVisitor<'a> {
    accepts: Accepts,
    marker: PhantomData<&'a ()>,
}

impl<'de: 'a, 'a> Visitor<'de> for StrVisitor<'a> {
    type Value = Cow<'a, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self.accepts {
            Accepts::Strings => "a string",
            Accepts::Integers => "a string or an integer id",
            Accepts::Numbers => "a string or a number",
        })
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        if self.accepts == Accepts::Strings {
            return Err(E::invalid_type(de::Unexpected::Unsigned(v), &self));
        }
        Ok(Cow::Owned(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        if self.accepts == Accepts::Strings {
            return Err(E::invalid_type(de::Unexpected::Signed(v), &self));
        }
        Ok(Cow::Owned(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        if self.accepts != Accepts::Numbers {
            return Err(E::invalid_type(de::Unexpected::Float(v), &self));
        }
        Ok(Cow::Owned(v.to_string()))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(StrVisitor {
            accepts: Accepts::Strings,
            marker: PhantomData,
        })
        .map(Str)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Id<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrVisitor {
            accepts: Accepts::Integers,
            marker: PhantomData,
        })
        .map(Id)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrVisitor {
            accepts: Accepts::Numbers,
            marker: PhantomData,
        })
        .map(Text)
    }
}

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FlagVisitor;
        impl<'de> Visitor<'de> for FlagVisitor {
            type Value = Flag;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a boolean or \"True\"/\"False\"")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Flag, E> {
                Ok(Flag(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Flag, E> {
                if v.eq_ignore_ascii_case("true") {
                    Ok(Flag(true))
                } else if v.eq_ignore_ascii_case("false") {
                    Ok(Flag(false))
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(v), &self))
                }
            }
        }
        d.deserialize_any(FlagVisitor)
    }
}

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct IntVisitor;
        impl<'de> Visitor<'de> for IntVisitor {
            type Value = Int;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Int, E> {
                Ok(Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Int, E> {
                i64::try_from(v)
                    .map(Int)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Int, E> {
                v.parse()
                    .map(Int)
                    .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }
        d.deserialize_any(IntVisitor)
    }
}

/// A JSON object read as `T`. serde's derived `Deserialize` of a struct also accepts a JSON array
/// of the field values in order; no RingCentral payload does that, so an array where an object
/// belongs is a wrong type (`"status": ["Answered"]`), not a status.
#[repr(transparent)]
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(ObjectVisitor(PhantomData)).map(Object)
    }
}

/// An optional field whose value must be a JSON object.
fn object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    Ok(Option::<Object<T>>::deserialize(d)?.map(|o| o.0))
}

/// A JSON array of JSON objects, each read as `T`.
struct Objects<T>(Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Objects<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjectsVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectsVisitor<T> {
            type Value = Vec<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of JSON objects")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
                let mut items = Vec::new();
                while let Some(Object(item)) = seq.next_element()? {
                    // Arrays here usually hold one element (one party, one recording); room for
                    // exactly one keeps the allocation small (a party is ~700 bytes).
                    if items.capacity() == 0 {
                        items.reserve_exact(1);
                    }
                    items.push(item);
                }
                Ok(items)
            }
        }
        d.deserialize_seq(ObjectsVisitor(PhantomData)).map(Objects)
    }
}

/// An optional field whose value must be a JSON array of JSON objects.
fn objects<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Vec<T>>, D::Error> {
    Ok(Option::<Objects<T>>::deserialize(d)?.map(|o| o.0))
}

/// Any JSON object of the input: an envelope, an Apple-push wrapper, or a notification body.
///
/// One type serves every level because the shapes nest the same fields at different depths
/// (docs/domain.md §1); `envelope::unwrap` decides which level is which.
#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawNode<'a> {
    // Envelope fields.
    #[serde(borrow)]
    pub uuid: Option<Id<'a>>,
    #[serde(borrow)]
    pub event: Option<Str<'a>>,
    #[serde(borrow)]
    pub timestamp: Option<Str<'a>>,
    #[serde(borrow)]
    pub subscription_id: Option<Id<'a>>,
    #[serde(borrow)]
    pub owner_id: Option<Id<'a>>,
    #[serde(borrow, default, deserialize_with = "object")]
    pub body: Option<Box<RawNode<'a>>>,
    #[serde(borrow, default, deserialize_with = "object", rename = "pn_apns")]
    pub pn_apns: Option<Box<RawNode<'a>>>,

    // Body fields.
    pub sequence: Option<Int>,
    #[serde(borrow)]
    pub session_id: Option<Id<'a>>,
    #[serde(borrow)]
    pub telephony_session_id: Option<Id<'a>>,
    #[serde(borrow)]
    pub server_id: Option<Id<'a>>,
    #[serde(borrow)]
    pub event_time: Option<Str<'a>>,
    #[serde(borrow, default, deserialize_with = "object")]
    pub origin: Option<RawOrigin<'a>>,
    #[serde(borrow, default, deserialize_with = "objects")]
    pub parties: Option<Vec<RawParty<'a>>>,
    #[serde(borrow)]
    pub account_id: Option<Id<'a>>,
    #[serde(borrow)]
    pub extension_id: Option<Id<'a>>,
}

impl RawNode<'_> {
    /// True when this object carries notification-body fields itself (the bare-body shape).
    pub fn looks_like_body(&self) -> bool {
        self.telephony_session_id.is_some() || self.parties.is_some() || self.session_id.is_some()
    }
}

#[derive(Debug, Default, PartialEq, Deserialize)]
pub struct RawOrigin<'a> {
    #[serde(borrow, rename = "type")]
    pub kind: Option<Str<'a>>,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawParty<'a> {
    #[serde(borrow)]
    pub id: Option<Id<'a>>,
    #[serde(borrow)]
    pub account_id: Option<Id<'a>>,
    #[serde(borrow)]
    pub extension_id: Option<Id<'a>>,
    #[serde(borrow)]
    pub direction: Option<Str<'a>>,
    pub queue_call: Option<Flag>,
    #[serde(borrow, default, deserialize_with = "object")]
    pub to: Option<RawEndpoint<'a>>,
    #[serde(borrow, default, deserialize_with = "object")]
    pub from: Option<RawEndpoint<'a>>,
    #[serde(borrow, default, deserialize_with = "object")]
    pub status: Option<RawStatus<'a>>,
    pub missed_call: Option<Flag>,
    pub stand_alone: Option<Flag>,
    pub muted: Option<Flag>,
    #[serde(borrow)]
    pub conference_role: Option<Str<'a>>,
    #[serde(borrow)]
    pub ring_out_role: Option<Str<'a>>,
    #[serde(borrow)]
    pub ring_me_role: Option<Str<'a>>,
    #[serde(borrow, default, deserialize_with = "object")]
    pub sip_data: Option<RawSipData<'a>>,
    #[serde(borrow, default, deserialize_with = "objects")]
    pub recordings: Option<Vec<RawRecording<'a>>>,
    #[serde(borrow, default, deserialize_with = "object")]
    pub park: Option<RawPark<'a>>,
    #[serde(borrow, default, deserialize_with = "object")]
    pub ui_call_info: Option<RawUiCallInfo<'a>>,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawEndpoint<'a> {
    #[serde(borrow)]
    pub phone_number: Option<Text<'a>>,
    #[serde(borrow)]
    pub name: Option<Text<'a>>,
    #[serde(borrow)]
    pub extension_id: Option<Id<'a>>,
    #[serde(borrow)]
    pub device_id: Option<Id<'a>>,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawStatus<'a> {
    #[serde(borrow)]
    pub code: Option<Str<'a>>,
    #[serde(borrow)]
    pub reason: Option<Str<'a>>,
    #[serde(borrow)]
    pub description: Option<Text<'a>>,
    pub rcc: Option<Flag>,
    #[serde(borrow, default, deserialize_with = "object")]
    pub peer_id: Option<RawPeer<'a>>,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawPeer<'a> {
    #[serde(borrow)]
    pub session_id: Option<Id<'a>>,
    #[serde(borrow)]
    pub telephony_session_id: Option<Id<'a>>,
    #[serde(borrow)]
    pub party_id: Option<Id<'a>>,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawSipData<'a> {
    #[serde(borrow)]
    pub call_id: Option<Id<'a>>,
    #[serde(borrow)]
    pub to_tag: Option<Id<'a>>,
    #[serde(borrow)]
    pub from_tag: Option<Id<'a>>,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
pub struct RawRecording<'a> {
    #[serde(borrow)]
    pub id: Option<Id<'a>>,
    pub active: Option<Flag>,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
pub struct RawPark<'a> {
    #[serde(borrow)]
    pub id: Option<Id<'a>>,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
pub struct RawUiCallInfo<'a> {
    #[serde(borrow, default, deserialize_with = "object")]
    pub primary: Option<RawUiValue<'a>>,
    #[serde(borrow, default, deserialize_with = "object")]
    pub additional: Option<RawUiValue<'a>>,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
pub struct RawUiValue<'a> {
    #[serde(borrow, rename = "type")]
    pub kind: Option<Str<'a>>,
    #[serde(borrow)]
    pub value: Option<Text<'a>>,
}

/// Implements the scalar `visit_*` methods of a visitor as "this is not what we look for".
macro_rules! visit_scalars_as {
    ($value:expr) => {
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
}

/// The top-level JSON value of a message, before the envelope is interpreted.
#[derive(Debug, PartialEq)]
pub enum RawMessage<'a> {
    /// A JSON object: webhook envelope, Apple-push wrapper or bare body.
    Object(RawNode<'a>),
    /// A WebSocket frame `[meta, payload]` whose meta says `ServerNotification`.
    Frame(RawNode<'a>),
    /// A JSON array that is not a WebSocket notification frame; the text says why.
    NotAFrame(String),
    /// A JSON value that is neither object nor array; names what it is.
    NotAnObject(&'static str),
}

impl<'de: 'a, 'a> Deserialize<'de> for RawMessage<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MessageVisitor(PhantomData))
    }
}

struct MessageVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for MessageVisitor<'a> {
    type Value = RawMessage<'a>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object or a WebSocket frame array")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        RawNode::deserialize(de::value::MapAccessDeserializer::new(map)).map(RawMessage::Object)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let meta: Option<FrameMeta> = seq.next_element()?;
        let verdict = match meta {
            None => Some("an empty array".to_owned()),
            Some(FrameMeta::NotAnObject) => {
                Some("its first element is not a meta object".to_owned())
            }
            Some(FrameMeta::Object(None)) => Some("its meta object has no type".to_owned()),
            Some(FrameMeta::Object(Some(serde_json::Value::String(kind)))) => (kind
                != "ServerNotification")
                .then(|| format!("its meta type is {kind:?}, not \"ServerNotification\"")),
            Some(FrameMeta::Object(Some(other))) => Some(format!(
                "its meta type is {other}, not the string \"ServerNotification\""
            )),
        };
        if let Some(reason) = verdict {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(RawMessage::NotAFrame(reason));
        }
        let payload: Option<PayloadSlot<'a>> = seq.next_element()?;
        let mut extra = 0usize;
        while seq.next_element::<IgnoredAny>()?.is_some() {
            extra += 1;
        }
        match payload {
            None => Ok(RawMessage::NotAFrame(
                "it has no payload element".to_owned(),
            )),
            Some(_) if extra > 0 => Ok(RawMessage::NotAFrame(format!(
                "it has {} elements, expected 2",
                2 + extra
            ))),
            Some(PayloadSlot(None)) => Ok(RawMessage::NotAFrame(
                "its payload is not a JSON object".to_owned(),
            )),
            Some(PayloadSlot(Some(node))) => Ok(RawMessage::Frame(node)),
        }
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(RawMessage::NotAnObject("null"))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(RawMessage::NotAnObject("a boolean"))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(RawMessage::NotAnObject("a number"))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(RawMessage::NotAnObject("a number"))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(RawMessage::NotAnObject("a number"))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(RawMessage::NotAnObject("a string"))
    }
}

/// The first element of a WebSocket frame: only its `type` matters; anything else is tolerated.
enum FrameMeta {
    /// The `type`, if present, whatever JSON it is.
    Object(Option<serde_json::Value>),
    NotAnObject,
}

impl<'de> Deserialize<'de> for FrameMeta {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MetaVisitor;
        impl<'de> Visitor<'de> for MetaVisitor {
            type Value = FrameMeta;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FrameMeta, A::Error> {
                let mut kind = None;
                // `Str` borrows the key; `Cow<str>` would allocate one per key.
                while let Some(key) = map.next_key::<Str<'de>>()? {
                    if key.as_str() == "type" {
                        kind = Some(map.next_value::<serde_json::Value>()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(FrameMeta::Object(kind))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<FrameMeta, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(FrameMeta::NotAnObject)
            }
            visit_scalars_as!(FrameMeta::NotAnObject);
        }
        d.deserialize_any(MetaVisitor)
    }
}

/// The second element of a WebSocket frame: a webhook-shaped object, or `None` for anything else.
struct PayloadSlot<'a>(Option<RawNode<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for PayloadSlot<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SlotVisitor<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for SlotVisitor<'a> {
            type Value = PayloadSlot<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a notification object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                RawNode::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|node| PayloadSlot(Some(node)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(PayloadSlot(None))
            }
            visit_scalars_as!(PayloadSlot(None));
        }
        d.deserialize_any(SlotVisitor(PhantomData))
    }
}
