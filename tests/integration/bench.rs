//! Every benchmark, one module per area: ignored tests named `bench_*` that print figures
//! and assert only that the work succeeded (never a time). `make bench` runs them all on
//! release binaries; docs/BENCHMARKS.md records the results and how to run each.
//!
//! The fixtures they start are the other tests' (`crate::broker::support`, `crate::e2e`,
//! `crate::sd_sync`, `crate::updater`), so a benchmark measures what the tests check.

mod broker;
mod cf;
mod e2e;
mod gateway;
mod sd_sync;
mod updater;
