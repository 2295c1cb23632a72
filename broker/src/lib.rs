//! The gds-prometheus service broker: an Open Service Broker API (2.13–2.17) server that
//! records service instances and bindings in SQL and writes each bound app's Prometheus
//! target file (DESIGN.md sections 2 and 3).
//!
//! - [`osb`]: the API contract without HTTP — request bodies, the catalogue of errors and
//!   the one (operation, error) → status mapping.
//! - [`operations`]: what each OSB operation does ([`Broker`]).
//! - [`routes`], [`middleware`], [`startup`]: the actix-web server around it.
//! - [`config`]: settings from the environment and `VCAP_SERVICES`.

pub mod config;
pub mod metrics;
pub mod middleware;
pub mod operations;
pub mod osb;
pub mod routes;
pub mod startup;

pub use config::BrokerConfig;
pub use operations::Broker;
pub use startup::Application;
