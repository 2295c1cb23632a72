//! What may be installed: a Prometheus `file_sd` file, and which names sd-sync manages.

use std::collections::BTreeMap;

use gds_store::Bytes;
use gds_targets::{TargetGroup, is_valid_label_name};
use serde::Deserialize;

/// Objects larger than this are refused unread: a target file is a few KiB per app, and a
/// huge object is a mistake that should not cost a node its memory.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Whether `name` is a file sd-sync manages: `<something>.json`, directly in its
/// directory (no `/`), not hidden (staged files start with a dot), no control characters,
/// and short enough for any file system.
///
/// The same rule selects objects in a listing and files in the directory, so sd-sync never
/// installs, and never deletes, anything else.
pub fn is_managed_name(name: &str) -> bool {
    name.len() > ".json".len()
        && name.len() <= 255
        && name.ends_with(".json")
        && !name.starts_with('.')
        && !name.contains(['/', '\\'])
        && !name.chars().any(char::is_control)
}

/// As Prometheus reads a group: `labels` may be left out; nothing but `targets` and
/// `labels` is allowed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LenientGroup {
    targets: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// A valid file's target groups, kept as the compact JSON of the groups without the
/// surrounding brackets (empty for `[]`), ready to be joined into an http_sd answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Groups {
    /// `{"targets":[...],"labels":{...}},{...}` or empty.
    pub fragment: Bytes,
}

/// Checks that `content` is a `file_sd` file Prometheus accepts — a JSON array of
/// `{"targets": [strings], "labels": {name: string}}` with valid label names — and returns
/// its groups. The message of an error says what is wrong, for the log.
pub fn parse_file_sd(content: &[u8]) -> Result<Groups, String> {
    let groups: Vec<LenientGroup> =
        serde_json::from_slice(content).map_err(|e| format!("not file_sd JSON: {e}"))?;
    let groups: Vec<TargetGroup> = groups
        .into_iter()
        .enumerate()
        .map(|(index, group)| {
            if let Some(bad) = group.labels.keys().find(|n| !is_valid_label_name(n)) {
                return Err(format!(
                    "group {index}: {bad:?} is not a valid Prometheus label name"
                ));
            }
            if group.targets.iter().any(|t| t.trim().is_empty()) {
                return Err(format!("group {index}: a target is empty"));
            }
            Ok(TargetGroup {
                targets: group.targets,
                labels: group.labels,
            })
        })
        .collect::<Result<_, _>>()?;
    let json = serde_json::to_vec(&groups).expect("target groups always serialise");
    // `[...]` -> `...`: the array's brackets are always its first and last bytes.
    let inner = &json[1..json.len() - 1];
    Ok(Groups {
        fragment: Bytes::copy_from_slice(inner),
    })
}

/// Joins fragments into one JSON array, the http_sd answer.
pub fn join_fragments<'a>(fragments: impl IntoIterator<Item = &'a Bytes>) -> Vec<u8> {
    let mut out = Vec::with_capacity(2);
    out.push(b'[');
    for fragment in fragments {
        if fragment.is_empty() {
            continue;
        }
        if out.len() > 1 {
            out.push(b',');
        }
        out.extend_from_slice(fragment);
    }
    out.push(b']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"[
      {"targets": ["my-app.example.com"],
       "labels": {"__param_cf_app_guid": "g", "instance": "g:0", "job": "my-app",
                  "__metrics_path__": "/metrics"}},
      {"targets": ["my-app.example.com"], "labels": {"instance": "g:1"}}
    ]"#;

    #[test]
    fn a_file_written_by_the_broker_is_valid_and_keeps_its_groups() {
        let groups = parse_file_sd(GOOD.as_bytes()).unwrap();
        let joined = join_fragments([&groups.fragment]);
        let value: serde_json::Value = serde_json::from_slice(&joined).unwrap();
        let expected: serde_json::Value = serde_json::from_str(GOOD).unwrap();
        assert_eq!(value, expected);
    }

    #[test]
    fn labels_may_be_left_out_as_prometheus_allows() {
        let groups = parse_file_sd(br#"[{"targets": ["a:9100"]}]"#).unwrap();
        assert_eq!(
            &groups.fragment[..],
            br#"{"targets":["a:9100"],"labels":{}}"#
        );
    }

    #[test]
    fn anything_else_is_refused_with_a_reason() {
        let cases: [(&str, &str); 8] = [
            ("", "not file_sd JSON"),
            ("[{\"targets\": [\"a\"]", "not file_sd JSON"),
            ("{}", "not file_sd JSON"),
            (
                r#"[{"targets": ["a"], "labels": {}, "extra": 1}]"#,
                "unknown field",
            ),
            (r#"[{"labels": {}}]"#, "missing field `targets`"),
            (
                r#"[{"targets": ["a"], "labels": {"a-b": "x"}}]"#,
                "not a valid",
            ),
            (
                r#"[{"targets": ["a"], "labels": {"a": 1}}]"#,
                "not file_sd JSON",
            ),
            (r#"[{"targets": [""], "labels": {}}]"#, "target is empty"),
        ];
        for (content, expected) in cases {
            let err = parse_file_sd(content.as_bytes()).unwrap_err();
            assert!(err.contains(expected), "{content}: {err}");
        }
    }

    #[test]
    fn an_empty_array_is_valid_and_contributes_nothing() {
        let empty = parse_file_sd(b"[]").unwrap();
        assert!(empty.fragment.is_empty());
        let one = parse_file_sd(br#"[{"targets": ["a"]}]"#).unwrap();
        assert_eq!(
            join_fragments([&empty.fragment, &one.fragment, &empty.fragment]),
            br#"[{"targets":["a"],"labels":{}}]"#
        );
        assert_eq!(join_fragments([]), b"[]");
    }

    #[test]
    fn only_plain_json_names_are_managed() {
        for name in [
            "a.json",
            "5b2b0e2e-7d1c-4f43-9a57-1a0c6f0d2a01.json",
            "x y.json",
        ] {
            assert!(is_managed_name(name), "{name}");
        }
        for name in [
            ".json",
            ".a.json",
            ".a.json.0123.tmp",
            "a.json.tmp",
            "a.JSON",
            "dir/a.json",
            "a\\b.json",
            "a\nb.json",
            "README",
        ] {
            assert!(!is_managed_name(name), "{name:?}");
        }
        assert!(!is_managed_name(&format!("{}.json", "a".repeat(251))));
    }
}
