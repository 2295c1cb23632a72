//! The Open Service Broker API contract (v2.17; Cloud Foundry sends 2.15): request
//! bodies, the catalogue of domain errors, and the ONE function that maps an
//! (operation, error) pair to a status, an OSB `error` key and a description.
//!
//! No actix here: the HTTP layer only renders what [`reply_for`] decides. The mapping takes
//! the operation because the spec's answer to "not found" depends on it (pivotal-cf/
//! brokerapi's lesson): `410 Gone` on deprovision, unbind and last-operation polling (which
//! the platform treats as success), `404` when fetching or binding.

use gds_cf::CfError;
use gds_store::StoreError;
use gds_targets::{InvalidGuid, ParamError};
use serde::Deserialize;
use serde_json::{Value, json};

use gds_engine::CatalogIds;

/// The OSB API versions accepted: major 2, minor at least this.
pub const MIN_API_MINOR_VERSION: u32 = 13;

/// The broker's operations, one per endpoint (plus the legacy reconcile trigger and
/// anything unrouted).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    Catalog,
    Provision,
    FetchInstance,
    Update,
    Deprovision,
    InstanceLastOperation,
    Bind,
    FetchBinding,
    Unbind,
    BindingLastOperation,
    UpdateTargets,
    /// A request that matched no route, or whose route is not known yet.
    Other,
}

impl Operation {
    /// Every operation, for table tests.
    pub const ALL: [Operation; 12] = [
        Operation::Catalog,
        Operation::Provision,
        Operation::FetchInstance,
        Operation::Update,
        Operation::Deprovision,
        Operation::InstanceLastOperation,
        Operation::Bind,
        Operation::FetchBinding,
        Operation::Unbind,
        Operation::BindingLastOperation,
        Operation::UpdateTargets,
        Operation::Other,
    ];

    /// The operation of a request, from its method and route template.
    pub fn of(method: &str, route: Option<&str>) -> Operation {
        use Operation::*;
        match (method, route.unwrap_or_default()) {
            ("GET", "/v2/catalog") => Catalog,
            ("PUT", "/v2/service_instances/{instance_id}") => Provision,
            ("GET", "/v2/service_instances/{instance_id}") => FetchInstance,
            ("PATCH", "/v2/service_instances/{instance_id}") => Update,
            ("DELETE", "/v2/service_instances/{instance_id}") => Deprovision,
            ("GET", "/v2/service_instances/{instance_id}/last_operation") => InstanceLastOperation,
            ("PUT", "/v2/service_instances/{instance_id}/service_bindings/{binding_id}") => Bind,
            ("GET", "/v2/service_instances/{instance_id}/service_bindings/{binding_id}") => {
                FetchBinding
            }
            ("DELETE", "/v2/service_instances/{instance_id}/service_bindings/{binding_id}") => {
                Unbind
            }
            (
                "GET",
                "/v2/service_instances/{instance_id}/service_bindings/{binding_id}/last_operation",
            ) => BindingLastOperation,
            ("POST", "/update-targets") => UpdateTargets,
            _ => Other,
        }
    }
}

/// Everything that can go wrong, as the broker's domain sees it. How each is answered
/// depends on the operation: see [`reply_for`].
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// No or wrong basic-auth credentials.
    #[error("authentication required: use the broker's basic-auth credentials")]
    Unauthorized,
    /// No `X-Broker-API-Version` header.
    #[error("the X-Broker-API-Version header is required (2.{MIN_API_MINOR_VERSION} or later)")]
    MissingApiVersion,
    /// An `X-Broker-API-Version` this broker does not speak.
    #[error(
        "X-Broker-API-Version {0:?} is not supported: this broker speaks 2.{MIN_API_MINOR_VERSION} to 2.17"
    )]
    UnsupportedApiVersion(String),
    /// Malformed JSON, a missing or mistyped field, a bad query or path parameter.
    #[error("{0}")]
    BadRequest(String),
    /// A `service_id` this broker does not offer.
    #[error("unknown service_id {given:?}: this broker offers only service {expected:?}")]
    UnknownService { given: String, expected: String },
    /// A `plan_id` this broker does not offer.
    #[error("unknown plan_id {given:?}: this broker offers only plan {expected:?}")]
    UnknownPlan { given: String, expected: String },
    /// Invalid binding parameters (`cf bind-service -c`); the message names the field.
    #[error(transparent)]
    InvalidParameters(#[from] ParamError),
    /// A bind request for something other than an app (no app GUID).
    #[error(
        "gds-prometheus can only be bound to an app: the request carries no bind_resource.app_guid"
    )]
    RequiresApp,
    /// The app GUID of a bind request is not a GUID.
    #[error("{0}")]
    InvalidAppGuid(#[from] InvalidGuid),
    /// The Cloud Controller does not show the broker this app.
    #[error(
        "app {0} is not visible to the broker's Cloud Foundry user: it may have been deleted, \
         or the user may lack the SpaceAuditor role in the app's space"
    )]
    AppNotVisible(String),
    /// A provision for an existing instance id with different attributes.
    #[error("service instance {0} already exists with different attributes")]
    InstanceConflict(String),
    /// A bind for an existing binding id with different attributes.
    #[error("service binding {0} already exists with different attributes")]
    BindingConflict(String),
    /// No such service instance.
    #[error("service instance {0} does not exist")]
    InstanceNotFound(String),
    /// No such binding (in that instance).
    #[error("service binding {0} does not exist")]
    BindingNotFound(String),
    /// Another operation on the same instance got in between; the platform may retry.
    #[error("{0}")]
    Concurrency(String),
    /// The Cloud Controller could not be asked now (down, slow, rate limiting).
    #[error("the Cloud Controller is unavailable")]
    CloudControllerUnavailable(#[source] CfError),
    /// The Cloud Controller did not answer in the part of the bind's budget
    /// (`BROKER_OPERATION_TIMEOUT_SECONDS`) left for its look-up; nothing was recorded.
    #[error(
        "the Cloud Foundry API did not answer in time: the broker answers every request \
         within {budget_secs} s, inside the platform's broker timeout; nothing was recorded; \
         try again later"
    )]
    CloudControllerTooSlow { budget_secs: u64 },
    /// The Cloud Controller asked to wait longer (`Retry-After`) than the bind may still
    /// take; nothing was recorded.
    #[error(
        "the Cloud Foundry API is rate limiting the broker and asks it to wait {retry_after_secs} s, \
         longer than this request may still take (the broker answers every request within \
         {budget_secs} s); nothing was recorded; try again later"
    )]
    CloudControllerRateLimited {
        retry_after_secs: u64,
        budget_secs: u64,
    },
    /// The operation as a whole ran out of its budget (`BROKER_OPERATION_TIMEOUT_SECONDS`).
    #[error(
        "the broker could not finish this request within its time limit of {budget_secs} s; \
         try again later"
    )]
    OutOfTime { budget_secs: u64 },
    /// An unbind of the same binding (the platform's orphan mitigation), or a newer bind
    /// request for the same binding id, arrived while this bind was running: it recorded
    /// nothing.
    #[error(
        "service binding {0} was unbound, or requested again, while this bind was running: \
         this request recorded nothing"
    )]
    BindSuperseded(String),
    /// A bind asks for `"auth": "token"` but the broker has no key to derive tokens from.
    #[error(
        "this broker cannot issue scrape tokens: its operators have not configured \
         SCRAPE_TOKEN_KEY (or SCRAPE_TOKEN_KEY_FILE); bind without \"auth\": \"token\" \
         (the app is then scraped with Authorization: Bearer <app guid>) or ask them to \
         configure it"
    )]
    ScrapeTokensUnavailable,
    /// A request body over the limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The target store could not be written now.
    #[error("the target store is unavailable")]
    StoreUnavailable(#[source] StoreError),
    /// Anything else: a bug, a configuration or permission problem, the database.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl BrokerError {
    pub fn internal(e: impl Into<anyhow::Error>) -> Self {
        Self::Internal(e.into())
    }

    /// A Cloud Controller failure: transient ones are worth a retry (503), others are ours.
    pub fn from_cf(e: CfError) -> Self {
        if e.is_transient() {
            Self::CloudControllerUnavailable(e)
        } else {
            Self::Internal(
                anyhow::Error::new(e).context("looking the app up in the Cloud Controller"),
            )
        }
    }

    /// A store failure: transient ones are worth a retry (503), others are ours.
    pub fn from_store(e: StoreError) -> Self {
        if e.is_transient() {
            Self::StoreUnavailable(e)
        } else {
            Self::Internal(anyhow::Error::new(e).context("writing to the target store"))
        }
    }
}

impl From<gds_db::DbError> for BrokerError {
    fn from(e: gds_db::DbError) -> Self {
        Self::Internal(e.into())
    }
}

/// What to answer: a status, the OSB `error` key (where the spec names one) and a
/// description. `description: None` means the body is `{}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub error: Option<&'static str>,
    pub description: Option<String>,
}

impl Reply {
    /// The JSON body: `{}`, or `{"description": ..}` plus `"error"` where there is one.
    pub fn body(&self) -> Value {
        let mut body = serde_json::Map::new();
        if let Some(error) = self.error {
            body.insert("error".into(), json!(error));
        }
        if let Some(description) = &self.description {
            body.insert("description".into(), json!(description));
        }
        Value::Object(body)
    }

    /// Whether the caller sees nothing of the cause (which must then be logged).
    pub fn is_opaque(&self) -> bool {
        self.status >= 500
    }
}

/// The one mapping from (operation, error) to the answer, after the OSB spec
/// (`openservicebrokerapi/servicebroker:spec.md`, v2.17) and what the Cloud Controller
/// does with each status (reference/cf-platform.md section 5.7).
pub fn reply_for(op: Operation, err: &BrokerError) -> Reply {
    use BrokerError as E;
    use Operation as Op;
    let described = |status: u16| Reply {
        status,
        error: None,
        description: Some(err.to_string()),
    };
    match err {
        E::Unauthorized => described(401),
        E::MissingApiVersion | E::UnsupportedApiVersion(_) => described(412),
        E::BadRequest(_)
        | E::UnknownService { .. }
        | E::UnknownPlan { .. }
        | E::InvalidParameters(_)
        | E::InvalidAppGuid(_)
        | E::AppNotVisible(_) => described(400),
        E::RequiresApp => Reply {
            status: 422,
            error: Some("RequiresApp"),
            description: Some(err.to_string()),
        },
        E::Concurrency(_) => Reply {
            status: 422,
            error: Some("ConcurrencyError"),
            description: Some(err.to_string()),
        },
        E::PayloadTooLarge(_) => described(413),
        // 422, not 400: the request is well formed and valid, this broker cannot honour it
        // as configured. A 4xx, so the platform starts no orphan mitigation.
        E::ScrapeTokensUnavailable => described(422),
        // 422 like any request the broker refuses because another operation on the same
        // binding got in between: a 4xx tells the platform not to start orphan mitigation,
        // and there is nothing to mitigate.
        E::BindSuperseded(_) => Reply {
            status: 422,
            error: Some("ConcurrencyError"),
            description: Some(err.to_string()),
        },
        E::InstanceConflict(_) | E::BindingConflict(_) => described(409),
        // "Gone" is how deletes and last-operation polls say "nothing (left) to do"; the
        // platform counts it as success, and the spec wants an empty object.
        E::InstanceNotFound(_) | E::BindingNotFound(_)
            if matches!(
                op,
                Op::Deprovision | Op::Unbind | Op::InstanceLastOperation | Op::BindingLastOperation
            ) =>
        {
            Reply {
                status: 410,
                error: None,
                description: None,
            }
        }
        E::InstanceNotFound(_) | E::BindingNotFound(_) => described(404),
        E::CloudControllerUnavailable(_) => Reply {
            status: 503,
            error: None,
            description: Some(
                "the broker cannot reach the Cloud Foundry API right now; try again later".into(),
            ),
        },
        // Out of time: a 5xx, deliberately. The OSB spec has the platform answer a 5xx to
        // a bind with orphan mitigation (an unbind), a 4xx without: a bind cut short in
        // its last step may leave a file behind, which that unbind removes (it finds the
        // bind still recorded as in progress), and when nothing was left the unbind is a
        // cheap 410. 503 because it is temporary: the platform's user may retry.
        E::CloudControllerTooSlow { .. }
        | E::CloudControllerRateLimited { .. }
        | E::OutOfTime { .. } => described(503),
        E::StoreUnavailable(_) => Reply {
            status: 503,
            error: None,
            description: Some(
                "the broker cannot write Prometheus targets right now; try again later".into(),
            ),
        },
        E::Internal(_) => Reply {
            status: 500,
            error: None,
            description: Some(
                "internal error in the gds-prometheus broker; its operators can find the \
                 cause in its logs by the request identity"
                    .into(),
            ),
        },
    }
}

/// The top-level object of a request body, field by field, with errors that name the
/// field (serde's own messages only give a line and column).
struct Fields<'a>(&'a serde_json::Map<String, Value>);

impl<'a> Fields<'a> {
    fn of(body: &'a Value) -> Result<Self, BrokerError> {
        body.as_object().map(Fields).ok_or_else(|| {
            BrokerError::BadRequest(format!(
                "invalid request body: expected a JSON object, got {}",
                kind(body)
            ))
        })
    }

    /// A field that is present and not null.
    fn get(&self, name: &str) -> Option<&'a Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    fn required_str(&self, name: &str) -> Result<String, BrokerError> {
        self.optional_str(name)?.ok_or_else(|| {
            BrokerError::BadRequest(format!("invalid request body: `{name}` is required"))
        })
    }

    fn optional_str(&self, name: &str) -> Result<Option<String>, BrokerError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(BrokerError::BadRequest(format!(
                "invalid request body: `{name}` must be a string, got {}",
                kind(other)
            ))),
        }
    }

    fn optional_object(&self, name: &str) -> Result<Option<&'a Value>, BrokerError> {
        match self.get(name) {
            None => Ok(None),
            Some(v @ Value::Object(_)) => Ok(Some(v)),
            Some(other) => Err(BrokerError::BadRequest(format!(
                "invalid request body: `{name}` must be a JSON object, got {}",
                kind(other)
            ))),
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `PUT /v2/service_instances/:instance_id`. Unknown fields are ignored.
#[derive(Debug, Clone)]
pub struct ProvisionRequest {
    pub service_id: String,
    pub plan_id: String,
    pub organization_guid: String,
    pub space_guid: String,
    /// An object, when given.
    pub parameters: Option<Value>,
    /// An object, when given.
    pub context: Option<Value>,
}

impl ProvisionRequest {
    pub fn from_json(body: &Value) -> Result<Self, BrokerError> {
        let f = Fields::of(body)?;
        Ok(Self {
            service_id: f.required_str("service_id")?,
            plan_id: f.required_str("plan_id")?,
            organization_guid: f.required_str("organization_guid")?,
            space_guid: f.required_str("space_guid")?,
            parameters: f.optional_object("parameters")?.cloned(),
            context: f.optional_object("context")?.cloned(),
        })
    }
}

/// `PATCH /v2/service_instances/:instance_id`. Unknown fields are ignored.
#[derive(Debug, Clone)]
pub struct UpdateRequest {
    pub service_id: String,
    pub plan_id: Option<String>,
    /// An object, when given.
    pub parameters: Option<Value>,
}

impl UpdateRequest {
    pub fn from_json(body: &Value) -> Result<Self, BrokerError> {
        let f = Fields::of(body)?;
        Ok(Self {
            service_id: f.required_str("service_id")?,
            plan_id: f.optional_str("plan_id")?,
            parameters: f.optional_object("parameters")?.cloned(),
        })
    }
}

/// `PUT /v2/service_instances/:instance_id/service_bindings/:binding_id`. Unknown fields
/// are ignored.
#[derive(Debug, Clone)]
pub struct BindRequest {
    pub service_id: String,
    pub plan_id: String,
    /// `bind_resource.app_guid`, else the deprecated top-level `app_guid` (Cloud Foundry
    /// sends both).
    pub app_guid: Option<String>,
    /// As given: [`gds_targets::BindingParams::from_json`] checks it, with messages
    /// naming each parameter.
    pub parameters: Option<Value>,
}

impl BindRequest {
    pub fn from_json(body: &Value) -> Result<Self, BrokerError> {
        let f = Fields::of(body)?;
        let from_resource =
            match f.optional_object("bind_resource")? {
                Some(resource) => Fields::of(resource)?
                    .optional_str("app_guid")
                    .map_err(|e| match e {
                        BrokerError::BadRequest(m) => BrokerError::BadRequest(
                            m.replace("`app_guid`", "`bind_resource.app_guid`"),
                        ),
                        other => other,
                    })?,
                None => None,
            };
        let app_guid = from_resource
            .or(f.optional_str("app_guid")?)
            .filter(|g| !g.is_empty());
        Ok(Self {
            service_id: f.required_str("service_id")?,
            plan_id: f.required_str("plan_id")?,
            app_guid,
            parameters: f.get("parameters").cloned(),
        })
    }

    /// The app to bind, if the request names one.
    pub fn app_guid(&self) -> Option<&str> {
        self.app_guid.as_deref()
    }
}

/// The query of deprovision and unbind (`accepts_incomplete` and others are ignored:
/// every operation here completes synchronously).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct DeleteQuery {
    #[serde(default)]
    pub service_id: Option<String>,
    #[serde(default)]
    pub plan_id: Option<String>,
}

/// The catalog: one bindable service with one free plan `prometheus`, whose binding
/// parameters are described by a JSON schema (draft-04, as the Cloud Controller expects).
pub fn catalog(ids: &CatalogIds) -> Value {
    json!({
        "services": [{
            "id": ids.service_id,
            "name": ids.service_name,
            "description": "Prometheus monitoring: every instance of a bound app becomes a scrape target",
            "bindable": true,
            "instances_retrievable": true,
            "bindings_retrievable": true,
            "plan_updateable": false,
            "tags": ["prometheus", "monitoring"],
            "metadata": {
                "displayName": "Prometheus",
                "longDescription": "Binding an app makes each of its instances a Prometheus target, labelled with the app's name, org and space. Optional binding parameters: path, labels, scrape_interval, auth.",
            },
            "plans": [{
                "id": ids.plan_id,
                "name": "prometheus",
                "description": "Scrape every instance of each bound app",
                "free": true,
                "bindable": true,
                "schemas": {
                    "service_binding": {
                        "create": { "parameters": binding_parameters_schema() }
                    }
                }
            }]
        }]
    })
}

/// The JSON schema of the binding parameters (DESIGN.md section 3a). The broker checks
/// them itself either way (`BindingParams::from_json`); this is for the platform's users.
pub fn binding_parameters_schema() -> Value {
    json!({
        "$schema": "http://json-schema.org/draft-04/schema#",
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "path": {
                "description": "Metrics path, overriding the one derived from the app's route (__metrics_path__)",
                "type": "string",
                "pattern": "^/[^\\s?#]*$",
                "maxLength": 1024
            },
            "labels": {
                "description": "Extra static labels on every target: valid Prometheus label names, not starting with __, not job, instance, org or space",
                "type": "object",
                "maxProperties": 32,
                "additionalProperties": { "type": "string", "maxLength": 1024 }
            },
            "scrape_interval": {
                "description": "Prometheus duration such as 15s or 1m (__scrape_interval__)",
                "type": "string",
                "pattern": "^((\\d+)y)?((\\d+)w)?((\\d+)d)?((\\d+)h)?((\\d+)m)?((\\d+)s)?((\\d+)ms)?$"
            },
            "auth": {
                "description": "How scrapes authenticate to the app: app_guid (default: Authorization: Bearer <app guid>) or token (Authorization: Bearer <credentials.token>, a secret per binding)",
                "type": "string",
                "enum": ["app_guid", "token"],
                "default": "app_guid"
            }
        }
    })
}

#[cfg(test)]
mod tests;
