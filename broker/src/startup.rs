//! The one place that knows `HttpServer`, the middleware order and the route table.

use std::net::{SocketAddr, TcpListener};

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use gds_engine::{CfMetrics, Connections, ReconcileMetrics, Reconciler};
use gds_service::error_chain;

use crate::config::{BrokerConfig, BrokerCredentials};
use crate::metrics::BrokerMetrics;
use crate::middleware::{
    record_metrics, request_identity, require_api_version, require_basic_auth,
};
use crate::operations::Broker;
use crate::routes;

/// A broker bound to its port, ready to serve.
pub struct Application {
    server: Server,
    local_addr: SocketAddr,
}

impl Application {
    /// Connects to the database (running migrations), opens the store, builds the Cloud
    /// Controller client and binds the listener. Makes no Cloud Controller request: the
    /// broker starts (and unbinds) while the Cloud Controller is down.
    pub async fn build(config: BrokerConfig) -> anyhow::Result<Application> {
        let engine = &config.engine;
        let connections = engine.connect().await?;
        if let Err(e) = connections.store.check().await {
            // Not fatal: provisioning and the catalog work without it, and it may be back
            // before the first bind.
            tracing::warn!(error = %error_chain(&e), "the target store does not answer yet");
        }
        let metrics = BrokerMetrics::new();
        // Cloud Controller requests by purpose (binds, and the passes of
        // `POST /update-targets`) and the rate-limit budget as seen.
        let cf_metrics = CfMetrics::registered_in(&metrics.registry, "observe_broker");
        // `POST /update-targets` runs the engine's pass, under the updater's lease; its
        // metrics (`gds_updater_*`) are served on the broker's `/metrics`.
        let reconciler = engine.reconciler(
            &connections,
            ReconcileMetrics::registered_in(metrics.registry.clone()),
        );
        gds_engine::S3RequestsCollector::register(
            &metrics.registry,
            "observe_broker_s3_requests_total",
            connections.store.as_ref(),
        );
        let Connections { db, store, cf } = connections;
        let broker = Broker::new(
            db.clone(),
            store,
            cf,
            config.catalog.clone(),
            engine.model.clone(),
            metrics.clone(),
        )
        .with_operation_timeout(config.operation_timeout)
        .with_scrape_token_key(config.scrape_token_key.clone());
        let listener =
            TcpListener::bind((config.listen_host.as_str(), config.port)).with_context(|| {
                format!(
                    "listening on {}:{} (LISTEN_HOST, PORT)",
                    config.listen_host, config.port
                )
            })?;
        let local_addr = listener.local_addr().context("reading the bound address")?;
        let server = run(
            listener,
            broker,
            reconciler,
            (metrics, cf_metrics),
            config.credentials.clone(),
        )
        .context("starting the HTTP server")?;
        tracing::info!(
            %local_addr,
            database = ?db.kind(),
            service_id = %config.catalog.service_id,
            plan_id = %config.catalog.plan_id,
            operation_timeout_seconds = config.operation_timeout.as_secs(),
            "broker started"
        );
        Ok(Application { server, local_addr })
    }

    /// The address the listener is bound to (the real port when `PORT=0`).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until SIGTERM or Ctrl-C (graceful: requests in flight finish).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// The HTTP server over `listener`.
///
/// Middleware, outermost first: request identity and logging span, metrics, then on the
/// OSB routes (`/v2`) basic auth and the API version check; `/update-targets` has basic
/// auth only; `/health` and `/metrics` are open.
pub fn run(
    listener: TcpListener,
    broker: Broker,
    reconciler: Reconciler,
    (metrics, cf_metrics): (BrokerMetrics, CfMetrics),
    credentials: BrokerCredentials,
) -> std::io::Result<Server> {
    let broker = web::Data::new(broker);
    let reconciler = web::Data::new(reconciler);
    let metrics = web::Data::new(metrics);
    let cf_metrics = web::Data::new(cf_metrics);
    let credentials = web::Data::new(credentials);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(routes::json_config())
            .app_data(routes::query_config())
            .app_data(routes::path_config())
            .app_data(broker.clone())
            .app_data(reconciler.clone())
            .app_data(metrics.clone())
            .app_data(cf_metrics.clone())
            .app_data(credentials.clone())
            // `wrap` adds outside what is there: the last one runs first.
            .wrap(from_fn(record_metrics))
            .wrap(from_fn(request_identity))
            .service(resource("/health").route(web::get().to(routes::health)))
            .service(resource("/metrics").route(web::get().to(routes::metrics)))
            .service(
                resource("/update-targets")
                    .wrap(from_fn(require_basic_auth))
                    .route(web::post().to(routes::update_targets)),
            )
            .service(
                web::scope("/v2")
                    .wrap(from_fn(require_api_version))
                    .wrap(from_fn(require_basic_auth))
                    .service(resource("/catalog").route(web::get().to(routes::catalog)))
                    .service(
                        resource("/service_instances/{instance_id}")
                            .route(web::put().to(routes::provision))
                            .route(web::get().to(routes::fetch_instance))
                            .route(web::patch().to(routes::update))
                            .route(web::delete().to(routes::deprovision)),
                    )
                    .service(
                        resource("/service_instances/{instance_id}/last_operation")
                            .route(web::get().to(routes::instance_last_operation)),
                    )
                    .service(
                        resource("/service_instances/{instance_id}/service_bindings/{binding_id}")
                            .route(web::put().to(routes::bind))
                            .route(web::get().to(routes::fetch_binding))
                            .route(web::delete().to(routes::unbind)),
                    )
                    .service(
                        resource(
                            "/service_instances/{instance_id}/service_bindings/{binding_id}/last_operation",
                        )
                        .route(web::get().to(routes::binding_last_operation)),
                    )
                    .default_service(web::to(routes::not_found)),
            )
            .default_service(web::to(routes::not_found))
    })
    .listen(listener)?
    .shutdown_timeout(30)
    .run();
    Ok(server)
}

/// A resource that answers a JSON `405` for methods it does not have.
fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(routes::method_not_allowed))
}
