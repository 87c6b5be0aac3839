//! `callstream process` and `callstream validate`: the core over JSON Lines, without Kafka. Useful
//! to replay captures and to debug what the service would publish.

use std::io::{self, BufRead, Write};

use serde_json::json;

use crate::core::budget::{OutputBudget, MAX_RECORD_BYTES};
use crate::core::encode::to_json;
use crate::core::framing::ValueFormat;
use crate::core::{Outcome, OutputRecord, Processor, ProcessorConfig, Rejection, TopicKind};
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
/// line rather than a read error), and calls `each` with the line number and content. Blank lines
/// separate nothing in JSON Lines and are skipped. Returns how many lines were handed on.
fn for_each_line(
    input: &mut Input,
    mut each: impl FnMut(u64, &[u8]) -> io::Result<()>,
) -> io::Result<u64> {
    let mut line = Vec::with_capacity(4096);
    let (mut number, mut handed) = (0, 0);
    loop {
        line.clear();
        let read = input
            .reader
            .read_until(b'\n', &mut line)
            .map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", input.name)))?;
        if read == 0 {
            return Ok(handed);
        }
        number += 1;
        let content = line.strip_suffix(b"\n").unwrap_or(&line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        // Editors on Windows start a UTF-8 file with a byte-order mark; it is not JSON.
        let content = match number {
            1 => content.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(content),
            _ => content,
        };
        if content.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if number == 1 && matches!(content.trim_ascii(), b"{" | b"[") {
            // One JSON document over many lines: every line would be rejected on its own.
            eprintln!(
                "callstream: {} looks like one JSON document over many lines; this command reads \
                 JSON Lines, one notification per line (`jq -c . FILE` converts it)",
                input.name
            );
        }
        handed += 1;
        each(number, content)?;
    }
}

/// Measures each record as the service encodes it (single-object framing, the default record
/// limit), so that what the service refuses for its size is refused here too.
struct Measure {
    format: ValueFormat,
    scratch: Vec<u8>,
}

impl Measure {
    fn new() -> io::Result<Self> {
        Ok(Self {
            format: ValueFormat::single_object().map_err(io::Error::other)?,
            scratch: Vec::new(),
        })
    }

    fn budget(line: &[u8]) -> OutputBudget {
        OutputBudget::new(line.len(), MAX_RECORD_BYTES)
    }

    fn charge(
        &mut self,
        budget: &mut OutputBudget,
        record: &OutputRecord<'_>,
    ) -> Result<(), Rejection> {
        self.scratch.clear();
        self.format.write_value(record, &mut self.scratch);
        budget.charge(record.record_id(), record.key().len(), self.scratch.len())
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
    let mut measure = Measure::new()?;
    let mut totals = Totals::default();
    // A line's records are printed once all of them are accepted: a line refused part-way (its
    // records too large) prints only its dead letter, as the service publishes only that.
    let mut accepted = Vec::new();
    for input in inputs.iter_mut() {
        totals.lines += for_each_line(input, |_, line| {
            accepted.clear();
            let mut budget = Measure::budget(line);
            let result = processor.process(line, |record| {
                measure.charge(&mut budget, record)?;
                let topic = record.topic();
                accepted.push((
                    topic,
                    json!({
                        "topic": topics.of(topic),
                        "key": record.key(),
                        "value": to_json(record),
                    }),
                ));
                Ok(())
            });
            match result {
                Ok(outcome) => {
                    for (topic, value) in &accepted {
                        totals.records[topic.index()] += 1;
                        serde_json::to_writer(&mut *out, value)?;
                        out.write_all(b"\n")?;
                    }
                    totals.count(&outcome)
                }
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
    let mut measure = Measure::new()?;
    let mut totals = Totals::default();
    for input in inputs.iter_mut() {
        let name = input.name.clone();
        totals.lines += for_each_line(input, |number, line| {
            let mut records = [0; TopicKind::ALL.len()];
            let mut budget = Measure::budget(line);
            match processor.process(line, |record| {
                measure.charge(&mut budget, record)?;
                records[record.topic().index()] += 1;
                Ok(())
            }) {
                Ok(outcome) => {
                    for (total, n) in totals.records.iter_mut().zip(records) {
                        *total += n;
                    }
                    totals.count(&outcome)
                }
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
