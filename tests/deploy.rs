//! The deployment files cannot drift from the code. No Kafka, Docker or cluster needed.
//!
//! - Every metric the Grafana dashboard, the alert rules and the alert rule tests name is one
//!   `callstream::metrics::Metrics` exports, with labels it has, and label values the code emits.
//! - Every `CALLSTREAM_*` variable in docker-compose.yml and the Kubernetes ConfigMap is one the
//!   subcommand it is given to reads (clap's own definitions), and each container's command line
//!   plus its environment parses as clap would parse it.
//! - Topic names in those files are `TopicNames::default()`.
//! - The metrics port agrees everywhere (9464), the HTTP paths used are ones `src/http.rs` serves,
//!   and the stop timeouts exceed the drain timeout.
//!
//! The YAML files are read with the small parser at the end of this file (the subset these files
//! use: block mappings and sequences, flow sequences, quoted and plain scalars, block scalars), so
//! the crate needs no YAML dependency. `scripts/check-deploy.sh` validates the same files with
//! promtool, docker-compose and kustomize.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::time::Duration;

use callstream::cli::{Cli, Command};
use callstream::config::Settings;
use callstream::core::{Stage, TopicKind};
use callstream::metrics::Metrics;
use callstream::topics::TopicNames;
use clap::{CommandFactory, Parser};
use serde_json::Value;

const DASHBOARD: &str = include_str!("../deploy/grafana/dashboards/callstream.json");
const GRAFANA_DATASOURCE: &str =
    include_str!("../deploy/grafana/provisioning/datasources/prometheus.yml");
const GRAFANA_DASHBOARDS: &str =
    include_str!("../deploy/grafana/provisioning/dashboards/callstream.yml");
const PROMETHEUS: &str = include_str!("../deploy/prometheus/prometheus.yml");
const ALERTS: &str = include_str!("../deploy/prometheus/alerts.yml");
const ALERTS_TEST: &str = include_str!("../deploy/prometheus/alerts_test.yml");
const COMPOSE: &str = include_str!("../docker-compose.yml");
const DOCKERFILE: &str = include_str!("../Dockerfile");
const CONFIGMAP: &str = include_str!("../deploy/kubernetes/configmap.yaml");
const DEPLOYMENT: &str = include_str!("../deploy/kubernetes/deployment.yaml");
const SERVICE: &str = include_str!("../deploy/kubernetes/service.yaml");
const PODMONITOR: &str = include_str!("../deploy/kubernetes/podmonitor.yaml");
const PDB: &str = include_str!("../deploy/kubernetes/pdb.yaml");
const KUSTOMIZATION: &str = include_str!("../deploy/kubernetes/kustomization.yaml");
const HTTP_SOURCE: &str = include_str!("../src/http.rs");

/// The metrics port every deployment file uses (callstream itself has no default port).
const METRICS_PORT: u16 = 9464;
/// The scrape job, which the alerts and the dashboard select on.
const JOB: &str = "callstream";
/// Time to spare after the drain for the final commit and leaving the group.
const STOP_MARGIN: Duration = Duration::from_secs(5);

fn yaml(name: &str, text: &str) -> Value {
    mini_yaml::parse(text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn dashboard() -> Value {
    serde_json::from_str(DASHBOARD).expect("the dashboard is valid JSON")
}

// ---- metrics ---------------------------------------------------------------------------------

/// One exported metric family, as `/metrics` renders it.
#[derive(Debug, Default)]
struct Family {
    help: String,
    /// Sample names: the family name, or for histograms its _bucket, _sum and _count series.
    samples: BTreeSet<String>,
    labels: BTreeSet<String>,
}

/// Every metric family `/metrics` serves, with every labelled vector given one label value so that
/// it renders. A metric added to `Metrics` as a vector must get a line here before the deployment
/// files can use it.
fn exported() -> BTreeMap<String, Family> {
    let m = Metrics::new();
    m.input_messages.with_label_values(&["processed"]).inc();
    m.output_records
        .with_label_values(&[TopicKind::Parties.label()])
        .inc();
    m.dead_letters
        .with_label_values(&[Stage::Decode.as_str(), "syntax"])
        .inc();
    m.lag.with_label_values(&["event"]).observe(0.1);
    m.consumer_lag.with_label_values(&["0"]).set(1);
    m.consumer_leaderless.with_label_values(&["0"]).set(0);
    m.rebalances.with_label_values(&["assign"]).inc();
    m.offset_commits.with_label_values(&["ok"]).inc();
    m.transactions.with_label_values(&["committed"]).inc();
    let text = m.render();

    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            families.entry(name.to_owned()).or_default().help = help.to_owned();
        }
    }
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let sample = &line[..end];
        let family = families
            .keys()
            .filter(|f| {
                sample == f.as_str()
                    || ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|s| sample.strip_suffix(s) == Some(f.as_str()))
            })
            .max_by_key(|f| f.len())
            .cloned()
            .unwrap_or_else(|| panic!("sample {sample} of no family in:\n{text}"));
        let family = families.get_mut(&family).unwrap();
        family.samples.insert(sample.to_owned());
        if let Some(labels) = line[end..].strip_prefix('{') {
            let labels = &labels[..labels.find('}').expect("closed label set")];
            for pair in split_outside_quotes(labels, ',') {
                let name = pair.split('=').next().unwrap().trim();
                if !name.is_empty() {
                    family.labels.insert(name.to_owned());
                }
            }
        }
    }
    families
}

/// A metric selector found in a PromQL expression.
#[derive(Debug)]
struct Selector {
    metric: String,
    /// (label, operator, value).
    matchers: Vec<(String, String, String)>,
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// The `callstream_*` selectors of an expression, and the label names of its `by`/`without`
/// clauses. Good enough for the expressions of these files, not a PromQL parser.
fn selectors(expr: &str) -> (Vec<Selector>, BTreeSet<String>) {
    let chars: Vec<char> = expr.chars().collect();
    let mut found = Vec::new();
    let mut grouping = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '"' {
            // Skip string literals (label values, legend formats).
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            continue;
        }
        if !is_ident(chars[i]) || (i > 0 && is_ident(chars[i - 1])) {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && is_ident(chars[i]) {
            i += 1;
        }
        let word: String = chars[start..i].iter().collect();
        let mut j = i;
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        if (word == "by" || word == "without") && chars.get(j) == Some(&'(') {
            let close = (j..chars.len())
                .find(|&k| chars[k] == ')')
                .expect("closed grouping");
            let inside: String = chars[j + 1..close].iter().collect();
            grouping.extend(
                inside
                    .split(',')
                    .map(|l| l.trim().to_owned())
                    .filter(|l| !l.is_empty()),
            );
            i = close + 1;
        } else if word.starts_with("callstream_") {
            let mut matchers = Vec::new();
            if chars.get(j) == Some(&'{') {
                let close = (j..chars.len())
                    .find(|&k| chars[k] == '}')
                    .expect("closed selector");
                let inside: String = chars[j + 1..close].iter().collect();
                for m in split_outside_quotes(&inside, ',') {
                    let m = m.trim();
                    if m.is_empty() {
                        continue;
                    }
                    let op_at = m
                        .find(['=', '!'])
                        .unwrap_or_else(|| panic!("matcher {m:?}"));
                    let name = m[..op_at].trim().to_owned();
                    let rest = &m[op_at..];
                    let op_len = if rest.starts_with("=~")
                        || rest.starts_with("!=")
                        || rest.starts_with("!~")
                    {
                        2
                    } else {
                        1
                    };
                    let value = rest[op_len..].trim().trim_matches('"').to_owned();
                    matchers.push((name, rest[..op_len].to_owned(), value));
                }
                i = close + 1;
            }
            found.push(Selector {
                metric: word,
                matchers,
            });
        }
    }
    (found, grouping)
}

fn split_outside_quotes(s: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut quoted = false;
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(String::new());
            continue;
        }
        parts.last_mut().unwrap().push(c);
    }
    parts
}

/// Every PromQL expression of the deployment files, with where it comes from.
fn expressions() -> Vec<(String, String)> {
    let mut exprs = Vec::new();
    fn walk(v: &Value, exprs: &mut Vec<(String, String)>, title: &str) {
        match v {
            Value::Object(map) => {
                let title = map.get("title").and_then(Value::as_str).unwrap_or(title);
                if let Some(Value::String(expr)) = map.get("expr") {
                    exprs.push((format!("dashboard panel {title:?}"), expr.clone()));
                }
                if let Some(Value::String(q)) = map.get("definition") {
                    exprs.push((format!("dashboard variable {title:?}"), q.clone()));
                }
                map.values().for_each(|v| walk(v, exprs, title));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, exprs, title)),
            _ => {}
        }
    }
    walk(&dashboard(), &mut exprs, "");

    let alerts = yaml("alerts.yml", ALERTS);
    for group in alerts["groups"].as_array().expect("alert groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let name = rule["alert"]
                .as_str()
                .or(rule["record"].as_str())
                .unwrap_or("?");
            exprs.push((
                format!("alert {name}"),
                rule["expr"].as_str().expect("expr").to_owned(),
            ));
        }
    }
    let tests = yaml("alerts_test.yml", ALERTS_TEST);
    for test in tests["tests"].as_array().expect("tests") {
        for series in test["input_series"].as_array().expect("input_series") {
            let s = series["series"].as_str().expect("series").to_owned();
            exprs.push(("alerts_test.yml input series".into(), s));
        }
    }
    exprs
}

#[test]
fn every_metric_in_the_dashboard_and_alerts_is_exported_with_those_labels() {
    let families = exported();
    let samples: BTreeMap<&str, &str> = families
        .iter()
        .flat_map(|(f, fam)| fam.samples.iter().map(move |s| (s.as_str(), f.as_str())))
        .collect();
    // Values each label may take, where the code can say.
    let mut known: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    known.insert(
        "topic",
        TopicKind::ALL
            .iter()
            .map(|k| k.label().to_owned())
            .collect(),
    );
    known.insert(
        "stage",
        [
            Stage::Decode,
            Stage::Envelope,
            Stage::Validate,
            Stage::Encode,
        ]
        .iter()
        .map(|s| s.as_str().to_owned())
        .collect(),
    );

    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    let exprs = expressions();
    assert!(exprs.len() > 20, "too few expressions found: {exprs:?}");
    for (place, expr) in &exprs {
        let (sels, grouping) = selectors(expr);
        let mut labels_here =
            BTreeSet::from(["job".to_owned(), "instance".to_owned(), "le".to_owned()]);
        for sel in &sels {
            let Some(family) = samples.get(sel.metric.as_str()) else {
                problems.push(format!(
                    "{place}: {} is not exported by callstream",
                    sel.metric
                ));
                continue;
            };
            used.insert(*family);
            let fam = &families[*family];
            labels_here.extend(fam.labels.iter().cloned());
            for (label, op, value) in &sel.matchers {
                if label == "job" {
                    if value != JOB {
                        problems.push(format!("{place}: job {value:?} is not {JOB:?}"));
                    }
                    continue;
                }
                if label == "instance" {
                    continue;
                }
                if !fam.labels.contains(label) {
                    problems.push(format!("{place}: {} has no label {label:?}", sel.metric));
                    continue;
                }
                // Values the code emits: listed in the metric's help text, or known from the code.
                if label == "partition" || label == "code" || op.starts_with('!') {
                    continue;
                }
                for alternative in value.split('|') {
                    let ok = known
                        .get(label.as_str())
                        .map(|set| set.contains(alternative))
                        .unwrap_or_else(|| {
                            fam.help
                                .split(|c: char| !is_ident(c))
                                .any(|w| w == alternative)
                        });
                    if !ok {
                        problems.push(format!(
                            "{place}: {}{{{label}={alternative:?}}}: not a value callstream emits (help: {:?})",
                            sel.metric, fam.help
                        ));
                    }
                }
            }
        }
        for label in &grouping {
            if !labels_here.contains(label) {
                problems.push(format!(
                    "{place}: grouping by {label:?}, which none of its metrics has"
                ));
            }
        }
        // The alerts and the dashboard must only look at callstream's own job.
        if !place.starts_with("alerts_test") {
            for sel in &sels {
                if !sel.matchers.iter().any(|(l, _, _)| l == "job") {
                    problems.push(format!("{place}: {} without job=\"{JOB}\"", sel.metric));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Sanity: the checks above saw the metrics the panels are about.
    for f in [
        "callstream_input_messages_total",
        "callstream_output_records_total",
        "callstream_consumer_lag_messages",
        "callstream_dead_letters_total",
        "callstream_processing_duration_seconds",
        "callstream_lag_seconds",
        "callstream_in_flight_messages",
        "callstream_rebalances_total",
        "callstream_transactions_total",
        "callstream_delivery_retries_total",
    ] {
        assert!(used.contains(f), "nothing uses {f}");
    }
}

#[test]
fn the_expression_scanner_finds_metrics_labels_and_groupings() {
    let (sels, grouping) = selectors(
        r#"sum by (le, kind) (rate(callstream_lag_seconds_bucket{job="callstream", kind=~"a|b"}[5m])) / callstream_x"#,
    );
    assert_eq!(sels.len(), 2);
    assert_eq!(sels[0].metric, "callstream_lag_seconds_bucket");
    assert_eq!(
        sels[0].matchers,
        vec![
            ("job".into(), "=".into(), "callstream".into()),
            ("kind".into(), "=~".into(), "a|b".into())
        ]
    );
    assert_eq!(sels[1].metric, "callstream_x");
    assert_eq!(
        grouping,
        BTreeSet::from(["le".to_owned(), "kind".to_owned()])
    );
    // Text in quotes is not a metric.
    assert!(selectors(r#"foo{a="callstream_nope"}"#).0.is_empty());
}

#[test]
fn the_dashboard_uses_its_datasource_variable_and_shows_the_key_panels() {
    let d = dashboard();
    assert!(
        d["schemaVersion"].as_u64().unwrap_or(0) >= 36,
        "schemaVersion"
    );
    assert_eq!(d["uid"], "callstream");
    let vars = d["templating"]["list"].as_array().expect("templating");
    assert!(
        vars.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "a Prometheus datasource variable named datasource"
    );
    let mut ids = BTreeSet::new();
    let mut titles = Vec::new();
    for panel in d["panels"].as_array().expect("panels") {
        assert!(
            ids.insert(panel["id"].as_u64().expect("panel id")),
            "duplicate panel id {}",
            panel["id"]
        );
        titles.push(panel["title"].as_str().unwrap_or_default().to_owned());
        if panel["type"] != "row" {
            assert_eq!(
                panel["datasource"]["uid"], "${datasource}",
                "panel {:?}",
                panel["title"]
            );
            for t in panel["targets"].as_array().expect("targets") {
                assert_eq!(
                    t["datasource"]["uid"], "${datasource}",
                    "panel {:?}",
                    panel["title"]
                );
            }
        }
    }
    for wanted in [
        "Input messages by outcome",
        "Output records by topic",
        "Consumer lag per partition",
        "Dead letters by stage and code",
        "Processing latency",
        "Event and delivery lag",
        "In-flight messages",
        "Rebalances",
        "Transactions",
        "Delivery retries",
    ] {
        assert!(
            titles.iter().any(|t| t == wanted),
            "no panel {wanted:?} in {titles:?}"
        );
    }
    // The provisioning points at the folder docker-compose.yml mounts the dashboard into.
    let providers = yaml("provisioning/dashboards/callstream.yml", GRAFANA_DASHBOARDS);
    let path = providers["providers"][0]["options"]["path"]
        .as_str()
        .expect("provider path");
    assert!(
        COMPOSE.contains(&format!("./deploy/grafana/dashboards:{path}")),
        "compose mounts {path}"
    );
    let ds = yaml(
        "provisioning/datasources/prometheus.yml",
        GRAFANA_DATASOURCE,
    );
    assert_eq!(ds["datasources"][0]["type"], "prometheus");
}

#[test]
fn every_alert_has_for_severity_summary_and_description() {
    let alerts = yaml("alerts.yml", ALERTS);
    let mut names = BTreeSet::new();
    for group in alerts["groups"].as_array().unwrap() {
        for rule in group["rules"].as_array().unwrap() {
            let name = rule["alert"].as_str().expect("alert name");
            assert!(names.insert(name.to_owned()), "duplicate alert {name}");
            assert!(rule["for"].is_string(), "{name}: for");
            assert!(
                matches!(
                    rule["labels"]["severity"].as_str(),
                    Some("critical" | "warning" | "info")
                ),
                "{name}: severity"
            );
            assert!(
                rule["annotations"]["summary"].is_string(),
                "{name}: summary"
            );
            assert!(
                rule["annotations"]["description"].is_string(),
                "{name}: description"
            );
        }
    }
    for wanted in [
        "CallstreamDown",
        "CallstreamConsumerLagGrowing",
        "CallstreamNotConsuming",
        "CallstreamDeadLetterRateHigh",
        "CallstreamTransactionsAborting",
        "CallstreamDeliveryRetries",
    ] {
        assert!(names.contains(wanted), "no alert {wanted}");
    }
}

// ---- command lines and environment -----------------------------------------------------------

/// The clap definition of the subcommand a command line starts with (`run`, `topics create`).
fn subcommand<'a>(root: &'a clap::Command, words: &[String]) -> (&'a clap::Command, usize) {
    let mut cmd = root;
    let mut used = 0;
    for w in words {
        match cmd.find_subcommand(w) {
            Some(sub) => {
                cmd = sub;
                used += 1;
            }
            None => break,
        }
    }
    assert!(used > 0, "{words:?} names no callstream subcommand");
    (cmd, used)
}

/// Parses a container's command line with its environment the way clap would, without touching
/// this process's environment: each variable becomes the flag that reads it. Panics, naming the
/// variable, when the subcommand does not read it.
fn parse_with_env(place: &str, words: &[String], env: &BTreeMap<String, String>) -> Cli {
    let root = Cli::command();
    let (sub, _) = subcommand(&root, words);
    let mut argv: Vec<OsString> = vec!["callstream".into()];
    argv.extend(words.iter().map(OsString::from));
    for (name, value) in env.iter().filter(|(n, _)| n.starts_with("CALLSTREAM_")) {
        let arg = sub
            .get_arguments()
            .find(|a| a.get_env().is_some_and(|e| e == name.as_str()))
            .unwrap_or_else(|| {
                let accepted: Vec<_> = sub
                    .get_arguments()
                    .filter_map(|a| a.get_env().map(|e| e.to_string_lossy().into_owned()))
                    .collect();
                panic!(
                    "{place}: `callstream {}` does not read {name} (it reads {accepted:?})",
                    sub.get_name()
                )
            });
        let long = arg
            .get_long()
            .expect("an environment-backed flag has a long name");
        argv.push(format!("--{long}").into());
        if arg.get_action().takes_values() {
            argv.push(value.into());
        }
    }
    Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{place}: {argv:?} does not parse:\n{e}"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected a list, got {v}"))
        .iter()
        .map(|s| {
            s.as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| s.to_string())
        })
        .collect()
}

fn env_map(v: &Value) -> BTreeMap<String, String> {
    match v {
        Value::Null => BTreeMap::new(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string()),
                )
            })
            .collect(),
        other => panic!("environment as a mapping, please: {other}"),
    }
}

/// "30s", "1m30s", "90" (seconds).
fn duration(s: &str) -> Duration {
    let mut total = 0u64;
    let mut number = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number.parse().unwrap_or_else(|_| panic!("duration {s:?}"));
        number.clear();
        total += match c {
            's' => n,
            'm' => n * 60,
            'h' => n * 3600,
            _ => panic!("duration {s:?}"),
        };
    }
    if !number.is_empty() {
        total += number.parse::<u64>().unwrap();
    }
    Duration::from_secs(total)
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {addr:?}"))
}

/// The callstream services of docker-compose.yml: (name, service).
fn compose_callstream_services(compose: &Value) -> Vec<(String, Value)> {
    let services = compose["services"].as_object().expect("services");
    let ours: Vec<_> = services
        .iter()
        .filter(|(_, s)| {
            s["image"]
                .as_str()
                .is_some_and(|i| i.starts_with("callstream"))
        })
        .map(|(n, s)| (n.clone(), s.clone()))
        .collect();
    assert!(
        ours.len() >= 4,
        "topics-init, two replicas and the generator"
    );
    ours
}

/// The effective settings of a `run` command line (defaults, then environment variables and
/// flags), computed as `callstream run` computes them, and validated.
fn run_settings(place: &str, cli: Cli) -> Settings {
    let Command::Run(run) = cli.command else {
        panic!("{place}: not `callstream run`")
    };
    run.settings()
        .unwrap_or_else(|e| panic!("{place}: invalid configuration: {e}"))
}

#[test]
fn compose_command_lines_and_environment_are_what_the_cli_accepts() {
    let compose = yaml("docker-compose.yml", COMPOSE);
    let mut replicas = 0;
    for (name, service) in compose_callstream_services(&compose) {
        assert!(
            service["build"].is_string() || service["build"].is_object(),
            "{name}: built from the Dockerfile"
        );
        let place = format!("docker-compose.yml service {name}");
        let words = strings(&service["command"]);
        let env = env_map(&service["environment"]);
        let cli = parse_with_env(&place, &words, &env);
        let has = |flag: &str| words.iter().any(|w| w == flag);
        match words.first().map(String::as_str) {
            Some("run") => {
                replicas += 1;
                let settings = run_settings(&place, cli);
                assert_eq!(settings.topics, TopicNames::default(), "{place}: topics");
                let addr = settings
                    .http
                    .metrics_addr
                    .unwrap_or_else(|| panic!("{place}: CALLSTREAM_METRICS_ADDR"));
                assert_eq!(addr.port(), METRICS_PORT, "{place}: metrics port");
                let ports = strings(&service["ports"]);
                assert!(
                    ports.iter().all(|p| port_of(p) == METRICS_PORT),
                    "{place}: published ports {ports:?} map to {METRICS_PORT}"
                );
                let drain = Duration::from_millis(settings.kafka.drain_timeout_ms);
                assert_eq!(
                    drain,
                    default_drain_timeout(),
                    "{place}: the comments assume the default drain"
                );
                let grace = duration(service["stop_grace_period"].as_str().unwrap_or("10s"));
                assert!(
                    grace >= drain + STOP_MARGIN,
                    "{place}: stop_grace_period {grace:?} must exceed the drain timeout {drain:?} by {STOP_MARGIN:?}"
                );
                let check = strings(&service["healthcheck"]["test"]).join(" ");
                assert!(
                    check.contains(&format!("/{METRICS_PORT}")),
                    "{place}: healthcheck port"
                );
                assert_http_paths(&place, &check);
            }
            Some("topics") => {
                assert!(
                    has("--include-input"),
                    "{place}: the stack needs the input topic"
                );
            }
            Some("generate") => {
                assert!(has("--bootstrap-servers"), "{place}: produces to Kafka");
            }
            other => panic!("{place}: unexpected command {other:?}"),
        }
    }
    assert_eq!(replicas, 2, "two callstream replicas");
}

#[test]
fn kubernetes_container_command_and_configmap_are_what_run_accepts() {
    let configmap = yaml("configmap.yaml", CONFIGMAP);
    let deployment = yaml("deployment.yaml", DEPLOYMENT);
    let env = env_map(&configmap["data"]);
    assert!(
        env.keys().all(|k| k.starts_with("CALLSTREAM_")),
        "only callstream settings: {env:?}"
    );
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(
        container["envFrom"][0]["configMapRef"]["name"], configmap["metadata"]["name"],
        "the container reads the ConfigMap"
    );
    let words = strings(&container["args"]);
    let place = "deploy/kubernetes";
    let settings = run_settings(place, parse_with_env(place, &words, &env));
    assert_eq!(settings.topics, TopicNames::default(), "ConfigMap topics");
    let addr = settings
        .http
        .metrics_addr
        .expect("CALLSTREAM_METRICS_ADDR in the ConfigMap");
    assert_eq!(addr.port(), METRICS_PORT);
    assert!(
        addr.ip().is_unspecified(),
        "the metrics listener must accept the kubelet and Prometheus"
    );

    // Stopping: the grace period covers the drain (the default, or the one configured).
    let drain = Duration::from_millis(settings.kafka.drain_timeout_ms);
    let grace = Duration::from_secs(
        pod["terminationGracePeriodSeconds"]
            .as_u64()
            .expect("terminationGracePeriodSeconds"),
    );
    assert!(
        grace >= drain + STOP_MARGIN,
        "terminationGracePeriodSeconds {grace:?} must exceed the drain timeout {drain:?} by {STOP_MARGIN:?}"
    );
}

/// The default drain timeout (`kafka.drain_timeout_ms`, `--drain-timeout-ms`).
fn default_drain_timeout() -> Duration {
    Duration::from_millis(Settings::default().kafka.drain_timeout_ms)
}

#[test]
fn the_drain_default_is_the_20_seconds_the_files_describe() {
    assert_eq!(default_drain_timeout(), Duration::from_secs(20));
}

// ---- ports, paths, topics, image ---------------------------------------------------------------

/// Every `/health/...` or `/metrics` path in `text` is one src/http.rs routes.
fn assert_http_paths(place: &str, text: &str) {
    for (i, _) in text
        .match_indices("/health/")
        .chain(text.match_indices("/metrics"))
    {
        let path: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || "/_-".contains(*c))
            .collect();
        assert!(
            HTTP_SOURCE.contains(&format!("\"{path}\" =>")),
            "{place}: {path} is not a route of src/http.rs"
        );
    }
}

#[test]
fn kubernetes_ports_probes_and_scraping_agree() {
    let deployment = yaml("deployment.yaml", DEPLOYMENT);
    let service = yaml("service.yaml", SERVICE);
    let podmonitor = yaml("podmonitor.yaml", PODMONITOR);
    let pdb = yaml("pdb.yaml", PDB);
    let pod = &deployment["spec"]["template"];
    let container = &pod["spec"]["containers"][0];
    let port = &container["ports"][0];
    assert_eq!(port["containerPort"], METRICS_PORT);
    let port_name = port["name"].as_str().expect("a named port");
    assert_eq!(deployment["spec"]["replicas"], 2);

    for (probe, path) in [
        ("livenessProbe", "/health/live"),
        ("readinessProbe", "/health/ready"),
    ] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert!(
            get["port"] == port_name || get["port"] == METRICS_PORT,
            "{probe} port"
        );
        assert_http_paths(probe, path);
    }
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/port"], METRICS_PORT.to_string());
    assert_http_paths(
        "prometheus.io/path",
        annotations["prometheus.io/path"].as_str().unwrap(),
    );

    // Security: the Dockerfile's user.
    assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["spec"]["securityContext"]["runAsUser"], 10001);
    assert!(
        DOCKERFILE.lines().any(|l| l.trim() == "USER 10001:10001"),
        "Dockerfile USER"
    );
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);

    // Everything selects the pods by the same label.
    let labels = pod["metadata"]["labels"].as_object().unwrap();
    for (what, selector) in [
        ("deployment", &deployment["spec"]["selector"]["matchLabels"]),
        ("service", &service["spec"]["selector"]),
        ("podmonitor", &podmonitor["spec"]["selector"]["matchLabels"]),
        ("pdb", &pdb["spec"]["selector"]["matchLabels"]),
    ] {
        for (k, v) in selector
            .as_object()
            .unwrap_or_else(|| panic!("{what} selector"))
        {
            assert_eq!(
                labels.get(k),
                Some(v),
                "{what} selects {k}={v}, which the pods do not have"
            );
        }
    }
    assert_eq!(service["spec"]["ports"][0]["port"], METRICS_PORT);
    assert!(service["spec"]["ports"][0]["targetPort"] == port_name);

    // The PodMonitor scrapes /metrics on that port, and names the job the alerts select.
    let endpoint = &podmonitor["spec"]["podMetricsEndpoints"][0];
    assert_eq!(endpoint["port"], port_name);
    assert_eq!(endpoint["path"], "/metrics");
    assert_http_paths("podmonitor", "/metrics");
    let job_label = podmonitor["spec"]["jobLabel"].as_str().expect("jobLabel");
    assert_eq!(
        labels.get(job_label).and_then(Value::as_str),
        Some(JOB),
        "job label value"
    );
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
}

#[test]
fn kustomization_lists_every_manifest_and_tags_the_crate_version() {
    let k = yaml("kustomization.yaml", KUSTOMIZATION);
    let resources: BTreeSet<String> = strings(&k["resources"]).into_iter().collect();
    let expected: BTreeSet<String> = [
        "configmap.yaml",
        "deployment.yaml",
        "service.yaml",
        "podmonitor.yaml",
        "pdb.yaml",
    ]
    .map(String::from)
    .into();
    assert_eq!(resources, expected);
    let image = &k["images"][0];
    let deployment = yaml("deployment.yaml", DEPLOYMENT);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        image["name"]
    );
    assert_eq!(
        image["newTag"].as_str(),
        Some(env!("CARGO_PKG_VERSION")),
        "deploy/kubernetes/kustomization.yaml: set newTag to the crate version"
    );
}

#[test]
fn prometheus_scrapes_the_metrics_port_and_loads_the_rules() {
    let p = yaml("prometheus.yml", PROMETHEUS);
    assert!(strings(&p["rule_files"]).contains(&"alerts.yml".to_owned()));
    let jobs = p["scrape_configs"].as_array().unwrap();
    let job = jobs
        .iter()
        .find(|j| j["job_name"] == JOB)
        .expect("a callstream scrape job");
    assert_eq!(job["metrics_path"], "/metrics");
    assert_http_paths("prometheus.yml", "/metrics");
    let targets = strings(&job["static_configs"][0]["targets"]);
    let compose = yaml("docker-compose.yml", COMPOSE);
    let replicas: BTreeSet<String> = compose_callstream_services(&compose)
        .into_iter()
        .filter(|(_, s)| strings(&s["command"]).first().map(String::as_str) == Some("run"))
        .map(|(n, _)| n)
        .collect();
    let scraped: BTreeSet<String> = targets
        .iter()
        .map(|t| {
            assert_eq!(port_of(t), METRICS_PORT, "target {t}");
            t.rsplit_once(':').unwrap().0.to_owned()
        })
        .collect();
    assert_eq!(
        scraped, replicas,
        "prometheus.yml scrapes every replica of docker-compose.yml"
    );
    assert!(
        DOCKERFILE
            .lines()
            .any(|l| l.trim() == format!("EXPOSE {METRICS_PORT}")),
        "Dockerfile EXPOSE"
    );
}

#[test]
fn topic_names_in_the_deployment_files_are_the_defaults() {
    let d = TopicNames::default();
    let mut names: BTreeSet<&str> = d.outputs().into_iter().collect();
    names.insert(&d.input);
    for (file, text) in [
        ("docker-compose.yml", COMPOSE),
        ("configmap.yaml", CONFIGMAP),
        ("deployment.yaml", DEPLOYMENT),
        ("alerts.yml", ALERTS),
        ("callstream.json", DASHBOARD),
    ] {
        for (i, _) in text.match_indices("telephony.") {
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
                .collect();
            let name = name.trim_end_matches('.');
            assert!(
                names.contains(name),
                "{file}: topic {name:?} is not one of {names:?}"
            );
        }
    }
}

#[test]
fn the_yaml_reader_reads_what_these_files_use() {
    let v = mini_yaml::parse(
        "# comment\na: 1\nb: \"x # not a comment\" # comment\nc:\n  - one\n  - k: v\n    l: [\"p\", 'q', r]\nd: |\n  line 1\n    line 2\ne: >-\n  folded\n  text\nf:\n- same indent\ng: it's plain\n",
    )
    .unwrap();
    assert_eq!(v["a"], 1);
    assert_eq!(v["b"], "x # not a comment");
    assert_eq!(v["c"][0], "one");
    assert_eq!(v["c"][1]["k"], "v");
    assert_eq!(v["c"][1]["l"], serde_json::json!(["p", "q", "r"]));
    assert_eq!(v["d"], "line 1\n  line 2\n");
    assert_eq!(v["e"], "folded text");
    assert_eq!(v["f"][0], "same indent");
    assert_eq!(v["g"], "it's plain");
    assert!(
        mini_yaml::parse("a: &x 1\nb: *x\n").is_err(),
        "anchors are refused, not misread"
    );
}

/// A reader for the subset of YAML the deployment files use, into `serde_json::Value`: block
/// mappings and sequences (a sequence may sit at its key's indentation), flow sequences of
/// scalars, double- and single-quoted and plain scalars (plain ones become numbers or booleans
/// when they look like one), `|` and `>` block scalars, and comments. Anchors, aliases, tags,
/// flow mappings and multi-document files are refused with an error rather than misread.
mod mini_yaml {
    use serde_json::{Map, Number, Value};

    struct Line<'a> {
        number: usize,
        indent: usize,
        /// Without indentation and comment.
        text: String,
        raw: &'a str,
    }

    pub fn parse(source: &str) -> Result<Value, String> {
        let lines: Vec<Line> = source
            .lines()
            .enumerate()
            .map(|(i, raw)| {
                let indent = raw.len() - raw.trim_start_matches(' ').len();
                Line {
                    number: i + 1,
                    indent,
                    text: strip_comment(raw[indent..].trim_end()).to_owned(),
                    raw,
                }
            })
            .collect();
        let mut p = Parser { lines, pos: 0 };
        p.skip_blank();
        if p.pos >= p.lines.len() {
            return Ok(Value::Null);
        }
        let indent = p.lines[p.pos].indent;
        let value = p.block(indent)?;
        p.skip_blank();
        if p.pos < p.lines.len() {
            return Err(p.error("unexpected content (indentation?)"));
        }
        Ok(value)
    }

    /// The text before a comment: `#` at the start or after a space, outside quotes.
    fn strip_comment(s: &str) -> &str {
        let mut quote: Option<char> = None;
        let mut prev = ' ';
        for (i, c) in s.char_indices() {
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if (c == '"' || c == '\'') && " [,:-".contains(prev) => quote = Some(c),
                None if c == '#' && prev == ' ' => return s[..i].trim_end(),
                None => {}
            }
            prev = c;
        }
        s
    }

    struct Parser<'a> {
        lines: Vec<Line<'a>>,
        pos: usize,
    }

    impl Parser<'_> {
        fn error(&self, what: &str) -> String {
            match self.lines.get(self.pos) {
                Some(l) => format!("line {}: {what}: {:?}", l.number, l.raw),
                None => format!("end of file: {what}"),
            }
        }

        fn skip_blank(&mut self) {
            while self.pos < self.lines.len() && self.lines[self.pos].text.is_empty() {
                self.pos += 1;
            }
        }

        fn peek(&mut self) -> Option<(usize, bool)> {
            self.skip_blank();
            self.lines
                .get(self.pos)
                .map(|l| (l.indent, is_item(&l.text)))
        }

        fn block(&mut self, indent: usize) -> Result<Value, String> {
            match self.peek() {
                Some((i, true)) if i == indent => self.sequence(indent),
                Some((i, false)) if i == indent => self.mapping(indent),
                _ => Err(self.error("expected a block")),
            }
        }

        fn sequence(&mut self, indent: usize) -> Result<Value, String> {
            let mut items = Vec::new();
            while let Some((i, true)) = self.peek() {
                if i != indent {
                    break;
                }
                let rest = self.lines[self.pos].text[1..].trim_start().to_owned();
                if rest.is_empty() {
                    self.pos += 1;
                    match self.peek() {
                        Some((i, _)) if i > indent => items.push(self.block(i)?),
                        _ => items.push(Value::Null),
                    }
                } else if split_key(&rest).is_some() {
                    // "- key: value": a mapping whose keys sit two columns further in.
                    let inner = indent + (self.lines[self.pos].text.len() - rest.len());
                    self.lines[self.pos].indent = inner;
                    self.lines[self.pos].text = rest;
                    items.push(self.mapping(inner)?);
                } else {
                    items.push(scalar(&rest).map_err(|e| self.error(&e))?);
                    self.pos += 1;
                }
            }
            Ok(Value::Array(items))
        }

        fn mapping(&mut self, indent: usize) -> Result<Value, String> {
            let mut map = Map::new();
            while let Some((i, item)) = self.peek() {
                if i < indent {
                    break;
                }
                if i > indent || item {
                    return Err(self.error("expected a key at this indentation"));
                }
                let text = self.lines[self.pos].text.clone();
                let (key, rest) =
                    split_key(&text).ok_or_else(|| self.error("expected key: value"))?;
                let key = match scalar(key).map_err(|e| self.error(&e))? {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                self.pos += 1;
                let value = if rest.is_empty() {
                    match self.peek() {
                        Some((i, _)) if i > indent => self.block(i)?,
                        Some((i, true)) if i == indent => self.sequence(indent)?,
                        _ => Value::Null,
                    }
                } else if let Some(style) = rest
                    .strip_prefix('|')
                    .map(|s| ('|', s))
                    .or(rest.strip_prefix('>').map(|s| ('>', s)))
                {
                    self.block_scalar(indent, style.0, style.1)?
                } else {
                    scalar(rest).map_err(|e| {
                        self.pos -= 1;
                        self.error(&e)
                    })?
                };
                if map.insert(key.clone(), value).is_some() {
                    return Err(format!("duplicate key {key:?}"));
                }
            }
            Ok(Value::Object(map))
        }

        /// `|` keeps newlines, `>` folds lines into spaces; `-` strips the final newline.
        fn block_scalar(
            &mut self,
            indent: usize,
            style: char,
            chomp: &str,
        ) -> Result<Value, String> {
            let mut body: Vec<&str> = Vec::new();
            let mut content_indent = None;
            while self.pos < self.lines.len() {
                let line = &self.lines[self.pos];
                let blank = line.raw.trim().is_empty();
                if !blank && line.indent <= indent {
                    break;
                }
                if !blank {
                    content_indent.get_or_insert(line.indent);
                }
                body.push(line.raw);
                self.pos += 1;
            }
            while body.last().is_some_and(|l| l.trim().is_empty()) {
                body.pop();
            }
            let at = content_indent.unwrap_or(0);
            let lines: Vec<&str> = body
                .iter()
                .map(|l| if l.len() >= at { &l[at..] } else { "" })
                .collect();
            let mut text = if style == '|' {
                lines.join("\n")
            } else {
                lines.join(" ")
            };
            if chomp.trim() != "-" {
                text.push('\n');
            }
            Ok(Value::String(text))
        }
    }

    fn is_item(text: &str) -> bool {
        text == "-" || text.starts_with("- ")
    }

    /// Splits `key: rest` at the first `: ` (or final `:`) outside quotes.
    fn split_key(text: &str) -> Option<(&str, &str)> {
        let mut quote: Option<char> = None;
        for (i, c) in text.char_indices() {
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if (c == '"' || c == '\'') && i == 0 => quote = Some(c),
                None if c == ':'
                    && (text[i + 1..].is_empty() || text[i + 1..].starts_with(' ')) =>
                {
                    return Some((text[..i].trim(), text[i + 1..].trim()));
                }
                None if c == '[' && i == 0 => return None,
                None => {}
            }
        }
        None
    }

    fn scalar(s: &str) -> Result<Value, String> {
        let s = s.trim();
        if s.starts_with(['&', '*', '!', '{']) || s == "---" || s.starts_with("<<") {
            return Err(format!("unsupported YAML: {s}"));
        }
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or("unclosed flow sequence")?;
            let mut items = Vec::new();
            let mut current = String::new();
            let mut quote: Option<char> = None;
            let mut escaped = false;
            for c in inner.chars() {
                if escaped {
                    escaped = false;
                } else if quote == Some('"') && c == '\\' {
                    escaped = true;
                } else if quote == Some(c) {
                    quote = None;
                } else if quote.is_none() && (c == '"' || c == '\'') && current.trim().is_empty() {
                    quote = Some(c);
                } else if quote.is_none() && c == ',' {
                    items.push(scalar(&current)?);
                    current.clear();
                    continue;
                }
                current.push(c);
            }
            if !current.trim().is_empty() {
                items.push(scalar(&current)?);
            }
            return Ok(Value::Array(items));
        }
        if let Some(inner) = s.strip_prefix('"') {
            let inner = inner.strip_suffix('"').ok_or("unclosed double quote")?;
            let mut out = String::new();
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                if c != '\\' {
                    out.push(c);
                    continue;
                }
                match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('r') => out.push('\r'),
                    Some('t') => out.push('\t'),
                    Some('"') => out.push('"'),
                    Some('\\') => out.push('\\'),
                    Some('/') => out.push('/'),
                    other => return Err(format!("unsupported escape \\{other:?}")),
                }
            }
            return Ok(Value::String(out));
        }
        if let Some(inner) = s.strip_prefix('\'') {
            let inner = inner.strip_suffix('\'').ok_or("unclosed single quote")?;
            return Ok(Value::String(inner.replace("''", "'")));
        }
        Ok(match s {
            "" | "~" | "null" => Value::Null,
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => {
                if let Ok(n) = s.parse::<i64>() {
                    Value::Number(n.into())
                } else if let Some(n) = s
                    .parse::<f64>()
                    .ok()
                    .filter(|_| s.contains('.'))
                    .and_then(Number::from_f64)
                {
                    Value::Number(n)
                } else {
                    Value::String(s.to_owned())
                }
            }
        })
    }
}
