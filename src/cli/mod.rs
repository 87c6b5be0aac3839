//! The command line: flags and subcommands, dispatched by `main`.

pub mod offline;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::core::{DecodeLimits, ProcessorConfig};

/// Kafka stream processor for RingCentral telephony-session notifications.
#[derive(Debug, Parser)]
#[command(name = "callstream", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Process JSON Lines offline and print every output record as JSON.
    ///
    /// Reads one notification per line from the files (or stdin when none or `-` is given) and
    /// writes `{"topic", "key", "value"}` per output record; a rejected line becomes
    /// `{"topic": <dead letters>, "key": null, "value": <line>, "error": {...}}`. A summary goes to
    /// stderr. Exits 0 when all input was read, whatever was rejected; 2 on an I/O error.
    Process(OfflineArgs),
    /// Check JSON Lines offline: print each rejected line with its number and reason.
    ///
    /// Exits 0 when every line is accepted, 1 when any is rejected, 2 on an I/O error.
    Validate(OfflineArgs),
}

/// Options of the offline commands.
#[derive(Debug, Args)]
pub struct OfflineArgs {
    /// JSON Lines files; none or `-` reads stdin.
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub core: CoreArgs,
}

/// Settings of the core pipeline.
#[derive(Debug, Clone, Args)]
pub struct CoreArgs {
    /// Messages larger than this many bytes are rejected without being parsed.
    #[arg(long, default_value_t = DecodeLimits::default().max_message_bytes)]
    pub max_message_bytes: usize,
    /// How many recent notifications and records are remembered to suppress duplicates (0: off).
    #[arg(long, default_value_t = ProcessorConfig::default().record_window)]
    pub dedup_window: usize,
}

impl CoreArgs {
    pub fn processor_config(&self) -> ProcessorConfig {
        ProcessorConfig {
            limits: DecodeLimits {
                max_message_bytes: self.max_message_bytes,
            },
            notification_window: self.dedup_window,
            record_window: self.dedup_window,
        }
    }
}
