//! The broker binary, end to end: OSB API semantics (`api`), failures of its dependencies
//! (`failures`), the bind budget and the platform's orphan mitigation (`deadline`),
//! concurrent brokers on one database (`concurrency`) and start-up configuration (`config`);
//! the bind benchmark is `crate::bench::broker`.

pub(crate) mod support;

mod api;
mod concurrency;
mod config;
mod credentials;
mod deadline;
mod failures;
