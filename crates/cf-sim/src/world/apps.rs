//! The app-side changes of the world: apps, processes, routes and their destinations.
//! Each records the audit event(s) the real CC records, so the CC-API handlers and the
//! control API share one implementation.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{
    Actor, App, AppState, DEFAULT_COMMAND, Destination, Event, Job, NewApp, Party, Process, Route,
    World,
};
use crate::error::CcError;
use crate::util::{now, random_guid};

impl World {
    fn record(
        &mut self,
        event_type: &str,
        actor: &Actor,
        app: &App,
        data: Value,
        at: i64,
    ) -> String {
        let guid = random_guid();
        let org_guid = self.org_of_space(&app.space_guid).map(str::to_string);
        let event = Event {
            guid: guid.clone(),
            event_type: event_type.to_string(),
            actor: actor.clone(),
            target: Party {
                guid: app.guid.clone(),
                kind: "app".into(),
                name: app.name.clone(),
            },
            data,
            space_guid: Some(app.space_guid.clone()),
            org_guid,
            created_at: at,
        };
        let seq = self.next_seq();
        self.events.insert(seq, guid.clone(), event);
        guid
    }

    /// Creates an app with one `web` process (`audit.app.create`, plus `audit.app.start`
    /// when it starts STARTED).
    pub fn create_app(&mut self, new: NewApp, actor: &Actor) -> Result<String, CcError> {
        if !self.spaces.contains(&new.space_guid) {
            return Err(CcError::unprocessable(
                "Invalid space. Ensure that the space exists and you have access to it.",
            ));
        }
        let guid = new.guid.clone().unwrap_or_else(random_guid);
        if self.apps.contains(&guid) {
            return Err(CcError::unprocessable(format!(
                "An app with guid '{guid}' already exists."
            )));
        }
        self.check_unique_name(&new.space_guid, &new.name, None)?;
        let at = now();
        let app = App {
            guid: guid.clone(),
            name: new.name.clone(),
            state: new.state,
            space_guid: new.space_guid.clone(),
            labels: new.labels,
            droplet_guid: random_guid(),
            created_at: at,
            updated_at: at,
            started_at: at,
        };
        let process = Process {
            guid: random_guid(),
            app_guid: guid.clone(),
            process_type: "web".into(),
            command: new.command.unwrap_or_else(|| DEFAULT_COMMAND.into()),
            instances: new.instances,
            memory_in_mb: 256,
            disk_in_mb: 1024,
            version: random_guid(),
            created_at: at,
            updated_at: at,
        };
        self.insert_app(app.clone(), vec![process]);
        self.record(
            "audit.app.create",
            actor,
            &app,
            json!({"request": {
                "name": new.name,
                "relationships": {"space": {"data": {"guid": new.space_guid}}},
                "lifecycle": {"type": "buildpack", "data": {}},
            }}),
            at,
        );
        if app.state == AppState::Started {
            self.record("audit.app.start", actor, &app, json!({}), at);
        }
        Ok(guid)
    }

    fn check_unique_name(
        &self,
        space_guid: &str,
        name: &str,
        except: Option<&str>,
    ) -> Result<(), CcError> {
        let taken = self.apps.iter().any(|a| {
            a.space_guid == space_guid
                && a.name.eq_ignore_ascii_case(name)
                && Some(a.guid.as_str()) != except
        });
        if taken {
            return Err(CcError::unprocessable(format!(
                "App with the name '{name}' already exists."
            )));
        }
        Ok(())
    }

    /// `cf start`: state STARTED, `audit.app.start`.
    pub fn start_app(&mut self, guid: &str, actor: &Actor) -> Result<(), CcError> {
        self.set_state(guid, AppState::Started, "audit.app.start", actor)
    }

    /// `cf stop`: state STOPPED (process `instances` untouched), `audit.app.stop`.
    pub fn stop_app(&mut self, guid: &str, actor: &Actor) -> Result<(), CcError> {
        self.set_state(guid, AppState::Stopped, "audit.app.stop", actor)
    }

    fn set_state(
        &mut self,
        guid: &str,
        state: AppState,
        event: &str,
        actor: &Actor,
    ) -> Result<(), CcError> {
        let at = now();
        let app = self.apps.find_mut(guid, "App")?;
        if app.state != state && state == AppState::Started {
            app.started_at = at;
        }
        app.state = state;
        app.updated_at = at;
        let app = app.clone();
        self.record(event, actor, &app, json!({}), at);
        Ok(())
    }

    /// `cf rename`: `audit.app.update` with `{"request":{"name":..}}`.
    pub fn rename_app(&mut self, guid: &str, name: &str, actor: &Actor) -> Result<(), CcError> {
        self.update_app(guid, Some(name), None, actor)
    }

    /// `PATCH /v3/apps/:guid`: name and/or labels (a `null` label value deletes it).
    pub fn update_app(
        &mut self,
        guid: &str,
        name: Option<&str>,
        labels: Option<&BTreeMap<String, Option<String>>>,
        actor: &Actor,
    ) -> Result<(), CcError> {
        let space_guid = self.app(guid)?.space_guid.clone();
        if let Some(name) = name {
            if name.is_empty() {
                return Err(CcError::unprocessable("Name can't be blank"));
            }
            self.check_unique_name(&space_guid, name, Some(guid))?;
        }
        let at = now();
        let app = self.apps.get_mut(guid).expect("checked above");
        let mut request = serde_json::Map::new();
        if let Some(name) = name {
            app.name = name.to_string();
            request.insert("name".into(), json!(name));
        }
        if let Some(labels) = labels {
            for (k, v) in labels {
                match v {
                    Some(v) => app.labels.insert(k.clone(), v.clone()),
                    None => app.labels.remove(k),
                };
            }
            request.insert("metadata".into(), json!({"labels": labels}));
        }
        app.updated_at = at;
        let app = app.clone();
        self.record(
            "audit.app.update",
            actor,
            &app,
            json!({"request": request}),
            at,
        );
        Ok(())
    }

    /// `cf scale -i N` on the app's newest process of `process_type`.
    pub fn scale_app_process(
        &mut self,
        app_guid: &str,
        process_type: &str,
        instances: u32,
        actor: &Actor,
    ) -> Result<String, CcError> {
        self.app(app_guid)?;
        let process_guid = self
            .newest_process(app_guid, process_type)
            .ok_or_else(|| CcError::not_found("Process"))?
            .guid
            .clone();
        self.scale_process(&process_guid, instances, actor)?;
        Ok(process_guid)
    }

    /// Scales one process: `audit.app.process.scale`, target = the app.
    pub fn scale_process(
        &mut self,
        process_guid: &str,
        instances: u32,
        actor: &Actor,
    ) -> Result<(), CcError> {
        let at = now();
        let process = self.processes.find_mut(process_guid, "Process")?;
        process.instances = instances;
        process.updated_at = at;
        let (app_guid, process_type) = (process.app_guid.clone(), process.process_type.clone());
        let app = self.app(&app_guid)?.clone();
        self.record(
            "audit.app.process.scale",
            actor,
            &app,
            json!({
                "process_guid": process_guid,
                "process_type": process_type,
                "request": {"instances": instances},
            }),
            at,
        );
        Ok(())
    }

    /// Creates a route (no event: the CC records `audit.route.create`, which nothing
    /// here reads).
    pub fn create_route(
        &mut self,
        host: &str,
        path: &str,
        domain_guid: &str,
        space_guid: &str,
    ) -> Result<String, CcError> {
        if !path.is_empty() && (!path.starts_with('/') || path == "/" || path.contains('?')) {
            return Err(CcError::unprocessable(
                "Path must begin with a forward slash ('/'), may not be just '/' and may not contain '?'",
            ));
        }
        if !self.domains.contains(domain_guid) {
            return Err(CcError::unprocessable("Invalid domain."));
        }
        if !self.spaces.contains(space_guid) {
            return Err(CcError::unprocessable("Invalid space."));
        }
        let taken = self
            .routes
            .iter()
            .any(|r| r.host == host && r.path == path && r.domain_guid == domain_guid);
        if taken {
            return Err(CcError::unprocessable(format!(
                "Route already exists with host '{host}' and path '{path}' for domain."
            )));
        }
        let at = now();
        let guid = random_guid();
        self.insert_route(Route {
            guid: guid.clone(),
            host: host.to_string(),
            path: path.to_string(),
            domain_guid: domain_guid.to_string(),
            space_guid: space_guid.to_string(),
            destinations: Vec::new(),
            created_at: at,
            updated_at: at,
        });
        Ok(guid)
    }

    /// `cf map-route`: a destination for the app's `web` process on port 8080,
    /// `audit.app.map-route`. Mapping an app twice is a no-op (like the CC).
    pub fn map_route(
        &mut self,
        route_guid: &str,
        app_guid: &str,
        actor: &Actor,
    ) -> Result<(), CcError> {
        let app = self.app(app_guid)?.clone();
        let at = now();
        let route = self.routes.find_mut(route_guid, "Route")?;
        if route
            .destinations
            .iter()
            .any(|d| d.app_guid == app_guid && d.process_type == "web")
        {
            return Ok(());
        }
        let destination = Destination {
            guid: random_guid(),
            app_guid: app_guid.to_string(),
            process_type: "web".into(),
            port: 8080,
            protocol: "http1".into(),
            created_at: at,
            updated_at: at,
        };
        let data = mapping_data(route_guid, &destination);
        route.destinations.push(destination);
        route.updated_at = at;
        self.record("audit.app.map-route", actor, &app, data, at);
        Ok(())
    }

    /// `cf unmap-route`: removes the app's destinations, `audit.app.unmap-route` each.
    pub fn unmap_route(
        &mut self,
        route_guid: &str,
        app_guid: &str,
        actor: &Actor,
    ) -> Result<(), CcError> {
        let app = self.app(app_guid)?.clone();
        let route = self.routes.find(route_guid, "Route")?;
        if !route.destinations.iter().any(|d| d.app_guid == app_guid) {
            return Err(CcError::unprocessable(
                "Unable to unmap route from destination. Ensure the route has a destination for this app.",
            ));
        }
        self.unmap_app_from_route(route_guid, &app, actor, now());
        Ok(())
    }

    /// `DELETE /v3/routes/:guid/destinations/:destination_guid`.
    pub fn remove_destination(
        &mut self,
        route_guid: &str,
        destination_guid: &str,
        actor: &Actor,
    ) -> Result<(), CcError> {
        let route = self.routes.find_mut(route_guid, "Route")?;
        let pos = route
            .destinations
            .iter()
            .position(|d| d.guid == destination_guid)
            .ok_or_else(|| CcError::not_found("Destination"))?;
        let at = now();
        let destination = route.destinations.remove(pos);
        route.updated_at = at;
        if let Some(app) = self.apps.get(&destination.app_guid).cloned() {
            let data = mapping_data(route_guid, &destination);
            self.record("audit.app.unmap-route", actor, &app, data, at);
        }
        Ok(())
    }

    fn unmap_app_from_route(&mut self, route_guid: &str, app: &App, actor: &Actor, at: i64) {
        let Some(route) = self.routes.get_mut(route_guid) else {
            return;
        };
        let (removed, kept): (Vec<_>, Vec<_>) = route
            .destinations
            .drain(..)
            .partition(|d| d.app_guid == app.guid);
        route.destinations = kept;
        route.updated_at = at;
        for destination in removed {
            let data = mapping_data(route_guid, &destination);
            self.record("audit.app.unmap-route", actor, app, data, at);
        }
    }

    /// `cf delete`: route destinations, processes and the app go at once (routes stay);
    /// events `audit.app.unmap-route`, `audit.app.process.delete`,
    /// `audit.app.delete-request`. Returns the guid of a COMPLETE `app.delete` job.
    pub fn delete_app(&mut self, guid: &str, actor: &Actor) -> Result<String, CcError> {
        let app = self.app(guid)?.clone();
        let at = now();
        let mapped: Vec<String> = self
            .routes
            .iter()
            .filter(|r| r.destinations.iter().any(|d| d.app_guid == guid))
            .map(|r| r.guid.clone())
            .collect();
        for route_guid in mapped {
            self.unmap_app_from_route(&route_guid, &app, actor, at);
        }
        let processes: Vec<(String, String)> = self
            .processes_of(guid)
            .iter()
            .map(|p| (p.guid.clone(), p.process_type.clone()))
            .collect();
        for (process_guid, process_type) in processes {
            self.processes.remove(&process_guid);
            self.record(
                "audit.app.process.delete",
                actor,
                &app,
                json!({"process_guid": process_guid, "process_type": process_type}),
                at,
            );
        }
        self.record(
            "audit.app.delete-request",
            actor,
            &app,
            json!({"request": {"recursive": true}}),
            at,
        );
        self.apps.remove(guid);
        // The CC unbinds a deleted app's service bindings (sending each broker an unbind).
        self.services.remove_bindings_of_app(guid);
        let job = Job {
            guid: random_guid(),
            operation: "app.delete".into(),
            created_at: at,
        };
        let job_guid = job.guid.clone();
        self.jobs.insert(job_guid.clone(), job);
        Ok(job_guid)
    }

    /// Starts a rolling deployment: a second `web` process (clone of the newest one,
    /// new guid, newer `created_at`) with `instances`. Events
    /// `audit.app.deployment.create` and `audit.app.process.create`.
    pub fn rolling_deploy(
        &mut self,
        app_guid: &str,
        instances: Option<u32>,
        actor: &Actor,
    ) -> Result<String, CcError> {
        let app = self.app(app_guid)?.clone();
        let current = self
            .newest_process(app_guid, "web")
            .ok_or_else(|| CcError::not_found("Process"))?
            .clone();
        let at = now();
        let process = Process {
            guid: random_guid(),
            instances: instances.unwrap_or(current.instances),
            version: random_guid(),
            created_at: at.max(current.created_at + 1),
            updated_at: at.max(current.created_at + 1),
            ..current
        };
        let guid = process.guid.clone();
        let deployment_guid = random_guid();
        let seq = self.next_seq();
        self.processes.insert(seq, guid.clone(), process);
        self.record(
            "audit.app.deployment.create",
            actor,
            &app,
            json!({
                "droplet_guid": app.droplet_guid,
                "deployment_guid": deployment_guid,
                "type": null,
                "strategy": "rolling",
                "request": {"strategy": "rolling"},
            }),
            at,
        );
        self.record(
            "audit.app.process.create",
            actor,
            &app,
            json!({"process_guid": guid, "process_type": "web"}),
            at,
        );
        Ok(guid)
    }

    /// Finishes a rolling deployment: every `web` process but the newest goes
    /// (`audit.app.process.delete` each). Returns the surviving process guid.
    pub fn finish_rolling_deploy(
        &mut self,
        app_guid: &str,
        actor: &Actor,
    ) -> Result<String, CcError> {
        let app = self.app(app_guid)?.clone();
        let newest = self
            .newest_process(app_guid, "web")
            .ok_or_else(|| CcError::not_found("Process"))?
            .guid
            .clone();
        let old: Vec<String> = self
            .processes_of(app_guid)
            .iter()
            .filter(|p| p.process_type == "web" && p.guid != newest)
            .map(|p| p.guid.clone())
            .collect();
        if old.is_empty() {
            return Err(CcError::unprocessable(
                "No deployment in progress: the app has only one web process.",
            ));
        }
        let at = now();
        for guid in old {
            self.processes.remove(&guid);
            self.record(
                "audit.app.process.delete",
                actor,
                &app,
                json!({"process_guid": guid, "process_type": "web"}),
                at,
            );
        }
        Ok(newest)
    }
}

fn mapping_data(route_guid: &str, d: &Destination) -> Value {
    json!({
        "route_guid": route_guid,
        "app_port": d.port,
        "route_mapping_guid": d.guid,
        "destination_guid": d.guid,
        "process_type": d.process_type,
        "weight": null,
        "protocol": d.protocol,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::{Domain, Org, Space};

    fn admin() -> Actor {
        Party {
            guid: "admin-guid".into(),
            kind: "user".into(),
            name: "admin".into(),
        }
    }

    fn world() -> (World, String) {
        let mut w = World::default();
        w.add_org(Org {
            guid: "o".into(),
            name: "org".into(),
            created_at: 0,
            updated_at: 0,
        });
        w.add_space(Space {
            guid: "s".into(),
            name: "space".into(),
            org_guid: "o".into(),
            created_at: 0,
            updated_at: 0,
        });
        w.add_domain(Domain {
            guid: "d".into(),
            name: "apps.example.com".into(),
            internal: false,
            created_at: 0,
            updated_at: 0,
        });
        let app = w
            .create_app(
                NewApp {
                    guid: None,
                    name: "a".into(),
                    space_guid: "s".into(),
                    state: AppState::Started,
                    instances: 2,
                    labels: BTreeMap::new(),
                    command: None,
                },
                &admin(),
            )
            .unwrap();
        (w, app)
    }

    fn event_types(w: &World) -> Vec<&str> {
        w.events.iter().map(|e| e.event_type.as_str()).collect()
    }

    #[test]
    fn stop_keeps_instances_and_records_an_event_targeting_the_app() {
        let (mut w, app) = world();
        w.stop_app(&app, &admin()).unwrap();
        assert_eq!(w.apps.get(&app).unwrap().state, AppState::Stopped);
        assert_eq!(w.newest_process(&app, "web").unwrap().instances, 2);
        let e = w.events.iter().last().unwrap();
        assert_eq!(e.event_type, "audit.app.stop");
        assert_eq!(e.target.guid, app);
        assert_eq!(e.org_guid.as_deref(), Some("o"));
    }

    #[test]
    fn delete_removes_app_processes_and_destinations_but_keeps_routes() {
        let (mut w, app) = world();
        let route = w.create_route("a", "", "d", "s").unwrap();
        w.map_route(&route, &app, &admin()).unwrap();
        w.delete_app(&app, &admin()).unwrap();
        assert!(w.apps.get(&app).is_none());
        assert!(w.processes_of(&app).is_empty());
        assert!(w.routes.get(&route).unwrap().destinations.is_empty());
        assert_eq!(
            event_types(&w),
            [
                "audit.app.create",
                "audit.app.start",
                "audit.app.map-route",
                "audit.app.unmap-route",
                "audit.app.process.delete",
                "audit.app.delete-request"
            ]
        );
    }

    #[test]
    fn rolling_deploy_adds_a_newer_web_process_and_finish_removes_the_old() {
        let (mut w, app) = world();
        let old = w.newest_process(&app, "web").unwrap().guid.clone();
        let new = w.rolling_deploy(&app, Some(3), &admin()).unwrap();
        assert_eq!(w.processes_of(&app).len(), 2);
        assert_eq!(w.newest_process(&app, "web").unwrap().guid, new);
        let survivor = w.finish_rolling_deploy(&app, &admin()).unwrap();
        assert_eq!(survivor, new);
        assert!(w.processes.get(&old).is_none());
        assert!(w.finish_rolling_deploy(&app, &admin()).is_err());
    }

    #[test]
    fn names_are_unique_per_space() {
        let (mut w, app) = world();
        let other = w
            .create_app(
                NewApp {
                    guid: None,
                    name: "b".into(),
                    space_guid: "s".into(),
                    state: AppState::Stopped,
                    instances: 1,
                    labels: BTreeMap::new(),
                    command: None,
                },
                &admin(),
            )
            .unwrap();
        assert_eq!(w.rename_app(&other, "A", &admin()).unwrap_err().status, 422);
        w.rename_app(&app, "a-venerable", &admin()).unwrap();
        w.rename_app(&other, "a", &admin()).unwrap();
    }
}
