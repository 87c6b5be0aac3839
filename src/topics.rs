//! Topic names: the input, the derived topics and the dead-letter topic.

use serde::{Deserialize, Serialize};

use crate::core::TopicKind;

/// The names of every topic callstream reads or writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopicNames {
    /// Raw notifications, as the upstream connector writes them.
    pub input: String,
    /// One record per party per notification.
    pub parties: String,
    pub missed: String,
    pub recorded: String,
    pub transfers: String,
    /// Messages the core rejects, with the reason in headers.
    pub dead_letters: String,
}

impl Default for TopicNames {
    fn default() -> Self {
        Self {
            input: "telephony.sessions.raw".into(),
            parties: "telephony.sessions.parties".into(),
            missed: "telephony.calls.missed".into(),
            recorded: "telephony.calls.recorded".into(),
            transfers: "telephony.calls.transfers".into(),
            dead_letters: "telephony.sessions.dlq".into(),
        }
    }
}

impl TopicNames {
    /// The topic of a derived record.
    pub fn of(&self, kind: TopicKind) -> &str {
        match kind {
            TopicKind::Parties => &self.parties,
            TopicKind::Missed => &self.missed,
            TopicKind::Recorded => &self.recorded,
            TopicKind::Transfers => &self.transfers,
        }
    }

    /// Each name a topic Kafka allows, and the input none of the outputs (callstream would read
    /// its own records): the setting at fault and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let named = [
            ("topics.input", &self.input),
            ("topics.parties", &self.parties),
            ("topics.missed", &self.missed),
            ("topics.recorded", &self.recorded),
            ("topics.transfers", &self.transfers),
            ("topics.dead_letters", &self.dead_letters),
        ];
        for (field, name) in named {
            legal_topic_name(name).map_err(|reason| (field, format!("{name:?} {reason}")))?;
        }
        for (field, name) in &named[1..] {
            if *name == &self.input {
                return Err((field, format!("{name:?} is also the input topic")));
            }
        }
        Ok(())
    }

    /// Every topic callstream writes to.
    pub fn outputs(&self) -> [&str; 5] {
        [
            &self.parties,
            &self.missed,
            &self.recorded,
            &self.transfers,
            &self.dead_letters,
        ]
    }
}

/// Kafka's rules for a topic name: 1 to 249 of `a-z A-Z 0-9 . _ -`, and not `.` or `..`.
fn legal_topic_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("is empty");
    }
    if name.len() > 249 {
        return Err("is longer than Kafka's 249 characters");
    }
    if name == "." || name == ".." {
        return Err("is not a topic name Kafka allows");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(
            "has characters Kafka does not allow in a topic name (only a-z, A-Z, 0-9, ., _ and -)",
        );
    }
    Ok(())
}
