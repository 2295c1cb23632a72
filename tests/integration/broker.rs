//! The broker binary, end to end: OSB API semantics (`api`), failures of its dependencies
//! (`failures`), the bind budget and the platform's orphan mitigation (`deadline`),
//! concurrent brokers on one database (`concurrency`), start-up configuration (`config`)
//! and the bind benchmark (`bench`, ignored unless asked for).

pub(crate) mod support;

mod api;
mod bench;
mod concurrency;
mod config;
mod deadline;
mod failures;
