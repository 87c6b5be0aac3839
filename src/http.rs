//! The one HTTP listener: `/metrics` (Prometheus text format), `/health/live`, `/health/ready`.
//!
//! A deliberately small HTTP/1.1 responder on tokio: three GET routes, one response per
//! connection. It keeps a web framework out of the dependency tree of a Kafka processor.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::health::Health;
use crate::metrics::Metrics;

/// The loop is considered stalled when it has not polled for this long.
pub const STALL_AFTER: Duration = Duration::from_secs(30);

/// What the endpoints read.
#[derive(Clone)]
pub struct Endpoints {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub stall_after: Duration,
}

/// Binds the listener (so that a taken port fails start-up) and returns the bound address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("the metrics address {addr} (--metrics-addr): {e}"),
        )
    })?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Serves until the task is dropped.
pub async fn serve(listener: TcpListener, endpoints: Endpoints) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let endpoints = endpoints.clone();
        tokio::spawn(async move {
            let _ =
                tokio::time::timeout(Duration::from_secs(10), respond(stream, &endpoints)).await;
        });
    }
}

async fn respond(mut stream: TcpStream, endpoints: &Endpoints) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&chunk[..n]);
    }
    let line = request.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("").split('?').next().unwrap_or("");
    let (status, content_type, body) = route(method, path, endpoints);
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if method != "HEAD" {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}

fn route(method: &str, path: &str, e: &Endpoints) -> (&'static str, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    if method != "GET" && method != "HEAD" {
        return (
            "405 Method Not Allowed",
            TEXT,
            "method not allowed\n".into(),
        );
    }
    match path {
        "/metrics" => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            e.metrics.render(),
        ),
        "/health/live" => {
            if e.health.is_live(e.stall_after) {
                ("200 OK", TEXT, "live\n".into())
            } else {
                (
                    "503 Service Unavailable",
                    TEXT,
                    "consume loop stalled\n".into(),
                )
            }
        }
        "/health/ready" => {
            if e.health.is_ready() {
                (
                    "200 OK",
                    TEXT,
                    format!("ready: {} partitions\n", e.health.assigned_partitions()),
                )
            } else {
                ("503 Service Unavailable", TEXT, "not ready\n".into())
            }
        }
        _ => ("404 Not Found", TEXT, "not found\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: SocketAddr, path: &str) -> u16 {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .expect("write");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("read");
        response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    #[tokio::test]
    async fn readiness_follows_assignment_and_shutdown_and_liveness_follows_the_loop() {
        let health = Arc::new(Health::default());
        let (listener, addr) = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        tokio::spawn(serve(
            listener,
            Endpoints {
                metrics: Arc::new(Metrics::new()),
                health: health.clone(),
                stall_after: Duration::from_millis(200),
            },
        ));
        assert_eq!(get(addr, "/health/ready").await, 503, "not running yet");
        health.set_running(true);
        health.heartbeat();
        assert_eq!(
            get(addr, "/health/ready").await,
            503,
            "not in the group yet"
        );
        // A member the group gave no partition (more replicas than partitions) is ready too.
        health.set_assigned(0);
        assert_eq!(get(addr, "/health/ready").await, 200);
        health.set_assigned(3);
        assert_eq!(get(addr, "/health/ready").await, 200);
        // A revocation leaves it in the group; a lost assignment (the group went on without it)
        // does not, until the group assigns again.
        health.set_revoked(0);
        assert_eq!(get(addr, "/health/ready").await, 200);
        health.set_assignment_lost();
        assert_eq!(get(addr, "/health/ready").await, 503, "assignment lost");
        health.set_assigned(2);
        assert_eq!(get(addr, "/health/ready").await, 200);
        assert_eq!(get(addr, "/health/live").await, 200);
        health.set_shutting_down();
        assert_eq!(get(addr, "/health/ready").await, 503, "shutting down");

        // The loop stops polling: liveness fails once the stall threshold has passed.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while get(addr, "/health/live").await == 200 {
            assert!(
                std::time::Instant::now() < deadline,
                "liveness never failed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        health.heartbeat();
        assert_eq!(get(addr, "/health/live").await, 200, "polling again");
        assert_eq!(get(addr, "/metrics").await, 200);
        assert_eq!(get(addr, "/elsewhere").await, 404);
    }
}
