//! What the broker does, one method per OSB operation, without HTTP: the handlers extract
//! and validate, call one of these, and render the outcome.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gds_cf::{CfClient, CfError};
use gds_db::{Binding, Db, DeleteInstance, Insert, InstanceUpdate, NewBinding, NewInstance};
use gds_engine::CatalogIds;
use gds_service::error_chain;
use gds_store::{Bytes, RecordPublisher, ScrapeTokenKey, TargetState, TargetStore};
use gds_targets::{
    AppGuid, AppInfo, AppState, BindingParams, ModelConfig, ScrapeAuth, build_target_file,
};
use serde_json::Value;
use tokio::time::Instant;

use crate::metrics::BrokerMetrics;
use crate::osb::{BindRequest, BrokerError, DeleteQuery, ProvisionRequest, UpdateRequest};

/// Where the broker looks apps up: the Cloud Controller, or a fake in unit tests.
#[async_trait]
pub trait AppDirectory: Send + Sync {
    /// The app, `None` when the Cloud Controller does not know it (or hides it). Starts no
    /// wait that would end after `deadline` (see [`CfClient::app_info_by`]).
    async fn app_info(&self, guid: &AppGuid, deadline: Instant)
    -> Result<Option<AppInfo>, CfError>;
}

#[async_trait]
impl AppDirectory for CfClient {
    async fn app_info(
        &self,
        guid: &AppGuid,
        deadline: Instant,
    ) -> Result<Option<AppInfo>, CfError> {
        CfClient::app_info_by(self, guid, Some(deadline)).await
    }
}

/// How long an OSB operation may take unless `BROKER_OPERATION_TIMEOUT_SECONDS` says
/// otherwise: comfortably inside Cloud Foundry's default broker client timeout (60 s),
/// after which the platform gives up and starts orphan mitigation.
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(45);

/// The share of a bind's budget its Cloud Controller look-up may use; the rest is kept for
/// the app's lock and the store write.
const LOOKUP_SHARE: (u32, u32) = (4, 5);

/// "Created" (201) or "it was already there, identical" (200).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Created,
    AlreadyExists,
}

/// What a bind answered: created or already there, and the binding's credentials.
#[derive(Debug)]
pub struct Bound {
    pub outcome: Outcome,
    /// The `credentials` object of the answer (see [`ScrapeCredentials`]).
    pub credentials: Value,
}

/// A binding's credentials, as the app sees them in `VCAP_SERVICES`:
///
/// ```json
/// {"auth": "token", "job": "web-shop", "metrics_path": "/metrics",
///  "token": "<43 characters>", "authorization_header": "Bearer <token>"}
/// ```
///
/// `authorization_header` is the exact `Authorization` header value scrapes of this
/// binding carry (`Bearer <app guid>` for `auth: app_guid`, which has no `token`). `job`
/// and `metrics_path` are what the app is scraped with: at bind, from the Cloud
/// Controller; on a repeated bind or a fetch, from the app's target file as stored now
/// (left out when it has no target group, e.g. an app scaled to zero).
#[derive(Debug)]
pub struct ScrapeCredentials {
    pub auth: ScrapeAuth,
    pub job: Option<String>,
    pub metrics_path: Option<String>,
    /// `Bearer <token>` or `Bearer <app guid>`; the token is a secret.
    authorization: gds_service::Secret,
    token: Option<gds_service::Secret>,
}

impl ScrapeCredentials {
    /// The `credentials` object. Holds the secret: never log it.
    pub fn to_json(&self) -> Value {
        let mut o = serde_json::Map::new();
        o.insert("auth".into(), Value::String(self.auth.as_str().into()));
        if let Some(job) = &self.job {
            o.insert("job".into(), Value::String(job.clone()));
        }
        if let Some(path) = &self.metrics_path {
            o.insert("metrics_path".into(), Value::String(path.clone()));
        }
        if let Some(token) = &self.token {
            o.insert("token".into(), Value::String(token.expose().into()));
        }
        o.insert(
            "authorization_header".into(),
            Value::String(self.authorization.expose().into()),
        );
        Value::Object(o)
    }
}

/// The broker: the database, the target store and the Cloud Controller.
pub struct Broker {
    db: Db,
    store: Arc<dyn TargetStore>,
    /// Publishes the writers' record after each change to `active/`.
    record: RecordPublisher,
    apps: Arc<dyn AppDirectory>,
    catalog: CatalogIds,
    model: ModelConfig,
    metrics: BrokerMetrics,
    operation_timeout: Duration,
    /// Derives the tokens of `auth: token` bindings; `None`: such binds are refused.
    scrape_token_key: Option<ScrapeTokenKey>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("db", &self.db.kind())
            .field("store", &self.store)
            .field("catalog", &self.catalog)
            .field("operation_timeout", &self.operation_timeout)
            .finish_non_exhaustive()
    }
}

/// Longest instance or binding id accepted (the platform sends GUIDs).
const MAX_ID_LEN: usize = 255;

/// Checks an id from the path: non-empty, short, printable.
pub fn check_id(kind: &str, id: &str) -> Result<(), BrokerError> {
    if id.is_empty() || id.len() > MAX_ID_LEN || id.chars().any(char::is_control) {
        return Err(BrokerError::BadRequest(format!(
            "invalid {kind}: expected 1 to {MAX_ID_LEN} printable characters"
        )));
    }
    Ok(())
}

/// JSON as stored: compact, keys sorted (serde_json's map is ordered).
fn normalised(value: &Value) -> String {
    value.to_string()
}

fn object_or_empty(field: &str, value: Option<&Value>) -> Result<Value, BrokerError> {
    match value {
        None | Some(Value::Null) => Ok(Value::Object(Default::default())),
        Some(v @ Value::Object(_)) => Ok(v.clone()),
        Some(_) => Err(BrokerError::BadRequest(format!(
            "`{field}` must be a JSON object"
        ))),
    }
}

impl Broker {
    pub fn new(
        db: Db,
        store: Arc<dyn TargetStore>,
        apps: Arc<dyn AppDirectory>,
        catalog: CatalogIds,
        model: ModelConfig,
        metrics: BrokerMetrics,
    ) -> Self {
        Self {
            db,
            record: RecordPublisher::new(Arc::clone(&store), "broker"),
            store,
            apps,
            catalog,
            model,
            metrics,
            operation_timeout: DEFAULT_OPERATION_TIMEOUT,
            scrape_token_key: None,
        }
    }

    /// Sets the key binding tokens are derived from (`SCRAPE_TOKEN_KEY`).
    pub fn with_scrape_token_key(mut self, key: Option<ScrapeTokenKey>) -> Self {
        self.scrape_token_key = key;
        self
    }

    /// The credentials of `binding_id` of `app` in mode `auth`, with the job and metrics
    /// path given. Fails only for a token binding when no key is configured.
    fn credentials(
        &self,
        app: &AppGuid,
        binding_id: &str,
        auth: ScrapeAuth,
        job: Option<String>,
        metrics_path: Option<String>,
    ) -> Result<ScrapeCredentials, BrokerError> {
        let token = match auth {
            ScrapeAuth::AppGuid => None,
            ScrapeAuth::Token => Some(
                self.scrape_token_key
                    .as_ref()
                    .ok_or(BrokerError::ScrapeTokensUnavailable)?
                    .token_for(binding_id),
            ),
        };
        let bearer = token.as_ref().map_or(app.as_str(), |t| t.expose());
        Ok(ScrapeCredentials {
            auth,
            job,
            metrics_path,
            authorization: gds_service::Secret::new(format!("Bearer {bearer}")),
            token,
        })
    }

    /// The credentials of a recorded binding: the job and metrics path from the app's
    /// target file as stored now (active, else inactive). A store that cannot answer only
    /// leaves them out (logged): the token and the header do not depend on it.
    async fn credentials_of(&self, binding: &Binding) -> Result<ScrapeCredentials, BrokerError> {
        let auth = ScrapeAuth::of_stored(&binding.parameters_json());
        let mut job = None;
        let mut metrics_path = None;
        for state in TargetState::ALL {
            match self.store.read_app(state, &binding.app_guid).await {
                Ok(Some((body, _))) => {
                    let groups: Vec<gds_targets::TargetGroup> =
                        serde_json::from_slice(&body).unwrap_or_default();
                    if let Some(labels) = groups.first().map(|g| &g.labels) {
                        job = labels.get("job").cloned();
                        metrics_path = Some(
                            labels
                                .get("__metrics_path__")
                                .cloned()
                                .unwrap_or_else(|| "/metrics".into()),
                        );
                    }
                    break;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(
                        error = %error_chain(&e),
                        "cannot read the app's target file: its job and metrics path are left out of the credentials"
                    );
                    break;
                }
            }
        }
        self.credentials(
            &binding.app_guid,
            &binding.binding_id,
            auth,
            job,
            metrics_path,
        )
    }

    /// Brings the app's credentials document in line with its `bindings` (newest first,
    /// as [`gds_db::AppTx::bindings`] gives them): written while one of them uses a token,
    /// removed otherwise when `may_exist` (a token binding was just deleted), untouched
    /// when none does and none can have been there.
    async fn sync_credentials_document(
        &self,
        app: &AppGuid,
        bindings: &[Binding],
        may_exist: bool,
    ) -> Result<bool, BrokerError> {
        match gds_engine::reconciler::credentials_document(app, bindings) {
            Some(doc) => {
                let result = self
                    .store
                    .write_credentials(app, Bytes::from(doc.to_bytes()))
                    .await;
                self.count_store("write_credentials", result.is_ok());
                result.map_err(BrokerError::from_store)?;
                Ok(true)
            }
            None if may_exist => {
                self.remove_credentials_document(app).await?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn remove_credentials_document(&self, app: &AppGuid) -> Result<(), BrokerError> {
        let result = self.store.remove_credentials(app).await;
        self.count_store("remove_credentials", result.is_ok());
        result.map_err(BrokerError::from_store)
    }

    /// Sets the budget of every operation (`BROKER_OPERATION_TIMEOUT_SECONDS`).
    pub fn with_operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout;
        self
    }

    /// The budget of every operation.
    pub fn operation_timeout(&self) -> Duration {
        self.operation_timeout
    }

    /// Runs one operation within its budget: past it, the operation is dropped (a dropped
    /// app transaction rolls back) and the answer is a `503`. Binds finish earlier on
    /// their own (see [`Self::bind`]); this is the bound for everything else, e.g. a
    /// database or store that hangs.
    pub async fn within_budget<T>(
        &self,
        operation: impl std::future::Future<Output = Result<T, BrokerError>>,
    ) -> Result<T, BrokerError> {
        tokio::time::timeout(self.operation_timeout, operation)
            .await
            .unwrap_or_else(|_| {
                Err(BrokerError::OutOfTime {
                    budget_secs: self.operation_timeout.as_secs(),
                })
            })
    }

    pub fn catalog_ids(&self) -> &CatalogIds {
        &self.catalog
    }

    pub fn metrics(&self) -> &BrokerMetrics {
        &self.metrics
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    fn check_service(&self, service_id: &str) -> Result<(), BrokerError> {
        if service_id != self.catalog.service_id {
            return Err(BrokerError::UnknownService {
                given: service_id.into(),
                expected: self.catalog.service_id.clone(),
            });
        }
        Ok(())
    }

    fn check_plan(&self, plan_id: &str) -> Result<(), BrokerError> {
        if plan_id != self.catalog.plan_id {
            return Err(BrokerError::UnknownPlan {
                given: plan_id.into(),
                expected: self.catalog.plan_id.clone(),
            });
        }
        Ok(())
    }

    /// Deprovision and unbind must name the service and plan (as query parameters).
    fn check_delete_query(&self, query: &DeleteQuery) -> Result<(), BrokerError> {
        let service_id = query.service_id.as_deref().ok_or_else(|| {
            BrokerError::BadRequest("the service_id query parameter is required".into())
        })?;
        let plan_id = query.plan_id.as_deref().ok_or_else(|| {
            BrokerError::BadRequest("the plan_id query parameter is required".into())
        })?;
        self.check_service(service_id)?;
        self.check_plan(plan_id)
    }

    /// `PUT /v2/service_instances/:id`: records the instance. Nothing else happens until an
    /// app is bound.
    pub async fn provision(
        &self,
        instance_id: &str,
        req: &ProvisionRequest,
    ) -> Result<Outcome, BrokerError> {
        check_id("instance_id", instance_id)?;
        self.check_service(&req.service_id)?;
        self.check_plan(&req.plan_id)?;
        let new = NewInstance {
            instance_id: instance_id.into(),
            service_id: req.service_id.clone(),
            plan_id: req.plan_id.clone(),
            organization_guid: req.organization_guid.clone(),
            space_guid: req.space_guid.clone(),
            parameters: normalised(&object_or_empty("parameters", req.parameters.as_ref())?),
            context: normalised(&object_or_empty("context", req.context.as_ref())?),
        };
        match self.db.create_instance(&new).await? {
            Insert::Created(_) => {
                tracing::info!(
                    organization_guid = %req.organization_guid,
                    space_guid = %req.space_guid,
                    "service instance provisioned"
                );
                Ok(Outcome::Created)
            }
            Insert::Identical(_) => Ok(Outcome::AlreadyExists),
            Insert::Conflict(_) => Err(BrokerError::InstanceConflict(instance_id.into())),
        }
    }

    /// `GET /v2/service_instances/:id`: the instance's service, plan and parameters.
    pub async fn fetch_instance(&self, instance_id: &str) -> Result<Value, BrokerError> {
        check_id("instance_id", instance_id)?;
        let instance = self
            .db
            .instance(instance_id)
            .await?
            .ok_or_else(|| BrokerError::InstanceNotFound(instance_id.into()))?;
        Ok(serde_json::json!({
            "service_id": instance.service_id,
            "plan_id": instance.plan_id,
            "parameters": instance.parameters_json(),
        }))
    }

    /// `PATCH /v2/service_instances/:id`: there is one plan and no instance parameter
    /// has a meaning, so this only records what was sent.
    pub async fn update(&self, instance_id: &str, req: &UpdateRequest) -> Result<(), BrokerError> {
        check_id("instance_id", instance_id)?;
        self.check_service(&req.service_id)?;
        if let Some(plan_id) = &req.plan_id {
            self.check_plan(plan_id)?;
        }
        let parameters = match &req.parameters {
            None | Some(Value::Null) => None,
            Some(v) => Some(normalised(&object_or_empty("parameters", Some(v))?)),
        };
        let update = InstanceUpdate {
            plan_id: req.plan_id.clone(),
            parameters,
        };
        self.db
            .update_instance(instance_id, &update)
            .await?
            .map(drop)
            .ok_or_else(|| BrokerError::InstanceNotFound(instance_id.into()))
    }

    /// `DELETE /v2/service_instances/:id`: unbinds whatever is still bound (the platform
    /// normally has done so already), then forgets the instance.
    pub async fn deprovision(
        &self,
        instance_id: &str,
        query: &DeleteQuery,
    ) -> Result<(), BrokerError> {
        check_id("instance_id", instance_id)?;
        self.check_delete_query(query)?;
        if self.db.instance(instance_id).await?.is_none() {
            return Err(BrokerError::InstanceNotFound(instance_id.into()));
        }
        // Binds still running in the instance record nothing once cancelled.
        for attempt in self.db.binding_attempts_of_instance(instance_id).await? {
            self.remove_binding(&attempt.app_guid, &attempt.binding_id, None)
                .await?;
        }
        for binding in self.db.bindings_of_instance(instance_id).await? {
            tracing::warn!(
                binding_id = %binding.binding_id,
                app_guid = %binding.app_guid,
                "deprovision: removing a binding the platform did not unbind first"
            );
            self.remove_binding(&binding.app_guid, &binding.binding_id, None)
                .await?;
        }
        match self.db.delete_instance(instance_id).await? {
            DeleteInstance::Deleted => {
                tracing::info!("service instance deprovisioned");
                Ok(())
            }
            DeleteInstance::NotFound => Err(BrokerError::InstanceNotFound(instance_id.into())),
            DeleteInstance::StillBound(n) => Err(BrokerError::Concurrency(format!(
                "service instance {instance_id} was bound {n} time(s) while it was being \
                 deleted; try again"
            ))),
        }
    }

    /// `GET /v2/service_instances/:id/last_operation`: every operation here completes
    /// before it is answered, so an existing instance's last operation has succeeded and
    /// a missing one is gone.
    pub async fn instance_last_operation(&self, instance_id: &str) -> Result<(), BrokerError> {
        check_id("instance_id", instance_id)?;
        match self.db.instance(instance_id).await? {
            Some(_) => Ok(()),
            None => Err(BrokerError::InstanceNotFound(instance_id.into())),
        }
    }

    /// `PUT .../service_bindings/:binding_id`: looks the app up in the Cloud Controller,
    /// then, under the app's lock, records the binding and writes the app's target file
    /// (in `active/` for a started app, `inactive/` for a stopped one, removing the file
    /// the app's earlier bindings may have left in the other state). If the store write
    /// fails, the binding is not recorded, so the platform's orphan-mitigation unbind finds
    /// a consistent state.
    ///
    /// Answers within the operation's budget: the look-up gets four fifths of it (a
    /// `Retry-After` beyond that fails at once) and the bind fails cleanly, recording
    /// nothing, when it runs out. The bind is recorded as in progress before the look-up,
    /// so an unbind arriving meanwhile (the platform's orphan mitigation once its own
    /// timeout passed) cancels it on any broker: it then writes nothing.
    pub async fn bind(
        &self,
        instance_id: &str,
        binding_id: &str,
        req: &BindRequest,
    ) -> Result<Bound, BrokerError> {
        let started = Instant::now();
        check_id("instance_id", instance_id)?;
        check_id("binding_id", binding_id)?;
        self.check_service(&req.service_id)?;
        self.check_plan(&req.plan_id)?;
        let app = AppGuid::parse(req.app_guid().ok_or(BrokerError::RequiresApp)?)?;
        tracing::Span::current().record("app_guid", app.as_str());
        let params = BindingParams::from_json(req.parameters.as_ref())?;
        if params.auth == ScrapeAuth::Token && self.scrape_token_key.is_none() {
            return Err(BrokerError::ScrapeTokensUnavailable);
        }
        let new = NewBinding {
            binding_id: binding_id.into(),
            instance_id: instance_id.into(),
            parameters: normalised(&params.to_json()),
        };
        if self.db.instance(instance_id).await?.is_none() {
            return Err(BrokerError::InstanceNotFound(instance_id.into()));
        }
        // The platform retries binds (and users re-run commands): answer those without
        // asking the Cloud Controller. The transaction below checks again.
        if let Some(existing) = self.db.binding(binding_id).await? {
            return if existing.is_identical_to(&app, &new) {
                self.already_bound(&existing).await
            } else {
                Err(BrokerError::BindingConflict(binding_id.into()))
            };
        }
        let attempt = self
            .db
            .start_binding_attempt(&app, &new, &uuid::Uuid::new_v4().to_string())
            .await?;
        let result = self
            .bind_attempt(&app, &new, &params, &attempt, started)
            .await;
        if result.is_err() {
            // Nothing was written (or it was rolled back): a later unbind has nothing to
            // cancel. Best effort: a leftover only turns that unbind's 410 into a 200.
            if let Err(e) = self.db.abandon_binding_attempt(binding_id, &attempt).await {
                tracing::warn!(error = %error_chain(&e), "could not forget a failed bind");
            }
        }
        result
    }

    /// The part of [`Self::bind`] after it is recorded as in progress as `attempt`.
    async fn bind_attempt(
        &self,
        app: &AppGuid,
        new: &NewBinding,
        params: &BindingParams,
        attempt: &str,
        started: Instant,
    ) -> Result<Bound, BrokerError> {
        let budget_secs = self.operation_timeout.as_secs();
        let deadline = started + self.operation_timeout;
        let lookup_deadline = started + self.operation_timeout * LOOKUP_SHARE.0 / LOOKUP_SHARE.1;
        // Outside the lock: the slow part, and independent of other binds.
        let lookup =
            tokio::time::timeout_at(lookup_deadline, self.apps.app_info(app, lookup_deadline));
        let info = match lookup.await {
            Ok(Ok(Some(info))) => {
                self.metrics.cf_lookups.with_label_values(&["found"]).inc();
                info
            }
            Ok(Ok(None)) => {
                self.metrics
                    .cf_lookups
                    .with_label_values(&["not_found"])
                    .inc();
                return Err(BrokerError::AppNotVisible(app.to_string()));
            }
            Ok(Err(e)) => {
                let err = match e {
                    CfError::RateLimited(wait) => BrokerError::CloudControllerRateLimited {
                        retry_after_secs: wait.as_secs(),
                        budget_secs,
                    },
                    CfError::Deadline { .. } => BrokerError::CloudControllerTooSlow { budget_secs },
                    CfError::Transport { source, .. } if source.is_timeout() => {
                        BrokerError::CloudControllerTooSlow { budget_secs }
                    }
                    e => BrokerError::from_cf(e),
                };
                let result = match err {
                    BrokerError::CloudControllerTooSlow { .. } => "timeout",
                    _ => "error",
                };
                self.metrics.cf_lookups.with_label_values(&[result]).inc();
                return Err(err);
            }
            Err(_elapsed) => {
                self.metrics
                    .cf_lookups
                    .with_label_values(&["timeout"])
                    .inc();
                return Err(BrokerError::CloudControllerTooSlow { budget_secs });
            }
        };
        let file = build_target_file(&info, &self.model, params);
        if file.endpoint.guessed {
            tracing::warn!(
                hostname = %file.endpoint.hostname,
                "the app has no public route: guessed its hostname from PAAS_DOMAIN"
            );
        }
        let state = match info.state {
            AppState::Started => TargetState::Active,
            AppState::Stopped => TargetState::Inactive,
        };

        let mut tx = self.db.lock_app(app).await?;
        // A concurrent identical request (which may share this attempt) won.
        if let Some(existing) = tx.binding(&new.binding_id).await? {
            if !existing.is_identical_to(app, new) {
                return Err(BrokerError::BindingConflict(new.binding_id.clone()));
            }
            tx.finish_binding_attempt(&new.binding_id, attempt).await?;
            tx.commit().await?;
            return self.already_bound(&existing).await;
        }
        // Still wanted? An unbind may have cancelled this bind while it looked the app up.
        if !tx.finish_binding_attempt(&new.binding_id, attempt).await? {
            tracing::info!(
                "bind cancelled by an unbind (or a newer request) while it ran: nothing recorded"
            );
            return Err(BrokerError::BindSuperseded(new.binding_id.clone()));
        }
        if Instant::now() >= deadline {
            // The platform may be giving up on this request: record nothing.
            return Err(BrokerError::OutOfTime { budget_secs });
        }
        match tx.insert_binding(new).await? {
            Insert::Created(_) => {}
            // A concurrent identical bind won; dropping `tx` rolls back (nothing changed).
            Insert::Identical(existing) => return self.already_bound(&existing).await,
            Insert::Conflict(_) => {
                return Err(BrokerError::BindingConflict(new.binding_id.clone()));
            }
        }
        // Files exist exactly when bindings do, so an app bound for the first time has no
        // file in the other state to remove: skipping the request halves the store
        // traffic of a first bind. (A stray file left by a crash is the updater's to tidy.)
        let bindings = tx.bindings().await?;
        let bound_before = bindings.len() > 1;
        let credentials = self.credentials(
            app,
            &new.binding_id,
            params.auth,
            Some(info.job().to_owned()),
            Some(
                file.endpoint
                    .metrics_path
                    .clone()
                    .unwrap_or_else(|| "/metrics".into()),
            ),
        )?;
        // The credentials document before the target file: the scrape gateway must
        // never see a target whose binding's authorization it does not know yet.
        let credentials_changed = self
            .sync_credentials_document(app, &bindings, false)
            .await?;
        // The new binding is the app's newest, so its parameters decide the file
        // (DESIGN.md section 3a).
        self.store_write(state, app, Bytes::from(file.to_bytes()))
            .await?;
        // The file is in the store from here, whatever follows: the broker's part of this
        // target's discovery is done.
        self.observe_target_latency("bind", started);
        if bound_before {
            self.store_remove(state.other(), app).await?;
        }
        tx.commit().await?;
        if state == TargetState::Active || bound_before || credentials_changed {
            self.publish_record().await;
        }
        self.metrics
            .binding_changes
            .with_label_values(&["created"])
            .inc();
        tracing::info!(
            state = %state,
            instances = info.instances,
            app_name = %info.name,
            auth = %params.auth,
            "app bound: target file written"
        );
        Ok(Bound {
            outcome: Outcome::Created,
            credentials: credentials.to_json(),
        })
    }

    /// The answer to a bind of a binding already recorded identically: the same
    /// credentials (the token is derived again, never stored).
    async fn already_bound(&self, existing: &Binding) -> Result<Bound, BrokerError> {
        Ok(Bound {
            outcome: Outcome::AlreadyExists,
            credentials: self.credentials_of(existing).await?.to_json(),
        })
    }

    /// `GET .../service_bindings/:binding_id`: the binding's credentials (as its bind
    /// answered them) and its parameters.
    pub async fn fetch_binding(
        &self,
        instance_id: &str,
        binding_id: &str,
    ) -> Result<Value, BrokerError> {
        check_id("instance_id", instance_id)?;
        check_id("binding_id", binding_id)?;
        let binding = self
            .db
            .binding(binding_id)
            .await?
            .filter(|b| b.instance_id == instance_id)
            .ok_or_else(|| BrokerError::BindingNotFound(binding_id.into()))?;
        tracing::Span::current().record("app_guid", binding.app_guid.as_str());
        let credentials = self.credentials_of(&binding).await?;
        Ok(serde_json::json!({
            "credentials": credentials.to_json(),
            "parameters": binding.parameters_json(),
        }))
    }

    /// `DELETE .../service_bindings/:binding_id`: forgets the binding and, when it was the
    /// app's last, removes both of the app's files. Uses only the database and the store
    /// (the request carries no app GUID, and the app may be gone from the Cloud
    /// Controller, which may be down).
    pub async fn unbind(
        &self,
        instance_id: &str,
        binding_id: &str,
        query: &DeleteQuery,
    ) -> Result<(), BrokerError> {
        let started = Instant::now();
        check_id("instance_id", instance_id)?;
        check_id("binding_id", binding_id)?;
        self.check_delete_query(query)?;
        // The app, from the binding's bind in progress first, else from the binding: in
        // that order a bind committing in between is never missed (its commit replaces
        // its attempt with its binding in one transaction).
        let attempt = self
            .db
            .binding_attempt(binding_id)
            .await?
            .filter(|a| a.instance_id == instance_id);
        let app = match attempt {
            Some(attempt) => attempt.app_guid,
            None => {
                self.db
                    .binding(binding_id)
                    .await?
                    .filter(|b| b.instance_id == instance_id)
                    .ok_or_else(|| BrokerError::BindingNotFound(binding_id.into()))?
                    .app_guid
            }
        };
        tracing::Span::current().record("app_guid", app.as_str());
        if self.remove_binding(&app, binding_id, Some(started)).await? {
            Ok(())
        } else {
            // A concurrent unbind of the same binding got there first.
            Err(BrokerError::BindingNotFound(binding_id.into()))
        }
    }

    /// `GET .../service_bindings/:binding_id/last_operation`.
    pub async fn binding_last_operation(
        &self,
        instance_id: &str,
        binding_id: &str,
    ) -> Result<(), BrokerError> {
        check_id("instance_id", instance_id)?;
        check_id("binding_id", binding_id)?;
        match self.db.binding(binding_id).await? {
            Some(b) if b.instance_id == instance_id => Ok(()),
            _ => Err(BrokerError::BindingNotFound(binding_id.into())),
        }
    }

    /// Deletes a binding of `app` under the app's lock, or cancels its bind in progress
    /// (which then records nothing), and removes the app's files when it has no binding
    /// left; `false` if there was neither (any more). When other bindings remain, the file
    /// stays as it is: if the deleted binding was the newest, the next newest one's
    /// parameters apply from the updater's next pass (rebuilding the file needs the Cloud
    /// Controller, which unbind must not depend on).
    ///
    /// `unbind_started`: when the unbind request was received, to observe the unbind's
    /// latency once the files of a deleted last binding are removed (a cancelled bind had
    /// no file to remove; deprovision is not an unbind).
    async fn remove_binding(
        &self,
        app: &AppGuid,
        binding_id: &str,
        unbind_started: Option<Instant>,
    ) -> Result<bool, BrokerError> {
        let mut tx = self.db.lock_app(app).await?;
        let deleted_binding = tx.delete_binding(binding_id).await?;
        // Both may be there: a bind cut short after writing its file leaves its attempt.
        let cancelled_attempt = tx.cancel_binding_attempt(binding_id).await?;
        let (deleted, cancelled) = (deleted_binding.is_some(), cancelled_attempt.is_some());
        if !deleted && !cancelled {
            return Ok(false);
        }
        // A token binding (or its bind cut short) may have written the credentials
        // document; otherwise there is none to rewrite or remove.
        let had_token = deleted_binding
            .map(|b| ScrapeAuth::of_stored(&b.parameters_json()))
            .into_iter()
            .chain(cancelled_attempt.map(|a| {
                ScrapeAuth::of_stored(&serde_json::from_str(&a.parameters).unwrap_or(Value::Null))
            }))
            .any(|auth| auth == ScrapeAuth::Token);
        let bindings = tx.bindings().await?;
        let remaining = bindings.len();
        let mut credentials_changed = false;
        if remaining == 0 {
            for state in TargetState::ALL {
                self.store_remove(state, app).await?;
            }
            // After the target files: a target never outlives its credentials.
            if had_token {
                self.remove_credentials_document(app).await?;
                credentials_changed = true;
            }
            if let (true, Some(started)) = (deleted, unbind_started) {
                self.observe_target_latency("unbind", started);
            }
        } else {
            // The app's other bindings keep its scrape working: the document now lists
            // them only (the oldest remaining one's authorization applies).
            credentials_changed = self
                .sync_credentials_document(app, &bindings, had_token)
                .await?;
        }
        tx.commit().await?;
        if remaining == 0 || credentials_changed {
            self.publish_record().await;
        }
        self.metrics
            .binding_changes
            .with_label_values(&[if deleted { "deleted" } else { "cancelled" }])
            .inc();
        if !deleted {
            tracing::info!(
                app_guid = %app,
                "unbind of a binding whose bind is still running: the bind is cancelled and will record nothing"
            );
        } else if remaining == 0 {
            tracing::info!(app_guid = %app, "last binding of the app deleted: target files removed");
        } else {
            tracing::info!(app_guid = %app, remaining, "binding deleted: the app is still bound");
        }
        Ok(true)
    }

    async fn store_write(
        &self,
        state: TargetState,
        app: &AppGuid,
        body: Bytes,
    ) -> Result<(), BrokerError> {
        let result = self.store.write_app(state, app, body).await;
        self.count_store("write", result.is_ok());
        result.map(drop).map_err(BrokerError::from_store)
    }

    async fn store_remove(&self, state: TargetState, app: &AppGuid) -> Result<(), BrokerError> {
        let result = self.store.remove_app(state, app).await;
        self.count_store("remove", result.is_ok());
        result.map_err(BrokerError::from_store)
    }

    /// Publishes the writers' record after a change to `active/` (DESIGN.md section 5),
    /// so that sd-sync applies the deletion of the last app of a small foundation at once
    /// instead of holding it back. A failure is logged (by the publisher) and counted,
    /// never the operation's failure.
    async fn publish_record(&self) {
        let result = self.record.publish_after_change().await;
        self.count_store("publish_record", result.is_ok());
    }

    /// Observes `observe_broker_target_latency_seconds{operation}` from `started`.
    fn observe_target_latency(&self, operation: &str, started: Instant) {
        self.metrics
            .target_latency
            .with_label_values(&[operation])
            .observe(started.elapsed().as_secs_f64());
    }

    fn count_store(&self, operation: &str, ok: bool) {
        self.metrics
            .store_operations
            .with_label_values(&[operation, if ok { "ok" } else { "error" }])
            .inc();
    }

    /// For `GET /health`: the database answers.
    pub async fn health(&self) -> Result<(), gds_db::DbError> {
        self.db.ping().await
    }
}

#[cfg(test)]
mod tests;
