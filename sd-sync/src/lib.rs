//! sd-sync: mirrors the targets bucket onto a Prometheus node, fast and safe, and serves
//! the same target groups as Prometheus HTTP SD.
//!
//! It replaces the cron line `aws s3 sync s3://<bucket>/active/ DIR --delete`: each
//! mapping (`s3://BUCKET/PREFIX=DIR`) is polled every couple of seconds; a poll lists the
//! prefix (one request per 1,000 objects), fetches only objects whose ETag differs from the
//! MD5 of the installed file, checks them as file_sd JSON and renames them into place
//! atomically. Files are removed only when a complete listing no longer has their object,
//! and a safety valve holds back mass deletions unless the writers' record agrees
//! (DESIGN.md section 5).
//!
//! Modules: [`config`] (flags and environment), [`mapping`], [`source`] (S3 listing and
//! reads), [`plan`] (pure: what to fetch and delete), [`valve`], [`mirror`] (one mapping's
//! sync; its file-system half, the mapping's directory, is `directory`), [`schedule`]
//! (when polls start), [`http`] (`/targets`, `/health`, `/metrics`), [`auth`] (their
//! optional authentication).

pub mod auth;
pub mod config;
mod directory;
pub mod duration;
pub mod filesd;
pub mod http;
pub mod mapping;
pub mod metrics;
pub mod mirror;
pub mod plan;
pub mod schedule;
pub mod source;
pub mod valve;
pub mod watch;

use std::net::TcpListener;
use std::time::Duration;

use anyhow::Context;
use gds_store::S3Config;
use tokio::time::Instant;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::mirror::{Mirror, MirrorConfig};
use crate::schedule::Schedule;
use crate::source::S3Source;

/// sd-sync with its mirrors opened (directories created and indexed), not yet syncing.
pub struct SdSync {
    config: Config,
    mirrors: Vec<Mirror<S3Source>>,
    metrics: Metrics,
}

/// sd-sync serving HTTP and syncing every mapping in the background.
pub struct Running {
    /// `http://ADDR` of the listener (the real port when asked for port 0).
    pub local_url: String,
    server: actix_web::dev::Server,
}

impl SdSync {
    /// Builds each mapping's S3 client, resolves its credentials (static keys, else the
    /// AWS default chain: failing here, with one line, when no provider yields any) and
    /// opens its directory (creating it, indexing the files already there). Makes no
    /// request to the bucket.
    pub async fn open(config: Config) -> anyhow::Result<SdSync> {
        let metrics = Metrics::new();
        let mut mirrors = Vec::with_capacity(config.mappings.len());
        for mapping in &config.mappings {
            let s3 = S3Config {
                bucket: mapping.bucket.clone(),
                region: mapping
                    .region
                    .clone()
                    .unwrap_or_else(|| config.region.clone()),
                endpoint: config.s3_endpoint.clone(),
                prefix: String::new(),
                access_key_id: config.access_key_id.clone(),
                secret_access_key: config.secret_access_key.clone(),
                session_token: config.session_token.clone(),
            };
            let mapping_metrics = metrics.mapping(&mapping.name);
            let source =
                S3Source::new(s3, mapping.prefix.clone(), mapping_metrics.requests.clone())
                    .with_context(|| format!("mapping {mapping}"))?;
            source
                .check_credentials()
                .await
                .with_context(|| format!("mapping {mapping}"))?;
            let mirror_config = MirrorConfig {
                name: mapping.name.clone(),
                source: mapping.source(),
                dir: mapping.dir.clone(),
                valve: config.valve,
                fetch_concurrency: config.fetch_concurrency,
                safety_listing_interval: config.safety_listing_interval,
            };
            let mirror = Mirror::open(mirror_config, source, mapping_metrics)
                .with_context(|| format!("mapping {mapping}"))?;
            mirrors.push(mirror);
        }
        Ok(SdSync {
            config,
            mirrors,
            metrics,
        })
    }

    /// `--once`: syncs every mapping once. True when every sync listed, fetched and
    /// installed without error and held nothing back.
    pub async fn sync_once(mut self) -> bool {
        let mut ok = true;
        for mirror in &mut self.mirrors {
            let name = mirror.shared().name.clone();
            match mirror.sync_once().await {
                Ok(report) => {
                    tracing::info!(mapping = %name, ?report, "synced once");
                    if let Some(summary) = report.error_summary() {
                        eprintln!("sd-sync: {name}: {summary}");
                        ok = false;
                    }
                    if report.held_back > 0 {
                        let why = report
                            .hold
                            .as_ref()
                            .map(|hold| format!(": {hold}"))
                            .unwrap_or_default();
                        eprintln!(
                            "sd-sync: {name}: {} deletions held back by the safety valve{why} \
                             (--allow-mass-deletion lets them through)",
                            report.held_back
                        );
                        ok = false;
                    }
                }
                Err(e) => {
                    eprintln!("sd-sync: {name}: {e}");
                    ok = false;
                }
            }
        }
        ok
    }

    /// Binds the listener, starts one sync loop per mapping and builds the server.
    /// Call inside a multi-threaded tokio runtime (the syncs use its workers; actix-web
    /// runs its own worker thread); await [`Running::run`] to serve.
    pub fn serve(self) -> anyhow::Result<Running> {
        let listener = TcpListener::bind(self.config.listen)
            .with_context(|| format!("cannot listen on {}", self.config.listen))?;
        let local_url = http::local_url(listener.local_addr()?);
        let state = http::AppState {
            mirrors: self.mirrors.iter().map(Mirror::shared).collect(),
            registry: self.metrics.registry.clone(),
            stale_after: self.config.stale_after,
            auth: self.config.auth.clone(),
        };
        let server = http::server(state, listener)?;
        for mirror in self.mirrors {
            tokio::spawn(sync_loop(mirror, self.config.interval));
        }
        Ok(Running { local_url, server })
    }
}

impl Running {
    /// Serves until SIGINT or SIGTERM.
    pub async fn run(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// Polls one mapping so that a bucket write is installed within about `interval`: each
/// poll starts `interval` minus the recent syncs' cost after the previous one started (see
/// [`schedule`]); a sync that overruns delays the next one instead of queueing several.
async fn sync_loop(mut mirror: Mirror<S3Source>, interval: Duration) {
    let mut schedule = Schedule::new(interval);
    let period_gauge = mirror.metrics().poll_period.clone();
    period_gauge.set(interval.as_secs_f64());
    loop {
        let started = Instant::now();
        // Failures are logged and counted by the mirror; the next poll retries.
        let _ = mirror.sync_once().await;
        schedule.record(started.elapsed());
        let period = schedule.period();
        period_gauge.set(period.as_secs_f64());
        tokio::time::sleep_until((started + period).max(Instant::now())).await;
    }
}
