//! Structured logs through `tracing`: text or JSON, level from a flag or `CALLSTREAM_LOG` /
//! `RUST_LOG`. Phone numbers are never written in full: any text that may carry input data goes
//! through `mask_phone_numbers` before it is logged.

use tracing_subscriber::EnvFilter;

/// Log output format.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The filter logs are written with: `level` if given, else `CALLSTREAM_LOG`, else `RUST_LOG`
/// (each if set and parseable), else `info`. `config check` shows it.
pub fn filter(level: Option<&str>) -> String {
    if let Some(level) = level {
        return level.to_owned();
    }
    ["CALLSTREAM_LOG", "RUST_LOG"]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .find(|value| !value.trim().is_empty() && EnvFilter::try_new(value).is_ok())
        .unwrap_or_else(|| "info".to_owned())
}

/// Installs the global subscriber (logs go to stderr). `level` wins over the environment.
pub fn init(format: LogFormat, level: Option<&str>) {
    let filter = EnvFilter::new(filter(level));
    // Colours only for a terminal, and not with NO_COLOR set: a file, `docker logs` or a log
    // shipper would get escape codes.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    // try_init: a second initialization (tests, the demo) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Replaces every digit of a run of 5 or more digits (optionally led by `+`) except its last
/// two with `*`: `+17205551234` becomes `+*********34`. Short runs (extensions such as `101`,
/// partition and offset numbers) stay readable.
pub fn mask_phone_numbers(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            let run = i - start;
            if run >= 5 {
                out.extend(std::iter::repeat_n('*', run - 2));
                out.push_str(&text[i - 2..i]);
            } else {
                out.push_str(&text[start..i]);
            }
        } else {
            let ch = text[i..].chars().next().unwrap_or('?');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_phone_numbers_but_not_short_numbers() {
        assert_eq!(mask_phone_numbers("+17205551234"), "+*********34");
        assert_eq!(
            mask_phone_numbers("invalid type: integer `17205551234` at parties[0]"),
            "invalid type: integer `*********34` at parties[0]"
        );
        assert_eq!(
            mask_phone_numbers("ext 101, offset 42"),
            "ext 101, offset 42"
        );
        assert_eq!(mask_phone_numbers("héllo 123456"), "héllo ****56");
    }
}
