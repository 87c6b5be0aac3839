//! Confluent Schema Registry: at start-up, each derived topic's value schema is registered under
//! the `<topic>-value` subject (or, with auto-registration off, looked up), and the ids are kept
//! for the whole run. A registry that refuses a schema as incompatible stops start-up with a
//! message that names the subject; one out of reach, or answering with a server error, is asked
//! again (the service's start-up decides how long, `RegistryError::is_transient`).

use std::time::Duration;

use serde_json::{json, Value};
use thiserror::Error;

use crate::core::encode::schema_text;
use crate::core::framing::ValueFormat;
use crate::core::TopicKind;
use crate::topics::TopicNames;

/// How to reach the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    pub url: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Register schemas (true) or only look up ones registered already (false).
    pub auto_register: bool,
    /// PEM file of the CAs that sign the registry's certificate; without it, the system's.
    pub ssl_ca_location: Option<String>,
}

/// `url` with the password of its user information (`https://user:password@host`) masked, for
/// messages and printed settings. A password with an unencoded `/`, `?` or `#` is masked too: the
/// user information is taken to end at the last `@` (an `@` in a path masks more than it must).
pub fn mask_url_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let Some(at) = url[scheme_end..].rfind('@').map(|i| scheme_end + i) else {
        return url.to_owned();
    };
    match url[scheme_end..at].find(':') {
        Some(colon) => format!("{}{MASK}{}", &url[..scheme_end + colon + 1], &url[at..]),
        None => url.to_owned(),
    }
}

pub const MASK: &str = "********";

/// What went wrong talking to the registry.
#[derive(Debug, Error)]
pub enum RegistryError {
    #[error("schema registry refused the schema of subject {subject} as incompatible: {message}")]
    Incompatible { subject: String, message: String },
    #[error("schema registry has no such schema under subject {subject}: {message}")]
    NotRegistered { subject: String, message: String },
    #[error("schema registry answered {status} for subject {subject}: {body}")]
    Status {
        subject: String,
        status: u16,
        body: String,
    },
    #[error("schema registry at {url} is unreachable: {message}")]
    Unreachable { url: String, message: String },
    /// The URL, or the TLS settings themselves: the same every time.
    #[error("schema registry at {url} cannot be used as configured: {message}")]
    Misconfigured { url: String, message: String },
}

impl RegistryError {
    /// Whether asking again may succeed: the registry is out of reach, timed out, busy or failing
    /// (a registry starting up, or one whose leader is being elected, answers 5xx for a while).
    /// A refusal of the schema, a missing subject or refused credentials are answered the same
    /// way every time.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Unreachable { .. } => true,
            RegistryError::Status { status, .. } => *status >= 500 || matches!(status, 408 | 429),
            RegistryError::Incompatible { .. }
            | RegistryError::NotRegistered { .. }
            | RegistryError::Misconfigured { .. } => false,
        }
    }
}

/// Registers (or looks up) the four value schemas and returns the Confluent framing with their ids.
/// Each request may take up to `timeout`. Registering a schema again returns the id it has, so
/// asking again after a failure part-way is safe.
pub fn resolve(
    config: &RegistryConfig,
    topics: &TopicNames,
    timeout: Duration,
) -> Result<ValueFormat, RegistryError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .provider(ureq::tls::TlsProvider::NativeTls)
                .root_certs(root_certs(config)?)
                .build(),
        )
        .build()
        .into();
    let mut ids = [0u32; 4];
    for (i, kind) in TopicKind::ALL.iter().enumerate() {
        let subject = format!("{}-value", topics.of(*kind));
        ids[i] = schema_id(&agent, config, &subject, schema_text(*kind))?;
        if config.auto_register {
            tracing::info!(subject, id = ids[i], "schema registered");
        } else {
            tracing::info!(subject, id = ids[i], "schema found (auto_register is off)");
        }
    }
    Ok(ValueFormat::confluent(ids))
}

/// The CAs the registry's certificate is checked against: those of `ssl_ca_location`, else the
/// system's (as for the brokers; a private CA added to the system's store counts).
fn root_certs(config: &RegistryConfig) -> Result<ureq::tls::RootCerts, RegistryError> {
    let Some(path) = &config.ssl_ca_location else {
        return Ok(ureq::tls::RootCerts::PlatformVerifier);
    };
    let misconfigured = |message: String| RegistryError::Misconfigured {
        url: mask_url_password(&config.url),
        message,
    };
    let pem = std::fs::read(path)
        .map_err(|e| misconfigured(format!("cannot read ssl_ca_location {path}: {e}")))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => certs.push(cert),
            Ok(_) => {}
            Err(e) => {
                return Err(misconfigured(format!(
                    "ssl_ca_location {path} is not PEM: {e}"
                )))
            }
        }
    }
    if certs.is_empty() {
        return Err(misconfigured(format!(
            "ssl_ca_location {path} holds no certificate"
        )));
    }
    Ok(ureq::tls::RootCerts::new_with_certs(&certs))
}

fn schema_id(
    agent: &ureq::Agent,
    config: &RegistryConfig,
    subject: &str,
    schema: &str,
) -> Result<u32, RegistryError> {
    let base = config.url.trim_end_matches('/');
    let url = if config.auto_register {
        format!("{base}/subjects/{subject}/versions")
    } else {
        format!("{base}/subjects/{subject}")
    };
    let mut request = agent
        .post(&url)
        .header("Content-Type", "application/vnd.schemaregistry.v1+json")
        .header("Accept", "application/vnd.schemaregistry.v1+json");
    let auth;
    if let Some(user) = &config.username {
        auth = format!(
            "Basic {}",
            base64(format!("{user}:{}", config.password.as_deref().unwrap_or("")).as_bytes())
        );
        request = request.header("Authorization", &auth);
    }
    let failed = |e: ureq::Error| {
        let (url, message) = (mask_url_password(&config.url), e.to_string());
        match e {
            // Not up yet, not resolvable yet (a container starting alongside), or cut off.
            ureq::Error::Io(_)
            | ureq::Error::Timeout(_)
            | ureq::Error::HostNotFound
            | ureq::Error::ConnectionFailed
            | ureq::Error::Protocol(_)
            // Also what a proxy in front of a registry that is starting gives: the connection
            // accepted, then closed during the handshake. A certificate refused shows after the
            // retries, with the same message.
            | ureq::Error::NativeTls(_) => RegistryError::Unreachable { url, message },
            _ => RegistryError::Misconfigured { url, message },
        }
    };
    let mut response = request
        .send_json(json!({ "schema": schema, "schemaType": "AVRO" }))
        .map_err(failed)?;
    let status = response.status().as_u16();
    let body = match response.body_mut().read_to_string() {
        Ok(body) => body,
        // The answer, cut off: asked again.
        Err(e) if status == 200 => return Err(failed(e)),
        // Only the message of a refusal is lost.
        Err(_) => String::new(),
    };
    let message = || {
        serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| body.clone())
    };
    match status {
        200 => serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["id"].as_u64())
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| RegistryError::Status {
                subject: subject.to_owned(),
                status,
                body: format!("no schema id in {body}"),
            }),
        409 => Err(RegistryError::Incompatible {
            subject: subject.to_owned(),
            message: message(),
        }),
        404 => Err(RegistryError::NotRegistered {
            subject: subject.to_owned(),
            message: message(),
        }),
        _ => Err(RegistryError::Status {
            subject: subject.to_owned(),
            status,
            body,
        }),
    }
}

/// Standard base64 with padding, for HTTP basic authentication.
fn base64(input: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unreachable_busy_or_failing_registry_is_asked_again() {
        let status = |status| RegistryError::Status {
            subject: "s".into(),
            status,
            body: String::new(),
        };
        let unreachable = RegistryError::Unreachable {
            url: "http://registry".into(),
            message: "connection refused".into(),
        };
        assert!(unreachable.is_transient());
        let misconfigured = RegistryError::Misconfigured {
            url: "https://registry".into(),
            message: "invalid certificate".into(),
        };
        assert!(!misconfigured.is_transient());
        for transient in [500, 502, 503, 504, 408, 429] {
            assert!(status(transient).is_transient(), "{transient}");
        }
        for permanent in [400, 401, 403, 422] {
            assert!(!status(permanent).is_transient(), "{permanent}");
        }
        let refused = RegistryError::Incompatible {
            subject: "s".into(),
            message: "m".into(),
        };
        let missing = RegistryError::NotRegistered {
            subject: "s".into(),
            message: "m".into(),
        };
        assert!(!refused.is_transient() && !missing.is_transient());
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, output) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), output);
        }
    }
}
