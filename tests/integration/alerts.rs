//! The operator's alert rules (`manifests/prometheus/rules/alerts.yml`): promtool accepts them
//! and their unit tests (`alerts_test.yml` beside them) pass, and every
//! alert carries what an operator needs and is tested both ways.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

fn manifest(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../manifests/prometheus/rules")
        .join(relative)
}

fn load(path: &Path) -> Yaml {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    YamlLoader::load_from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
        .remove(0)
}

fn promtool(args: &[&str], file: &Path) {
    let output = Command::new(crate::prometheus::prometheus_tool("promtool"))
        .args(args)
        .arg(file)
        .output()
        .expect("promtool runs");
    assert!(
        output.status.success(),
        "promtool {} {} failed:\n{}{}",
        args.join(" "),
        file.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_alert_rules_pass_promtool_check_and_their_unit_tests() {
    promtool(&["check", "rules"], &manifest("alerts.yml"));
    promtool(&["test", "rules"], &manifest("alerts_test.yml"));
}

/// Every alert rule, by name, with its annotations.
fn alerts() -> BTreeMap<String, Yaml> {
    let rules = load(&manifest("alerts.yml"));
    let mut alerts = BTreeMap::new();
    for group in rules["groups"].as_vec().expect("groups") {
        for rule in group["rules"].as_vec().expect("rules") {
            if let Some(name) = rule["alert"].as_str() {
                assert!(
                    alerts.insert(name.to_owned(), rule.clone()).is_none(),
                    "{name} is defined twice"
                );
            }
        }
    }
    alerts
}

#[test]
fn every_alert_has_a_summary_a_description_and_a_runbook_section() {
    let runbook =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/RUNBOOK.md"))
            .expect("docs/RUNBOOK.md");
    let sections: BTreeSet<&str> = runbook
        .lines()
        .filter_map(|line| line.strip_prefix("## "))
        .collect();
    let alerts = alerts();
    assert!(alerts.len() >= 23, "{} alerts", alerts.len());
    for (name, rule) in &alerts {
        let annotations = &rule["annotations"];
        for key in ["summary", "description"] {
            assert!(
                annotations[key]
                    .as_str()
                    .is_some_and(|text| text.len() > 20),
                "{name} has no useful {key}"
            );
        }
        let url = annotations["runbook_url"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no runbook_url"));
        let anchor = url
            .strip_prefix("docs/RUNBOOK.md#")
            .unwrap_or_else(|| panic!("{name}: {url} is not a section of docs/RUNBOOK.md"));
        assert_eq!(anchor, name.to_lowercase(), "{name}: anchor {anchor}");
        assert!(
            sections.contains(anchor),
            "docs/RUNBOOK.md has no section `## {anchor}` for {name}"
        );
        assert!(
            runbook.contains(&format!("**{name}**")),
            "the runbook section {anchor} does not name {name}"
        );
    }
}

#[test]
fn every_alert_is_tested_firing_and_quiet() {
    let tests = load(&manifest("alerts_test.yml"));
    let mut firing = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for group in tests["tests"].as_vec().expect("tests") {
        for case in group["alert_rule_test"].as_vec().expect("alert_rule_test") {
            let name = case["alertname"].as_str().expect("alertname").to_owned();
            match case["exp_alerts"].as_vec().map(Vec::is_empty) {
                Some(false) => firing.insert(name),
                _ => quiet.insert(name),
            };
        }
    }
    let alerts: BTreeSet<String> = alerts().into_keys().collect();
    for name in &alerts {
        assert!(firing.contains(name), "no promtool case where {name} fires");
        assert!(
            quiet.contains(name),
            "no promtool case where {name} stays quiet"
        );
    }
    let unknown: Vec<_> = firing
        .union(&quiet)
        .filter(|n| !alerts.contains(*n))
        .collect();
    assert!(
        unknown.is_empty(),
        "tests of alerts that do not exist: {unknown:?}"
    );
}
