//! `updater --import-bindings`: the cut-over from another broker (alphagov's
//! cf_app_discovery) to this one, without re-binding any app.
//!
//! The replaced broker's bindings live only in the Cloud Controller; this broker's
//! database starts empty. After `cf update-service-broker` points the platform at this
//! broker, the import reads from the Cloud Controller every service instance of our plan
//! (the offering whose `broker_catalog.id` is `SERVICE_ID`, named `SERVICE_NAME`, and its
//! plan whose `broker_catalog.id` is `PLAN_ID`) and every app credential binding of those
//! instances, and records the missing ones. The Cloud Controller sends its broker the
//! instance's GUID as `instance_id` and the binding's GUID as `binding_id`, so those are
//! the ids recorded: a later unbind or deprovision of an imported binding or instance
//! finds it. Binding parameters are empty (the old broker had none). Files are not
//! touched here: the updater's next pass adopts the existing target files (the bindings
//! now account for them) and rewrites them in this broker's format.
//!
//! Guarantees:
//! - **All reads before any write.** Every Cloud Controller read (offering, plan, every
//!   page of instances and bindings) must succeed before the database is touched; a failed
//!   read aborts the import with the failing request named, and nothing is recorded.
//! - **Idempotent, never overwriting.** What is already recorded (an earlier import, or a
//!   bind through this broker since the cut-over) is left exactly as it is, also when it
//!   differs; a second run records nothing.
//! - **Each write is a fact.** Instances are recorded first (bindings refer to them), then
//!   each binding under its app's lock ([`gds_db::Db::lock_app`], the transaction the
//!   broker and the updater use), so an import can run next to brokers and updaters. Every
//!   row recorded is true on its own; should the database fail half-way, the rows written
//!   stay (they are correct) and running the import again records the rest.
//! - **Only what the old broker completed.** Instances and bindings whose creation failed
//!   or is still in progress are skipped (the platform never got a success from the old
//!   broker for them, and orphan mitigation will unbind them), as are service keys.

use std::collections::BTreeMap;
use std::fmt;

use gds_cf::{CfClient, CfError, CredentialBinding, ServiceInstance, ServiceOffering, ServicePlan};
use gds_db::{Binding, Db, DbError, Insert, NewBinding, NewInstance};
use gds_engine::CatalogIds;
use gds_targets::{AppGuid, BindingParams};
use serde_json::json;

/// Why an import did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// A Cloud Controller read failed: nothing was recorded.
    #[error("{what}: {source}")]
    Read {
        what: String,
        #[source]
        source: CfError,
    },
    /// The Cloud Controller does not show our offering or plan as configured.
    #[error("{0}")]
    Catalog(String),
    /// The database failed.
    #[error("{what}: {source}")]
    Database {
        what: String,
        #[source]
        source: DbError,
    },
}

impl ImportError {
    /// Whether the import failed before writing anything (every read comes first).
    pub fn recorded_nothing(&self) -> bool {
        !matches!(self, ImportError::Database { .. })
    }
}

fn read(what: impl Into<String>) -> impl FnOnce(CfError) -> ImportError {
    let what = what.into();
    move |source| ImportError::Read { what, source }
}

fn database(what: impl Into<String>) -> impl FnOnce(DbError) -> ImportError {
    let what = what.into();
    move |source| ImportError::Database { what, source }
}

/// What the Cloud Controller holds for our plan: complete, or an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inventory {
    pub offering: ServiceOffering,
    pub plan: ServicePlan,
    /// Instances to import, oldest first.
    pub instances: Vec<ServiceInstance>,
    /// App bindings of those instances to import, oldest first, with their app.
    pub bindings: Vec<(CredentialBinding, AppGuid)>,
    /// What the import leaves out, and why (one line each).
    pub skipped: Vec<String>,
}

/// Reads the offering, the plan, their instances and the app bindings of those. Makes
/// no change anywhere.
pub async fn read_inventory(cf: &CfClient, ids: &CatalogIds) -> Result<Inventory, ImportError> {
    let by_id = cf
        .service_offerings(Some(&ids.service_id), None)
        .await
        .map_err(read(format!(
            "listing service offerings with broker_catalog.id {}",
            ids.service_id
        )))?;
    let offering = match choose_offering(by_id, ids)? {
        Some(offering) => offering,
        None => {
            let by_name = cf
                .service_offerings(None, Some(&ids.service_name))
                .await
                .map_err(read(format!(
                    "listing service offerings named {}",
                    ids.service_name
                )))?;
            return Err(ImportError::Catalog(no_offering(ids, &by_name)));
        }
    };
    let plans = cf
        .service_plans(&offering.guid, &ids.plan_id)
        .await
        .map_err(read(format!(
            "listing the plans of service offering {}",
            offering.guid
        )))?;
    let plan = match <[ServicePlan; 1]>::try_from(plans) {
        Ok([plan]) => plan,
        Err(plans) if plans.is_empty() => {
            return Err(ImportError::Catalog(format!(
                "service offering {} ({}) has no plan with broker_catalog.id {} (PLAN_ID) \
                 visible to this identity: PLAN_ID must be the replaced broker's plan id",
                offering.name, offering.guid, ids.plan_id
            )));
        }
        Err(plans) => {
            return Err(ImportError::Catalog(format!(
                "service offering {} has {} plans with broker_catalog.id {}",
                offering.guid,
                plans.len(),
                ids.plan_id
            )));
        }
    };
    let instances = cf
        .service_instances_of_plan(&plan.guid)
        .await
        .map_err(read(format!(
            "listing the service instances of plan {}",
            plan.guid
        )))?;
    let (instances, mut skipped) = select_instances(instances);
    let guids: Vec<String> = instances.iter().map(|i| i.guid.clone()).collect();
    let bindings = cf
        .app_bindings_of_instances(&guids)
        .await
        .map_err(read(format!(
            "listing the app bindings of {} service instance(s)",
            guids.len()
        )))?;
    let (bindings, skipped_bindings) = select_bindings(&instances, bindings);
    skipped.extend(skipped_bindings);
    Ok(Inventory {
        offering,
        plan,
        instances,
        bindings,
        skipped,
    })
}

/// Among the offerings with our `broker_catalog.id`, the one named `SERVICE_NAME`;
/// `None` when there is no offering with that id at all.
fn choose_offering(
    by_id: Vec<ServiceOffering>,
    ids: &CatalogIds,
) -> Result<Option<ServiceOffering>, ImportError> {
    if by_id.is_empty() {
        return Ok(None);
    }
    let (named, other): (Vec<_>, Vec<_>) = by_id
        .into_iter()
        .partition(|o| o.name.eq_ignore_ascii_case(&ids.service_name));
    match <[ServiceOffering; 1]>::try_from(named) {
        Ok([offering]) => Ok(Some(offering)),
        Err(named) if named.is_empty() => Err(ImportError::Catalog(format!(
            "the service offering with broker_catalog.id {} (SERVICE_ID) is named {}, not {} \
             (SERVICE_NAME)",
            ids.service_id,
            other
                .iter()
                .map(|o| format!("{:?}", o.name))
                .collect::<Vec<_>>()
                .join(" and "),
            ids.service_name
        ))),
        Err(named) => Err(ImportError::Catalog(format!(
            "{} service offerings named {} have broker_catalog.id {} (brokers {}): the import \
             cannot tell which one is this broker's",
            named.len(),
            ids.service_name,
            ids.service_id,
            named
                .iter()
                .map(|o| o.broker_guid.as_deref().unwrap_or("unknown"))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn no_offering(ids: &CatalogIds, by_name: &[ServiceOffering]) -> String {
    let mut message = format!(
        "no service offering with broker_catalog.id {} (SERVICE_ID) is visible to this identity",
        ids.service_id
    );
    if by_name.is_empty() {
        message.push_str(&format!(
            ", nor one named {} (SERVICE_NAME): is the broker registered (cf \
             service-brokers) and may this identity see its plans?",
            ids.service_name
        ));
    } else {
        let found: Vec<String> = by_name
            .iter()
            .map(|o| format!("{} has broker_catalog.id {}", o.name, o.broker_catalog_id))
            .collect();
        message.push_str(&format!(
            "; {}: SERVICE_ID and PLAN_ID must be the replaced broker's ids",
            found.join(", ")
        ));
    }
    message
}

fn describe_instance(i: &ServiceInstance) -> String {
    format!(
        "service instance {} ({:?}, space {}, org {})",
        i.guid, i.name, i.space_guid, i.organization_guid
    )
}

fn describe_binding(b: &CredentialBinding) -> String {
    format!(
        "binding {} (app {}, service instance {})",
        b.guid,
        b.app_guid.as_deref().unwrap_or("none"),
        b.service_instance_guid
    )
}

/// Instances whose creation succeeded (or has no record of an operation).
fn select_instances(all: Vec<ServiceInstance>) -> (Vec<ServiceInstance>, Vec<String>) {
    let mut kept = Vec::new();
    let mut skipped = Vec::new();
    for instance in all {
        match &instance.last_operation {
            Some(op) if op.is_unfinished_create() => skipped.push(format!(
                "{}: its creation has not succeeded (create {})",
                describe_instance(&instance),
                op.state
            )),
            _ => kept.push(instance),
        }
    }
    (kept, skipped)
}

/// App bindings of kept instances whose creation succeeded, with their app's GUID.
fn select_bindings(
    instances: &[ServiceInstance],
    all: Vec<CredentialBinding>,
) -> (Vec<(CredentialBinding, AppGuid)>, Vec<String>) {
    let mut kept = Vec::new();
    let mut skipped = Vec::new();
    for binding in all {
        let reason = if !instances
            .iter()
            .any(|i| i.guid == binding.service_instance_guid)
        {
            Some("its service instance is not one of ours".to_owned())
        } else if let Some(op) = binding
            .last_operation
            .as_ref()
            .filter(|op| op.is_unfinished_create())
        {
            Some(format!(
                "its creation has not succeeded (create {})",
                op.state
            ))
        } else {
            match binding.app_guid.as_deref().map(AppGuid::parse) {
                None => Some("it binds no app (a service key)".to_owned()),
                Some(Err(e)) => Some(format!("its app GUID is invalid: {e}")),
                Some(Ok(app)) => {
                    kept.push((binding, app));
                    continue;
                }
            }
        };
        if let Some(reason) = reason {
            skipped.push(format!("{}: {reason}", describe_binding(&binding)));
        }
    }
    (kept, skipped)
}

/// What happens, or would happen, to one instance or binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Not recorded yet: imported.
    Import,
    /// Recorded already, the same.
    Recorded,
    /// Recorded already under this id with other attributes: left as it is.
    RecordedDifferently,
}

impl Fate {
    fn verb(self, dry_run: bool) -> &'static str {
        match (self, dry_run) {
            (Fate::Import, true) => "would import",
            (Fate::Import, false) => "imported",
            (Fate::Recorded, _) => "already recorded",
            (Fate::RecordedDifferently, _) => "recorded differently (left as it is)",
        }
    }
}

/// The outcome of an import, or the plan of a dry run; `Display` lists every instance and
/// binding with its fate, the skipped ones, and a summary line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportReport {
    pub dry_run: bool,
    pub instances: Vec<(ServiceInstance, Fate)>,
    pub bindings: Vec<(CredentialBinding, Fate)>,
    pub skipped: Vec<String>,
}

impl ImportReport {
    fn count<T>(items: &[(T, Fate)], fate: Fate) -> usize {
        items.iter().filter(|(_, f)| *f == fate).count()
    }

    pub fn imported_instances(&self) -> usize {
        Self::count(&self.instances, Fate::Import)
    }

    pub fn imported_bindings(&self) -> usize {
        Self::count(&self.bindings, Fate::Import)
    }

    /// One line: what was (or would be) imported, and what was there already.
    pub fn summary(&self) -> String {
        format!(
            "{} {} of {} service instance(s) and {} of {} app binding(s); already recorded: {} \
             instance(s), {} binding(s); recorded differently (left as they are): {} instance(s), \
             {} binding(s); skipped: {}",
            if self.dry_run {
                "dry run: would import"
            } else {
                "imported"
            },
            self.imported_instances(),
            self.instances.len(),
            self.imported_bindings(),
            self.bindings.len(),
            Self::count(&self.instances, Fate::Recorded),
            Self::count(&self.bindings, Fate::Recorded),
            Self::count(&self.instances, Fate::RecordedDifferently),
            Self::count(&self.bindings, Fate::RecordedDifferently),
            self.skipped.len(),
        )
    }
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (instance, fate) in &self.instances {
            writeln!(
                f,
                "{}: {}",
                describe_instance(instance),
                fate.verb(self.dry_run)
            )?;
        }
        for (binding, fate) in &self.bindings {
            writeln!(
                f,
                "{}: {}",
                describe_binding(binding),
                fate.verb(self.dry_run)
            )?;
        }
        for skipped in &self.skipped {
            writeln!(f, "skipped {skipped}")?;
        }
        writeln!(f, "{}", self.summary())
    }
}

fn new_instance(ids: &CatalogIds, i: &ServiceInstance) -> NewInstance {
    NewInstance {
        instance_id: i.guid.clone(),
        service_id: ids.service_id.clone(),
        plan_id: ids.plan_id.clone(),
        organization_guid: i.organization_guid.clone(),
        space_guid: i.space_guid.clone(),
        parameters: "{}".into(),
        // What the platform's provision request would have said (no names: the import
        // reads none).
        context: json!({
            "platform": "cloudfoundry",
            "organization_guid": i.organization_guid,
            "space_guid": i.space_guid,
            "instance_name": i.name,
        })
        .to_string(),
    }
}

fn new_binding(b: &CredentialBinding) -> NewBinding {
    let empty = BindingParams::from_json(None).expect("no parameters are valid parameters");
    NewBinding {
        binding_id: b.guid.clone(),
        instance_id: b.service_instance_guid.clone(),
        parameters: empty.to_json().to_string(),
    }
}

fn binding_fate(existing: Option<&Binding>, app: &AppGuid, new: &NewBinding) -> Fate {
    match existing {
        None => Fate::Import,
        Some(b) if b.app_guid == *app && b.instance_id == new.instance_id => Fate::Recorded,
        Some(_) => Fate::RecordedDifferently,
    }
}

/// Records what `inventory` holds and the database does not (with `dry_run`, only says
/// what it would record). Existing rows are never changed.
pub async fn import(
    db: &Db,
    ids: &CatalogIds,
    inventory: Inventory,
    dry_run: bool,
) -> Result<ImportReport, ImportError> {
    let mut instances = Vec::new();
    for instance in inventory.instances {
        let new = new_instance(ids, &instance);
        let fate = if dry_run {
            match db
                .instance(&instance.guid)
                .await
                .map_err(database("reading a service instance"))?
            {
                None => Fate::Import,
                Some(existing) if new.is_identical_to(&existing) => Fate::Recorded,
                Some(_) => Fate::RecordedDifferently,
            }
        } else {
            match db.create_instance(&new).await.map_err(database(format!(
                "recording service instance {}",
                instance.guid
            )))? {
                Insert::Created(_) => {
                    tracing::info!(instance_id = %instance.guid, "service instance imported");
                    Fate::Import
                }
                Insert::Identical(_) => Fate::Recorded,
                Insert::Conflict(_) => Fate::RecordedDifferently,
            }
        };
        instances.push((instance, fate));
    }

    let recorded: BTreeMap<String, Binding> = db
        .all_bindings()
        .await
        .map_err(database("reading the bindings"))?
        .into_iter()
        .map(|b| (b.binding_id.clone(), b))
        .collect();
    let mut bindings = Vec::new();
    for (binding, app) in inventory.bindings {
        let new = new_binding(&binding);
        let mut fate = binding_fate(recorded.get(&binding.guid), &app, &new);
        if fate == Fate::Import && !dry_run {
            let mut tx = db
                .lock_app(&app)
                .await
                .map_err(database(format!("locking app {app}")))?;
            let inserted = tx
                .insert_binding(&new)
                .await
                .map_err(database(format!("recording binding {}", binding.guid)))?;
            tx.commit()
                .await
                .map_err(database(format!("recording binding {}", binding.guid)))?;
            fate = match inserted {
                Insert::Created(_) => {
                    tracing::info!(binding_id = %binding.guid, app_guid = %app, "binding imported");
                    Fate::Import
                }
                // Bound through the broker since the listing above.
                Insert::Identical(_) => Fate::Recorded,
                Insert::Conflict(_) => Fate::RecordedDifferently,
            };
        }
        bindings.push((binding, fate));
    }
    for (binding, fate) in &bindings {
        if *fate == Fate::RecordedDifferently {
            tracing::warn!(
                binding_id = %binding.guid,
                "a binding with this id is recorded for another app or instance: left as it is"
            );
        }
    }
    Ok(ImportReport {
        dry_run,
        instances,
        bindings,
        skipped: inventory.skipped,
    })
}

/// `updater --import-bindings [--dry-run]`: reads everything, then records what is
/// missing (or, dry, reports what it would record).
pub async fn run(
    db: &Db,
    cf: &CfClient,
    ids: &CatalogIds,
    dry_run: bool,
) -> Result<ImportReport, ImportError> {
    let inventory = read_inventory(cf, ids).await?;
    tracing::info!(
        offering = %inventory.offering.guid,
        plan = %inventory.plan.guid,
        instances = inventory.instances.len(),
        bindings = inventory.bindings.len(),
        skipped = inventory.skipped.len(),
        "read the Cloud Controller's instances and bindings of our plan"
    );
    import(db, ids, inventory, dry_run).await
}

#[cfg(test)]
mod tests;
