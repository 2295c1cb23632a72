//! What a pass did, or why it did not run.

use std::collections::BTreeMap;
use std::time::Duration;

use gds_db::DbError;
use gds_reconcile::Plan;
use gds_targets::AppGuid;

use crate::lease::LeaseLost;

/// Why a pass did not run, or stopped before planning.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// Another updater (or a broker's `/update-targets`) is reconciling right now.
    #[error("another updater is reconciling (the reconcile lease is held)")]
    Busy,
    /// The bindings (or the lease) could not be read: nothing can be planned safely.
    #[error("the database failed: {0}")]
    Database(#[from] DbError),
    /// The fast path could not read the audit events.
    #[error("reading audit events failed: {0}")]
    AuditEvents(#[source] gds_cf::CfError),
}

impl PassError {
    /// The `kind` label of `gds_updater_pass_failures_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            PassError::Busy => "busy",
            PassError::Database(_) => "database",
            PassError::AuditEvents(_) => "audit_events",
        }
    }
}

/// What a pass did.
#[derive(Debug)]
pub struct PassReport {
    /// `full` or `apps`.
    pub scope: &'static str,
    /// The plan that was applied (or, in a dry run, only printed).
    pub plan: Plan,
    /// Reads that failed (what the planner was told it could not see).
    pub read_failures: Vec<String>,
    /// Actions applied, by kind.
    pub applied: BTreeMap<&'static str, u64>,
    /// Apps whose actions were dropped because the broker changed their bindings while
    /// the pass ran (it wrote or removed their files itself).
    pub superseded: Vec<AppGuid>,
    /// Apps whose actions failed, with the reason.
    pub failed: Vec<(AppGuid, String)>,
    /// Set when the pass could not confirm its lease before a write (or at its end):
    /// it stopped writing there, and does not count as a success.
    pub lease_lost: Option<LeaseLost>,
    /// Apps whose actions (all or the rest) were not applied because the lease was lost.
    pub abandoned: Vec<AppGuid>,
    pub duration: Duration,
    /// Where the time went.
    pub timings: PassTimings,
}

/// Where a pass' time went, each measured from the start of the pass (the reads overlap,
/// so their times are not to be added up). Logged at debug level (`pass phases`), for
/// operators and the benchmark.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassTimings {
    /// The bindings were read from the database.
    pub bindings_read: Duration,
    /// The Cloud Controller had answered (it is asked once the bindings are known).
    pub cloud_controller_read: Duration,
    /// The listing of `active/` was complete.
    pub active_listed: Duration,
    /// The listing of `inactive/` was complete.
    pub inactive_listed: Duration,
    /// Every read was done (the latest of the four above).
    pub reads_done: Duration,
    /// Time spent planning.
    pub planning: Duration,
    /// Time spent applying the plan (and updating the orphan count).
    pub applying: Duration,
}

impl PassTimings {
    pub(super) fn log(&self, scope: &'static str) {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        tracing::debug!(
            scope,
            bindings_read_ms = ms(self.bindings_read),
            cloud_controller_read_ms = ms(self.cloud_controller_read),
            active_listed_ms = ms(self.active_listed),
            inactive_listed_ms = ms(self.inactive_listed),
            reads_done_ms = ms(self.reads_done),
            planning_ms = ms(self.planning),
            applying_ms = ms(self.applying),
            "pass phases"
        );
    }
}

impl PassReport {
    /// Complete reads and every action applied (or superseded), under the lease
    /// throughout.
    pub fn succeeded(&self) -> bool {
        self.plan.complete && self.failed.is_empty() && self.lease_lost.is_none()
    }

    /// One line for the log, the `--once` output and `/update-targets`.
    pub fn summary(&self) -> String {
        let applied: u64 = self.applied.values().sum();
        let kinds: Vec<String> = self
            .applied
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let mut line = format!(
            "{} pass {} in {} ms: {applied} action(s) applied{}",
            self.scope,
            if self.succeeded() {
                "succeeded"
            } else {
                "failed"
            },
            self.duration.as_millis(),
            if kinds.is_empty() {
                String::new()
            } else {
                format!(" ({})", kinds.join(", "))
            },
        );
        for (what, n) in [
            ("superseded by the broker", self.superseded.len()),
            ("failed", self.failed.len()),
            ("held back", self.plan.held_back.len()),
            ("skipped", self.plan.skipped.len()),
            ("orphaned", self.plan.orphaned.len()),
        ] {
            if n > 0 {
                line.push_str(&format!(", {n} {what}"));
            }
        }
        if let Some(lost) = self.lease_lost {
            line.push_str(&format!(
                "; {lost}: stopped writing, {} app(s) abandoned",
                self.abandoned.len()
            ));
        }
        if let Some((app, why)) = self.failed.first() {
            line.push_str(&format!("; first failure: {app}: {why}"));
        }
        if !self.read_failures.is_empty() {
            line.push_str(&format!(
                "; incomplete reads, nothing deleted: {}",
                self.read_failures.join("; ")
            ));
        }
        line
    }
}
