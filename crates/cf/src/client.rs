//! The client: authenticated, rate-limit-aware GETs, pagination, and the batched
//! look-ups that turn Cloud Controller resources into [`AppInfo`]s.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use futures::stream::{self, StreamExt, TryStreamExt};
use gds_targets::{AppGuid, AppInfo};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::de::DeserializeOwned;
use tokio::sync::{OnceCell, Semaphore};
use tokio::time::Instant;
use url::Url;

use self::assemble::{Resources, assemble};
use crate::budget::{Budget, PlatformLimits, Purpose};
use crate::config::{CfConfig, USER_AGENT};
use crate::error::CfError;
use crate::token::{TokenSource, now_secs};
use crate::v3::{self, AuditEvent};

/// Pause between requests while the Cloud Controller reports no rate-limit headroom left
/// (`X-RateLimit-Remaining` moves in 10% steps, so `0` means "under 10% left", not "refused").
const LOW_HEADROOM_PAUSE: Duration = Duration::from_millis(500);

/// What the Cloud Controller says about a set of apps.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AppsSnapshot {
    /// Apps found, with everything their targets need.
    pub apps: BTreeMap<AppGuid, AppInfo>,
    /// Asked for, and not known to the Cloud Controller (deleted, or no longer visible to
    /// our user). Only ever filled from a complete, successful read.
    pub missing: BTreeSet<AppGuid>,
    /// Found, but something they need could not be resolved (e.g. their space was not
    /// included); the caller should leave these apps' targets alone.
    pub failed: BTreeMap<AppGuid, String>,
}

/// How a batched look-up fetches its resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// `guids=`/`app_guids=` filters, chunked.
    Filter,
    /// Everything visible, `per_page` at its maximum, then keep what was asked for.
    ListAll,
}

impl Strategy {
    /// Chooses by counting requests: filtering costs about three requests per chunk of
    /// GUIDs; listing costs about three per page of everything visible (plus one to count).
    pub fn choose(wanted: usize, visible: u64, page_size: u32, guid_chunk: usize) -> Self {
        let filter_requests = wanted.div_ceil(guid_chunk.max(1)) as u64;
        let list_requests = visible.div_ceil(u64::from(page_size.max(1))).max(1) + 1;
        if list_requests < filter_requests {
            Self::ListAll
        } else {
            Self::Filter
        }
    }
}

/// Requests made, by endpoint (`GET /v3/apps`, `GET /v3/apps/:guid`, ...) and HTTP status
/// (0 for a transport failure), and by [`Purpose`] and outcome ([`outcome_of`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RequestStats {
    pub by_endpoint: BTreeMap<(String, u16), u64>,
    pub by_purpose: BTreeMap<(Purpose, &'static str), u64>,
}

/// A request's outcome, by status class: `ok` (2xx), `rate_limited` (429),
/// `client_error` (other 4xx), `server_error` (5xx), `no_answer` (0: transport failure).
pub fn outcome_of(status: u16) -> &'static str {
    match status {
        0 => "no_answer",
        429 => "rate_limited",
        200..=299 => "ok",
        400..=499 => "client_error",
        500..=599 => "server_error",
        _ => "other",
    }
}

impl RequestStats {
    pub fn total(&self) -> u64 {
        self.by_endpoint.values().sum()
    }
}

/// A Cloud Controller v3 client. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct CfClient {
    config: CfConfig,
    http: reqwest::Client,
    tokens: TokenSource,
    uaa: OnceCell<Url>,
    permits: Semaphore,
    stats: Mutex<RequestStats>,
    /// The platform's rate limit as seen, and the pacing of background work.
    budget: Budget,
    /// One `GET /v3/info` at a time.
    info_read: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for CfClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CfClient")
            .field("api_endpoint", &self.config.api_endpoint.as_str())
            .finish_non_exhaustive()
    }
}

impl CfClient {
    pub fn new(config: CfConfig) -> Result<Self, CfError> {
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(Duration::from_secs(5).min(config.request_timeout))
            .timeout(config.request_timeout)
            .build()
            .map_err(|source| CfError::Transport {
                endpoint: "client set-up".into(),
                source,
            })?;
        Ok(Self {
            tokens: TokenSource::new(
                http.clone(),
                config.credentials.clone(),
                config.verify_token_signature,
            ),
            permits: Semaphore::new(config.max_concurrency.max(1)),
            uaa: OnceCell::new(),
            stats: Mutex::new(RequestStats::default()),
            budget: Budget::new(config.background_share),
            info_read: tokio::sync::Mutex::new(()),
            http,
            config,
        })
    }

    /// Requests made so far.
    pub fn request_stats(&self) -> RequestStats {
        self.stats.lock().expect("stats lock").clone()
    }

    /// The request budget (shared by every caller of this client): what the platform's
    /// rate limiter allows, and when background work may start its next round.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// One app, for a bind: `None` when the Cloud Controller does not know it.
    pub async fn app_info(&self, guid: &AppGuid) -> Result<Option<AppInfo>, CfError> {
        self.app_info_by(guid, None).await
    }

    /// [`Self::app_info`] for a caller that must answer by `deadline` (the broker, inside
    /// the platform's timeout): no wait (a `429`'s `Retry-After`, a retry's back-off) that
    /// would end after it is started, and no request outlives it. A `Retry-After` past
    /// the deadline fails at once with [`CfError::RateLimited`]; a wait or request that
    /// the deadline cuts short fails with the error at hand, or [`CfError::Deadline`].
    /// (The token request is not covered: callers bound the whole call too.)
    ///
    /// Its requests count as [`Purpose::Bind`]: they never wait on the budget.
    #[tracing::instrument(skip_all, fields(app_guid = %guid))]
    pub async fn app_info_by(
        &self,
        guid: &AppGuid,
        deadline: Option<Instant>,
    ) -> Result<Option<AppInfo>, CfError> {
        Purpose::Bind
            .scope(self.app_info_for_bind(guid, deadline))
            .await
    }

    async fn app_info_for_bind(
        &self,
        guid: &AppGuid,
        deadline: Option<Instant>,
    ) -> Result<Option<AppInfo>, CfError> {
        let page_size = self.config.page_size.to_string();
        let app_url = self.url(
            &format!("/v3/apps/{guid}"),
            &[("include", "space.organization")],
        );
        let app = async {
            match self
                .get_json_by::<v3::AppWithIncluded>(app_url, "GET /v3/apps/:guid", deadline)
                .await
            {
                Ok(app) => Ok(Some(app)),
                Err(CfError::Api { status: 404, .. }) => Ok(None),
                Err(e) => Err(e),
            }
        };
        let processes = self.list_by::<v3::Process>(
            self.url(
                "/v3/processes",
                &[
                    ("app_guids", guid.as_str()),
                    ("types", "web"),
                    ("per_page", &page_size),
                ],
            ),
            deadline,
        );
        let routes = self.list_by::<v3::Route>(
            self.url(
                "/v3/routes",
                &[
                    ("app_guids", guid.as_str()),
                    ("include", "domain"),
                    ("per_page", &page_size),
                ],
            ),
            deadline,
        );
        let (app, (processes, _), (routes, routes_included)) =
            tokio::try_join!(app, processes, routes)?;
        let Some(app) = app else {
            return Ok(None);
        };
        let wanted = BTreeSet::from([guid.clone()]);
        let mut snapshot = assemble(
            &wanted,
            Resources {
                apps: vec![app.app],
                spaces: app.included.spaces,
                orgs: app.included.organizations,
                processes,
                routes,
                domains: routes_included.domains,
            },
            &self.config.exporter_label,
        );
        if let Some(reason) = snapshot.failed.remove(guid) {
            return Err(CfError::InvalidResponse {
                endpoint: "GET /v3/apps/:guid".into(),
                reason,
            });
        }
        Ok(snapshot.apps.remove(guid))
    }

    /// Many apps at once, for a reconcile pass. Either a complete answer or an error.
    #[tracing::instrument(skip_all, fields(wanted = wanted.len()))]
    pub async fn apps_info(&self, wanted: &BTreeSet<AppGuid>) -> Result<AppsSnapshot, CfError> {
        if wanted.is_empty() {
            return Ok(AppsSnapshot::default());
        }
        let strategy = if wanted.len() <= self.config.guid_chunk {
            Strategy::Filter
        } else {
            let visible = self.visible_app_count().await?;
            Strategy::choose(
                wanted.len(),
                visible,
                self.config.page_size,
                self.config.guid_chunk,
            )
        };
        tracing::debug!(?strategy, "fetching apps");
        let resources = match strategy {
            Strategy::ListAll => self.fetch_everything().await?,
            Strategy::Filter => self.fetch_filtered(wanted).await?,
        };
        let mut snapshot = assemble(wanted, resources, &self.config.exporter_label);
        if strategy == Strategy::ListAll && !snapshot.missing.is_empty() {
            // Pages are offsets: an app deleted from an earlier page between two page
            // requests shifts a row of the next page out of sight. An app missing from
            // the listing is only reported missing (and its targets removed) once a look-up
            // by GUID does not find it either.
            let unseen = std::mem::take(&mut snapshot.missing);
            let confirmed = assemble(
                &unseen,
                self.fetch_filtered(&unseen).await?,
                &self.config.exporter_label,
            );
            if confirmed.missing.len() < unseen.len() {
                tracing::info!(
                    found = unseen.len() - confirmed.missing.len(),
                    "apps missing from the listing were found by GUID (the listing shifted)"
                );
            }
            snapshot.apps.extend(confirmed.apps);
            snapshot.failed.extend(confirmed.failed);
            snapshot.missing = confirmed.missing;
        }
        Ok(snapshot)
    }

    /// Every app our user can see (a handful of requests at any scale). For tools and the
    /// demo; reconciles ask for their bound apps with [`Self::apps_info`].
    pub async fn visible_apps(&self) -> Result<AppsSnapshot, CfError> {
        let resources = self.fetch_everything().await?;
        let wanted = resources
            .apps
            .iter()
            .filter_map(|a| AppGuid::parse(&a.guid).ok())
            .collect();
        Ok(assemble(&wanted, resources, &self.config.exporter_label))
    }

    /// Audit events of `types` created at or after `since` (`YYYY-MM-DDThh:mm:ssZ`), oldest
    /// first. Timestamps have one-second precision, so callers poll with the last second
    /// they saw and drop event GUIDs they already handled.
    pub async fn audit_events(
        &self,
        types: &[&str],
        since: &str,
    ) -> Result<Vec<AuditEvent>, CfError> {
        let types = types.join(",");
        let per_page = self.config.page_size.to_string();
        let url = self.url(
            "/v3/audit_events",
            &[
                ("created_ats[gte]", since),
                ("order_by", "created_at"),
                ("per_page", &per_page),
                ("types", &types),
            ],
        );
        Ok(self.list::<AuditEvent>(url).await?.0)
    }

    /// How many apps our user can see (one request, `per_page=1`).
    pub async fn visible_app_count(&self) -> Result<u64, CfError> {
        let url = self.url("/v3/apps", &[("per_page", "1")]);
        let page: v3::Page<serde::de::IgnoredAny> = self.get_json(url, "GET /v3/apps").await?;
        Ok(page.pagination.total_results)
    }

    async fn fetch_everything(&self) -> Result<Resources, CfError> {
        let p = self.config.page_size.to_string();
        let apps = self.list::<v3::App>(self.url(
            "/v3/apps",
            &[("include", "space.organization"), ("per_page", &p)],
        ));
        let processes = self
            .list::<v3::Process>(self.url("/v3/processes", &[("types", "web"), ("per_page", &p)]));
        let routes = self
            .list::<v3::Route>(self.url("/v3/routes", &[("include", "domain"), ("per_page", &p)]));
        let ((apps, app_inc), (processes, _), (routes, route_inc)) =
            tokio::try_join!(apps, processes, routes)?;
        Ok(Resources {
            apps,
            spaces: app_inc.spaces,
            orgs: app_inc.organizations,
            processes,
            routes,
            domains: route_inc.domains,
        })
    }

    async fn fetch_filtered(&self, wanted: &BTreeSet<AppGuid>) -> Result<Resources, CfError> {
        let p = self.config.page_size.to_string();
        let guids: Vec<&str> = wanted.iter().map(AppGuid::as_str).collect();
        let chunks: Vec<String> = guids
            .chunks(self.config.guid_chunk.max(1))
            .map(|c| c.join(","))
            .collect();
        let mut resources = Resources::default();
        let results: Vec<Fetched> = stream::iter(chunks.iter().flat_map(|chunk| {
            [
                Query::Apps(self.url(
                    "/v3/apps",
                    &[
                        ("guids", chunk),
                        ("include", "space.organization"),
                        ("per_page", &p),
                    ],
                )),
                Query::Processes(self.url(
                    "/v3/processes",
                    &[("app_guids", chunk), ("types", "web"), ("per_page", &p)],
                )),
                Query::Routes(self.url(
                    "/v3/routes",
                    &[
                        ("app_guids", chunk),
                        ("include", "domain"),
                        ("per_page", &p),
                    ],
                )),
            ]
        }))
        .map(|q| self.run(q))
        .buffer_unordered(self.config.max_concurrency.max(1))
        .try_collect()
        .await?;
        for fetched in results {
            match fetched {
                Fetched::Apps(apps, inc) => {
                    resources.apps.extend(apps);
                    resources.spaces.extend(inc.spaces);
                    resources.orgs.extend(inc.organizations);
                }
                Fetched::Processes(p) => resources.processes.extend(p),
                Fetched::Routes(r, inc) => {
                    resources.routes.extend(r);
                    resources.domains.extend(inc.domains);
                }
            }
        }
        Ok(resources)
    }

    async fn run(&self, query: Query) -> Result<Fetched, CfError> {
        Ok(match query {
            Query::Apps(u) => {
                let (a, i) = self.list(u).await?;
                Fetched::Apps(a, i)
            }
            Query::Processes(u) => Fetched::Processes(self.list(u).await?.0),
            Query::Routes(u) => {
                let (r, i) = self.list(u).await?;
                Fetched::Routes(r, i)
            }
        })
    }

    /// Every page of a list, following `pagination.next` until it is null.
    async fn list<T: DeserializeOwned>(
        &self,
        first: Url,
    ) -> Result<(Vec<T>, v3::Included), CfError> {
        self.list_by(first, None).await
    }

    /// [`Self::list`], by a deadline (see [`Self::app_info_by`]).
    async fn list_by<T: DeserializeOwned>(
        &self,
        first: Url,
        deadline: Option<Instant>,
    ) -> Result<(Vec<T>, v3::Included), CfError> {
        let endpoint = endpoint_of("GET", first.path());
        let mut items = Vec::new();
        let mut included = v3::Included::default();
        let mut next = Some(first);
        while let Some(url) = next.take() {
            let page: v3::Page<T> = self.get_json_by(url, &endpoint, deadline).await?;
            items.extend(page.resources);
            included.spaces.extend(page.included.spaces);
            included.organizations.extend(page.included.organizations);
            included.domains.extend(page.included.domains);
            if let Some(link) = page.pagination.next {
                next = Some(self.same_origin(&link.href, &endpoint)?);
            }
        }
        Ok((items, included))
    }

    /// The bearer token goes only to our own Cloud Controller: a `next` link elsewhere is
    /// refused rather than followed.
    fn same_origin(&self, href: &str, endpoint: &str) -> Result<Url, CfError> {
        let invalid = |reason: String| CfError::InvalidResponse {
            endpoint: endpoint.to_owned(),
            reason,
        };
        let url = Url::parse(href).map_err(|e| invalid(format!("bad next link {href:?}: {e}")))?;
        if url.origin() != self.config.api_endpoint.origin() {
            return Err(invalid(format!(
                "next link {href:?} leaves the API endpoint"
            )));
        }
        Ok(url)
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> Url {
        let mut url = self.config.api_endpoint.clone();
        let base = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base}{path}"));
        url.set_query(None);
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
        }
        url
    }

    async fn uaa_endpoint(&self) -> Result<&Url, CfError> {
        self.uaa
            .get_or_try_init(|| async {
                if let Some(u) = &self.config.uaa_endpoint {
                    return Ok(with_trailing_slash(u.clone()));
                }
                let root_url = self.url("/", &[]);
                let response =
                    self.http
                        .get(root_url)
                        .send()
                        .await
                        .map_err(|source| CfError::Transport {
                            endpoint: "GET /".into(),
                            source,
                        })?;
                self.record("GET /", response.status().as_u16());
                let root: v3::Root =
                    response
                        .json()
                        .await
                        .map_err(|e| CfError::InvalidResponse {
                            endpoint: "GET /".into(),
                            reason: e.to_string(),
                        })?;
                let href = root
                    .links
                    .uaa
                    .or(root.links.login)
                    .ok_or_else(|| CfError::InvalidResponse {
                        endpoint: "GET /".into(),
                        reason: "no links.uaa; set UAA_ENDPOINT".into(),
                    })?
                    .href;
                Url::parse(&href)
                    .map(with_trailing_slash)
                    .map_err(|e| CfError::InvalidResponse {
                        endpoint: "GET /".into(),
                        reason: format!("links.uaa {href:?}: {e}"),
                    })
            })
            .await
    }

    fn record(&self, endpoint: &str, status: u16) {
        self.record_for(endpoint, Purpose::current(), status);
    }

    fn record_for(&self, endpoint: &str, purpose: Purpose, status: u16) {
        let mut stats = self.stats.lock().expect("stats lock");
        *stats
            .by_endpoint
            .entry((endpoint.to_owned(), status))
            .or_default() += 1;
        *stats
            .by_purpose
            .entry((purpose, outcome_of(status)))
            .or_default() += 1;
    }

    /// What an answer says about the rate limiter, for the budget.
    fn observe_limits(&self, status: u16, headers: &HeaderMap) {
        self.budget.observe(
            status,
            header_u64(headers, "x-ratelimit-limit"),
            header_u64(headers, "x-ratelimit-remaining"),
            header_u64(headers, "x-ratelimit-reset"),
            now_secs(),
        );
    }

    /// Reads `GET /v3/info` `rate_limits` when due ([`crate::budget::INFO_REFRESH`]); one
    /// caller at a time, the others go on. A failure is logged and tried again later:
    /// the headers of every answer tell the budget the rest.
    async fn refresh_limits(&self, uaa: &Url) {
        if !self.budget.info_due() {
            return;
        }
        let Ok(_reading) = self.info_read.try_lock() else {
            return;
        };
        if !self.budget.info_due() {
            return;
        }
        const ENDPOINT: &str = "GET /v3/info";
        let read = async {
            let token = self
                .tokens
                .get(uaa, None)
                .await
                .map_err(|e| e.to_string())?;
            let response = self
                .http
                .get(self.url("/v3/info", &[]))
                .header(
                    reqwest::header::AUTHORIZATION,
                    format!("bearer {}", token.value),
                )
                .header(reqwest::header::ACCEPT, "application/json")
                .send()
                .await;
            let response = match response {
                Ok(r) => r,
                Err(e) => {
                    self.record_for(ENDPOINT, Purpose::Info, 0);
                    return Err(e.to_string());
                }
            };
            let status = response.status().as_u16();
            self.record_for(ENDPOINT, Purpose::Info, status);
            self.observe_limits(status, response.headers());
            if !response.status().is_success() {
                return Err(format!("status {status}"));
            }
            let info: v3::Info = response.json().await.map_err(|e| e.to_string())?;
            Ok(match info.rate_limits {
                Some(r) => PlatformLimits {
                    enabled: r.enabled,
                    general_limit: r.general_limit,
                    window: r
                        .reset_interval_in_minutes
                        .filter(|m| m.is_finite() && *m > 0.0)
                        .map(|m| Duration::from_secs_f64(m * 60.0)),
                },
                None => PlatformLimits {
                    enabled: false,
                    general_limit: None,
                    window: None,
                },
            })
        };
        match read.await {
            Ok(limits) => {
                tracing::debug!(?limits, "read the Cloud Controller's rate limits");
                self.budget.observe_info(Some(limits));
            }
            Err(error) => {
                tracing::warn!(
                    error,
                    "cannot read GET /v3/info rate_limits; going by the X-RateLimit headers"
                );
                self.budget.observe_info(None);
            }
        }
    }

    /// One authenticated GET with the retry rules of the crate docs.
    async fn get_json<T: DeserializeOwned>(&self, url: Url, endpoint: &str) -> Result<T, CfError> {
        self.get_json_by(url, endpoint, None).await
    }

    /// [`Self::get_json`], by a deadline (see [`Self::app_info_by`]).
    async fn get_json_by<T: DeserializeOwned>(
        &self,
        url: Url,
        endpoint: &str,
        deadline: Option<Instant>,
    ) -> Result<T, CfError> {
        // Whether a wait of `wait` from now would end after the deadline.
        let too_late = |wait: Duration| deadline.is_some_and(|d| Instant::now() + wait > d);
        let uaa = self.uaa_endpoint().await?.clone();
        let purpose = Purpose::current();
        if purpose.is_background() {
            self.refresh_limits(&uaa).await;
        }
        let mut rejected: Option<String> = None;
        let mut reauthenticated = false;
        let mut attempt: u32 = 0;
        loop {
            let token = self.tokens.get(&uaa, rejected.as_deref()).await?;
            // A bind never waits on the budget; background work slows when the platform
            // reports under 10 % left.
            if purpose.is_background() && self.budget.remaining() == Some(0) {
                tokio::time::sleep(LOW_HEADROOM_PAUSE).await;
            }
            self.budget.debit(purpose);
            let sent = std::time::Instant::now();
            let outcome = {
                let _permit = self
                    .permits
                    .acquire()
                    .await
                    .expect("semaphore never closed");
                let mut request = self.http.get(url.clone());
                if let Some(deadline) = deadline {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(CfError::Deadline {
                            endpoint: endpoint.to_owned(),
                        });
                    }
                    request = request.timeout(left.min(self.config.request_timeout));
                }
                match request
                    .header(
                        reqwest::header::AUTHORIZATION,
                        format!("bearer {}", token.value),
                    )
                    .header(reqwest::header::ACCEPT, "application/json")
                    .send()
                    .await
                {
                    Ok(response) => {
                        let status = response.status();
                        let headers = response.headers().clone();
                        response.bytes().await.map(|body| (status, headers, body))
                    }
                    Err(e) => Err(e),
                }
            };
            let (status, headers, body) = match outcome {
                Ok(parts) => parts,
                Err(source) => {
                    self.record(endpoint, 0);
                    if attempt < self.config.max_retries && !too_late(backoff(attempt)) {
                        tracing::warn!(endpoint, attempt, error = %source, "Cloud Controller request failed; retrying");
                        tokio::time::sleep(backoff(attempt)).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(CfError::Transport {
                        endpoint: endpoint.to_owned(),
                        source,
                    });
                }
            };
            self.record(endpoint, status.as_u16());
            self.observe_limits(status.as_u16(), &headers);
            if status.is_success() {
                let waited = sent.elapsed();
                let parsed = serde_json::from_slice(&body).map_err(|e| CfError::InvalidResponse {
                    endpoint: endpoint.to_owned(),
                    reason: e.to_string(),
                });
                // Where a pass' Cloud Controller time goes: waiting (for a permit, the
                // network and the Cloud Controller) or parsing.
                tracing::debug!(
                    endpoint,
                    bytes = body.len(),
                    wait_ms = waited.as_secs_f64() * 1000.0,
                    parse_ms = (sent.elapsed() - waited).as_secs_f64() * 1000.0,
                    "Cloud Controller response"
                );
                return parsed;
            }
            let (title, detail) = error_parts(&body);
            match status {
                StatusCode::UNAUTHORIZED if title == "CF-InvalidAuthToken" && !reauthenticated => {
                    tracing::info!(
                        endpoint,
                        "token rejected by the Cloud Controller; fetching a new one"
                    );
                    reauthenticated = true;
                    rejected = Some(token.value);
                    continue;
                }
                StatusCode::TOO_MANY_REQUESTS => {
                    let wait = retry_after(&headers).unwrap_or_else(|| backoff(attempt));
                    if wait > self.config.max_rate_limit_wait
                        || attempt >= self.config.max_retries
                        || too_late(wait)
                    {
                        return Err(CfError::RateLimited(wait));
                    }
                    tracing::warn!(
                        endpoint,
                        wait_ms = wait.as_millis() as u64,
                        "rate limited by the Cloud Controller; waiting"
                    );
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                StatusCode::BAD_GATEWAY
                | StatusCode::SERVICE_UNAVAILABLE
                | StatusCode::GATEWAY_TIMEOUT
                    if attempt < self.config.max_retries && !too_late(backoff(attempt)) =>
                {
                    tracing::warn!(
                        endpoint,
                        status = status.as_u16(),
                        attempt,
                        "Cloud Controller unavailable; retrying"
                    );
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                _ => {
                    return Err(CfError::Api {
                        endpoint: endpoint.to_owned(),
                        status: status.as_u16(),
                        title,
                        detail,
                    });
                }
            }
        }
    }
}

fn with_trailing_slash(mut url: Url) -> Url {
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    url
}

enum Query {
    Apps(Url),
    Processes(Url),
    Routes(Url),
}

enum Fetched {
    Apps(Vec<v3::App>, v3::Included),
    Processes(Vec<v3::Process>),
    Routes(Vec<v3::Route>, v3::Included),
}

/// `GET /v3/apps/1cb0...` -> `GET /v3/apps/:guid`: low-cardinality names for counters.
fn endpoint_of(method: &str, path: &str) -> String {
    let templated: Vec<&str> = path
        .split('/')
        .map(|seg| {
            if AppGuid::parse(seg).is_ok() {
                ":guid"
            } else {
                seg
            }
        })
        .collect();
    format!("{method} {}", templated.join("/"))
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// `Retry-After` seconds, else the time until `X-RateLimit-Reset`.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    if let Some(secs) = header_u64(headers, "retry-after") {
        return Some(Duration::from_secs(secs));
    }
    let reset = header_u64(headers, "x-ratelimit-reset")?;
    Some(Duration::from_secs(reset.saturating_sub(now_secs()).max(1)))
}

/// Exponential back-off from 250 ms, capped at 8 s, with up to 25% jitter so that many
/// clients do not retry in step.
fn backoff(attempt: u32) -> Duration {
    let base = 250u64.saturating_mul(1 << attempt.min(5)).min(8_000);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    Duration::from_millis(base + nanos % (base / 4 + 1))
}

fn error_parts(body: &[u8]) -> (String, String) {
    match serde_json::from_slice::<v3::Errors>(body) {
        Ok(e) if !e.errors.is_empty() => {
            let first = &e.errors[0];
            (first.title.clone(), first.detail.clone())
        }
        _ => (
            String::new(),
            String::from_utf8_lossy(body)
                .trim()
                .chars()
                .take(200)
                .collect(),
        ),
    }
}

mod assemble;
pub(crate) mod services;

#[cfg(test)]
mod tests;
