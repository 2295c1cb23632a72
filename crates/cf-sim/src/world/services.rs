//! Services in the world: the service offerings and plans a registered broker's catalog
//! creates, managed service instances of those plans, and their credential bindings (app
//! bindings and service keys). The changes are in [`super::service_changes`].

use super::table::Table;

/// A service offering, as a broker's catalog entry becomes one.
#[derive(Debug, Clone)]
pub struct ServiceOffering {
    pub guid: String,
    pub name: String,
    pub description: String,
    /// The broker's id for it (`broker_catalog.id`, the OSB `service_id`).
    pub broker_catalog_id: String,
    pub broker_guid: String,
    pub broker_name: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A plan of an offering.
#[derive(Debug, Clone)]
pub struct ServicePlan {
    pub guid: String,
    pub name: String,
    pub description: String,
    /// The broker's id for it (`broker_catalog.id`, the OSB `plan_id`).
    pub broker_catalog_id: String,
    pub offering_guid: String,
    pub free: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The `last_operation` of an instance or binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastOperation {
    /// `create`, `update` or `delete`.
    pub kind: String,
    /// `in progress`, `succeeded` or `failed`.
    pub state: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A managed service instance.
#[derive(Debug, Clone)]
pub struct ServiceInstance {
    pub guid: String,
    pub name: String,
    pub plan_guid: String,
    pub space_guid: String,
    pub tags: Vec<String>,
    pub last_operation: LastOperation,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What a credential binding binds: an app, or nothing (a service key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingType {
    App,
    Key,
}

impl BindingType {
    pub fn as_str(self) -> &'static str {
        match self {
            BindingType::App => "app",
            BindingType::Key => "key",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "app" => Some(BindingType::App),
            "key" => Some(BindingType::Key),
            _ => None,
        }
    }
}

/// A service credential binding: an app binding or a service key.
#[derive(Debug, Clone)]
pub struct CredentialBinding {
    pub guid: String,
    /// Optional for app bindings (`cf bind-service --binding-name`), required for keys.
    pub name: Option<String>,
    pub binding_type: BindingType,
    /// `Some` exactly for app bindings.
    pub app_guid: Option<String>,
    pub instance_guid: String,
    pub last_operation: LastOperation,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Every service resource of the world, each table in creation order.
#[derive(Debug, Clone, Default)]
pub struct Services {
    pub offerings: Table<ServiceOffering>,
    pub plans: Table<ServicePlan>,
    pub instances: Table<ServiceInstance>,
    pub bindings: Table<CredentialBinding>,
}

impl Services {
    /// Forgets the bindings of a deleted app.
    pub fn remove_bindings_of_app(&mut self, app_guid: &str) {
        let doomed: Vec<String> = self
            .bindings
            .iter()
            .filter(|b| b.app_guid.as_deref() == Some(app_guid))
            .map(|b| b.guid.clone())
            .collect();
        for guid in doomed {
            self.bindings.remove(&guid);
        }
    }

    pub fn plan_of(&self, instance: &ServiceInstance) -> Option<&ServicePlan> {
        self.plans.get(&instance.plan_guid)
    }

    pub fn offering_of(&self, plan: &ServicePlan) -> Option<&ServiceOffering> {
        self.offerings.get(&plan.offering_guid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deleting_an_app_forgets_its_bindings_only() {
        let mut s = Services::default();
        for (n, app) in [(1, Some("a")), (2, Some("b")), (3, None)] {
            s.bindings.insert(
                n,
                format!("b{n}"),
                CredentialBinding {
                    guid: format!("b{n}"),
                    name: None,
                    binding_type: if app.is_some() {
                        BindingType::App
                    } else {
                        BindingType::Key
                    },
                    app_guid: app.map(str::to_owned),
                    instance_guid: "i".into(),
                    last_operation: LastOperation {
                        kind: "create".into(),
                        state: "succeeded".into(),
                        created_at: 0,
                        updated_at: 0,
                    },
                    created_at: 0,
                    updated_at: 0,
                },
            );
        }
        s.remove_bindings_of_app("a");
        let left: Vec<&str> = s.bindings.iter().map(|b| b.guid.as_str()).collect();
        assert_eq!(left, ["b2", "b3"]);
    }
}
