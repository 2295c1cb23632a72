//! Keeps each crate's list of the settings it reads true to its code.
//!
//! Every crate that reads settings declares their names in one `pub const SETTINGS` (a
//! service adds those of the crates it reads through: `gds_broker::config::settings()`).
//! The deployment manifests, the README's configuration table and the sd-sync unit are
//! checked against those lists (`tests/integration/manifests.rs`). What keeps the lists
//! themselves true is [`check_sources`], which each such crate's unit test calls: every
//! all-caps string literal (`"API_ENDPOINT"`, `"PORT"`) in the crate's non-test sources
//! must be a setting the crate declares, one of a crate it passes through (a store
//! setting named in an error message, say), or explicitly not a setting (`"GET"`); and
//! every setting it declares must occur in those sources.
//!
//! The check is lexical on purpose: it sees every way of reading a setting (a `Settings`
//! method, a `lookup` closure, `std::env::var`, a table of flags), so adding a setting
//! anywhere without declaring it fails the crate's tests.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every all-caps string literal (`"AWS_REGION"`, at least two characters of `A-Z`, `0-9`
/// and `_`, starting with a letter) in the non-test Rust sources under `dir`, with the
/// files it occurs in (relative to `dir`).
///
/// Non-test means: files named `tests.rs` and directories named `tests` are skipped, and
/// so is every item marked `#[cfg(test)]` at the start of a line (to the end of its line
/// when that ends with `;`, else to the next line starting with `}`). Comments are skipped.
pub fn setting_literals(dir: &Path) -> std::io::Result<BTreeMap<String, BTreeSet<PathBuf>>> {
    let mut found: BTreeMap<String, BTreeSet<PathBuf>> = BTreeMap::new();
    let mut files = Vec::new();
    collect_rust_files(dir, &mut files)?;
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        let relative = file.strip_prefix(dir).unwrap_or(&file).to_path_buf();
        for literal in string_literals(&without_test_items(&text)) {
            if looks_like_a_setting(&literal) {
                found.entry(literal).or_default().insert(relative.clone());
            }
        }
    }
    Ok(found)
}

/// Checks the sources under `CRATE_DIR/src` against what the crate declares.
///
/// - `declared`: the settings the crate reads itself (its `SETTINGS`);
/// - `passed_through`: settings of the crates it reads through, which its sources may
///   name (e.g. in an error message) without declaring them again;
/// - `not_settings`: all-caps literals that are no setting (`"GET"`, `"CARGO_PKG_VERSION"`).
///
/// The error is a readable report of every mismatch.
pub fn check_sources(
    crate_dir: &str,
    declared: &[&str],
    passed_through: &[&str],
    not_settings: &[&str],
) -> Result<(), String> {
    let src = Path::new(crate_dir).join("src");
    let found = setting_literals(&src).map_err(|e| format!("{}: {e}", src.display()))?;
    let mut problems = Vec::new();
    for (name, files) in &found {
        let known = declared.contains(&name.as_str())
            || passed_through.contains(&name.as_str())
            || not_settings.contains(&name.as_str());
        if !known {
            let files: Vec<_> = files.iter().map(|f| f.display().to_string()).collect();
            problems.push(format!(
                "{name:?} (in {}) is not declared: add it to the crate's SETTINGS if the \
                 code reads it, or to the test's list of literals that are no setting",
                files.join(", ")
            ));
        }
    }
    for name in declared {
        if !found.contains_key(*name) {
            problems.push(format!(
                "{name:?} is declared in SETTINGS but no source under {} names it",
                src.display()
            ));
        }
    }
    for name in not_settings {
        if declared.contains(name) {
            problems.push(format!("{name:?} is declared and listed as no setting"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the settings declared by {} do not match its sources:\n  {}",
            crate_dir,
            problems.join("\n  ")
        ))
    }
}

fn looks_like_a_setting(literal: &str) -> bool {
    let mut chars = literal.chars();
    literal.len() >= 2
        && chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

fn collect_rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if name != "tests" {
                collect_rust_files(&path, out)?;
            }
        } else if name.ends_with(".rs") && name != "tests.rs" {
            out.push(path);
        }
    }
    Ok(())
}

/// The text without the items marked `#[cfg(test)]` at the start of a line, and without
/// the declarations themselves (`const …SETTINGS: &[&str] = &[…];`).
fn without_test_items(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let declaration =
            line.trim_start().starts_with("pub const ") || line.trim_start().starts_with("const ");
        if declaration && line.contains("SETTINGS: &[&str]") {
            let mut end = line;
            while !end.trim_end().ends_with("];") {
                match lines.next() {
                    Some(next) => end = next,
                    None => break,
                }
            }
            continue;
        }
        if line.trim_end() != "#[cfg(test)]" {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        // The item: one line (`mod tests;`, `use ...;`) or up to its closing brace.
        let Some(first) = lines.next() else { break };
        if first.trim_end().ends_with(';') {
            continue;
        }
        for rest in lines.by_ref() {
            if rest.starts_with('}') {
                break;
            }
        }
    }
    out
}

/// The contents of the string literals in Rust source text (normal, byte and raw strings;
/// escapes are left as they are). Comments, char literals and lifetimes are skipped.
fn string_literals(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let at = |i: usize| chars.get(i).copied();
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(c) = at(i) {
        match c {
            '/' if at(i + 1) == Some('/') => {
                while at(i).is_some_and(|c| c != '\n') {
                    i += 1;
                }
            }
            '/' if at(i + 1) == Some('*') => {
                i += 2;
                while at(i).is_some() && !(at(i) == Some('*') && at(i + 1) == Some('/')) {
                    i += 1;
                }
                i += 2;
            }
            '"' => {
                let start = i + 1;
                i = start;
                while let Some(c) = at(i).filter(|&c| c != '"') {
                    i += if c == '\\' { 2 } else { 1 };
                }
                out.push(chars[start..i.min(chars.len())].iter().collect());
                i += 1;
            }
            '\'' => {
                // A char literal ('"', '\'', '\u{1F600}') or a lifetime ('a).
                if at(i + 1) == Some('\\') {
                    i += 2;
                    while at(i).is_some_and(|c| c != '\'') {
                        i += 1;
                    }
                    i += 1;
                } else if at(i + 2) == Some('\'') {
                    i += 3;
                } else {
                    i += 1;
                }
            }
            c if ident(c) => {
                // A string prefix (b"..", r"..", r#".."#, br"..") or an identifier,
                // consumed whole so that its last letter never starts a string.
                let mut j = i + usize::from(c == 'b');
                if at(j) == Some('r') {
                    let mut k = j + 1;
                    while at(k) == Some('#') {
                        k += 1;
                    }
                    if at(k) == Some('"') {
                        let hashes = k - j - 1;
                        let start = k + 1;
                        let mut end = start;
                        while at(end).is_some()
                            && !(at(end) == Some('"')
                                && (1..=hashes).all(|h| at(end + h) == Some('#')))
                        {
                            end += 1;
                        }
                        out.push(chars[start..end.min(chars.len())].iter().collect());
                        i = end + 1 + hashes;
                        continue;
                    }
                } else if j > i && at(j) == Some('"') {
                    i = j;
                    continue;
                }
                j = i;
                while at(j).is_some_and(ident) {
                    j += 1;
                }
                i = j;
            }
            _ => i += 1,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_found_and_comments_skipped() {
        let text = r####"
            // settings.get("IN_A_COMMENT")
            /* "IN_A_BLOCK" */
            let a = settings.get("API_ENDPOINT"); // "TRAILING"
            let b = lookup(r#"RAW_ONE"#);
            let c = br"BYTES";
            let q = '"'; let e = '\''; fn f<'a>(x: &'a str) {}
            let d = "with \"ESCAPED\" quotes";
            let s = "PORT";
            let for_r = bar(r"R_TWO");
        "####;
        assert_eq!(
            string_literals(text),
            [
                "API_ENDPOINT",
                "RAW_ONE",
                "BYTES",
                "with \\\"ESCAPED\\\" quotes",
                "PORT",
                "R_TWO"
            ]
        );
    }

    #[test]
    fn test_items_and_declarations_are_left_out() {
        // (Lines start with `|` here, so that this test's own text is not cut short.)
        let text: String = "
            |fn real() { get(\"REAL\") }
            |pub const SETTINGS: &[&str] = &[\"DECLARED\"];
            |pub const OTHER_SETTINGS: &[&str] = &[
            |    \"DECLARED_TOO\",
            |];
            |#[cfg(test)]
            |mod tests;
            |#[cfg(test)]
            |pub(crate) fn helper() {
            |    get(\"HELPER\")
            |}
            |fn also_real() { get(\"ALSO_REAL\") }
            |#[cfg(test)]
            |mod tests {
            |    fn t() { get(\"IN_TESTS\") }
            |}
            |fn last() { get(\"LAST\") }
        "
        .lines()
        .map(|l| format!("{}\n", l.trim_start().trim_start_matches('|')))
        .collect();
        let kept = without_test_items(&text);
        assert_eq!(string_literals(&kept), ["REAL", "ALSO_REAL", "LAST"]);
    }

    #[test]
    fn only_all_caps_names_count() {
        for yes in ["PORT", "AWS_REGION", "S3_ENDPOINT"] {
            assert!(looks_like_a_setting(yes), "{yes}");
        }
        for no in ["X", "Port", "3D", "A B", "api_endpoint", "", "_X"] {
            assert!(!looks_like_a_setting(no), "{no}");
        }
    }

    #[test]
    fn this_crate_declares_what_it_reads() {
        check_sources(env!("CARGO_MANIFEST_DIR"), crate::SETTINGS, &[], &[])
            .unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn an_undeclared_or_unread_setting_is_reported() {
        let e = check_sources(
            env!("CARGO_MANIFEST_DIR"),
            &["PORT", "NEVER_READ"],
            &[],
            &[],
        )
        .unwrap_err();
        assert!(
            e.contains("\"VCAP_SERVICES\" (in settings.rs) is not declared"),
            "{e}"
        );
        assert!(
            e.contains("\"NEVER_READ\" is declared in SETTINGS but"),
            "{e}"
        );
    }
}
