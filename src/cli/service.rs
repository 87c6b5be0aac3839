//! `callstream run` and `callstream topics create`: the runtime shell around the service loop
//! (signals, the HTTP listener, exit codes).

use rdkafka::types::RDKafkaErrorCode;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::health::Health;
use crate::http::{self, Endpoints, STALL_AFTER};
use crate::metrics::Metrics;
use crate::service::{self, admin, clients, engine, ServiceConfig};

use super::{ConnectionArgs, RunArgs, TopicArgs, TopicsCreateArgs};
use crate::config::{ConfigError, Settings};

/// Exit status when the service stops on an error.
const EXIT_SERVICE_ERROR: u8 = 1;
/// Exit status for an invalid configuration (like a usage error).
const EXIT_CONFIG_ERROR: u8 = 2;

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("callstream-io")
        .enable_all()
        .build()
}

/// Sets `stop` on the first SIGINT or SIGTERM; a second one exits at once. The handlers are
/// installed when this is called, not when the future is first polled: a signal that comes
/// right after (during start-up) is not missed. Call it within the runtime.
pub fn stop_on_signal(stop: Arc<AtomicBool>) -> impl std::future::Future<Output = ()> {
    let mut signals = Signals::install();
    async move {
        signals.recv().await;
        tracing::info!(
            "signal received: stopping intake, draining and committing (signal again to exit at once)"
        );
        stop.store(true, Ordering::Relaxed);
        signals.recv().await;
        tracing::warn!("second signal: exiting without draining");
        std::process::exit(130);
    }
}

/// SIGTERM and SIGINT, listened for from installation on.
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn install() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Signals {
                term: signal(SignalKind::terminate()).ok(),
                int: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        match (&mut self.term, &mut self.int) {
            (Some(term), Some(int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            (Some(only), None) | (None, Some(only)) => {
                only.recv().await;
            }
            (None, None) => std::future::pending::<()>().await,
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Starts the HTTP listener when an address is given.
pub async fn start_http(
    addr: Option<std::net::SocketAddr>,
    metrics: &Arc<Metrics>,
    health: &Arc<Health>,
) -> std::io::Result<()> {
    if let Some(addr) = addr {
        let (listener, local) = http::bind(addr).await?;
        tracing::info!(address = %local, "serving /metrics, /health/live, /health/ready");
        tokio::spawn(http::serve(
            listener,
            Endpoints {
                metrics: metrics.clone(),
                health: health.clone(),
                stall_after: STALL_AFTER,
            },
        ));
    }
    Ok(())
}

/// The settings of `run` and `config check`, librdkafka's properties included; or the exit
/// status of a configuration error, which is printed.
fn run_settings(args: &RunArgs) -> Result<Settings, ExitCode> {
    let refuse = |e: &dyn std::fmt::Display| {
        eprintln!("callstream: {e}");
        ExitCode::from(EXIT_CONFIG_ERROR)
    };
    let settings = args.settings().map_err(|e| refuse(&e))?;
    clients::check_properties(&settings.service_config()).map_err(|e| refuse(&e))?;
    Ok(settings)
}

/// `callstream run`.
pub fn run(args: RunArgs) -> ExitCode {
    let settings = match run_settings(&args) {
        Ok(s) => s,
        Err(code) => return code,
    };
    crate::logging::init(settings.log.format, settings.log.level.as_deref());
    let config = settings.service_config();
    let runtime = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("callstream: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_SERVICE_ERROR);
        }
    };
    runtime.block_on(async move {
        let metrics = Arc::new(Metrics::new());
        let health = Arc::new(Health::default());
        let stop = Arc::new(AtomicBool::new(false));
        if let Err(e) = start_http(settings.http.metrics_addr, &metrics, &health).await {
            tracing::error!(error = %e, "cannot bind the HTTP listener");
            eprintln!("callstream: cannot bind the HTTP listener: {e}");
            return ExitCode::from(EXIT_SERVICE_ERROR);
        }
        tokio::spawn(stop_on_signal(stop.clone()));
        tracing::info!(
            bootstrap_servers = config.bootstrap_servers,
            group_id = config.group_id,
            guarantee = config.guarantee.as_str(),
            input = config.topics.input,
            "starting"
        );
        run_service(config, metrics, health, stop).await
    })
}

/// `callstream config check`: the effective configuration, secrets masked.
pub fn config_check(args: RunArgs) -> ExitCode {
    match run_settings(&args) {
        Ok(settings) => {
            let log_filter = crate::logging::filter(settings.log.level.as_deref());
            print!("{}", settings.effective(log_filter).masked().to_toml());
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// Runs the blocking service loop on its own thread and maps its end to an exit status.
pub async fn run_service(
    config: ServiceConfig,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    stop: Arc<AtomicBool>,
) -> ExitCode {
    let result =
        tokio::task::spawn_blocking(move || service::run(config, metrics, health, stop)).await;
    match result {
        Ok(Ok(summary)) => {
            tracing::info!(
                messages = summary.messages,
                records = summary.records,
                dead_letters = summary.dead_letters,
                "stopped cleanly"
            );
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "stopped on an error");
            eprintln!("callstream: {e}");
            ExitCode::from(EXIT_SERVICE_ERROR)
        }
        Err(e) => {
            eprintln!("callstream: the service loop panicked: {e}");
            ExitCode::from(EXIT_SERVICE_ERROR)
        }
    }
}

/// The settings of the file, environment and flags with these topic names, checked by `check`;
/// or the exit status of a configuration error, which is printed.
pub(super) fn checked_settings(
    connection: &ConnectionArgs,
    topics: &TopicArgs,
    check: fn(&Settings) -> Result<(), ConfigError>,
) -> Result<Settings, ExitCode> {
    connection
        .settings()
        .and_then(|mut s| {
            topics.apply(&mut s.topics);
            check(&s).map(|()| s)
        })
        .map_err(|e| {
            eprintln!("callstream: {e}");
            ExitCode::from(EXIT_CONFIG_ERROR)
        })
}

/// `callstream topics create`.
pub fn topics_create(args: TopicsCreateArgs) -> ExitCode {
    crate::logging::init(crate::logging::LogFormat::Text, None);
    let settings = match checked_settings(&args.connection, &args.topics, Settings::validate) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let names = &settings.topics;
    let mut wanted: Vec<&str> = Vec::new();
    if args.include_input {
        wanted.push(&names.input);
    }
    wanted.extend(names.outputs());
    let overrides = settings.librdkafka_properties();
    let result = runtime().map_err(|e| e.to_string()).and_then(|rt| {
        rt.block_on(admin::create_topics(
            &settings.kafka.bootstrap_servers,
            &wanted,
            args.partitions,
            args.replication_factor,
            &overrides,
        ))
        .map_err(|e| {
            let unsupported = e.rdkafka_error_code() == Some(RDKafkaErrorCode::UnsupportedFeature);
            if unsupported && args.replication_factor < 0 {
                format!("{e} (brokers older than Kafka 2.4 need an explicit --replication-factor)")
            } else if engine::is_connection_error(&e) {
                format!(
                    "{e} (brokers {}: {})",
                    settings.kafka.bootstrap_servers,
                    engine::CHECK_CONNECTION
                )
            } else {
                e.to_string()
            }
        })
    });
    match result {
        Ok(created) => {
            for topic in &wanted {
                let state = if created.iter().any(|c| c == topic) {
                    "created"
                } else {
                    "exists"
                };
                println!("{state}\t{topic}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("callstream: creating topics failed: {e}");
            ExitCode::from(EXIT_SERVICE_ERROR)
        }
    }
}
