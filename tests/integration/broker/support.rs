//! A running broker for a test: the CF simulator (demo apps), a fresh S3 bucket on the
//! test server, a fresh database (SQLite file or PostgreSQL database), and the real
//! `broker` binary on a free port; plus an OSB client with the platform's headers.

use std::time::Duration;

use gds_db::{ConnectOptions, Db};
use gds_store::{S3Store, TargetState, TargetStore};
use gds_targets::AppGuid;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};

use crate::broker_db::fresh_postgres_url;
use crate::harness::{Running, start, start_sim};
use crate::store_s3::{fresh_s3_store, s3_endpoint};

pub const SERVICE_ID: &str = "b5f3a4d2-8d1b-4e46-9c0a-6a4b3b2f1e01";
pub const PLAN_ID: &str = "6f1c2f57-2d0e-4b0e-9a1e-77f2b1c9d402";
pub const USERNAME: &str = "cloud-controller";
pub const PASSWORD: &str = "correct horse battery staple";
/// What Cloud Foundry sends.
pub const API_VERSION: &str = "2.15";

/// The simulator's demo apps (`cf-sim --demo`).
pub const WEB_SHOP: &str = "0e9c9b69-5fb6-46cf-a53f-9c94b49b1bb3";
pub const API_APP: &str = "139fd468-5bcc-4d31-baff-0ae3f7945053";
pub const BATCH_WORKER: &str = "682b4296-5c4d-4993-b525-978c1d320389";

/// Which database the broker under test uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Database {
    Sqlite,
    Postgres,
}

/// Generates, for each `async fn name(db: Database)` listed, one test per database:
/// `sqlite::name` and `postgres::name`.
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::broker::support::Database::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::broker::support::Database::Postgres).await;
                }
            )*
        }
    };
}
pub(crate) use on_both_databases;

/// Options for [`Fixture::start_with`].
pub struct Options {
    /// Arguments of `cf-sim` besides `--listen`.
    pub sim_args: Vec<String>,
    /// Extra environment of the broker.
    pub env: Vec<(String, String)>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            sim_args: vec!["--demo".into()],
            env: Vec::new(),
        }
    }
}

/// Everything one broker test needs. Processes are killed when it drops.
pub struct Fixture {
    pub database_url: String,
    /// The bucket the broker writes to (same bucket, prefix and server).
    pub store: S3Store,
    pub sim: Running,
    pub broker: Running,
    pub http: reqwest::Client,
    base_env: Vec<(String, String)>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    pub async fn start(db: Database) -> Fixture {
        Self::start_with(db, Options::default()).await
    }

    pub async fn start_with(db: Database, options: Options) -> Fixture {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let database_url = match db {
            Database::Sqlite => format!("sqlite://{}/broker.db?mode=rwc", dir.path().display()),
            Database::Postgres => fresh_postgres_url().await,
        };
        let store = fresh_s3_store("test-region/").await;
        let sim_args: Vec<&str> = options.sim_args.iter().map(String::as_str).collect();
        let sim = start_sim(&sim_args);
        let mut base_env: Vec<(String, String)> = [
            ("SERVICE_ID", SERVICE_ID),
            ("PLAN_ID", PLAN_ID),
            ("BROKER_USERNAME", USERNAME),
            ("BROKER_PASSWORD", PASSWORD),
            ("PAAS_DOMAIN", "apps.example.com"),
            ("API_ENDPOINT", sim.base_url.as_str()),
            ("UAA_USERNAME", "admin"),
            ("UAA_PASSWORD", "admin"),
            ("BUCKET_NAME", store.bucket()),
            ("BUCKET_PREFIX", store.prefix()),
            ("S3_ENDPOINT", s3_endpoint().as_str()),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("DATABASE_URL", database_url.as_str()),
            ("LISTEN_HOST", "127.0.0.1"),
            ("PORT", "0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        base_env.extend(options.env);
        let broker = start_broker(&base_env);
        Fixture {
            database_url,
            store,
            sim,
            broker,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("an HTTP client"),
            base_env,
            _dir: dir,
        }
    }

    /// Another broker process on the same database, bucket and simulator.
    pub fn another_broker(&self) -> Running {
        start_broker(&self.base_env)
    }

    /// A request to the broker with the platform's headers (basic auth, API version).
    pub fn osb(&self, method: Method, path: &str) -> RequestBuilder {
        self.osb_at(&self.broker, method, path)
    }

    /// The environment the broker was started with (for starting another one differently).
    pub fn broker_env(&self) -> &[(String, String)] {
        &self.base_env
    }

    /// The same, to another broker.
    pub fn osb_at(&self, broker: &Running, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", broker.base_url))
            .basic_auth(USERNAME, Some(PASSWORD))
            .header("X-Broker-API-Version", API_VERSION)
            .header(
                "X-Broker-API-Request-Identity",
                uuid_like(rand_u64(), rand_u64()),
            )
    }

    /// `PUT /v2/service_instances/:id` as the platform sends it.
    pub async fn provision(&self, instance: &str) -> (StatusCode, Value) {
        send(
            self.osb(Method::PUT, &instance_path(instance))
                .json(&provision_body("space-1")),
        )
        .await
    }

    /// `PUT .../service_bindings/:binding` for `app` with `parameters` (omitted if null).
    pub async fn bind(
        &self,
        instance: &str,
        binding: &str,
        app: &str,
        parameters: Value,
    ) -> (StatusCode, Value) {
        self.bind_at(&self.broker, instance, binding, app, parameters)
            .await
    }

    pub async fn bind_at(
        &self,
        broker: &Running,
        instance: &str,
        binding: &str,
        app: &str,
        parameters: Value,
    ) -> (StatusCode, Value) {
        send(
            self.osb_at(broker, Method::PUT, &binding_path(instance, binding))
                .json(&bind_body(app, parameters)),
        )
        .await
    }

    /// `DELETE .../service_bindings/:binding?service_id&plan_id&accepts_incomplete`.
    pub async fn unbind(&self, instance: &str, binding: &str) -> (StatusCode, Value) {
        self.unbind_at(&self.broker, instance, binding).await
    }

    pub async fn unbind_at(
        &self,
        broker: &Running,
        instance: &str,
        binding: &str,
    ) -> (StatusCode, Value) {
        send(self.osb_at(
            broker,
            Method::DELETE,
            &format!(
                "{}?accepts_incomplete=true&plan_id={PLAN_ID}&service_id={SERVICE_ID}",
                binding_path(instance, binding)
            ),
        ))
        .await
    }

    /// `DELETE /v2/service_instances/:id?service_id&plan_id&accepts_incomplete`.
    pub async fn deprovision(&self, instance: &str) -> (StatusCode, Value) {
        send(self.osb(
            Method::DELETE,
            &format!(
                "{}?accepts_incomplete=true&plan_id={PLAN_ID}&service_id={SERVICE_ID}",
                instance_path(instance)
            ),
        ))
        .await
    }

    /// The app's target file in `state`, as stored.
    pub async fn file(&self, state: TargetState, app: &str) -> Option<Vec<u8>> {
        let app = AppGuid::parse(app).expect("a valid app guid");
        self.store
            .read_app(state, &app)
            .await
            .expect("reading the test bucket")
            .map(|(body, _)| body.to_vec())
    }

    /// The writers' record the broker and updater published, if any.
    pub async fn record(&self) -> Option<gds_store::WritersRecord> {
        let (body, _) = self
            .store
            .read_record()
            .await
            .expect("reading the writers' record")?;
        Some(gds_store::WritersRecord::parse(&body).expect("the writers' record parses"))
    }

    /// Every key in the bucket (prefix included), sorted, but the writers' record's
    /// (see [`Fixture::record`]).
    pub async fn bucket_keys(&self) -> Vec<String> {
        let listing = self
            .store
            .client()
            .list_objects_v2()
            .bucket(self.store.bucket())
            .send()
            .await
            .expect("listing the test bucket");
        let mut keys: Vec<String> = listing
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .filter(|key| !key.ends_with(gds_store::RECORD_KEY))
            .collect();
        keys.sort();
        keys
    }

    /// The broker's database, opened by the test for assertions.
    pub async fn db(&self) -> Db {
        Db::connect(
            &self.database_url,
            ConnectOptions {
                max_connections: 2,
                ..ConnectOptions::default()
            },
        )
        .await
        .expect("opening the broker's database")
    }

    /// A call to the simulator's control API; panics unless it succeeds.
    pub async fn sim_control(&self, method: Method, path: &str, body: Value) -> Value {
        let response = self
            .http
            .request(method, format!("{}{path}", self.sim.base_url))
            .json(&body)
            .send()
            .await
            .expect("the simulator answers");
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.unwrap_or(Value::Null)
    }
}

pub fn start_broker(env: &[(String, String)]) -> Running {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    start("broker", &[], &env)
}

/// Sends a request and reads its status and JSON body (panicking on a non-JSON body:
/// every answer of the broker is JSON).
pub async fn send(request: RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.expect("the broker answers");
    let status = response.status();
    let text = response.text().await.expect("a body");
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("the {status} answer is not JSON ({e}): {text:?}"));
    (status, body)
}

pub fn instance_path(instance: &str) -> String {
    format!("/v2/service_instances/{instance}")
}

pub fn binding_path(instance: &str, binding: &str) -> String {
    format!("/v2/service_instances/{instance}/service_bindings/{binding}")
}

/// A provision body as the Cloud Controller sends it (reference/cf-platform.md 5.3).
pub fn provision_body(space: &str) -> Value {
    json!({
        "service_id": SERVICE_ID,
        "plan_id": PLAN_ID,
        "organization_guid": "org-1",
        "space_guid": space,
        "context": {
            "platform": "cloudfoundry",
            "organization_guid": "org-1",
            "space_guid": space,
            "organization_name": "demo-org",
            "space_name": "demo-space",
            "instance_name": "my-prom",
            "organization_annotations": {},
            "space_annotations": {},
            "instance_annotations": {}
        }
    })
}

/// A bind body as the Cloud Controller sends it (reference/cf-platform.md 5.4).
pub fn bind_body(app: &str, parameters: Value) -> Value {
    let mut body = json!({
        "service_id": SERVICE_ID,
        "plan_id": PLAN_ID,
        "app_guid": app,
        "bind_resource": {"app_guid": app, "space_guid": "space-1", "app_annotations": {}},
        "context": {
            "platform": "cloudfoundry",
            "organization_guid": "org-1",
            "space_guid": "space-1",
            "organization_name": "demo-org",
            "space_name": "demo-space"
        }
    });
    if !parameters.is_null() {
        body["parameters"] = parameters;
    }
    body
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    h.finish()
}

/// A GUID-shaped string from two numbers.
pub fn uuid_like(a: u64, b: u64) -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}
