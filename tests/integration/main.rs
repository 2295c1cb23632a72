//! The workspace's integration tests: one binary, so the build is shared. Every test
//! starts the real processes it needs (the CF simulator, the services, Prometheus, nginx)
//! on free ports; `make test` builds the binaries first and starts the shared servers
//! (moto, a throwaway PostgreSQL cluster) once for the whole run.

mod alerts;
mod bench;
mod broker;
mod broker_db;
mod cf_budget;
mod cf_client;
mod demo;
mod e2e;
mod gateway;
mod gateway_pool;
mod harness;
mod import;
mod manifests;
mod operator_kit;
mod prometheus;
mod proxy;
mod sd_sync;
mod store_s3;
mod tls;
mod updater;
mod updater_credentials;
mod updater_lease;
