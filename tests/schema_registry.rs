//! Schema Registry framing against a real broker and a registry-compatible test server
//! (`tests/support/fake_schema_registry.py`; see its header for why it is not a real registry).

mod kafka_support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use callstream::core::TopicKind;
use kafka_support::*;
use serde_json::{json, Value};

struct Registry {
    child: Child,
    url: String,
}

impl Registry {
    fn start() -> Registry {
        Self::start_on(0)
    }

    /// On `port`, or on a free port for 0.
    fn start_on(port: u16) -> Registry {
        Self::start_with(port, None)
    }

    /// Over HTTPS, with this certificate and key (PEM files), on a free port.
    fn start_tls(certificate: &Path, key: &Path) -> Registry {
        let mut registry = Self::start_with(0, Some((certificate, key)));
        registry.url = registry.url.replacen("http://", "https://", 1);
        registry
    }

    /// Answering its first `requests` with 503.
    fn start_unavailable_for(requests: u32) -> Registry {
        Self::start_with_env(
            0,
            None,
            &[("FAKE_REGISTRY_UNAVAILABLE", &requests.to_string())],
        )
    }

    fn start_with(port: u16, tls: Option<(&Path, &Path)>) -> Registry {
        Self::start_with_env(port, tls, &[])
    }

    fn start_with_env(port: u16, tls: Option<(&Path, &Path)>, env: &[(&str, &str)]) -> Registry {
        let mut child = Command::new("python3")
            .envs(env.iter().copied())
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/support/fake_schema_registry.py"
            ))
            .arg(port.to_string())
            .args(tls.iter().flat_map(|(certificate, key)| [certificate, key]))
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs the test registry");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("port line");
        let port = line
            .trim()
            .strip_prefix("port=")
            .expect("port=N")
            .to_owned();
        Registry {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut response = agent
            .post(format!("{}{path}", self.url))
            .send_json(body)
            .expect("registry answers");
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .read_json::<Value>()
            .unwrap_or(Value::Null);
        (status, body)
    }

    fn get(&self, path: &str) -> Value {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        agent
            .get(format!("{}{path}", self.url))
            .call()
            .expect("registry answers")
            .body_mut()
            .read_json()
            .expect("json")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn registers_value_schemas_and_frames_records_in_the_confluent_wire_format() {
    let registry = Registry::start();
    let (t, n) = backlog("registry", 100, 51);
    let service = Service::start(
        &t,
        "registry-group",
        &["--schema-registry-url", &registry.url],
    );
    wait_for("party records", Duration::from_secs(90), || {
        read_topic(&t.parties).len() >= n
    });
    assert!(service.stop(Duration::from_secs(30)).success());

    for kind in TopicKind::ALL {
        let subject = format!("{}-value", t.of(kind));
        let latest = registry.get(&format!("/subjects/{subject}/versions/latest"));
        let id = latest["id"].as_u64().expect("registered") as u32;
        let registered: Value = serde_json::from_str(latest["schema"].as_str().unwrap()).unwrap();
        let shipped: Value =
            serde_json::from_str(callstream::core::encode::schema_text(kind)).unwrap();
        assert_eq!(registered, shipped, "{subject} holds the shipped schema");
        for record in read_topic(t.of(kind)) {
            assert_eq!(record.value[0], 0, "magic byte");
            assert_eq!(
                u32::from_be_bytes(record.value[1..5].try_into().unwrap()),
                id
            );
            record_id(kind, &record.value);
        }
    }
}

#[test]
fn an_incompatible_schema_stops_start_up_with_a_clear_error() {
    let registry = Registry::start();
    let t = unique_topics("incompatible");
    create_topics(&t, PARTITIONS);
    let subject = format!("{}-value", t.parties);
    let other =
        json!({"type": "record", "name": "Other", "fields": [{"name": "x", "type": "int"}]});
    let (status, _) = registry.post(
        &format!("/subjects/{subject}/versions"),
        json!({"schema": other.to_string()}),
    );
    assert_eq!(status, 200);
    let output = Command::new(env!("CARGO_BIN_EXE_callstream"))
        .args([
            "run",
            "--bootstrap-servers",
            &bootstrap(),
            "--group-id",
            "incompatible-group",
        ])
        .args(topic_flags(&t))
        .args(["--schema-registry-url", &registry.url])
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("incompatible") && stderr.contains(&subject),
        "{stderr}"
    );
}

/// A self-signed certificate for 127.0.0.1 and its key, made with the openssl command: a
/// registry signed by a private CA.
fn private_certificate(name: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("callstream-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("certificate directory");
    let (certificate, key) = (dir.join("registry.pem"), dir.join("registry.key"));
    let status = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args(["-subj", "/CN=callstream test registry"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&certificate)
        .stderr(Stdio::null())
        .status()
        .expect("the openssl command makes the test certificate");
    assert!(status.success(), "openssl req failed");
    (certificate, key)
}

/// A registry whose certificate a private CA signed is trusted with
/// `--schema-registry-ssl-ca-location`; a CA file that cannot be read stops start-up at once,
/// naming it. Before, the registry was checked against Mozilla's CAs only, so a private CA could
/// not be used at all.
#[test]
fn a_registry_signed_by_a_private_ca_is_trusted_with_its_ca_file() {
    let (certificate, key) = private_certificate("registry-tls");
    let registry = Registry::start_tls(&certificate, &key);
    let (t, n) = backlog("registry-tls", 30, 54);
    let ca = certificate.to_str().expect("UTF-8 path");
    let service = Service::start_logged(
        &t,
        "registry-tls-group",
        &[
            "--schema-registry-url",
            &registry.url,
            "--schema-registry-ssl-ca-location",
            ca,
        ],
    );
    publishes_in_confluent_framing(service, &t, n);

    // Without the CA file the certificate is checked against the system's CAs, and refused.
    let published = read_topic(&t.parties).len();
    let service = Service::start_logged(
        &t,
        "registry-tls-untrusted-group",
        &["--schema-registry-url", &registry.url],
    );
    wait_for_or_explain(
        "the certificate refused",
        Duration::from_secs(60),
        || {
            let log = service.log();
            log.contains("asking the schema registry again") && log.contains("certificate")
        },
        || service.log(),
    );
    assert_eq!(
        read_topic(&t.parties).len(),
        published,
        "nothing more published"
    );
    assert!(service.stop(Duration::from_secs(60)).success());

    let missing = certificate.with_file_name("missing.pem");
    let output = Command::new(env!("CARGO_BIN_EXE_callstream"))
        .args(["run", "--bootstrap-servers", &bootstrap()])
        .args(["--group-id", "registry-tls-missing-group"])
        .args(topic_flags(&t))
        .args(["--schema-registry-url", &registry.url])
        .arg("--schema-registry-ssl-ca-location")
        .arg(&missing)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot read ssl_ca_location {}",
            missing.display()
        )),
        "{stderr}"
    );
    // Not asked again: the file is read the same way every time.
    assert!(
        !stderr.contains("asking the schema registry again"),
        "{stderr}"
    );
    std::fs::remove_dir_all(certificate.parent().expect("directory")).ok();
}

/// A registry answering 503 (starting, or electing its leader) is asked again until it answers,
/// and the service then runs as usual.
#[test]
fn a_registry_answering_503_at_start_up_is_asked_again() {
    let registry = Registry::start_unavailable_for(2);
    let (t, n) = backlog("registry-503", 30, 55);
    let service = Service::start_logged(
        &t,
        "registry-503-group",
        &["--schema-registry-url", &registry.url],
    );
    let log = publishes_in_confluent_framing(service, &t, n);
    assert!(
        log.contains("asking the schema registry again") && log.contains("503"),
        "{log}"
    );
}

/// Fresh topics for `test` with `count` messages of a corpus in the input topic, and how many
/// party records they make.
fn backlog(test: &str, count: usize, seed: u64) -> (callstream::topics::TopicNames, usize) {
    let t = unique_topics(test);
    create_topics(&t, PARTITIONS);
    let lines = corpus(count, seed);
    let (want, _) = expected(&lines);
    produce(&t.input, &lines);
    (t, want[&TopicKind::Parties].len())
}

/// Waits for the `n` party records of `backlog`, stops the service (cleanly) and checks every
/// record is in the Confluent framing; returns the service's log.
fn publishes_in_confluent_framing(
    service: Service,
    t: &callstream::topics::TopicNames,
    n: usize,
) -> String {
    wait_for_or_explain(
        "party records",
        Duration::from_secs(90),
        || read_topic(&t.parties).len() >= n,
        || service.log(),
    );
    let log = service.log();
    assert!(service.stop(Duration::from_secs(30)).success(), "{log}");
    for record in read_topic(&t.parties) {
        assert_eq!(record.value[0], 0, "Confluent framing: {log}");
    }
    log
}

/// A port nothing listens on (for now).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A registry that is not up yet when the service starts (started with it, say) is asked again
/// until it answers, and the service then runs as usual. Before, start-up failed at once.
#[test]
fn a_registry_out_of_reach_at_start_up_is_asked_again_until_it_answers() {
    let port = free_port();
    let (t, n) = backlog("registry-late", 50, 53);
    let url = format!("http://127.0.0.1:{port}");
    let service =
        Service::start_logged(&t, "registry-late-group", &["--schema-registry-url", &url]);
    wait_for("the service to ask again", Duration::from_secs(30), || {
        service.log().contains("asking the schema registry again")
    });
    let _registry = Registry::start_on(port);
    publishes_in_confluent_framing(service, &t, n);
}

/// A signal while the registry is out of reach stops the service within seconds, with status 0
/// (it has read nothing).
#[test]
fn a_signal_while_the_registry_is_out_of_reach_stops_at_once() {
    let t = unique_topics("registry-stop");
    let url = format!("http://127.0.0.1:{}", free_port());
    let mut service =
        Service::start_logged(&t, "registry-stop-group", &["--schema-registry-url", &url]);
    wait_for("the service to ask again", Duration::from_secs(30), || {
        service.log().contains("asking the schema registry again")
    });
    service.signal("-TERM");
    let status = service.exit_within(Duration::from_secs(10));
    let log = service.log();
    assert!(status.success(), "{status:?}: {log}");
    assert!(log.contains("stopped before reading anything"), "{log}");
}
