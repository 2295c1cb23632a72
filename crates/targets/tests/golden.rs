//! Golden tests: each directory under `tests/golden/` holds an `input.json` (an app as
//! the Cloud Controller describes it, the binding parameters and the configuration) and
//! the exact `expected.json` file the model must produce. They pin the file format.
//!
//! After an intended format change, regenerate with `UPDATE_GOLDEN=1 cargo test -p gds-targets`
//! and review the diff.

use std::fs;
use std::path::Path;

use gds_targets::{AppInfo, BindingParams, ModelConfig, build_target_file};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// What the case shows, for whoever reads the fixture.
    #[allow(dead_code)]
    about: String,
    app: AppInfo,
    #[serde(default)]
    params: Option<serde_json::Value>,
    config: ModelConfig,
}

fn load(dir: &Path) -> Case {
    let raw = fs::read(dir.join("input.json")).unwrap();
    serde_json::from_slice(&raw).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

fn build(case: &Case) -> Vec<u8> {
    let params = BindingParams::from_json(case.params.as_ref()).expect("fixture params are valid");
    build_target_file(&case.app, &case.config, &params).to_bytes()
}

#[test]
fn every_golden_case_produces_its_expected_file_byte_for_byte() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut dirs: Vec<_> = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 15, "golden cases went missing: {dirs:?}");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    for dir in dirs {
        let actual = build(&load(&dir));
        let expected_path = dir.join("expected.json");
        if update {
            fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        let expected = fs::read(&expected_path).unwrap_or_default();
        if actual != expected {
            failures.push(format!(
                "{}:\n--- expected\n{}\n--- actual\n{}",
                dir.display(),
                String::from_utf8_lossy(&expected),
                String::from_utf8_lossy(&actual)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn an_unchanged_app_produces_byte_identical_output() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let case = load(&root.join("metrics_route_preferred"));
    let first = build(&case);
    // Rebuilt from a copy that went through JSON, as the updater would after a new CC read.
    let reread: AppInfo = serde_json::from_slice(&serde_json::to_vec(&case.app).unwrap()).unwrap();
    let again = build(&Case {
        app: reread,
        ..case
    });
    assert_eq!(first, again);
}

#[test]
fn every_group_carries_only_targets_and_labels() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let bytes = build(&load(&root.join("extra_labels_and_scrape_interval")));
    let parsed: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    for group in parsed.as_array().unwrap() {
        let keys: Vec<_> = group.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["labels", "targets"]);
    }
}
