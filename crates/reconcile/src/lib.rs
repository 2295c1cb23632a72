//! The reconcile planner: a pure function from what should be in the bucket to what is,
//! giving the actions that make them agree (STYLE.md: read -> plan -> apply).
//!
//! Desired state is the bindings (the source of truth for *which* apps are monitored)
//! joined with what the Cloud Controller says about those apps now. Actual state is the
//! bucket listing with ETags. The planner never does I/O; it is the one place that
//! decides, and it refuses to plan harm from ignorance:
//!
//! - A failed Cloud Controller read plans no deletion and no move; apps it did read still
//!   get their writes. A per-app failure skips only that app.
//! - A failed listing plans writes only (unconditionally, as their need cannot be known).
//! - Deletions and deactivations beyond a share of all targets are held back
//!   ([`Limits`]) unless the operator allows them; so is every deletion while the database
//!   holds no binding at all (a new or wrong database must not empty the bucket).
//!
//! A full pass also reconciles the scrape credentials documents
//! (`credentials/<app_guid>.json`, [`gds_store::scrape_credentials`]), which depend on the
//! bindings alone: the document each bound app with a token binding should have is
//! written when missing or different, and a document no app should have is removed. The
//! broker's ordering holds within a pass: an app's document is written before its target
//! file, and removed only after its target files (in the same app's actions, which apply
//! in order and stop at the first failure). Removals of documents follow the target
//! removals' rules: none from an incomplete read, and all held back whenever the valve
//! holds target deletions back (so also while the database holds no binding). The fast
//! path ([`Scope::Apps`]) leaves `credentials/` alone.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use gds_cf::AppsSnapshot;
use gds_store::{CredentialsDocument, ETag, TargetState};
use gds_targets::{AppGuid, AppState, BindingParams, ModelConfig, build_target_file};

/// What should be: the bound apps and the Cloud Controller's view of them.
#[derive(Debug, Clone)]
pub struct Desired {
    /// Every app with at least one live binding, with the parameters of its most recently
    /// created binding (DESIGN.md section 3a).
    pub bound: BTreeMap<AppGuid, BindingParams>,
    /// The Cloud Controller's answer for those apps; `None` when the read failed.
    pub cc: Option<AppsSnapshot>,
    /// The scrape credentials document of each bound app that should have one (at least
    /// one of its bindings uses a token: [`CredentialsDocument::for_bindings`]); a bound
    /// app missing here should have none.
    pub credentials: BTreeMap<AppGuid, CredentialsDocument>,
}

/// What is: the bucket listing of each state; `None` when that listing failed.
#[derive(Debug, Clone, Default)]
pub struct Actual {
    pub active: Option<BTreeMap<AppGuid, ETag>>,
    pub inactive: Option<BTreeMap<AppGuid, ETag>>,
    /// The listing of `credentials/` (a full pass only; the fast path does not read it).
    pub credentials: Option<BTreeMap<AppGuid, ETag>>,
}

impl Actual {
    fn listing(&self, state: TargetState) -> Option<&BTreeMap<AppGuid, ETag>> {
        match state {
            TargetState::Active => self.active.as_ref(),
            TargetState::Inactive => self.inactive.as_ref(),
        }
    }

    fn etag(&self, state: TargetState, app: &AppGuid) -> Option<&ETag> {
        self.listing(state).and_then(|l| l.get(app))
    }

    fn complete(&self) -> bool {
        self.active.is_some() && self.inactive.is_some()
    }

    fn total(&self) -> usize {
        self.active.as_ref().map_or(0, BTreeMap::len)
            + self.inactive.as_ref().map_or(0, BTreeMap::len)
    }
}

/// Which apps a pass looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// A full reconcile: every bound app and every file in the bucket.
    All,
    /// The fast path: only these apps (e.g. the ones recent audit events touched).
    Apps(BTreeSet<AppGuid>),
}

impl Scope {
    fn includes(&self, app: &AppGuid) -> bool {
        match self {
            Scope::All => true,
            Scope::Apps(apps) => apps.contains(app),
        }
    }
}

/// The bounded-deletion safety valve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Destructive actions beyond this share of all listed targets are held back...
    pub max_share: f64,
    /// ...when there are also more than this many of them.
    pub max_count: usize,
    /// The operator's override.
    pub allow_mass_deletion: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_share: 0.5,
            max_count: 10,
            allow_mass_deletion: false,
        }
    }
}

/// Why an action is planned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A bound app has no file yet (or the listing failed, so we cannot tell).
    Missing,
    /// The app changed: scaled, renamed, re-routed, new parameters.
    Changed,
    /// The app was started: its file goes back to `active/`.
    Started,
    /// The app was stopped: its file goes to `inactive/`.
    Stopped,
    /// The Cloud Controller no longer knows the app.
    AppDeleted,
    /// No binding refers to the app any more.
    Unbound,
    /// A stale copy in the other state.
    Duplicate,
    /// The app is bound, but none of its bindings uses a token: it has no credentials
    /// document.
    NoToken,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reason::Missing => "missing",
            Reason::Changed => "changed",
            Reason::Started => "app started",
            Reason::Stopped => "app stopped",
            Reason::AppDeleted => "app deleted",
            Reason::Unbound => "not bound",
            Reason::Duplicate => "stale copy",
            Reason::NoToken => "no token binding",
        })
    }
}

/// One change to the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write (create or replace) the app's file in `state`.
    Write {
        app: AppGuid,
        name: String,
        state: TargetState,
        body: Vec<u8>,
        reason: Reason,
    },
    /// Write the app's file in `to`, then remove it from `from` (in that order, so the
    /// app is never without a file if the second step fails).
    Move {
        app: AppGuid,
        name: String,
        from: TargetState,
        to: TargetState,
        body: Vec<u8>,
        reason: Reason,
    },
    /// Remove the app's file from `state`.
    Remove {
        app: AppGuid,
        state: TargetState,
        reason: Reason,
    },
    /// Write (create or replace) the app's scrape credentials document; planned before
    /// any write of the app's target file.
    WriteCredentials {
        app: AppGuid,
        body: Vec<u8>,
        reason: Reason,
    },
    /// Remove the app's scrape credentials document; planned after any removal of the
    /// app's target files.
    RemoveCredentials { app: AppGuid, reason: Reason },
}

impl Action {
    pub fn app(&self) -> &AppGuid {
        match self {
            Action::Write { app, .. }
            | Action::Move { app, .. }
            | Action::Remove { app, .. }
            | Action::WriteCredentials { app, .. }
            | Action::RemoveCredentials { app, .. } => app,
        }
    }

    /// `write`, `activate`, `deactivate`, `remove`, `write_credentials` or
    /// `remove_credentials`: the `kind` label of the actions metric.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Write { .. } => "write",
            Action::Move {
                to: TargetState::Active,
                ..
            } => "activate",
            Action::Move { .. } => "deactivate",
            Action::Remove { .. } => "remove",
            Action::WriteCredentials { .. } => "write_credentials",
            Action::RemoveCredentials { .. } => "remove_credentials",
        }
    }

    /// Whether the action removes something from the bucket (what incomplete reads and
    /// the valve hold back).
    fn is_removal(&self) -> bool {
        self.is_destructive() || matches!(self, Action::RemoveCredentials { .. })
    }

    /// Whether the action takes a target away from Prometheus (what the valve counts).
    pub fn is_destructive(&self) -> bool {
        matches!(
            self,
            Action::Remove { .. }
                | Action::Move {
                    to: TargetState::Inactive,
                    ..
                }
        )
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Write {
                app,
                name,
                state,
                reason,
                ..
            } => write!(f, "write      {state}/{app}.json  ({name}: {reason})"),
            Action::Move {
                app,
                name,
                from,
                to,
                reason,
                ..
            } => write!(
                f,
                "{:<10} {from}/{app}.json -> {to}/{app}.json  ({name}: {reason})",
                self.kind()
            ),
            Action::Remove { app, state, reason } => {
                write!(f, "remove     {state}/{app}.json  ({reason})")
            }
            Action::WriteCredentials { app, reason, .. } => {
                write!(f, "write      credentials/{app}.json  ({reason})")
            }
            Action::RemoveCredentials { app, reason } => {
                write!(f, "remove     credentials/{app}.json  ({reason})")
            }
        }
    }
}

/// The outcome of planning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// To apply, in this order.
    pub actions: Vec<Action>,
    /// Destructive actions held back by the safety valve.
    pub held_back: Vec<Action>,
    /// Apps left alone this pass, and why.
    pub skipped: Vec<(AppGuid, String)>,
    /// Bound apps the Cloud Controller no longer knows: their bindings are orphaned.
    pub orphaned: Vec<AppGuid>,
    /// False when a read failed: the pass must report failure even if its actions succeed.
    pub complete: bool,
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "plan: {} action(s), {} held back, {} skipped, {} orphaned{}",
            self.actions.len(),
            self.held_back.len(),
            self.skipped.len(),
            self.orphaned.len(),
            if self.complete {
                ""
            } else {
                " (incomplete reads: nothing deleted)"
            }
        )?;
        for a in &self.actions {
            writeln!(f, "  {a}")?;
        }
        for a in &self.held_back {
            writeln!(f, "  held back: {a}")?;
        }
        for (app, why) in &self.skipped {
            writeln!(f, "  skipped    {app}  ({why})")?;
        }
        for app in &self.orphaned {
            writeln!(f, "  orphaned   {app}")?;
        }
        Ok(())
    }
}

/// Plans the actions that make the bucket match `desired`. Pure and deterministic.
pub fn plan(
    desired: &Desired,
    actual: &Actual,
    model: &ModelConfig,
    scope: &Scope,
    limits: Limits,
) -> Plan {
    // Only a full pass looks at `credentials/`, so only its listing can be missing.
    let with_credentials = scope == &Scope::All;
    let mut plan = Plan {
        complete: desired.cc.is_some()
            && actual.complete()
            && (!with_credentials || actual.credentials.is_some()),
        ..Plan::default()
    };
    let listed_credentials = actual.credentials.as_ref().filter(|_| with_credentials);
    let listed: BTreeSet<&AppGuid> = [&actual.active, &actual.inactive]
        .into_iter()
        .flatten()
        .chain(listed_credentials)
        .flat_map(BTreeMap::keys)
        .collect();

    // Bound apps: write, move, or (if deleted) remove.
    for (app, params) in desired.bound.iter().filter(|(a, _)| scope.includes(a)) {
        // First the app's credentials document, which needs the bindings only: it is in
        // place before any target file of the app is written.
        if with_credentials {
            plan.actions.extend(credentials_action(
                app,
                desired.credentials.get(app),
                listed_credentials,
            ));
        }
        let Some(cc) = &desired.cc else {
            plan.skipped
                .push((app.clone(), "Cloud Controller read failed".into()));
            continue;
        };
        if let Some(why) = cc.failed.get(app) {
            plan.skipped.push((app.clone(), why.clone()));
            continue;
        }
        if cc.missing.contains(app) {
            plan.orphaned.push(app.clone());
            for state in TargetState::ALL {
                if actual.etag(state, app).is_some() {
                    plan.actions.push(Action::Remove {
                        app: app.clone(),
                        state,
                        reason: Reason::AppDeleted,
                    });
                }
            }
            continue;
        }
        let Some(info) = cc.apps.get(app) else {
            plan.skipped
                .push((app.clone(), "not in the Cloud Controller's answer".into()));
            continue;
        };
        let (to, from) = match info.state {
            AppState::Started => (TargetState::Active, TargetState::Inactive),
            AppState::Stopped => (TargetState::Inactive, TargetState::Active),
        };
        let body = build_target_file(info, model, params).to_bytes();
        let in_to = actual.etag(to, app);
        let in_from = actual.etag(from, app);
        let name = info.name.clone();
        match (in_to, in_from) {
            (Some(etag), stale) => {
                if *etag != ETag::of(&body) {
                    plan.actions.push(Action::Write {
                        app: app.clone(),
                        name,
                        state: to,
                        body,
                        reason: Reason::Changed,
                    });
                }
                if stale.is_some() {
                    plan.actions.push(Action::Remove {
                        app: app.clone(),
                        state: from,
                        reason: Reason::Duplicate,
                    });
                }
            }
            (None, Some(_)) => plan.actions.push(Action::Move {
                app: app.clone(),
                name,
                from,
                to,
                body,
                reason: if to == TargetState::Active {
                    Reason::Started
                } else {
                    Reason::Stopped
                },
            }),
            (None, None) => plan.actions.push(Action::Write {
                app: app.clone(),
                name,
                state: to,
                body,
                reason: Reason::Missing,
            }),
        }
    }

    // Files of apps that are not bound: leftovers of an unbind that failed half-way, or of
    // the original broker, which never removed anything.
    for app in listed
        .into_iter()
        .filter(|a| scope.includes(a) && !desired.bound.contains_key(*a))
    {
        for state in TargetState::ALL {
            if actual.etag(state, app).is_some() {
                plan.actions.push(Action::Remove {
                    app: app.clone(),
                    state,
                    reason: Reason::Unbound,
                });
            }
        }
        // After the target files: a target never outlives its credentials.
        if listed_credentials.is_some_and(|l| l.contains_key(app)) {
            plan.actions.push(Action::RemoveCredentials {
                app: app.clone(),
                reason: Reason::Unbound,
            });
        }
    }

    // Never harm on bad reads: with an incomplete picture, nothing leaves the bucket. A
    // move still writes its destination, but keeps its source.
    if !plan.complete {
        plan.actions = std::mem::take(&mut plan.actions)
            .into_iter()
            .filter_map(|a| match a {
                Action::Remove { .. } | Action::RemoveCredentials { .. } => None,
                Action::Move {
                    app,
                    name,
                    to,
                    body,
                    reason,
                    ..
                } => Some(Action::Write {
                    app,
                    name,
                    state: to,
                    body,
                    reason,
                }),
                write => Some(write),
            })
            .collect();
        plan.orphaned.clear();
    }

    // An empty bindings table in front of a bucket with files is a new database (a
    // cut-over before `updater --import-bindings`) or a wrong `DATABASE_URL`, never a reason
    // to empty the bucket: hold every deletion back, however few, unless allowed. The
    // valve counts what takes targets away from Prometheus; when it holds those back, it
    // holds back the removals of credentials documents too (one may follow a held-back
    // removal of its app's target file).
    let no_bindings = desired.bound.is_empty();
    let destructive = plan.actions.iter().filter(|a| a.is_destructive()).count();
    let too_many = no_bindings
        || (destructive > limits.max_count
            && destructive as f64 > limits.max_share * actual.total() as f64);
    if too_many && !limits.allow_mass_deletion {
        let (held, kept): (Vec<_>, Vec<_>) = plan.actions.drain(..).partition(Action::is_removal);
        plan.held_back = held;
        plan.actions = kept;
    }
    plan
}

/// What brings the credentials document of the bound `app` in line with `wanted` (its
/// bindings' document, `None` when none of them uses a token), given the listing of
/// `credentials/` (`None` when it failed: then a wanted document is written
/// unconditionally, as its need cannot be known, and nothing is removed).
fn credentials_action(
    app: &AppGuid,
    wanted: Option<&CredentialsDocument>,
    listed: Option<&BTreeMap<AppGuid, ETag>>,
) -> Option<Action> {
    let present = listed.map(|l| l.get(app));
    match (wanted, present) {
        (Some(doc), present) => {
            let body = doc.to_bytes();
            let reason = match present {
                Some(Some(etag)) if *etag == ETag::of(&body) => return None,
                Some(Some(_)) => Reason::Changed,
                _ => Reason::Missing,
            };
            Some(Action::WriteCredentials {
                app: app.clone(),
                body,
                reason,
            })
        }
        (None, Some(Some(_))) => Some(Action::RemoveCredentials {
            app: app.clone(),
            reason: Reason::NoToken,
        }),
        (None, _) => None,
    }
}

#[cfg(test)]
mod tests;
