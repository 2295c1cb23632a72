//! The deployment artefacts (`manifests/`) and the README's operator documentation name
//! only settings, flags and files that exist, and agree with each other.
//!
//! What a service reads comes from the services themselves, never from a list kept here:
//! `gds_broker::config::settings()` and `gds_updater::config::settings()` (each crate's
//! `SETTINGS`, kept true to its sources by a unit test, see `gds_service::declared`), and
//! for sd-sync its sources (`sd-sync/src`: every all-caps literal there is a setting) and
//! its own command-line parser. Needs no servers.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use gds_service::Settings;
use yaml_rust2::{Yaml, YamlLoader};

/// The attributes of an application in a Cloud Foundry app manifest (the CLI's and the
/// Cloud Controller's; `cf push` rejects or ignores others, so a typo is a silent bug).
const CF_APP_ATTRIBUTES: &[&str] = &[
    "name",
    "path",
    "stack",
    "buildpacks",
    "command",
    "instances",
    "memory",
    "disk_quota",
    "log-rate-limit-per-second",
    "timeout",
    "health-check-type",
    "health-check-http-endpoint",
    "health-check-invocation-timeout",
    "health-check-interval",
    "readiness-health-check-type",
    "readiness-health-check-http-endpoint",
    "readiness-health-check-invocation-timeout",
    "readiness-health-check-interval",
    "routes",
    "no-route",
    "random-route",
    "default-route",
    "env",
    "services",
    "metadata",
    "processes",
    "sidecars",
    "lifecycle",
];

/// Settings Cloud Foundry sets itself: a manifest or a user-provided service must not.
const SET_BY_CLOUD_FOUNDRY: &[&str] = &["PORT", "VCAP_SERVICES"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// The `*.yml` files directly in `relative`, sorted, as (path, text).
fn yaml_files(relative: &str) -> Vec<(String, String)> {
    let mut files: Vec<_> = std::fs::read_dir(root().join(relative))
        .unwrap_or_else(|e| panic!("{relative}: {e}"))
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yml"))
        .map(|name| format!("{relative}/{name}"))
        .collect();
    files.sort();
    files.into_iter().map(|f| (f.clone(), read(&f))).collect()
}

fn parse_yaml(file: &str, text: &str) -> Yaml {
    let mut docs =
        YamlLoader::load_from_str(text).unwrap_or_else(|e| panic!("{file} is not valid YAML: {e}"));
    assert_eq!(docs.len(), 1, "{file}: one YAML document");
    docs.remove(0)
}

/// A scalar as the string Cloud Foundry would see.
fn scalar(value: &Yaml) -> Option<String> {
    match value {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn hash_keys(value: &Yaml) -> Vec<String> {
    value
        .as_hash()
        .map(|h| h.keys().filter_map(scalar).collect())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// What each service reads.

/// A deployable service and every setting it reads.
struct Service {
    name: &'static str,
    settings: BTreeSet<String>,
}

fn broker() -> Service {
    Service {
        name: "broker",
        settings: gds_broker::config::settings()
            .into_iter()
            .map(str::to_owned)
            .collect(),
    }
}

fn updater() -> Service {
    Service {
        name: "updater",
        settings: gds_updater::config::settings()
            .into_iter()
            .map(str::to_owned)
            .collect(),
    }
}

/// sd-sync declares no list of its own: every all-caps literal in its sources is a setting
/// (its flag table's environment forms, the S3 credentials, `PORT`), plus what every
/// service reads through gds-service.
fn sd_sync() -> Service {
    let scanned = gds_service::declared::setting_literals(&root().join("sd-sync/src")).unwrap();
    let mut settings: BTreeSet<String> = scanned.into_keys().collect();
    settings.extend(gds_service::SETTINGS.iter().map(|s| (*s).to_owned()));
    Service {
        name: "sd-sync",
        settings,
    }
}

fn services() -> Vec<Service> {
    vec![broker(), updater(), sd_sync()]
}

/// The service a Cloud Foundry app runs, from its `command` (`./broker`).
fn service_of_command(command: &str) -> Service {
    match command.trim().trim_start_matches("./") {
        "broker" => broker(),
        "updater" => updater(),
        other => panic!("command {command:?}: {other:?} is not a service pushed to Cloud Foundry"),
    }
}

#[test]
fn library_crates_read_no_settings_and_sd_sync_reads_its_flags() {
    // The settings of broker and updater come from crates with a SETTINGS list; the other
    // libraries they link must read none, or those lists would be incomplete.
    for (dir, not_settings) in [
        ("crates/targets/src", &["UPPERCASE"][..]), // a serde attribute
        ("crates/db/src", &[]),
        ("crates/reconcile/src", &[]),
    ] {
        let found = gds_service::declared::setting_literals(&root().join(dir)).unwrap();
        let unexpected: Vec<_> = found
            .keys()
            .filter(|name| !not_settings.contains(&name.as_str()))
            .collect();
        assert!(
            unexpected.is_empty(),
            "{dir} names {unexpected:?}: if it reads them, give the crate a SETTINGS list \
             (see gds_service::declared) and add it to the services' settings()"
        );
    }
    let sd_sync = sd_sync();
    for name in ["SD_SYNC_MAPPINGS", "AWS_ACCESS_KEY_ID", "PORT", "RUST_LOG"] {
        assert!(
            sd_sync.settings.contains(name),
            "{name}: {:?}",
            sd_sync.settings
        );
    }
}

// ---------------------------------------------------------------------------------------
// Cloud Foundry manifests and their vars files.

/// `((name))` placeholders in a manifest (comment lines aside).
fn vars_used(text: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    let code: String = text
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .map(|line| format!("{line}\n"))
        .collect();
    let mut rest = code.as_str();
    while let Some(start) = rest.find("((") {
        let after = &rest[start + 2..];
        let end = after
            .find("))")
            .unwrap_or_else(|| panic!("unclosed (( in {text}"));
        used.insert(after[..end].trim().to_owned());
        rest = &after[end + 2..];
    }
    used
}

fn interpolate(text: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = text.to_owned();
    for (name, value) in vars {
        out = out.replace(&format!("(({name}))"), value);
    }
    out
}

/// `manifests/cf/vars/*.yml`: file -> (var -> value).
fn vars_files() -> Vec<(String, BTreeMap<String, String>)> {
    let files = yaml_files("manifests/cf/vars");
    assert!(files.len() >= 2, "example vars files for two regions");
    files
        .into_iter()
        .map(|(file, text)| {
            let yaml = parse_yaml(&file, &text);
            let hash = yaml
                .as_hash()
                .unwrap_or_else(|| panic!("{file}: a map of vars"));
            let vars = hash
                .iter()
                .map(|(k, v)| {
                    let key = scalar(k).unwrap();
                    let value =
                        scalar(v).unwrap_or_else(|| panic!("{file}: {key} is not a scalar: {v:?}"));
                    (key, value)
                })
                .collect();
            (file, vars)
        })
        .collect()
}

/// One application of a Cloud Foundry manifest.
struct CfApp {
    file: String,
    yaml: Yaml,
    service: Service,
}

impl CfApp {
    fn str(&self, key: &str) -> Option<String> {
        scalar(&self.yaml[key])
    }

    fn env(&self) -> BTreeMap<String, Yaml> {
        self.yaml["env"]
            .as_hash()
            .map(|h| {
                h.iter()
                    .map(|(k, v)| (scalar(k).unwrap(), v.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn services(&self) -> Vec<String> {
        match &self.yaml["services"] {
            Yaml::Array(list) => list
                .iter()
                .map(|s| {
                    scalar(s)
                        .or_else(|| scalar(&s["name"]))
                        .unwrap_or_else(|| panic!("{}: service {s:?}", self.file))
                })
                .collect(),
            Yaml::BadValue => Vec::new(),
            other => panic!("{}: services is not a list: {other:?}", self.file),
        }
    }
}

/// The applications of one manifest's text.
fn cf_apps(file: &str, text: &str) -> Vec<CfApp> {
    let yaml = parse_yaml(file, text);
    let top = hash_keys(&yaml);
    assert!(
        top.iter().all(|k| k == "applications" || k == "version"),
        "{file}: top-level keys {top:?}"
    );
    yaml["applications"]
        .as_vec()
        .unwrap_or_else(|| panic!("{file}: no applications list"))
        .iter()
        .map(|app| {
            let command = scalar(&app["command"]).unwrap_or_else(|| panic!("{file}: no command"));
            CfApp {
                file: file.to_owned(),
                yaml: app.clone(),
                service: service_of_command(&command),
            }
        })
        .collect()
}

/// Every problem with the keys an app's manifest names: attributes Cloud Foundry does not
/// know, and `env` keys the app's service does not read.
fn unknown_keys(app: &CfApp) -> Vec<String> {
    let mut problems = Vec::new();
    for key in hash_keys(&app.yaml) {
        if !CF_APP_ATTRIBUTES.contains(&key.as_str()) {
            problems.push(format!(
                "{}: {key:?} is not an app manifest attribute",
                app.file
            ));
        }
    }
    for key in app.env().keys() {
        if !app.service.settings.contains(key) {
            problems.push(format!(
                "{}: env {key:?} is not a setting {} reads",
                app.file, app.service.name
            ));
        } else if SET_BY_CLOUD_FOUNDRY.contains(&key.as_str()) {
            problems.push(format!("{}: env {key:?} is set by Cloud Foundry", app.file));
        }
    }
    problems
}

/// Every app of `manifests/cf/*.yml`, as written (vars not interpolated).
fn all_cf_apps() -> Vec<CfApp> {
    let files = yaml_files("manifests/cf");
    assert!(!files.is_empty(), "manifests/cf/*.yml");
    files
        .iter()
        .flat_map(|(file, text)| cf_apps(file, text))
        .collect()
}

#[test]
fn cf_manifests_name_only_attributes_and_settings_that_exist() {
    let apps = all_cf_apps();
    let pushed: BTreeSet<_> = apps.iter().map(|a| a.service.name).collect();
    assert_eq!(
        pushed,
        BTreeSet::from(["broker", "updater"]),
        "one app for the broker, one for the updater"
    );
    let problems: Vec<_> = apps.iter().flat_map(unknown_keys).collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn an_unknown_key_in_a_manifest_fails_the_check() {
    let (file, text) = &yaml_files("manifests/cf")[0];
    let with_unknown = text.replacen("    env:\n", "    env:\n      NOT_A_SETTING: x\n", 1);
    let with_typo = text.replacen("    memory:", "    memroy:", 1);
    assert_ne!(&with_unknown, text, "{file} has an env block");
    assert_ne!(&with_typo, text, "{file} sets memory");
    for (changed, expected) in [
        (with_unknown, "env \"NOT_A_SETTING\" is not a setting"),
        (with_typo, "\"memroy\" is not an app manifest attribute"),
    ] {
        let problems: Vec<_> = cf_apps(file, &changed)
            .iter()
            .flat_map(unknown_keys)
            .collect();
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{expected}: {problems:?}"
        );
    }
}

#[test]
fn cf_manifests_push_the_staged_binary_with_a_health_check_on_its_health_endpoint() {
    let package_script = read("scripts/cf-package.sh");
    assert!(
        package_script.contains(r#""target/cf/$bin/$bin""#)
            && package_script.contains("for bin in broker updater"),
        "scripts/cf-package.sh stages target/cf/<binary>/<binary>"
    );
    // The health endpoint the manifests name is the one the services serve.
    for (source, route) in [
        ("broker/src/startup.rs", r#"resource("/health")"#),
        ("updater/src/daemon.rs", r#".route("/health""#),
    ] {
        assert!(read(source).contains(route), "{source} serves {route}");
    }
    for app in all_cf_apps() {
        let file = &app.file;
        let binary = app.service.name;
        assert_eq!(
            app.str("command").as_deref(),
            Some(format!("./{binary}").as_str()),
            "{file}"
        );
        // path: is relative to the manifest; scripts/cf-package.sh stages each binary there.
        assert_eq!(
            app.str("path").as_deref(),
            Some(format!("../../target/cf/{binary}").as_str()),
            "{file}"
        );
        assert_eq!(
            app.yaml["buildpacks"][0].as_str(),
            Some("binary_buildpack"),
            "{file}"
        );
        assert_eq!(app.str("stack").as_deref(), Some("cflinuxfs4"), "{file}");
        // Both services answer GET /health on PORT, without auth.
        assert_eq!(
            app.str("health-check-type").as_deref(),
            Some("http"),
            "{file}"
        );
        assert_eq!(
            app.str("health-check-http-endpoint").as_deref(),
            Some("/health"),
            "{file}"
        );
        for key in ["memory", "disk_quota"] {
            let size = app.str(key).unwrap_or_else(|| panic!("{file}: {key}"));
            let digits = size.trim_end_matches(['M', 'G', 'B']);
            assert!(
                digits.parse::<u32>().is_ok() && digits.len() < size.len(),
                "{file}: {key} {size:?} needs a unit (M, G)"
            );
        }
    }
}

#[test]
fn every_var_is_defined_in_every_vars_file_and_every_var_is_used() {
    let used: BTreeSet<String> = yaml_files("manifests/cf")
        .iter()
        .flat_map(|(_, text)| vars_used(text))
        .collect();
    assert!(!used.is_empty());
    for (file, vars) in vars_files() {
        let defined: BTreeSet<String> = vars.keys().cloned().collect();
        let missing: Vec<_> = used.difference(&defined).collect();
        let unused: Vec<_> = defined.difference(&used).collect();
        assert!(missing.is_empty(), "{file} lacks {missing:?}");
        assert!(
            unused.is_empty(),
            "{file} defines {unused:?}, which no manifest uses"
        );
    }
}

// ---------------------------------------------------------------------------------------
// The user-provided services documented in the README.

/// `cf create-user-provided-service NAME -p '{...}'` commands of the README: name ->
/// credentials.
fn documented_user_provided_services() -> BTreeMap<String, BTreeMap<String, String>> {
    let readme = read("README.md");
    let mut out = BTreeMap::new();
    for (at, _) in readme.match_indices("cf create-user-provided-service ") {
        let rest = &readme[at + "cf create-user-provided-service ".len()..];
        let Some((name, rest)) = rest.split_once(char::is_whitespace) else {
            continue;
        };
        let Some(json) = rest.trim_start().strip_prefix("-p '") else {
            continue; // mentioned in prose
        };
        let json = &json[..json.find('\'').expect("the closing quote of -p '...'")];
        let credentials: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json)
            .unwrap_or_else(|e| panic!("README: credentials of {name}: {e}\n{json}"));
        let credentials = credentials
            .into_iter()
            .map(|(k, v)| (k, v.as_str().expect("string credentials").to_owned()))
            .collect();
        assert!(
            out.insert(name.to_owned(), credentials).is_none(),
            "README creates {name} twice"
        );
    }
    out
}

#[test]
fn user_provided_services_carry_only_settings_of_the_apps_that_bind_them() {
    let documented = documented_user_provided_services();
    assert!(
        !documented.is_empty(),
        "README documents the user-provided services"
    );
    let mut bound = BTreeSet::new();
    for app in all_cf_apps() {
        let env = app.env();
        let mut provided_by: BTreeMap<String, String> = BTreeMap::new();
        for service in app.services() {
            let credentials = documented.get(&service).unwrap_or_else(|| {
                panic!(
                    "{}: service {service} has no `cf create-user-provided-service {service} \
                     -p '{{...}}'` in the README",
                    app.file
                )
            });
            for key in credentials.keys() {
                assert!(
                    app.service.settings.contains(key)
                        && !SET_BY_CLOUD_FOUNDRY.contains(&key.as_str()),
                    "README: {service} carries {key:?}, which {} (bound in {}) does not read",
                    app.service.name,
                    app.file
                );
                assert!(
                    !env.contains_key(key),
                    "{}: {key} is in env and in {service}: the environment would win",
                    app.file
                );
                if let Some(other) = provided_by.insert(key.clone(), service.clone()) {
                    panic!(
                        "{}: {key} is in {other} and in {service}: one would be ignored",
                        app.file
                    );
                }
            }
            bound.insert(service);
        }
    }
    let unbound: Vec<_> = documented.keys().filter(|s| !bound.contains(*s)).collect();
    assert!(unbound.is_empty(), "no manifest binds {unbound:?}");
}

/// `VCAP_SERVICES` as Cloud Foundry would give an app bound to `services`.
fn vcap_services(
    services: &[String],
    documented: &BTreeMap<String, BTreeMap<String, String>>,
) -> String {
    let user_provided: Vec<_> = services
        .iter()
        .map(|name| {
            serde_json::json!({
                "label": "user-provided", "name": name, "instance_name": name, "tags": [],
                "credentials": documented[name],
            })
        })
        .collect();
    serde_json::json!({ "user-provided": user_provided }).to_string()
}

#[tokio::test]
async fn each_region_gives_each_app_a_configuration_it_accepts() {
    let documented = documented_user_provided_services();
    for (vars_file, vars) in vars_files() {
        for (file, text) in yaml_files("manifests/cf") {
            for app in cf_apps(&file, &interpolate(&text, &vars)) {
                let mut pairs: Vec<(String, String)> = app
                    .env()
                    .into_iter()
                    .map(|(k, v)| {
                        let Yaml::String(v) = v else {
                            panic!("{file}: env {k} is not a string ({v:?}): quote it")
                        };
                        (k, v)
                    })
                    .collect();
                assert!(
                    app.yaml["instances"].as_i64().is_some_and(|n| n >= 1),
                    "{file} with {vars_file}: instances"
                );
                pairs.push(("PORT".into(), "8080".into()));
                pairs.push((
                    "VCAP_SERVICES".into(),
                    vcap_services(&app.services(), &documented),
                ));
                let settings = Settings::from_pairs(pairs).unwrap();
                let store = match app.service.name {
                    "broker" => gds_broker::BrokerConfig::from_settings(&settings)
                        .map(|c| c.engine.store)
                        .map_err(|e| e.to_string()),
                    _ => gds_updater::UpdaterConfig::from_settings(&settings)
                        .map(|c| c.engine.store)
                        .map_err(|e| e.to_string()),
                }
                .unwrap_or_else(|e| panic!("{file} with {vars_file}: {e}"));
                let gds_store::StoreConfig::S3(s3) = store else {
                    panic!("{file} with {vars_file}: not an S3 store")
                };
                assert_eq!(s3.bucket, vars["bucket_name"], "{file} with {vars_file}");
                assert_eq!(s3.region, vars["aws_region"], "{file} with {vars_file}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The sd-sync systemd unit, and the Prometheus configs next to it.

/// The unit's `[Service]` settings (continuation lines joined): key -> values in order.
fn unit_directives(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut section = String::new();
    let mut pending = String::new();
    for line in text.lines() {
        let line = line.trim();
        if pending.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        if let Some(continued) = line.strip_suffix('\\') {
            pending.push_str(continued);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let full = std::mem::take(&mut pending);
        if full.starts_with('[') {
            section = full;
        } else if section == "[Service]" {
            let (key, value) = full.split_once('=').expect("Key=Value");
            out.entry(key.trim().to_owned())
                .or_default()
                .push(value.trim().to_owned());
        }
    }
    out
}

/// The variables the unit's header tells operators to put in its EnvironmentFile
/// (`#   NAME=value` lines).
fn documented_environment_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| line.strip_prefix('#'))
        .filter(|line| line.starts_with("   "))
        .filter_map(|line| line.trim().split_once('='))
        .filter(|(name, _)| {
            name.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect()
}

/// The unit's sd-sync configuration, parsed by sd-sync's own parser.
fn sd_sync_unit() -> (BTreeMap<String, Vec<String>>, sd_sync::config::Config) {
    let text = read("manifests/sd-sync.service");
    let directives = unit_directives(&text);
    let sd_sync = sd_sync();
    let mut env = documented_environment_file(&text);
    assert!(!env.is_empty(), "the unit documents its EnvironmentFile");
    for assignment in directives.get("Environment").into_iter().flatten() {
        for pair in assignment.split_whitespace() {
            let (name, value) = pair.trim_matches('"').split_once('=').unwrap();
            env.push((name.to_owned(), value.to_owned()));
        }
    }
    for (name, _) in &env {
        assert!(
            sd_sync.settings.contains(name),
            "manifests/sd-sync.service: {name} is not a setting sd-sync reads"
        );
    }
    let exec = &directives["ExecStart"];
    assert_eq!(exec.len(), 1);
    // sd-sync reads its key file while parsing: systemd's credential (`%d/NAME`, from
    // LoadCredential=NAME:PATH) is played by a file of this test with a valid key.
    let credentials = tempfile::tempdir().unwrap();
    for loaded in directives.get("LoadCredential").into_iter().flatten() {
        let (name, path) = loaded.split_once(':').expect("LoadCredential=NAME:PATH");
        assert!(path.starts_with("/etc/"), "LoadCredential={loaded}");
        std::fs::write(
            credentials.path().join(name),
            "a-test-key-of-the-right-length-0123456789",
        )
        .unwrap();
    }
    let credentials_dir = credentials.path().display().to_string();
    let mut words = exec[0]
        .split_whitespace()
        .map(|word| word.replace("%d", &credentials_dir));
    assert_eq!(words.next().as_deref(), Some("/usr/local/bin/sd-sync"));
    let settings = Settings::from_pairs(env).unwrap();
    let config = match sd_sync::config::parse(words, &settings) {
        Ok(sd_sync::config::Command::Run(config)) => *config,
        Ok(sd_sync::config::Command::Help) => panic!("ExecStart asks for --help"),
        Err(e) => panic!("manifests/sd-sync.service: sd-sync rejects its ExecStart: {e}"),
    };
    (directives, config)
}

#[test]
fn the_sd_sync_unit_passes_only_flags_and_settings_sd_sync_accepts() {
    let (directives, config) = sd_sync_unit();
    // The sandbox lets sd-sync write exactly its mappings' directories, which exist.
    let dirs: BTreeSet<String> = config
        .mappings
        .iter()
        .map(|m| m.dir.display().to_string())
        .collect();
    let writable: BTreeSet<String> = directives["ReadWritePaths"]
        .iter()
        .flat_map(|v| v.split_whitespace().map(str::to_owned))
        .collect();
    assert_eq!(writable, dirs, "ReadWritePaths = the mappings' directories");
    let created: BTreeSet<String> = directives["ExecStartPre"]
        .iter()
        .flat_map(|v| v.split_whitespace().map(str::to_owned))
        .filter(|w| w.starts_with('/') && !w.contains("/bin/"))
        .collect();
    assert_eq!(
        created, dirs,
        "ExecStartPre creates the mappings' directories"
    );
}

#[test]
fn prometheus_scrapes_through_the_units_gateway_pinned_to_the_router_with_the_token_key() {
    let (directives, config) = sd_sync_unit();
    let gateway = config
        .gateway
        .as_ref()
        .expect("the unit runs the scrape gateway (--scrape-listen)");
    // Each foundation's mapping is pinned to its own router (a router knows its own
    // foundation's routes only).
    for router in &gateway.routers {
        assert!(
            router.pin.is_some(),
            "the unit pins the mapping {} to its router (--scrape-router MAPPING=...)",
            router.mapping
        );
    }
    let pins: BTreeSet<String> = gateway
        .routers
        .iter()
        .filter_map(|r| r.pin.as_ref().map(ToString::to_string))
        .collect();
    assert_eq!(
        pins.len(),
        config.mappings.len(),
        "one router per foundation: {pins:?}"
    );
    assert!(
        config.scrape_token_key.is_some(),
        "the unit gives sd-sync the token key"
    );
    assert!(
        directives["LoadCredential"]
            .iter()
            .any(|c| c.starts_with("scrape-token-key:")),
        "the key comes as a systemd credential"
    );
    // Every scrape job of the Prometheus examples goes through it.
    let proxy = format!("http://{}", gateway.listen);
    for (file, text) in yaml_files("manifests/prometheus") {
        let yaml = parse_yaml(&file, &text);
        for job in yaml["scrape_configs"].as_vec().unwrap() {
            let discovers_apps =
                !job["file_sd_configs"].is_badvalue() || !job["http_sd_configs"].is_badvalue();
            if discovers_apps {
                assert_eq!(
                    job["proxy_url"].as_str(),
                    Some(proxy.as_str()),
                    "{file}: {:?}",
                    job["job_name"]
                );
                assert_eq!(job["scheme"].as_str(), Some("http"), "{file}");
            }
        }
    }
    // nginx, the compatible alternative, listens where the gateway does.
    let nginx = read("manifests/nginx/forward-proxy.conf");
    assert!(
        nginx.contains(&format!("listen {};", gateway.listen)),
        "manifests/nginx/forward-proxy.conf listens on {}",
        gateway.listen
    );
}

#[test]
fn buckets_directories_and_urls_agree_across_the_manifests() {
    let (_, config) = sd_sync_unit();
    // Every region's bucket (the broker and updater write active/ at its root) is mirrored.
    for (file, vars) in vars_files() {
        let mirrored = config.mappings.iter().any(|m| {
            m.bucket == vars["bucket_name"]
                && m.prefix == "active/"
                && m.region.as_deref().unwrap_or(&config.region) == vars["aws_region"]
        });
        assert!(
            mirrored,
            "manifests/sd-sync.service mirrors no s3://{}/active/ in {} ({file})",
            vars["bucket_name"], vars["aws_region"]
        );
    }
    // Prometheus reads what sd-sync writes: file_sd from the directories, http_sd from
    // /targets/<name> on sd-sync's listener.
    let dirs: BTreeSet<String> = config
        .mappings
        .iter()
        .map(|m| m.dir.display().to_string())
        .collect();
    let urls: BTreeSet<String> = config
        .mappings
        .iter()
        .map(|m| format!("http://{}/targets/{}", config.listen, m.name))
        .collect();
    for (file, text) in yaml_files("manifests/prometheus") {
        let yaml = parse_yaml(&file, &text);
        let (mut file_sd, mut http_sd) = (BTreeSet::new(), BTreeSet::new());
        for job in yaml["scrape_configs"].as_vec().unwrap() {
            for sd in job["file_sd_configs"].as_vec().into_iter().flatten() {
                for glob in sd["files"].as_vec().unwrap() {
                    let glob = glob.as_str().unwrap();
                    let dir = glob.rsplit_once('/').unwrap().0;
                    file_sd.insert(dir.to_owned());
                }
            }
            for sd in job["http_sd_configs"].as_vec().into_iter().flatten() {
                http_sd.insert(sd["url"].as_str().unwrap().to_owned());
            }
        }
        if !file_sd.is_empty() {
            assert_eq!(
                file_sd, dirs,
                "{file}: file_sd reads the mappings' directories"
            );
        }
        if !http_sd.is_empty() {
            assert_eq!(
                http_sd, urls,
                "{file}: http_sd reads sd-sync's /targets/<name>"
            );
        }
        assert!(
            !file_sd.is_empty() || !http_sd.is_empty(),
            "{file}: no discovery"
        );
    }
}

// ---------------------------------------------------------------------------------------
// The README.

/// The rows of the README's "## Configuration" table: (setting names, used-by text).
fn configuration_table() -> Vec<(Vec<String>, String)> {
    let readme = read("README.md");
    let section = readme
        .split_once("\n## Configuration\n")
        .expect("README has a ## Configuration section")
        .1;
    let section = section.split("\n## ").next().unwrap();
    let mut rows = section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'));
    let header = rows.next().expect("a table");
    assert!(header.starts_with("| setting | used by |"), "{header}");
    rows.skip(1) // |---|
        .map(|row| {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let names = cells[1]
                .split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_owned)
                .collect();
            (names, cells[2].to_owned())
        })
        .collect()
}

#[test]
fn the_readme_configuration_table_lists_exactly_the_settings_the_services_read() {
    let services = services();
    let mut documented = BTreeSet::new();
    let mut problems = Vec::new();
    for (names, used_by) in configuration_table() {
        assert!(!names.is_empty(), "a row without a `SETTING`: {used_by}");
        let claimed: BTreeSet<&str> = if used_by.contains("every service") {
            services.iter().map(|s| s.name).collect()
        } else {
            services
                .iter()
                .map(|s| s.name)
                .filter(|name| used_by.contains(name))
                .collect()
        };
        for name in names {
            let actual: BTreeSet<&str> = services
                .iter()
                .filter(|s| s.settings.contains(&name))
                .map(|s| s.name)
                .collect();
            if actual.is_empty() {
                problems.push(format!("{name}: no service reads it"));
            } else if actual != claimed {
                problems.push(format!(
                    "{name}: used by {actual:?}, the table says {claimed:?}"
                ));
            }
            if !documented.insert(name.clone()) {
                problems.push(format!("{name}: listed twice"));
            }
        }
    }
    for service in &services {
        for name in &service.settings {
            if !documented.contains(name) {
                problems.push(format!(
                    "{name}: read by {}, missing from the table",
                    service.name
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "README ## Configuration:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn files_named_in_the_readme_exist() {
    let readme = read("README.md");
    let mut missing = Vec::new();
    for prefix in ["manifests/", "scripts/", "docs/", "crates/"] {
        for (at, _) in readme.match_indices(prefix) {
            if at > 0 && readme[..at].ends_with(|c: char| c.is_alphanumeric() || c == '-') {
                continue; // part of a longer path or word
            }
            let path: String = readme[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || matches!(c, '/' | '.' | '_' | '-'))
                .collect();
            let path = path.trim_end_matches('.');
            if !root().join(path).exists() {
                missing.push(path.to_owned());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "README names {missing:?}, which do not exist"
    );
}
