//! Service offerings, plans, instances and app credential bindings: what a broker's own
//! tooling reads to find the instances and bindings the platform holds for it (the
//! updater's `--import-bindings`, when this broker replaces another one).
//!
//! Same rules as the rest of the client: every list is read to its last page (or the call
//! fails), GUID filters are chunked, requests share the token, the permits and the
//! rate-limit handling. Shapes and parameters are those of CC API v3
//! (`GET /v3/service_offerings`, `/v3/service_plans`, `/v3/service_instances`,
//! `/v3/service_credential_bindings`).

use std::collections::{BTreeMap, BTreeSet};

use futures::stream::{self, StreamExt, TryStreamExt};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use url::Url;

use super::{CfClient, endpoint_of};
use crate::error::CfError;
use crate::v3;

/// A service offering (a broker's catalog entry, as the Cloud Controller keeps it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceOffering {
    pub guid: String,
    pub name: String,
    /// The broker's id for it: the OSB `service_id`.
    pub broker_catalog_id: String,
    /// The broker that provides it.
    pub broker_guid: Option<String>,
}

/// A plan of a service offering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePlan {
    pub guid: String,
    pub name: String,
    /// The broker's id for it: the OSB `plan_id`.
    pub broker_catalog_id: String,
    pub offering_guid: Option<String>,
}

/// The `last_operation` of a service instance or binding.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LastOperation {
    /// `create`, `update` or `delete`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `in progress`, `succeeded` or `failed`.
    pub state: String,
}

impl LastOperation {
    /// A creation that has not succeeded (failed, or still in progress): the broker may
    /// never have recorded the resource.
    pub fn is_unfinished_create(&self) -> bool {
        self.kind == "create" && self.state != "succeeded"
    }
}

/// A managed service instance with the organization of its space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInstance {
    /// The OSB `instance_id` the Cloud Controller sends its broker.
    pub guid: String,
    pub name: String,
    pub space_guid: String,
    pub organization_guid: String,
    pub plan_guid: Option<String>,
    pub last_operation: Option<LastOperation>,
    /// `YYYY-MM-DDThh:mm:ssZ`.
    pub created_at: String,
}

/// An app's credential binding to a service instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialBinding {
    /// The OSB `binding_id` the Cloud Controller sends its broker.
    pub guid: String,
    pub name: Option<String>,
    /// `None` for a service key (never asked for here, but the shape allows it).
    pub app_guid: Option<String>,
    pub service_instance_guid: String,
    pub last_operation: Option<LastOperation>,
    /// `YYYY-MM-DDThh:mm:ssZ`.
    pub created_at: String,
}

// The wire shapes (unknown fields ignored).

#[derive(Deserialize)]
#[serde(bound = "T: DeserializeOwned, I: DeserializeOwned + Default")]
struct Page<T, I> {
    pagination: v3::Pagination,
    resources: Vec<T>,
    #[serde(default)]
    included: I,
}

#[derive(Deserialize)]
struct BrokerCatalog {
    id: String,
}

#[derive(Deserialize)]
struct RawOffering {
    guid: String,
    name: String,
    broker_catalog: BrokerCatalog,
    #[serde(default)]
    relationships: OfferingRelationships,
}

#[derive(Default, Deserialize)]
struct OfferingRelationships {
    service_broker: Option<v3::Relationship>,
}

#[derive(Deserialize)]
struct RawPlan {
    guid: String,
    name: String,
    broker_catalog: BrokerCatalog,
    #[serde(default)]
    relationships: PlanRelationships,
}

#[derive(Default, Deserialize)]
struct PlanRelationships {
    service_offering: Option<v3::Relationship>,
}

#[derive(Deserialize)]
struct RawInstance {
    guid: String,
    name: String,
    created_at: String,
    #[serde(default)]
    last_operation: Option<LastOperation>,
    relationships: InstanceRelationships,
}

#[derive(Deserialize)]
struct InstanceRelationships {
    space: v3::Relationship,
    #[serde(default)]
    service_plan: Option<v3::Relationship>,
}

/// `included` of `fields[space]=guid,relationships.organization`.
#[derive(Default, Deserialize)]
struct InstancesIncluded {
    #[serde(default)]
    spaces: Vec<SpaceFields>,
}

#[derive(Deserialize)]
struct SpaceFields {
    guid: String,
    #[serde(default)]
    relationships: Option<v3::SpaceRelationships>,
}

#[derive(Deserialize)]
struct RawBinding {
    guid: String,
    #[serde(default)]
    name: Option<String>,
    created_at: String,
    #[serde(default)]
    last_operation: Option<LastOperation>,
    relationships: BindingRelationships,
}

#[derive(Deserialize)]
struct BindingRelationships {
    #[serde(default)]
    app: Option<v3::Relationship>,
    service_instance: v3::Relationship,
}

fn relation(r: Option<&v3::Relationship>) -> Option<String> {
    r.and_then(|r| r.data.as_ref()).map(|d| d.guid.clone())
}

impl CfClient {
    /// The service offerings with this `broker_catalog.id` (the OSB `service_id`), or
    /// with this name (case-insensitive) when `by_name` is set instead.
    pub async fn service_offerings(
        &self,
        broker_catalog_id: Option<&str>,
        by_name: Option<&str>,
    ) -> Result<Vec<ServiceOffering>, CfError> {
        let per_page = self.config.page_size.to_string();
        let mut query = vec![("per_page", per_page.as_str())];
        if let Some(id) = broker_catalog_id {
            query.push(("broker_catalog_ids", id));
        }
        if let Some(name) = by_name {
            query.push(("names", name));
        }
        let (offerings, _) = self
            .pages::<RawOffering, serde::de::IgnoredAny>(self.url("/v3/service_offerings", &query))
            .await?;
        Ok(offerings
            .into_iter()
            .map(|o| ServiceOffering {
                guid: o.guid,
                name: o.name,
                broker_catalog_id: o.broker_catalog.id,
                broker_guid: relation(o.relationships.service_broker.as_ref()),
            })
            .collect())
    }

    /// The plans of an offering with this `broker_catalog.id` (the OSB `plan_id`).
    pub async fn service_plans(
        &self,
        offering_guid: &str,
        broker_catalog_id: &str,
    ) -> Result<Vec<ServicePlan>, CfError> {
        let per_page = self.config.page_size.to_string();
        let url = self.url(
            "/v3/service_plans",
            &[
                ("broker_catalog_ids", broker_catalog_id),
                ("per_page", &per_page),
                ("service_offering_guids", offering_guid),
            ],
        );
        let (plans, _) = self.pages::<RawPlan, serde::de::IgnoredAny>(url).await?;
        Ok(plans
            .into_iter()
            .map(|p| ServicePlan {
                guid: p.guid,
                name: p.name,
                broker_catalog_id: p.broker_catalog.id,
                offering_guid: relation(p.relationships.service_offering.as_ref()),
            })
            .collect())
    }

    /// Every managed instance of a plan our identity can see, oldest first, each with its
    /// space's organization: `fields[space]` brings the organizations along, and spaces
    /// a Cloud Controller left out of `included` are looked up (`GET /v3/spaces?guids=`).
    pub async fn service_instances_of_plan(
        &self,
        plan_guid: &str,
    ) -> Result<Vec<ServiceInstance>, CfError> {
        let per_page = self.config.page_size.to_string();
        let url = self.url(
            "/v3/service_instances",
            &[
                ("fields[space]", "guid,relationships.organization"),
                ("per_page", &per_page),
                ("service_plan_guids", plan_guid),
                ("type", "managed"),
            ],
        );
        let (raw, included) = self.pages::<RawInstance, InstancesIncluded>(url).await?;
        let mut org_of_space: BTreeMap<String, String> = included
            .into_iter()
            .flat_map(|i| i.spaces)
            .filter_map(|s| {
                let org = s.relationships?.organization.data?.guid;
                Some((s.guid, org))
            })
            .collect();
        let endpoint = "GET /v3/service_instances";
        let mut spaces = BTreeSet::new();
        for i in &raw {
            let space =
                relation(Some(&i.relationships.space)).ok_or_else(|| CfError::InvalidResponse {
                    endpoint: endpoint.into(),
                    reason: format!("service instance {} has no space", i.guid),
                })?;
            if !org_of_space.contains_key(&space) {
                spaces.insert(space);
            }
        }
        if !spaces.is_empty() {
            org_of_space.extend(self.organizations_of_spaces(&spaces).await?);
        }
        raw.into_iter()
            .map(|i| {
                let space_guid = relation(Some(&i.relationships.space)).expect("checked above");
                let organization_guid =
                    org_of_space.get(&space_guid).cloned().ok_or_else(|| {
                        CfError::InvalidResponse {
                            endpoint: "GET /v3/spaces".into(),
                            reason: format!(
                                "the space {space_guid} of service instance {} was not found",
                                i.guid
                            ),
                        }
                    })?;
                Ok(ServiceInstance {
                    plan_guid: relation(i.relationships.service_plan.as_ref()),
                    guid: i.guid,
                    name: i.name,
                    space_guid,
                    organization_guid,
                    last_operation: i.last_operation,
                    created_at: i.created_at,
                })
            })
            .collect()
    }

    /// Every app credential binding (`type=app`: no service keys) of these instances our
    /// identity can see, oldest first. Instance GUIDs are filtered in chunks.
    pub async fn app_bindings_of_instances(
        &self,
        instance_guids: &[String],
    ) -> Result<Vec<CredentialBinding>, CfError> {
        let per_page = self.config.page_size.to_string();
        let urls: Vec<Url> = instance_guids
            .chunks(self.config.guid_chunk.max(1))
            .map(|chunk| {
                self.url(
                    "/v3/service_credential_bindings",
                    &[
                        ("per_page", &per_page),
                        ("service_instance_guids", &chunk.join(",")),
                        ("type", "app"),
                    ],
                )
            })
            .collect();
        let chunks: Vec<Vec<RawBinding>> = stream::iter(urls)
            .map(|url| async move {
                self.pages::<RawBinding, serde::de::IgnoredAny>(url)
                    .await
                    .map(|(bindings, _)| bindings)
            })
            .buffer_unordered(self.config.max_concurrency.max(1))
            .try_collect()
            .await?;
        let mut bindings: Vec<CredentialBinding> = chunks
            .into_iter()
            .flatten()
            .map(|b| CredentialBinding {
                app_guid: relation(b.relationships.app.as_ref()),
                service_instance_guid: relation(Some(&b.relationships.service_instance))
                    .unwrap_or_default(),
                guid: b.guid,
                name: b.name,
                last_operation: b.last_operation,
                created_at: b.created_at,
            })
            .collect();
        bindings.sort_by(|a, b| (&a.created_at, &a.guid).cmp(&(&b.created_at, &b.guid)));
        bindings.dedup_by(|a, b| a.guid == b.guid);
        Ok(bindings)
    }

    /// Space GUID -> organization GUID, by `GET /v3/spaces?guids=` in chunks.
    async fn organizations_of_spaces(
        &self,
        spaces: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, String>, CfError> {
        let per_page = self.config.page_size.to_string();
        let guids: Vec<&str> = spaces.iter().map(String::as_str).collect();
        let mut orgs = BTreeMap::new();
        for chunk in guids.chunks(self.config.guid_chunk.max(1)) {
            let url = self.url(
                "/v3/spaces",
                &[("guids", &chunk.join(",")), ("per_page", &per_page)],
            );
            let (found, _) = self.list::<v3::Space>(url).await?;
            for space in found {
                if let Some(org) = space.relationships.organization.data {
                    orgs.insert(space.guid, org.guid);
                }
            }
        }
        Ok(orgs)
    }

    /// Every page of a list with its own `included` shape, following `pagination.next`.
    async fn pages<T: DeserializeOwned, I: DeserializeOwned + Default>(
        &self,
        first: Url,
    ) -> Result<(Vec<T>, Vec<I>), CfError> {
        let endpoint = endpoint_of("GET", first.path());
        let mut items = Vec::new();
        let mut included = Vec::new();
        let mut next = Some(first);
        while let Some(url) = next.take() {
            let page: Page<T, I> = self.get_json(url, &endpoint).await?;
            items.extend(page.resources);
            included.push(page.included);
            if let Some(link) = page.pagination.next {
                next = Some(self.same_origin(&link.href, &endpoint)?);
            }
        }
        Ok((items, included))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The list shapes of the CC API docs (`api_resources/_service_instances.erb`,
    /// `_service_credential_bindings.erb`), trimmed, plus `fields[space]`'s `included`.
    #[test]
    fn the_documented_list_shapes_parse() {
        let instances = r#"{
          "pagination": {"total_results": 1, "total_pages": 1,
                         "first": {"href": "https://api.example.org/v3/service_instances?page=1&per_page=50"},
                         "last": {"href": "https://api.example.org/v3/service_instances?page=1&per_page=50"},
                         "next": null, "previous": null},
          "resources": [{
            "guid": "c89b3280-fe8d-4aa0-a42e-44465bb1c61c",
            "created_at": "2020-03-10T15:49:29Z", "updated_at": "2020-03-10T15:49:29Z",
            "name": "my-managed-instance", "tags": [], "type": "managed",
            "maintenance_info": {"version": "1.0.0"}, "upgrade_available": false,
            "dashboard_url": "https://service-broker.example.org/dashboard",
            "last_operation": {"type": "create", "state": "succeeded", "description": "Operation succeeded",
                               "updated_at": "2020-03-10T15:49:32Z", "created_at": "2020-03-10T15:49:29Z"},
            "relationships": {
              "service_plan": {"data": {"guid": "5358d122-638e-11ea-afca-bf6e756684ac"}},
              "space": {"data": {"guid": "5a84d315-9513-4d74-95e5-f6a5501eeef7"}}
            },
            "metadata": {"labels": {}, "annotations": {}},
            "links": {"self": {"href": "https://api.example.org/v3/service_instances/c89b3280-fe8d-4aa0-a42e-44465bb1c61c"}}
          }],
          "included": {"spaces": [{"guid": "5a84d315-9513-4d74-95e5-f6a5501eeef7",
                                   "relationships": {"organization": {"data": {"guid": "o-1"}}}}]}
        }"#;
        let page: Page<RawInstance, InstancesIncluded> = serde_json::from_str(instances).unwrap();
        assert_eq!(page.resources[0].name, "my-managed-instance");
        assert_eq!(
            relation(page.resources[0].relationships.service_plan.as_ref()).as_deref(),
            Some("5358d122-638e-11ea-afca-bf6e756684ac")
        );
        assert!(
            !page.resources[0]
                .last_operation
                .as_ref()
                .unwrap()
                .is_unfinished_create()
        );
        let space = &page.included.spaces[0];
        assert_eq!(
            space
                .relationships
                .as_ref()
                .unwrap()
                .organization
                .data
                .as_ref()
                .unwrap()
                .guid,
            "o-1"
        );

        let bindings = r#"{
          "pagination": {"total_results": 3, "total_pages": 2,
                         "next": {"href": "https://api.example.org/v3/service_credential_bindings?page=2&per_page=2"}},
          "resources": [
            {"guid": "dde5ad2a-d8f4-44dc-a56f-0452d744f1c3", "type": "app", "name": "some-binding-name",
             "created_at": "2015-11-13T17:02:56Z", "updated_at": "2016-06-08T16:41:26Z",
             "last_operation": {"type": "create", "state": "succeeded",
                                "created_at": "2015-11-13T17:02:56Z", "updated_at": "2016-06-08T16:41:26Z"},
             "relationships": {"app": {"data": {"guid": "74f7c078-0934-470f-9883-4fddss5b8f13"}},
                               "service_instance": {"data": {"guid": "8bfe4c1b-9e18-45b1-83be-124163f31f9e"}}}},
            {"guid": "7aa37bad-6ccb-4ef9-ba48-9ce3a91b2b62", "type": "key", "name": "some-key-name",
             "created_at": "2015-11-13T17:02:56Z", "updated_at": "2016-06-08T16:41:26Z",
             "last_operation": null,
             "relationships": {"service_instance": {"data": {"guid": "8bf356j3-9e18-45b1-3333-124163f31f9e"}}}}
          ]
        }"#;
        let page: Page<RawBinding, serde::de::IgnoredAny> = serde_json::from_str(bindings).unwrap();
        assert!(page.pagination.next.is_some());
        assert_eq!(
            relation(page.resources[0].relationships.app.as_ref()).as_deref(),
            Some("74f7c078-0934-470f-9883-4fddss5b8f13")
        );
        assert_eq!(relation(page.resources[1].relationships.app.as_ref()), None);
        assert_eq!(page.resources[1].last_operation, None);
    }

    #[test]
    fn only_a_create_that_did_not_succeed_is_unfinished() {
        let op = |kind: &str, state: &str| LastOperation {
            kind: kind.into(),
            state: state.into(),
        };
        assert!(op("create", "failed").is_unfinished_create());
        assert!(op("create", "in progress").is_unfinished_create());
        assert!(!op("create", "succeeded").is_unfinished_create());
        assert!(!op("delete", "failed").is_unfinished_create());
        assert!(!op("update", "in progress").is_unfinished_create());
    }
}
