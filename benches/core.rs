//! The whole core path, bytes in to encoded Avro out, over a realistic corpus, against the cost of
//! merely scanning the same bytes as JSON (`serde_json::from_slice::<IgnoredAny>`).
//!
//! The corpus is generated here, deterministically: calls of a few accounts, each producing the
//! notifications RingCentral sends for it (docs/domain.md §2: about 7 per plain call, 2 more per
//! hold, more per extra leg), in all four input shapes, mostly one party, some two; some missed,
//! some recorded, some transferred; a few redelivered. Each is 700 to 1,000 bytes of compact JSON.
//!
//! After criterion's groups the two paths are timed again, alternately, 31 passes each, and a
//! line is printed: `core: <N> notifications/s, scan baseline: <M>/s, ratio <R>`: N and M from
//! the median pass of each path, R the median of the ratios of passes run back to back (core time
//! / baseline time), so that a burst of load on a shared machine shifts both halves of a pair
//! alike instead of one median. That is with the duplicate windows empty at the start of each
//! pass; the last line, `core, full duplicate windows: ...`, measures the same with windows
//! already full of 110,000 earlier notifications, as in a service that has run for a while.

use std::hint::black_box;
use std::time::{Duration, Instant};

use callstream::core::encode::write_avro;
use callstream::core::{Processor, ProcessorConfig, TopicKind};
use criterion::{BatchSize, Criterion, Throughput};
use serde_json::{json, Value};

/// How many notifications the corpus holds.
const CORPUS_SIZE: usize = 5_000;
/// Timed passes per path in the final measurement.
const FINAL_PASSES: usize = 31;

/// SplitMix64: small, seeded, and the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// True with probability `percent`/100.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn digits(&mut self, len: usize) -> String {
        let mut s = (1 + self.below(9)).to_string();
        while s.len() < len {
            s.push(char::from(b'0' + self.below(10) as u8));
        }
        s
    }
    fn hex(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| char::from_digit(self.below(16) as u32, 16).unwrap())
            .collect()
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const NAMES: &[&str] = &[
    "Tom Sawyer",
    "Becky Thatcher",
    "Huckleberry Finn",
    "Aunt Polly",
    "Joe Harper",
    "Mary Sawyer",
    "Sid Sawyer",
    "Muff Potter",
];
const CALLER_NAMES: &[&str] = &[
    "WIRELESS CALLER",
    "DENVER CO",
    "ACME CORP",
    "UNKNOWN",
    "SMITH JOHN",
];
const QUEUES: &[&str] = &["Support", "Sales", "Billing", "Front Desk"];

/// One internal user of an account.
struct User {
    account_id: String,
    extension_id: String,
    number: String,
    short_number: String,
    name: &'static str,
    device_id: String,
}

/// One call being generated: its ids and what happens in it.
struct Call<'u> {
    user: &'u User,
    other: &'u User,
    telephony_session_id: String,
    session_id: String,
    server_id: String,
    external_number: String,
    external_name: &'static str,
    sequence: i64,
    time_ms: i64,
    inbound: bool,
    queue: Option<&'static str>,
    recording_id: Option<String>,
}

fn iso(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, tod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60,
        ms.rem_euclid(1000)
    )
}

/// Builds the JSON of one party state.
#[allow(clippy::too_many_arguments)]
fn party_json(
    rng: &mut Rng,
    call: &Call<'_>,
    user: Option<&User>,
    leg: u32,
    code: &str,
    reason: Option<&str>,
    missed: bool,
    peer: Option<Value>,
) -> Value {
    let external = json!({"phoneNumber": call.external_number, "name": call.external_name});
    let mut party = match user {
        Some(u) => {
            let me = json!({
                "phoneNumber": if rng.chance(30) { u.short_number.clone() } else { u.number.clone() },
                "name": u.name,
                "extensionId": u.extension_id,
                "deviceId": u.device_id
            });
            let (from, to) = if call.inbound {
                (external, me)
            } else {
                (me, external)
            };
            json!({
                "accountId": u.account_id,
                "extensionId": u.extension_id,
                "id": format!("p-{}-{leg}", &call.telephony_session_id[2..]),
                "direction": if call.inbound { "Inbound" } else { "Outbound" },
                "to": to,
                "from": from,
                "status": {"code": code, "rcc": false},
                "park": {},
                "missedCall": if rng.chance(10) { json!(if missed { "True" } else { "False" }) } else { json!(missed) },
                "standAlone": false,
                "muted": false
            })
        }
        None => {
            let company = json!({"phoneNumber": call.user.number, "name": call.user.name});
            let (from, to) = if call.inbound {
                (external, company)
            } else {
                (company, external)
            };
            json!({
                "id": format!("p-{}-{leg}", &call.telephony_session_id[2..]),
                "direction": if call.inbound { "Outbound" } else { "Inbound" },
                "to": to,
                "from": from,
                "status": {"code": code},
                "park": {},
                "missedCall": false,
                "standAlone": false,
                "muted": false
            })
        }
    };
    if let Some(reason) = reason {
        party["status"]["reason"] = json!(reason);
    }
    if let Some(peer) = peer {
        party["status"]["peerId"] = peer;
    }
    if let Some(queue) = call.queue {
        party["queueCall"] = json!(true);
        party["uiCallInfo"] = json!({
            "primary": {"type": "QueueName", "value": queue},
            "additional": {"type": "CallerIdName", "value": call.external_name}
        });
    }
    if let (Some(id), true) = (&call.recording_id, matches!(code, "Answered" | "Hold")) {
        party["recordings"] = json!([{"id": id, "active": code == "Answered"}]);
    }
    if rng.chance(5) {
        party["sipData"] =
            json!({"callId": rng.hex(24), "toTag": rng.hex(8), "fromTag": rng.hex(8)});
    }
    party
}

/// Wraps a body in a random input shape with a fresh envelope.
fn wrap(rng: &mut Rng, call: &Call<'_>, body: Value, account_path: bool) -> Vec<u8> {
    let user = call.user;
    let event = if account_path {
        format!(
            "/restapi/v1.0/account/{}/telephony/sessions",
            user.account_id
        )
    } else {
        format!(
            "/restapi/v1.0/account/{}/extension/{}/telephony/sessions",
            user.account_id, user.extension_id
        )
    };
    let uuid = rng.digits(19);
    let subscription = format!(
        "{}-{}-4{}-9{}-{}",
        rng.hex(8),
        rng.hex(4),
        rng.hex(3),
        rng.hex(3),
        rng.hex(12)
    );
    let envelope = json!({
        "uuid": uuid,
        "event": event,
        "timestamp": iso(call.time_ms + 20 + rng.below(40) as i64),
        "subscriptionId": subscription,
        "ownerId": user.extension_id,
        "body": body
    });
    let message = match rng.below(100) {
        0..=59 => envelope,
        60..=79 => json!([
            {
                "type": "ServerNotification",
                "messageId": format!("-{}", rng.digits(19)),
                "status": 200,
                "headers": {"RCRequestId": format!("{}-{}", rng.hex(8), rng.hex(4))},
                "wsc": {"token": rng.hex(16), "sequence": rng.below(10_000)}
            },
            envelope
        ]),
        80..=94 => {
            let mut inner = envelope;
            let obj = inner.as_object_mut().unwrap();
            obj.insert("aps".into(), json!({"content-available": 1}));
            json!({
                "uuid": uuid,
                "subscriptionId": subscription,
                "ownerId": user.extension_id,
                "pn_apns": inner
            })
        }
        _ => envelope["body"].clone(),
    };
    serde_json::to_vec(&message).unwrap()
}

/// One notification of a call: the session fields around the given parties.
fn notification(
    rng: &mut Rng,
    call: &mut Call<'_>,
    parties: Vec<Value>,
    account_path: bool,
) -> Vec<u8> {
    call.sequence += 1 + i64::from(rng.chance(20));
    call.time_ms += 200 + rng.below(15_000) as i64;
    let body = json!({
        "sequence": call.sequence,
        "sessionId": call.session_id,
        "telephonySessionId": call.telephony_session_id,
        "serverId": call.server_id,
        "eventTime": iso(call.time_ms),
        "parties": parties,
        "origin": {"type": if rng.chance(90) { "Call" } else { "RingOut" }}
    });
    wrap(rng, call, body, account_path)
}

/// The notifications of one call, as RingCentral sends them to the subscriptions involved.
fn call_notifications(rng: &mut Rng, call: &mut Call<'_>, out: &mut Vec<Vec<u8>>) {
    let user = call.user;
    let other = call.other;
    let kind = rng.below(100);
    let mut states: Vec<(&str, Option<&str>, bool)> =
        vec![("Setup", None, false), ("Proceeding", None, false)];
    let missed = kind < 10;
    let transfer = (10..20).contains(&kind);
    if missed {
        states.push(("VoiceMail", None, true));
        states.push(("Disconnected", Some("Voicemail"), true));
    } else {
        states.push(("Answered", None, false));
        if rng.chance(30) {
            states.push(("Hold", None, false));
            states.push(("Answered", None, false));
        }
        if transfer {
            let reason = *rng.pick(&[
                "BlindTransfer",
                "AttendedTransfer",
                "RccTransfer",
                "DtmfTransfer",
            ]);
            states.push(("Gone", Some(reason), false));
        } else {
            let reason = *rng.pick(&[
                "CallFinished",
                "CallDropped",
                "Pickup",
                "CallFlip",
                "Conference",
            ]);
            states.push(("Disconnected", Some(reason), false));
        }
    }
    let peer = json!({
        "telephonySessionId": format!("s-{}z{}", rng.hex(20), rng.hex(10)),
        "sessionId": rng.digits(11),
        "partyId": format!("p-{}-1", rng.hex(31))
    });
    for (i, &(code, reason, is_missed)) in states.iter().enumerate() {
        let link = (reason == Some("AttendedTransfer")).then(|| peer.clone());
        let internal = party_json(rng, call, Some(user), 2, code, reason, is_missed, link);
        let mut parties = vec![internal];
        // Now and then both legs arrive together.
        if rng.chance(8) {
            parties.push(party_json(
                rng,
                call,
                Some(other),
                3,
                code,
                None,
                false,
                None,
            ));
        }
        out.push(notification(rng, call, parties, false));
        // The external party's changes arrive on the account path, for some states.
        if i != 1 && rng.chance(20) {
            let external = party_json(rng, call, None, 1, code, None, false, None);
            out.push(notification(rng, call, vec![external], true));
        }
        // A redelivery (WebSocket recovery, webhook retry): the same bytes again.
        if rng.chance(2) {
            let again = out.last().unwrap().clone();
            out.push(again);
        }
    }
}

fn corpus(size: usize) -> Vec<Vec<u8>> {
    corpus_from(size, 0x5eed_0000_ca11_0001)
}

/// A corpus of other calls than `corpus`'s (another seed, so other ids).
fn corpus_from(size: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = Rng(seed);
    let users: Vec<User> = (0..40)
        .map(|i| User {
            account_id: ["400144452008", "37439510", "1984276003"][i % 3].to_owned(),
            extension_id: rng.digits(12),
            number: format!("+1650555{:04}", 100 + i),
            short_number: (101 + i).to_string(),
            name: NAMES[i % NAMES.len()],
            device_id: rng.digits(12),
        })
        .collect();
    let mut out = Vec::with_capacity(size + 32);
    let mut time_ms = 1_710_000_000_000i64;
    while out.len() < size {
        let user = rng.pick(&users);
        let other = rng.pick(&users);
        time_ms += rng.below(60_000) as i64;
        let mut call = Call {
            user,
            other,
            telephony_session_id: format!("s-{}z{}", rng.hex(20), rng.hex(10)),
            session_id: rng.digits(11),
            server_id: format!(
                "10.{}.{}.{}.TAM",
                rng.below(256),
                rng.below(256),
                rng.below(256)
            ),
            external_number: format!("+1{}", rng.digits(10)),
            external_name: CALLER_NAMES[rng.below(CALLER_NAMES.len() as u64) as usize],
            sequence: rng.below(3) as i64,
            time_ms,
            inbound: rng.chance(70),
            queue: rng.chance(25).then(|| *rng.pick(QUEUES)),
            recording_id: rng.chance(15).then(|| rng.digits(10)),
        };
        call_notifications(&mut rng, &mut call, &mut out);
    }
    out.truncate(size);
    out
}

/// The core path over the corpus: process with dedup, encode each record to Avro, with the
/// duplicate windows empty at the start of the pass (otherwise the second pass would be all
/// redeliveries).
#[inline(never)]
fn core_pass(processor: &mut Processor, corpus: &[Vec<u8>], buf: &mut Vec<u8>) -> usize {
    processor.forget_emitted();
    process_all(processor, corpus, buf)
}

/// The core path over the corpus with the processor as it is: `full_windows`' for a service that
/// has run for a while.
#[inline(never)]
fn process_all(processor: &mut Processor, corpus: &[Vec<u8>], buf: &mut Vec<u8>) -> usize {
    let mut records = 0;
    for message in corpus {
        let outcome = processor.process(message, |record| {
            buf.clear();
            write_avro(record, buf);
            black_box(&buf[..]);
            Ok(())
        });
        records += black_box(outcome).map_or(0, |o| o.emitted);
    }
    records
}

/// The baseline: scan every message as JSON without building anything.
#[inline(never)]
fn baseline_pass(corpus: &[Vec<u8>]) -> usize {
    let mut ok = 0;
    for message in corpus {
        ok += usize::from(
            serde_json::from_slice::<serde::de::IgnoredAny>(black_box(message)).is_ok(),
        );
    }
    ok
}

/// Checks the corpus is what it claims to be, and describes it on stderr.
fn describe(corpus: &[Vec<u8>]) {
    let mut processor = Processor::new(ProcessorConfig::default());
    let mut per_topic = [0usize; 4];
    let (mut duplicates, mut multi_party) = (0, 0);
    for message in corpus {
        let mut parties = 0;
        let outcome = processor
            .process(message, |record| {
                let i = TopicKind::ALL
                    .iter()
                    .position(|&t| t == record.topic())
                    .unwrap();
                per_topic[i] += 1;
                parties += usize::from(record.topic() == TopicKind::Parties);
                Ok(())
            })
            .unwrap_or_else(|r| panic!("the corpus holds a rejected message: {r}"));
        duplicates += usize::from(outcome.duplicate);
        multi_party += usize::from(parties > 1);
    }
    let sizes: Vec<usize> = corpus.iter().map(Vec::len).collect();
    let total: usize = sizes.iter().sum();
    eprintln!(
        "corpus: {} notifications, {} bytes each on average (min {}, max {}); records: {} parties, \
         {} missed, {} recorded, {} transfers; {} redeliveries, {} with several parties",
        corpus.len(),
        total / corpus.len(),
        sizes.iter().min().unwrap(),
        sizes.iter().max().unwrap(),
        per_topic[0],
        per_topic[1],
        per_topic[2],
        per_topic[3],
        duplicates,
        multi_party
    );
    let average = total / corpus.len();
    assert!(
        (700..=1000).contains(&average),
        "average size {average} is off target"
    );
}

/// A processor whose duplicate windows are full, as in a service that has processed more than
/// the windows hold: 110,000 notifications of other calls. Emptied windows grow again during a
/// pass, to 16,384 slots (256 KiB) each for the corpus's 5,000 notifications; full ones take
/// 4 MiB each. The copy made for each pass has just been written, so its tables start in the
/// caches: this still measures fewer misses than the service has.
fn full_windows() -> Processor {
    let history = corpus_from(110_000, 0x5eed_0000_ca11_0002);
    let mut processor = Processor::new(ProcessorConfig::default());
    let mut buf = Vec::new();
    process_all(&mut processor, &history, &mut buf);
    processor
}

/// Times `passes` passes of the core (each on a copy of `processor`, its windows as they are)
/// alternately with the baseline; prints the spread of the pairwise ratios and returns the
/// medians and the median ratio.
fn measure(processor: &Processor, corpus: &[Vec<u8>], passes: usize) -> (Duration, Duration, f64) {
    let mut buf = Vec::with_capacity(4096);
    let (mut core_times, mut base_times, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..passes {
        let mut copy = processor.clone();
        let start = Instant::now();
        black_box(process_all(&mut copy, corpus, &mut buf));
        let core = start.elapsed();
        let start = Instant::now();
        assert_eq!(black_box(baseline_pass(corpus)), corpus.len());
        let base = start.elapsed();
        core_times.push(core);
        base_times.push(base);
        ratios.push(core.as_secs_f64() / base.as_secs_f64());
    }
    ratios.sort_by(f64::total_cmp);
    eprintln!(
        "pairwise ratios: min {:.2}, quartiles {:.2} / {:.2} / {:.2}, max {:.2}",
        ratios[0],
        ratios[ratios.len() / 4],
        ratios[ratios.len() / 2],
        ratios[ratios.len() * 3 / 4],
        ratios[ratios.len() - 1]
    );
    (
        median(core_times),
        median(base_times),
        ratios[ratios.len() / 2],
    )
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let corpus = corpus(CORPUS_SIZE);
    describe(&corpus);
    let measuring = std::env::args().any(|a| a == "--bench");

    let mut criterion = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    {
        let mut group = criterion.benchmark_group("core");
        group.throughput(Throughput::Elements(corpus.len() as u64));
        let mut processor = Processor::new(ProcessorConfig::default());
        let mut buf = Vec::with_capacity(4096);
        group.bench_function("process+avro", |b| {
            b.iter(|| core_pass(&mut processor, &corpus, &mut buf))
        });
        group.bench_function("scan baseline (IgnoredAny)", |b| {
            b.iter(|| baseline_pass(&corpus))
        });
        group.finish();
    }
    let warmed = full_windows();
    {
        let mut group = criterion.benchmark_group("core, full duplicate windows");
        group.throughput(Throughput::Elements(corpus.len() as u64));
        let mut buf = Vec::with_capacity(4096);
        group.bench_function("process+avro", |b| {
            b.iter_batched_ref(
                || warmed.clone(),
                |processor| process_all(processor, &corpus, &mut buf),
                BatchSize::PerIteration,
            )
        });
        group.finish();
    }
    criterion.final_summary();

    // The final figures: both paths again, alternately, so that drift affects both alike. First
    // with empty windows at the start of each pass (the figure of the first sessions), then with
    // full ones (what a service that has run for a while pays).
    let passes = if measuring { FINAL_PASSES } else { 1 };
    let n = corpus.len() as f64;
    let empty = Processor::new(ProcessorConfig::default());
    let (core, base, ratio) = measure(&empty, &corpus, passes);
    println!(
        "core: {:.0} notifications/s, scan baseline: {:.0}/s, ratio {:.2}",
        n / core.as_secs_f64(),
        n / base.as_secs_f64(),
        ratio
    );
    let (core, base, ratio) = measure(&warmed, &corpus, passes);
    println!(
        "core, full duplicate windows: {:.0} notifications/s, scan baseline: {:.0}/s, ratio {:.2}",
        n / core.as_secs_f64(),
        n / base.as_secs_f64(),
        ratio
    );
}
