//! `callstream process` and `callstream validate`: the core over JSON Lines, without Kafka. Useful
//! to replay captures and to debug what the service would publish.

use std::io::{self, BufRead, Write};

use serde_json::json;

use crate::core::encode::to_json;
use crate::core::{Outcome, Processor, ProcessorConfig, Rejection};
use crate::topics::TopicNames;

/// A named source of JSON Lines (`-` is stdin).
pub struct Input {
    pub name: String,
    pub reader: Box<dyn BufRead>,
}

impl Input {
    /// Opens the named files, or stdin when the list is empty or names `-`.
    pub fn open_all(paths: &[std::path::PathBuf]) -> io::Result<Vec<Input>> {
        if paths.is_empty() {
            return Ok(vec![Input::stdin()]);
        }
        paths
            .iter()
            .map(|path| {
                if path.as_os_str() == "-" {
                    return Ok(Input::stdin());
                }
                let file = std::fs::File::open(path).map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display()))
                })?;
                Ok(Input {
                    name: path.display().to_string(),
                    reader: Box::new(io::BufReader::with_capacity(1 << 16, file)),
                })
            })
            .collect()
    }

    fn stdin() -> Input {
        Input {
            name: "-".to_owned(),
            reader: Box::new(io::BufReader::new(io::stdin())),
        }
    }
}

/// Counts of one offline run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Totals {
    pub lines: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub duplicates: u64,
    pub suppressed_records: u64,
    /// Records per derived topic, in `TopicKind::ALL` order.
    pub records: [u64; 4],
}

impl Totals {
    fn count(&mut self, outcome: &Outcome) {
        self.accepted += 1;
        self.duplicates += u64::from(outcome.duplicate);
        self.suppressed_records += outcome.suppressed as u64;
    }

    /// One line for people, written to stderr.
    pub fn summary(&self) -> String {
        let [parties, missed, recorded, transfers] = self.records;
        format!(
            "{} lines: {} accepted ({} duplicate notifications), {} rejected; records: \
             {parties} parties, {missed} missed, {recorded} recorded, {transfers} transfers, \
             {} suppressed as duplicates",
            self.lines, self.accepted, self.duplicates, self.rejected, self.suppressed_records
        )
    }
}

/// Reads JSON Lines from `input`, one line at a time (bytes, so that invalid UTF-8 is a rejected
/// line rather than a read error), and calls `each` with the line number and content.
fn for_each_line(
    input: &mut dyn BufRead,
    mut each: impl FnMut(u64, &[u8]) -> io::Result<()>,
) -> io::Result<u64> {
    let mut line = Vec::with_capacity(4096);
    let mut number = 0;
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            return Ok(number);
        }
        number += 1;
        let content = line.strip_suffix(b"\n").unwrap_or(&line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        // Editors on Windows start a UTF-8 file with a byte-order mark; it is not JSON.
        let content = match number {
            1 => content.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(content),
            _ => content,
        };
        each(number, content)?;
    }
}

fn error_json(rejection: &Rejection) -> serde_json::Value {
    json!({
        "stage": rejection.stage.as_str(),
        "code": rejection.code,
        "reason": rejection.reason,
        "path": rejection.path,
    })
}

/// `process`: every output record as `{"topic", "key", "value"}`, one JSON object per line.
pub fn process(
    inputs: &mut [Input],
    out: &mut dyn Write,
    config: ProcessorConfig,
    topics: &TopicNames,
) -> io::Result<Totals> {
    let mut processor = Processor::new(config);
    let mut totals = Totals::default();
    for input in inputs.iter_mut() {
        totals.lines += for_each_line(input.reader.as_mut(), |_, line| {
            let mut write_error = None;
            let result = processor.process(line, |record| {
                let topic = record.topic();
                totals.records[topic.index()] += 1;
                let value = json!({
                    "topic": topics.of(topic),
                    "key": record.key(),
                    "value": to_json(record),
                });
                if let Err(e) = serde_json::to_writer(&mut *out, &value)
                    .map_err(io::Error::from)
                    .and_then(|()| out.write_all(b"\n"))
                {
                    write_error = Some(e);
                }
                Ok(())
            });
            if let Some(e) = write_error {
                return Err(e);
            }
            match result {
                Ok(outcome) => totals.count(&outcome),
                Err(rejection) => {
                    totals.rejected += 1;
                    let value = json!({
                        "topic": topics.dead_letters,
                        "key": null,
                        "value": String::from_utf8_lossy(line),
                        "error": error_json(&rejection),
                    });
                    serde_json::to_writer(&mut *out, &value)?;
                    out.write_all(b"\n")?;
                }
            }
            Ok(())
        })?;
    }
    out.flush()?;
    Ok(totals)
}

/// `validate`: each rejected line with its number and reason; records are not printed.
pub fn validate(
    inputs: &mut [Input],
    out: &mut dyn Write,
    config: ProcessorConfig,
) -> io::Result<Totals> {
    let mut processor = Processor::new(config);
    let mut totals = Totals::default();
    for input in inputs.iter_mut() {
        let name = &input.name;
        totals.lines += for_each_line(input.reader.as_mut(), |number, line| {
            match processor.process(line, |record| {
                totals.records[record.topic().index()] += 1;
                Ok(())
            }) {
                Ok(outcome) => totals.count(&outcome),
                Err(rejection) => {
                    totals.rejected += 1;
                    writeln!(out, "{name}:{number}: {rejection}")?;
                }
            }
            Ok(())
        })?;
    }
    writeln!(
        out,
        "{} lines, {} valid, {} rejected",
        totals.lines, totals.accepted, totals.rejected
    )?;
    out.flush()?;
    Ok(totals)
}
