//! The long-running updater: a full pass at start and on the schedule, the audit-event
//! fast path every few seconds, `/health` and `/metrics` on `PORT`.
//!
//! Passes of one process run one after another from a single loop (the scheduler only
//! sends ticks), so the schedule and the fast path never overlap here; across processes
//! the database lease keeps one pass at a time.
//!
//! When the Cloud Controller limits our requests, each round waits for the client's
//! budget too ([`gds_cf::Budget::ready_at`]): a poll no sooner than its interval and
//! the fast path's budget allow, a scheduled full pass (ticks in between merge into it)
//! no sooner than the full passes' budget allows. Without a limit both are as scheduled.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context;
use gds_reconcile::Scope;
use tokio::sync::mpsc;
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::config::{Schedule, UpdaterConfig};
use gds_cf::Purpose;
use gds_engine::{CfMetrics, PassError, ReconcileMetrics, Reconciler};
use gds_service::error_chain;

/// Connects to the database (running migrations), opens the store and builds the Cloud
/// Controller client. Makes no Cloud Controller request.
pub async fn build_reconciler(config: &UpdaterConfig) -> anyhow::Result<Reconciler> {
    let connections = config.engine.connect().await?;
    let metrics = ReconcileMetrics::new();
    gds_engine::S3RequestsCollector::register(
        &metrics.registry,
        "gds_updater_s3_requests_total",
        connections.store.as_ref(),
    );
    Ok(config.engine.reconciler(&connections, metrics))
}

/// The long-running updater, bound to its port.
pub struct Daemon {
    reconciler: Arc<Reconciler>,
    server: Server,
    local_addr: SocketAddr,
    schedule: Schedule,
    events_poll: Option<Duration>,
}

impl Daemon {
    pub async fn build(config: UpdaterConfig) -> anyhow::Result<Daemon> {
        let reconciler = Arc::new(build_reconciler(&config).await?);
        let cf_metrics = CfMetrics::registered_in(&reconciler.metrics().registry, "gds_updater");
        let listener =
            TcpListener::bind((config.listen_host.as_str(), config.port)).with_context(|| {
                format!(
                    "listening on {}:{} (LISTEN_HOST, PORT)",
                    config.listen_host, config.port
                )
            })?;
        let local_addr = listener.local_addr().context("reading the bound address")?;
        let data = web::Data::from(reconciler.clone());
        let cf_data = web::Data::new(cf_metrics);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(cf_data.clone())
                .route("/health", web::get().to(health))
                .route("/metrics", web::get().to(metrics))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .context("starting the HTTP server")?
        .run();
        Ok(Daemon {
            reconciler,
            server,
            local_addr,
            schedule: config.schedule,
            events_poll: config.events_poll,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Runs until SIGTERM or Ctrl-C; a pass in progress finishes first.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let server = tokio::spawn(self.server);
        let (ticks, mut full) = mpsc::channel::<()>(1);
        let scheduler = JobScheduler::new()
            .await
            .context("starting the scheduler")?;
        let job = {
            let ticks = ticks.clone();
            let tick = move |_, _| {
                let ticks = ticks.clone();
                Box::pin(async move {
                    // A full pass already waiting makes another one pointless.
                    let _ = ticks.try_send(());
                })
                    as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
            };
            match &self.schedule {
                Schedule::Cron(expr) => Job::new_async(expr.as_str(), tick),
                Schedule::Every(every) => Job::new_repeated_async(*every, tick),
            }
            .context("scheduling the full reconcile")?
        };
        scheduler
            .add(job)
            .await
            .context("scheduling the full reconcile")?;
        scheduler.start().await.context("starting the scheduler")?;
        // The first full pass at once: the bucket may have drifted while we were down.
        let _ = ticks.try_send(());
        tracing::info!(schedule = ?self.schedule, events_poll = ?self.events_poll, "updater started");

        let budget = self.reconciler.cf().budget();
        // The next poll by the clock (the first at once); the budget may move it later.
        let mut next_poll = tokio::time::Instant::now();
        let mut full_due = false;
        let shutdown = gds_service::shutdown_signal();
        tokio::pin!(shutdown);
        loop {
            let poll_at = next_poll.max(budget.ready_at(Purpose::FastPath));
            let full_at = budget.ready_at(Purpose::FullPass);
            tokio::select! {
                () = &mut shutdown => break,
                Some(()) = full.recv(), if !full_due => full_due = true,
                () = tokio::time::sleep_until(full_at), if full_due => {
                    full_due = false;
                    match self.reconciler.run_pass(Scope::All).await {
                        Ok(_) => {}
                        Err(PassError::Busy) => tracing::info!("full pass skipped: another updater is reconciling"),
                        Err(e) => tracing::error!(error = %error_chain(&e), "full pass failed"),
                    }
                }
                () = tokio::time::sleep_until(poll_at), if self.events_poll.is_some() => {
                    next_poll = tokio::time::Instant::now()
                        + self.events_poll.expect("guarded");
                    match self.reconciler.follow_events().await {
                        Ok(_) => {}
                        Err(PassError::Busy) => tracing::debug!("fast path skipped: another updater is reconciling"),
                        Err(e) => tracing::warn!(error = %error_chain(&e), "fast path failed; trying again at the next poll"),
                    }
                }
            }
        }
        tracing::info!("stopping");
        let mut scheduler = scheduler;
        let _ = scheduler.shutdown().await;
        handle.stop(true).await;
        let _ = server.await;
        self.reconciler.db().close().await;
        Ok(())
    }
}

/// `GET /health`: `200` when the database answers, `503` otherwise.
async fn health(reconciler: web::Data<Reconciler>) -> HttpResponse {
    match reconciler.db().ping().await {
        Ok(()) => json_reply(HttpResponse::Ok(), serde_json::json!({"status": "ok"})),
        Err(e) => {
            tracing::error!(error = %error_chain(&e), "health check: the database does not answer");
            json_reply(
                HttpResponse::ServiceUnavailable(),
                serde_json::json!({"status": "unavailable", "description": "the database does not answer"}),
            )
        }
    }
}

/// `GET /metrics`: Prometheus text format.
async fn metrics(
    reconciler: web::Data<Reconciler>,
    cf_metrics: web::Data<CfMetrics>,
) -> HttpResponse {
    let metrics = reconciler.metrics();
    metrics.observe_cf_requests(&reconciler.cf().request_stats());
    cf_metrics.observe(reconciler.cf());
    HttpResponse::Ok()
        .content_type(gds_service::metrics::CONTENT_TYPE)
        .body(metrics.render())
}

fn json_reply(
    mut builder: actix_web::HttpResponseBuilder,
    body: serde_json::Value,
) -> HttpResponse {
    builder
        .content_type("application/json")
        .body(body.to_string())
}
