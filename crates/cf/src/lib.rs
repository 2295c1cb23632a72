//! A Cloud Controller API v3 client for target discovery, with its UAA token handling.
//!
//! What it guarantees callers (the broker on bind, the updater on every pass):
//! - A look-up either returns everything it was asked for or an error: never a partial
//!   answer that could be mistaken for "these apps are gone" (see [`AppsSnapshot`]).
//! - The number of requests does not grow with the number of apps except by page count:
//!   apps, web processes and routes are fetched in batches (`per_page` up to 5000), by GUID
//!   filter or by listing everything visible, whichever [`Strategy`] counts as cheaper.
//! - One UAA token is shared and cached until shortly before it expires; a
//!   `401 CF-InvalidAuthToken` fetches a new one and retries once.
//! - Inside the platform's rate limit ([`budget`]): background work (full passes, the
//!   fast path) is paced to a share of the limit read from `GET /v3/info` and the
//!   `X-RateLimit-*` headers, and slows first as Remaining falls; a bind's look-up never
//!   waits on it. Requests are counted by [`Purpose`] ([`RequestStats`]).
//! - `429` is waited out (`Retry-After`, else `X-RateLimit-Reset`, else back-off), as are
//!   `502`/`503`/`504` and transport errors, a bounded number of times, and, for a caller
//!   with a deadline ([`CfClient::app_info_by`]), never past it.
//!
//! Besides apps, it reads service offerings, plans, instances and app credential bindings
//! (every page, or an error), for the updater's one-off `--import-bindings`
//! ([`CfClient::service_instances_of_plan`], [`CfClient::app_bindings_of_instances`]).

pub mod budget;
mod client;
mod config;
mod error;
mod token;
mod v3;

pub use budget::{Budget, BudgetSnapshot, Purpose};
pub use client::services::{
    CredentialBinding, LastOperation, ServiceInstance, ServiceOffering, ServicePlan,
};
pub use client::{AppsSnapshot, CfClient, RequestStats, Strategy, outcome_of};
pub use config::{CfConfig, SETTINGS, UaaCredentials};
pub use error::CfError;
pub use v3::{AuditEvent, EventTarget};
