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
