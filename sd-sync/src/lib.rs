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
//! optional authentication), [`gateway`] (the optional scrape gateway).

pub mod auth;
pub mod config;
mod directory;
pub mod duration;
pub mod filesd;
pub mod gateway;
pub mod http;
pub mod mapping;
pub mod metrics;
pub mod mirror;
pub mod plan;
pub mod schedule;
pub mod scrape_auth;
pub mod source;
pub mod valve;
pub mod watch;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use gds_store::S3Config;
use tokio::time::Instant;

use crate::config::Config;
use crate::gateway::{AppGuidBearer, Gateway, RouteTable, RoutesBuilder, UpstreamAuthorization};
use crate::metrics::Metrics;
use crate::mirror::{Mirror, MirrorConfig};
use crate::schedule::Schedule;
use crate::scrape_auth::{CredentialsIndex, CredentialsMetrics, ScrapeCredentials};
use crate::source::S3Source;

/// sd-sync with its mirrors opened (directories created and indexed), not yet syncing.
pub struct SdSync {
    config: Config,
    mirrors: Vec<Mirror<S3Source>>,
    /// Per mirror, the index of its scrape credentials documents (`None` when its prefix
    /// locates no `credentials/`).
    credentials: Vec<Option<CredentialsIndex>>,
    metrics: Metrics,
    authorization: Arc<dyn UpstreamAuthorization>,
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
        let credentials_metrics = CredentialsMetrics::registered_in(&metrics.registry);
        let mut credentials = Vec::with_capacity(config.mappings.len());
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
            let index = match CredentialsIndex::root_store(&s3, &mapping.prefix) {
                Some(store) => {
                    let store = store.with_context(|| format!("mapping {mapping}"))?;
                    Some(CredentialsIndex::new(
                        mapping.name.clone(),
                        std::sync::Arc::new(store),
                        credentials_metrics.clone(),
                    ))
                }
                None => None,
            };
            credentials.push(index);
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
        let mut sd_sync = SdSync {
            config,
            mirrors,
            credentials,
            metrics,
            authorization: Arc::new(AppGuidBearer),
        };
        // The gateway sends each app's authorization as the credentials documents say.
        sd_sync.authorization = Arc::new(sd_sync.scrape_credentials());
        Ok(sd_sync)
    }

    /// Replaces the scrape gateway's `Authorization` (default: [`SdSync::scrape_credentials`]).
    pub fn with_authorization(mut self, authorization: Arc<dyn UpstreamAuthorization>) -> SdSync {
        self.authorization = authorization;
        self
    }

    /// What the scrape gateway asks per request: the `Authorization` of an app's scrapes
    /// (the index every sync refreshes; see [`scrape_auth`]).
    pub fn scrape_credentials(&self) -> ScrapeCredentials {
        let indexes: Vec<&CredentialsIndex> = self.credentials.iter().flatten().collect();
        scrape_auth::scrape_credentials(&indexes, self.config.scrape_token_key.clone())
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
        // The gateway's lookup table, seeded from the files already installed; each sync
        // loop rebuilds its mapping's part.
        let mut gateway_routes = None;
        let mut gateway_health = None;
        if let Some(gateway_config) = &self.config.gateway {
            let routes = Arc::new(RouteTable::new(self.mirrors.len()));
            let gateway = Gateway::bind(
                gateway_config,
                routes.clone(),
                self.authorization.clone(),
                &self.metrics.registry,
            )?;
            let address = gateway.local_addr()?;
            tracing::info!(%address, "scrape gateway listening");
            gateway.spawn()?;
            gateway_health = Some(http::GatewayHealth {
                address: address.to_string(),
                routes: routes.clone(),
            });
            gateway_routes = Some(routes);
        }
        let state = http::AppState {
            mirrors: self.mirrors.iter().map(Mirror::shared).collect(),
            registry: self.metrics.registry.clone(),
            stale_after: self.config.stale_after,
            auth: self.config.auth.clone(),
            gateway: gateway_health,
            credentials: self
                .mirrors
                .iter()
                .zip(&self.credentials)
                .filter_map(|(m, c)| Some((m.shared().name.clone(), c.as_ref()?.health())))
                .collect(),
        };
        let server = http::server(state, listener)?;
        for (i, (mirror, credentials)) in self.mirrors.into_iter().zip(self.credentials).enumerate()
        {
            let gateway = gateway_routes.clone().map(|routes| GatewayRoutes {
                table: routes,
                mapping: i,
                builder: RoutesBuilder::default(),
            });
            tokio::spawn(sync_loop(
                mirror,
                credentials,
                self.config.interval,
                gateway,
            ));
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
async fn sync_loop(
    mut mirror: Mirror<S3Source>,
    mut credentials: Option<CredentialsIndex>,
    interval: Duration,
    mut gateway: Option<GatewayRoutes>,
) {
    let mut schedule = Schedule::new(interval);
    let period_gauge = mirror.metrics().poll_period.clone();
    period_gauge.set(interval.as_secs_f64());
    if let Some(gateway) = &mut gateway {
        gateway.rebuild(&mirror).await;
    }
    loop {
        let started = Instant::now();
        // Failures are logged and counted by the mirror; the next poll retries.
        let synced = mirror.sync_once().await;
        // The scrape credentials documents beside the mapping's prefix are listed when the
        // mirror listed (the writers' record changed, a safety listing, a retry) or
        // failed, and cost nothing otherwise. Failures are logged and counted by the
        // index, which then stays as it was. A bind writes an app's document before its
        // target file and publishes the record after both, so the index knows a new
        // target's authorization before the routes rebuilt below make it scrapeable.
        let listed = synced
            .as_ref()
            .map_or(true, |report| report.listing.is_some());
        if let (true, Some(index)) = (listed, &mut credentials) {
            index.refresh().await;
        }
        // A failed listing may have installed what it listed before failing.
        let changed = synced.map_or(true, |report| report.installed + report.deleted > 0);
        if let (true, Some(gateway)) = (changed, &mut gateway) {
            gateway.rebuild(&mirror).await;
        }
        schedule.record(started.elapsed());
        let period = schedule.period();
        period_gauge.set(period.as_secs_f64());
        tokio::time::sleep_until((started + period).max(Instant::now())).await;
    }
}

/// One mapping's part of the scrape gateway's lookup table.
struct GatewayRoutes {
    table: Arc<RouteTable>,
    mapping: usize,
    builder: RoutesBuilder,
}

impl GatewayRoutes {
    /// Rebuilds the mapping's routes from its installed files, off the async workers:
    /// the next scrape sees what this sync installed and removed.
    async fn rebuild(&mut self, mirror: &Mirror<S3Source>) {
        let fragments = mirror.shared().fragments();
        let mut builder = std::mem::take(&mut self.builder);
        let (builder, routes) = tokio::task::spawn_blocking(move || {
            let routes = builder.build(&fragments);
            (builder, routes)
        })
        .await
        .expect("building the gateway's routes does not panic");
        self.builder = builder;
        self.table.publish(self.mapping, routes);
    }
}
