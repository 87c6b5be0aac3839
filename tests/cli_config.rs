//! Configuration precedence (defaults < file < environment < flags), `config check`, and the
//! README's configuration reference checked against the code.

use std::process::Command;

use callstream::config::Settings;

fn config_check(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_callstream"));
    command.args(["config", "check"]).args(args);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("CALLSTREAM_")) {
        command.env_remove(k);
    }
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().expect("run config check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn group_id(toml: &str) -> String {
    let settings: Settings = toml::from_str(toml).expect("config check prints valid TOML");
    settings.kafka.group_id
}

fn write_config(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("callstream-{name}-{}.toml", std::process::id()));
    std::fs::write(&path, text).expect("write config");
    path
}

#[test]
fn flags_beat_environment_beat_file_beat_defaults() {
    let file = write_config("precedence", "[kafka]\ngroup_id = \"from-file\"\n");
    let file = file.to_str().unwrap();
    let (code, out, _) = config_check(&[], &[]);
    assert_eq!(code, 0);
    assert_eq!(group_id(&out), "callstream");
    let (_, out, _) = config_check(&["--config", file], &[]);
    assert_eq!(group_id(&out), "from-file");
    let (_, out, _) = config_check(&[], &[("CALLSTREAM_CONFIG", file)]);
    assert_eq!(group_id(&out), "from-file");
    let (_, out, _) = config_check(&["--config", file], &[("CALLSTREAM_GROUP_ID", "from-env")]);
    assert_eq!(group_id(&out), "from-env");
    let (_, out, _) = config_check(
        &["--config", file, "--group-id", "from-flag"],
        &[("CALLSTREAM_GROUP_ID", "from-env")],
    );
    assert_eq!(group_id(&out), "from-flag");
}

#[test]
fn secrets_are_masked_and_sasl_is_configured() {
    let file = write_config(
        "secrets",
        "[kafka.security]\nprotocol = \"sasl_ssl\"\nsasl_mechanism = \"SCRAM-SHA-512\"\nsasl_username = \"cs\"\n",
    );
    let (code, out, err) = config_check(
        &[
            "--config",
            file.to_str().unwrap(),
            "-X",
            "ssl.key.password=topsecret",
        ],
        &[
            ("CALLSTREAM_SASL_PASSWORD", "hunter2"),
            ("CALLSTREAM_SSL_KEY_PASSWORD", "keypass"),
            (
                "CALLSTREAM_SCHEMA_REGISTRY_URL",
                "https://reg:urlpass@registry:8081",
            ),
            ("CALLSTREAM_SCHEMA_REGISTRY_USERNAME", "reg"),
            ("CALLSTREAM_SCHEMA_REGISTRY_PASSWORD", "regpass"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    for secret in ["hunter2", "topsecret", "keypass", "urlpass", "regpass"] {
        assert!(!out.contains(secret), "{secret} in {out}");
    }
    let settings: Settings = toml::from_str(&out).unwrap();
    assert_eq!(
        settings.kafka.security.sasl_mechanism.as_deref(),
        Some("SCRAM-SHA-512")
    );
    assert!(settings.kafka.security.sasl_password.is_some());
    // The secrets that only the file could give come from the environment too (a Kubernetes
    // Secret), masked.
    assert!(settings.kafka.security.ssl_key_password.is_some());
    assert!(settings.schema_registry.password.is_some());
    assert_eq!(settings.schema_registry.username.as_deref(), Some("reg"));
}

#[test]
fn an_invalid_configuration_exits_non_zero_naming_the_setting() {
    let (code, _, err) = config_check(&["--commit-interval-ms", "0"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("kafka.commit_interval_ms"), "{err}");
    let file = write_config("typo", "[kafka]\nbootstrap_server = \"x:9092\"\n");
    let (code, _, err) = config_check(&["--config", file.to_str().unwrap()], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("bootstrap_server"), "{err}");
    let (code, _, err) = config_check(&["--config", "/nonexistent/callstream.toml"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/callstream.toml"), "{err}");
}

/// What `run` would refuse at start-up, `config check` refuses too (found by a new-user
/// walkthrough: each passed with status 0), naming what is wrong.
#[test]
fn settings_run_would_refuse_are_refused_by_config_check() {
    for (args, named) in [
        (&["-X", "nonsense.prop=1"][..], "nonsense.prop"),
        (&["-X", "fetch.min.bytes=abc"], "fetch.min.bytes"),
        (&["-X", "message.max.bytes=10"], "message.max.bytes"),
        (
            &["--input-topic", "telephony.calls.missed"],
            "topics.missed",
        ),
        (&["--input-topic", "bad topic"], "topics.input"),
        (&["--dead-letter-topic", ""], "topics.dead_letters"),
        // A filter that does not parse used to leave only errors logged.
        (&["--log-level", "callstream=debgu"], "log.level"),
        (&["--group-instance-id", " "], "kafka.group_instance_id"),
        // What a guarantee rests on is not given up through the passthrough.
        (&["-X", "acks=1"], "acks=1 is refused"),
        (
            &["-X", "enable.auto.offset.store=true"],
            "every record of its message",
        ),
        (
            &["-X", "group.id=other"],
            "set kafka.group_id (--group-id) instead",
        ),
        // A combination librdkafka checks only when a client is made.
        (
            &["-X", "max.in.flight.requests.per.connection=10"],
            "max.in.flight",
        ),
        // librdkafka's default mechanism (Kerberos) is not built in.
        (&["--security-protocol", "sasl_ssl"], "needs sasl_mechanism"),
    ] {
        let (code, _, err) = config_check(args, &[]);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(named), "{args:?}: {err}");
    }
    // Valid ones still pass.
    let (code, _, err) = config_check(
        &[
            "-X",
            "fetch.min.bytes=1024",
            "--log-level",
            "callstream=debug,warn",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
}

/// A value refused from the environment names its variable (clap names only the flag), and an
/// empty variable, as deployment templates write them, counts as unset.
#[test]
fn environment_values_are_named_when_refused_and_empty_ones_are_unset() {
    let (code, _, err) = config_check(&[], &[("CALLSTREAM_GUARANTEE", "bogus")]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("environment variable CALLSTREAM_GUARANTEE"),
        "{err}"
    );
    // Given as a flag, the flag is what is wrong.
    let (code, _, err) = config_check(&["--guarantee", "bogus"], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(!err.contains("environment variable"), "{err}");
    let (code, out, err) = config_check(
        &[],
        &[("CALLSTREAM_METRICS_ADDR", ""), ("CALLSTREAM_GROUP_ID", "")],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(group_id(&out), "callstream", "{out}");
}

/// `config check` writes out the defaults that apply when a setting is not given, and shows an
/// empty secret as empty (found by a new-user walkthrough: both were left out or masked).
#[test]
fn config_check_shows_the_effective_protocol_and_log_filter() {
    let (code, out, err) = config_check(&[], &[("RUST_LOG", "warn")]);
    assert_eq!(code, 0, "{err}");
    let shown: toml::Value = toml::from_str(&out).expect("TOML");
    assert_eq!(
        shown["kafka"]["security"]["protocol"].as_str(),
        Some("plaintext")
    );
    assert_eq!(shown["log"]["level"].as_str(), Some("warn"));
    let (_, out, _) = config_check(
        &["-X", "security.protocol=ssl"],
        &[("CALLSTREAM_LOG", "debug"), ("RUST_LOG", "warn")],
    );
    let shown: toml::Value = toml::from_str(&out).expect("TOML");
    assert_eq!(shown["kafka"]["security"]["protocol"].as_str(), Some("ssl"));
    assert_eq!(shown["log"]["level"].as_str(), Some("debug"));
    // What the logs and clients get: an unparseable RUST_LOG falls back to info; -X wins.
    let (_, out, _) = config_check(
        &[
            "--security-protocol",
            "ssl",
            "-X",
            "security.protocol=sasl_ssl",
            "-X",
            "sasl.mechanisms=OAUTHBEARER",
        ],
        &[("RUST_LOG", "callstream=debgu")],
    );
    let shown: toml::Value = toml::from_str(&out).expect("TOML");
    assert_eq!(
        shown["kafka"]["security"]["protocol"].as_str(),
        Some("sasl_ssl")
    );
    assert_eq!(shown["log"]["level"].as_str(), Some("info"));
    let file = write_config("empty-secret", "[kafka.security]\nsasl_password = \"\"\n");
    let (_, out, _) = config_check(&["--config", file.to_str().unwrap()], &[]);
    assert!(out.contains("sasl_password = \"\""), "{out}");
}

/// The metrics listener takes a host name or a bare port, as other services' flags do, in flags,
/// environment and file alike; what it cannot read is refused naming the setting.
#[test]
fn the_metrics_address_takes_a_host_name_or_a_bare_port() {
    let shown = |args: &[&str], env: &[(&str, &str)]| {
        let (code, out, err) = config_check(args, env);
        assert_eq!(code, 0, "{args:?} {env:?}: {err}");
        let shown: toml::Value = toml::from_str(&out).expect("TOML");
        shown["http"]["metrics_addr"].as_str().map(str::to_owned)
    };
    assert_eq!(
        shown(&["--metrics-addr", "localhost:9464"], &[]).as_deref(),
        Some("127.0.0.1:9464")
    );
    assert_eq!(
        shown(&[], &[("CALLSTREAM_METRICS_ADDR", ":9464")]).as_deref(),
        Some("0.0.0.0:9464")
    );
    assert_eq!(
        shown(&["--metrics-addr", "[::1]:9464"], &[]).as_deref(),
        Some("[::1]:9464")
    );
    let file = write_config(
        "metrics-addr",
        "[http]\nmetrics_addr = \"localhost:9090\"\n",
    );
    assert_eq!(
        shown(&["--config", file.to_str().unwrap()], &[]).as_deref(),
        Some("127.0.0.1:9090")
    );
    for bad in [":http", "localhost", "nohost.invalid:9464"] {
        let (code, _, err) = config_check(&["--metrics-addr", bad], &[]);
        assert_eq!(code, 2, "{bad}: {err}");
        assert!(err.contains("--metrics-addr"), "{bad}: {err}");
    }
    // An IPv6 address without brackets is not taken for a bare port.
    assert_eq!(
        shown(&[], &[("CALLSTREAM_METRICS_ADDR", "::1:9464")]).as_deref(),
        Some("[::1]:9464")
    );
    let (code, _, err) = config_check(&[], &[("CALLSTREAM_METRICS_ADDR", "nohost.invalid")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is not IP:PORT, HOST:PORT or :PORT"), "{err}");
    let file = write_config("bad-metrics-addr", "[http]\nmetrics_addr = \":99999\"\n");
    let (code, _, err) = config_check(&["--config", file.to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("metrics_addr") && err.contains("65535"),
        "{err}"
    );
}

/// Dotted keys of a TOML document (`kafka.security.protocol`).
fn keys(value: &toml::Value, prefix: &str, out: &mut Vec<String>) {
    if let toml::Value::Table(table) = value {
        for (k, v) in table {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            if matches!(v, toml::Value::Table(t) if !t.is_empty()) {
                keys(v, &key, out);
            } else {
                out.push(key);
            }
        }
    }
}

#[test]
fn the_readme_documents_every_setting_and_environment_variable() {
    let readme = include_str!("../README.md");
    let cli = include_str!("../src/cli/mod.rs");
    for var in cli
        .split("env = \"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
    {
        assert!(readme.contains(var), "README does not document {var}");
    }
    // Every key of the file format, with optional ones filled in so that they render.
    let mut settings = Settings::default();
    settings.kafka.group_instance_id = Some(String::new());
    settings.kafka.transactional_id = Some(String::new());
    let s = &mut settings.kafka.security;
    for field in [
        &mut s.protocol,
        &mut s.sasl_mechanism,
        &mut s.sasl_username,
        &mut s.sasl_password,
        &mut s.ssl_ca_location,
        &mut s.ssl_certificate_location,
        &mut s.ssl_key_location,
        &mut s.ssl_key_password,
    ] {
        *field = Some(String::new());
    }
    settings.http.metrics_addr = Some("127.0.0.1:9464".parse().unwrap());
    settings.log.level = Some(String::new());
    settings.schema_registry.url = Some(String::new());
    settings.schema_registry.username = Some(String::new());
    settings.schema_registry.password = Some(String::new());
    let value: toml::Value = toml::from_str(&settings.to_toml()).unwrap();
    let mut all = Vec::new();
    keys(&value, "", &mut all);
    for key in all {
        assert!(
            readme.contains(&format!("`{key}`")),
            "README does not document `{key}`"
        );
    }
}

#[test]
fn generate_writes_to_stdout_even_where_the_service_environment_names_brokers() {
    // A shell or pod set up for `run` has CALLSTREAM_BOOTSTRAP_SERVERS; an export to a file there
    // must stay an export, not become traffic on the live input topic.
    let out = Command::new(env!("CARGO_BIN_EXE_callstream"))
        .args(["generate", "--count", "3", "--seed", "7"])
        .env("CALLSTREAM_BOOTSTRAP_SERVERS", "127.0.0.1:1")
        .output()
        .expect("run generate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    for line in lines {
        serde_json::from_str::<serde_json::Value>(line).expect("a JSON notification");
    }
}

#[test]
fn generate_to_kafka_takes_the_client_settings_of_run_and_checks_them() {
    let generate = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_callstream"))
            .args([
                "generate",
                "--bootstrap-servers",
                "127.0.0.1:1",
                "--count",
                "1",
            ])
            .args(extra)
            .output()
            .expect("run generate")
    };
    // A SASL mechanism without a SASL protocol: refused before connecting, as for `run`.
    let out = generate(&[
        "--sasl-mechanism",
        "PLAIN",
        "--sasl-username",
        "u",
        "--sasl-password",
        "p",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs protocol sasl_plaintext or sasl_ssl"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Settings only `run` uses are not checked: a file made for another group may be reused.
    let config = std::env::temp_dir().join(format!(
        "callstream-gen-run-only-{}.toml",
        std::process::id()
    ));
    std::fs::write(
        &config,
        "[kafka]\ngroup_id = \"\"\nauto_offset_reset = \"Latest\"\n",
    )
    .unwrap();
    let out = generate(&[
        "--config",
        config.to_str().unwrap(),
        "-X",
        "message.timeout.ms=100",
    ]);
    std::fs::remove_file(&config).ok();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("group_id"), "{stderr}");
    // With no broker there, the failed delivery is said and the exit status is 1.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("1 of 1 notifications were not delivered"),
        "{stderr}"
    );
    // A rate that live traffic cannot hold in memory, and no rate at all.
    let out = generate(&["--rate", "1000000"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--rate is at most 5000"));
    let out = generate(&["--rate", "0"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    // -X reaches the producer: librdkafka refuses a property it does not know.
    let out = generate(&["-X", "no.such.property=1"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no.such.property"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `generate` refuses what it would otherwise ignore: a share outside 0 to 1, and `--rate`
/// without brokers to produce to (found by a new-user walkthrough: each was accepted silently).
#[test]
fn generate_refuses_options_it_cannot_honour() {
    for args in [
        &["--count", "1", "--reorder", "7"][..],
        &["--count", "1", "--duplicates", "nan"],
        &["--count", "3", "--rate", "1"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_callstream"))
            .arg("generate")
            .args(args)
            .output()
            .expect("run generate");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
