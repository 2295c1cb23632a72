//! The handlers: extract, call the [`Broker`], render the outcome. Every failure is an
//! [`OsbFailure`], rendered by [`reply_for`] — including the extractors' own errors, so a
//! malformed body is a `400` with a JSON `description` like every other error.

use actix_web::http::StatusCode;
use actix_web::http::header::{ContentType, WWW_AUTHENTICATE};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde_json::{Value, json};

use gds_service::error_chain;

use crate::metrics::BrokerMetrics;
use crate::operations::{Broker, Outcome};
use crate::osb::{
    self, BindRequest, BrokerError, DeleteQuery, Operation, ProvisionRequest, UpdateRequest,
    reply_for,
};

/// An error answered for an operation.
#[derive(Debug)]
pub struct OsbFailure {
    op: Operation,
    err: BrokerError,
}

impl OsbFailure {
    pub fn new(op: Operation, err: BrokerError) -> Self {
        Self { op, err }
    }

    /// Tags a domain error with its operation: `.map_err(failed(Operation::Bind))`.
    pub fn of(op: Operation) -> impl FnOnce(BrokerError) -> OsbFailure {
        move |err| OsbFailure { op, err }
    }

    /// For an extractor's error handler: the operation is found from the request.
    fn bad_request(req: &HttpRequest, description: String) -> actix_web::Error {
        Self::for_request(req, BrokerError::BadRequest(description))
    }

    fn for_request(req: &HttpRequest, err: BrokerError) -> actix_web::Error {
        let op = Operation::of(req.method().as_str(), req.match_pattern().as_deref());
        OsbFailure::new(op, err).into()
    }
}

impl std::fmt::Display for OsbFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.op, self.err)
    }
}

impl ResponseError for OsbFailure {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(reply_for(self.op, &self.err).status)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let reply = reply_for(self.op, &self.err);
        if reply.is_opaque() {
            // The caller learns nothing internal; the log gets the whole chain.
            tracing::error!(
                operation = ?self.op,
                status = reply.status,
                error = %error_chain(&self.err),
                "request failed"
            );
        } else if reply.status != 410 {
            tracing::info!(
                operation = ?self.op,
                status = reply.status,
                error = %self.err,
                "request refused"
            );
        }
        let mut res = HttpResponse::build(self.status_code());
        if reply.status == 401 {
            res.insert_header((WWW_AUTHENTICATE, r#"Basic realm="gds-prometheus broker""#));
        }
        res.content_type(ContentType::json())
            .body(reply.body().to_string())
    }
}

type Answer = Result<HttpResponse, OsbFailure>;

fn json_reply(status: StatusCode, body: &Value) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(ContentType::json())
        .body(body.to_string())
}

fn record_ids(instance_id: &str, binding_id: Option<&str>) {
    let span = tracing::Span::current();
    span.record("instance_id", instance_id);
    if let Some(binding_id) = binding_id {
        span.record("binding_id", binding_id);
    }
}

/// The largest request body accepted (OSB bodies are a few KiB); a larger one is a `413`.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// JSON bodies: any content type (some clients send none), errors as OSB `400`s (`413`
/// when too large).
pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(MAX_BODY_BYTES)
        .content_type_required(false)
        .content_type(|_| true)
        .error_handler(|err, req| {
            use actix_web::error::JsonPayloadError as E;
            let description = match &err {
                E::Deserialize(e) if e.is_data() => format!("invalid request body: {e}"),
                E::Deserialize(e) => format!("request body is not valid JSON: {e}"),
                E::OverflowKnownLength { .. } | E::Overflow { .. } => {
                    return OsbFailure::for_request(
                        req,
                        BrokerError::PayloadTooLarge(format!(
                            "request body is larger than {} KiB",
                            MAX_BODY_BYTES / 1024
                        )),
                    );
                }
                other => format!("invalid request body: {other}"),
            };
            OsbFailure::bad_request(req, description)
        })
}

/// Query strings: errors as OSB `400`s.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|err, req| {
        OsbFailure::bad_request(req, format!("invalid query string: {err}"))
    })
}

/// Path parameters: errors as OSB `400`s.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default()
        .error_handler(|err, req| OsbFailure::bad_request(req, format!("invalid path: {err}")))
}

/// `GET /v2/catalog`.
pub async fn catalog(broker: web::Data<Broker>) -> HttpResponse {
    json_reply(StatusCode::OK, &osb::catalog(broker.catalog_ids()))
}

/// `PUT /v2/service_instances/{instance_id}`: `201 {}` new, `200 {}` identical.
pub async fn provision(
    broker: web::Data<Broker>,
    path: web::Path<String>,
    body: web::Json<Value>,
) -> Answer {
    let instance_id = path.into_inner();
    record_ids(&instance_id, None);
    let failed = OsbFailure::of(Operation::Provision);
    let request = ProvisionRequest::from_json(&body).map_err(failed)?;
    let outcome = broker
        .within_budget(broker.provision(&instance_id, &request))
        .await
        .map_err(OsbFailure::of(Operation::Provision))?;
    Ok(match outcome {
        Outcome::Created => json_reply(StatusCode::CREATED, &json!({})),
        Outcome::AlreadyExists => json_reply(StatusCode::OK, &json!({})),
    })
}

/// `GET /v2/service_instances/{instance_id}`.
pub async fn fetch_instance(broker: web::Data<Broker>, path: web::Path<String>) -> Answer {
    let instance_id = path.into_inner();
    record_ids(&instance_id, None);
    let body = broker
        .within_budget(broker.fetch_instance(&instance_id))
        .await
        .map_err(OsbFailure::of(Operation::FetchInstance))?;
    Ok(json_reply(StatusCode::OK, &body))
}

/// `PATCH /v2/service_instances/{instance_id}`: `200 {}`.
pub async fn update(
    broker: web::Data<Broker>,
    path: web::Path<String>,
    body: web::Json<Value>,
) -> Answer {
    let instance_id = path.into_inner();
    record_ids(&instance_id, None);
    let request = UpdateRequest::from_json(&body).map_err(OsbFailure::of(Operation::Update))?;
    broker
        .within_budget(broker.update(&instance_id, &request))
        .await
        .map_err(OsbFailure::of(Operation::Update))?;
    Ok(json_reply(StatusCode::OK, &json!({})))
}

/// `DELETE /v2/service_instances/{instance_id}`: `200 {}`, `410 {}` when unknown.
pub async fn deprovision(
    broker: web::Data<Broker>,
    path: web::Path<String>,
    query: web::Query<DeleteQuery>,
) -> Answer {
    let instance_id = path.into_inner();
    record_ids(&instance_id, None);
    broker
        .within_budget(broker.deprovision(&instance_id, &query))
        .await
        .map_err(OsbFailure::of(Operation::Deprovision))?;
    Ok(json_reply(StatusCode::OK, &json!({})))
}

/// `GET /v2/service_instances/{instance_id}/last_operation`.
pub async fn instance_last_operation(broker: web::Data<Broker>, path: web::Path<String>) -> Answer {
    let instance_id = path.into_inner();
    record_ids(&instance_id, None);
    broker
        .within_budget(broker.instance_last_operation(&instance_id))
        .await
        .map_err(OsbFailure::of(Operation::InstanceLastOperation))?;
    Ok(json_reply(StatusCode::OK, &json!({"state": "succeeded"})))
}

/// `PUT /v2/service_instances/{instance_id}/service_bindings/{binding_id}`:
/// `201 {"credentials": {..}}` new, `200` identical (same credentials).
pub async fn bind(
    broker: web::Data<Broker>,
    path: web::Path<(String, String)>,
    body: web::Json<Value>,
) -> Answer {
    let (instance_id, binding_id) = path.into_inner();
    record_ids(&instance_id, Some(&binding_id));
    let request = BindRequest::from_json(&body).map_err(OsbFailure::of(Operation::Bind))?;
    let bound = broker
        .within_budget(broker.bind(&instance_id, &binding_id, &request))
        .await
        .map_err(OsbFailure::of(Operation::Bind))?;
    let status = match bound.outcome {
        Outcome::Created => StatusCode::CREATED,
        Outcome::AlreadyExists => StatusCode::OK,
    };
    Ok(json_reply(
        status,
        &json!({"credentials": bound.credentials}),
    ))
}

/// `GET /v2/service_instances/{instance_id}/service_bindings/{binding_id}`.
pub async fn fetch_binding(broker: web::Data<Broker>, path: web::Path<(String, String)>) -> Answer {
    let (instance_id, binding_id) = path.into_inner();
    record_ids(&instance_id, Some(&binding_id));
    let body = broker
        .within_budget(broker.fetch_binding(&instance_id, &binding_id))
        .await
        .map_err(OsbFailure::of(Operation::FetchBinding))?;
    Ok(json_reply(StatusCode::OK, &body))
}

/// `DELETE /v2/service_instances/{instance_id}/service_bindings/{binding_id}`: `200 {}`,
/// `410 {}` when unknown.
pub async fn unbind(
    broker: web::Data<Broker>,
    path: web::Path<(String, String)>,
    query: web::Query<DeleteQuery>,
) -> Answer {
    let (instance_id, binding_id) = path.into_inner();
    record_ids(&instance_id, Some(&binding_id));
    broker
        .within_budget(broker.unbind(&instance_id, &binding_id, &query))
        .await
        .map_err(OsbFailure::of(Operation::Unbind))?;
    Ok(json_reply(StatusCode::OK, &json!({})))
}

/// `GET .../service_bindings/{binding_id}/last_operation`.
pub async fn binding_last_operation(
    broker: web::Data<Broker>,
    path: web::Path<(String, String)>,
) -> Answer {
    let (instance_id, binding_id) = path.into_inner();
    record_ids(&instance_id, Some(&binding_id));
    broker
        .within_budget(broker.binding_last_operation(&instance_id, &binding_id))
        .await
        .map_err(OsbFailure::of(Operation::BindingLastOperation))?;
    Ok(json_reply(StatusCode::OK, &json!({"state": "succeeded"})))
}

/// `POST /update-targets`: the original's trigger of a full reconcile. Runs one pass
/// through the updater's engine (the same code and the same database lease as
/// `updater --once`) and answers when it is done: `202` as the original did, with the
/// pass summary as `description` (also when another updater is reconciling right now:
/// that pass covers the request), `503` when the pass could not read or apply
/// everything (the summary says what).
pub async fn update_targets(reconciler: web::Data<gds_engine::Reconciler>) -> HttpResponse {
    match reconciler.run_pass(gds_reconcile::Scope::All).await {
        Ok(report) if report.succeeded() => json_reply(
            StatusCode::ACCEPTED,
            &json!({"description": report.summary()}),
        ),
        Ok(report) => json_reply(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"description": report.summary()}),
        ),
        Err(gds_engine::PassError::Busy) => json_reply(
            StatusCode::ACCEPTED,
            &json!({"description": "another updater is reconciling now"}),
        ),
        Err(e) => {
            tracing::error!(error = %error_chain(&e), "POST /update-targets: the pass failed");
            json_reply(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"description": "the reconcile pass failed; see the broker's log"}),
            )
        }
    }
}

/// `GET /health`: `200` when the database answers, `503` otherwise. No auth.
pub async fn health(broker: web::Data<Broker>) -> HttpResponse {
    match broker.health().await {
        Ok(()) => json_reply(StatusCode::OK, &json!({"status": "ok"})),
        Err(e) => {
            tracing::error!(error = %error_chain(&e), "health check: the database does not answer");
            json_reply(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"status": "unavailable", "description": "the database does not answer"}),
            )
        }
    }
}

/// `GET /metrics`: Prometheus text format. No auth. The broker's own metrics, and the
/// `gds_updater_*` metrics of the passes `POST /update-targets` ran (one registry).
pub async fn metrics(
    metrics: web::Data<BrokerMetrics>,
    reconciler: web::Data<gds_engine::Reconciler>,
    cf_metrics: web::Data<gds_engine::CfMetrics>,
) -> HttpResponse {
    // The Cloud Controller client is shared: bring its request counters up to date.
    reconciler
        .metrics()
        .observe_cf_requests(&reconciler.cf().request_stats());
    cf_metrics.observe(reconciler.cf());
    HttpResponse::Ok()
        .content_type(gds_service::metrics::CONTENT_TYPE)
        .body(gds_service::metrics::render(&metrics.registry))
}

/// Any path no route matches.
pub async fn not_found() -> HttpResponse {
    json_reply(
        StatusCode::NOT_FOUND,
        &json!({"description": "no such endpoint"}),
    )
}

/// A known path with a method it does not have.
pub async fn method_not_allowed() -> HttpResponse {
    json_reply(
        StatusCode::METHOD_NOT_ALLOWED,
        &json!({"description": "method not allowed on this endpoint"}),
    )
}
