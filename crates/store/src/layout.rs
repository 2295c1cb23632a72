//! The bucket layout, in exactly one place: `[<prefix>]<state>/<app_guid>.json`.
//!
//! The same relative keys name files under a [`crate::DirStore`] root, objects under an
//! [`crate::S3Store`] prefix and entries of a [`crate::MemoryStore`]. Nothing outside this
//! module formats or parses a key.

use gds_targets::AppGuid;

use crate::TargetState;

const SUFFIX: &str = ".json";

/// The name of an app's file inside a state directory: `<app_guid>.json`.
pub(crate) fn file_name(app: &AppGuid) -> String {
    format!("{app}{SUFFIX}")
}

/// The directory of a state relative to the root, with its trailing slash: `active/`.
pub(crate) fn state_dir(state: TargetState) -> String {
    format!("{}/", state.dir_name())
}

/// The key of an app's file relative to the root: `active/<app_guid>.json`.
pub(crate) fn relative_key(state: TargetState, app: &AppGuid) -> String {
    format!("{}{}", state_dir(state), file_name(app))
}

/// The directory of the scrape credentials documents relative to the root:
/// `credentials/` (a sibling of `active/` and `inactive/`, see
/// [`crate::scrape_credentials`]).
pub(crate) const CREDENTIALS_DIR: &str = "credentials/";

/// The key of an app's credentials document relative to the root:
/// `credentials/<app_guid>.json`.
pub(crate) fn credentials_key(app: &AppGuid) -> String {
    format!("{CREDENTIALS_DIR}{}", file_name(app))
}

/// The app whose credentials document `name` is, for a `name` found directly inside
/// `credentials/` (`location` only serves the log line); like [`app_of_listed_name`].
pub(crate) fn app_of_listed_credentials_name(
    name: &str,
    location: &dyn std::fmt::Display,
) -> Option<AppGuid> {
    app_of_name_in("credentials", name, location)
}

/// The app whose file `name` is, for a `name` found directly inside the directory of
/// `state` (`location` only serves the log line).
///
/// Anything else is skipped: a warning for foreign entries (someone put them there; we
/// never return nor delete them), a debug line for our own staged files. A GUID must be
/// in its canonical lowercase form: `1CB0….json` would parse, but `read_app` and
/// `remove_app` could never address it, so listing it would plan actions that cannot work.
pub(crate) fn app_of_listed_name(
    state: TargetState,
    name: &str,
    location: &dyn std::fmt::Display,
) -> Option<AppGuid> {
    app_of_name_in(state.dir_name(), name, location)
}

fn app_of_name_in(state: &str, name: &str, location: &dyn std::fmt::Display) -> Option<AppGuid> {
    let app = name
        .strip_suffix(SUFFIX)
        .and_then(|stem| AppGuid::parse(stem).ok().filter(|app| app.as_str() == stem));
    if app.is_none() {
        if is_staged_file_name(name) {
            tracing::debug!(%state, %location, "skipping a staged file in a listing");
        } else {
            tracing::warn!(
                %state,
                %location,
                "skipping an entry that is not <app guid>.json in the target store listing"
            );
        }
    }
    app
}

/// The start of every staged file's name.
const STAGED_PREFIX: &str = ".staged-";
/// The end of every staged file's name.
const STAGED_SUFFIX: &str = ".tmp";

/// The name of the staged (temporary) file for an atomic write in a directory:
/// `.staged-<unique>.tmp`. It never ends in `.json`, so Prometheus' `*.json` glob never
/// picks it up, and it starts with a dot, so it is hidden.
///
/// Not derived from the final name: a final name may use all of the file system's 255
/// bytes (sd-sync installs any `*.json` object name up to that), and a staged name that
/// added to it would then fail with "File name too long" on every attempt. `unique` is
/// short: `<pid>-<n>` ([`crate::atomic`], the one writer of staged files).
pub fn staged_file_name(unique: &str) -> String {
    format!("{STAGED_PREFIX}{unique}{STAGED_SUFFIX}")
}

/// The `unique` part of a name made by [`staged_file_name`], if it is one.
pub fn unique_of_staged_file_name(name: &str) -> Option<&str> {
    name.strip_prefix(STAGED_PREFIX)?
        .strip_suffix(STAGED_SUFFIX)
        .filter(|unique| !unique.is_empty())
}

/// Staged files, of this rule or of the earlier `.<final name>.<unique>.tmp`.
fn is_staged_file_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(STAGED_SUFFIX)
}

/// Normalises a key prefix: no leading `/`, one trailing `/` unless empty. Only
/// characters that need no escaping anywhere (in keys, `CopyObject` sources, file
/// names) are accepted.
pub(crate) fn normalise_prefix(prefix: &str) -> Result<String, String> {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    if let Some(bad) = trimmed
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')))
    {
        return Err(format!(
            "{prefix:?} contains {bad:?}; use letters, digits, '-', '_', '.' and '/'"
        ));
    }
    if trimmed
        .split('/')
        .any(|part| matches!(part, "" | "." | ".."))
    {
        return Err(format!("{prefix:?} has an empty, '.' or '..' path segment"));
    }
    Ok(format!("{trimmed}/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUID: &str = "1cb006ee-fb05-47e1-b541-c34179ddc446";

    fn app() -> AppGuid {
        AppGuid::parse(GUID).unwrap()
    }

    #[test]
    fn keys_follow_the_cf_app_discovery_layout() {
        assert_eq!(
            relative_key(TargetState::Active, &app()),
            format!("active/{GUID}.json")
        );
        assert_eq!(
            relative_key(TargetState::Inactive, &app()),
            format!("inactive/{GUID}.json")
        );
    }

    #[test]
    fn a_listed_file_name_gives_back_its_app() {
        let name = file_name(&app());
        assert_eq!(
            app_of_listed_name(TargetState::Active, &name, &name),
            Some(app())
        );
    }

    #[test]
    fn foreign_names_are_not_apps() {
        for name in [
            "README.txt",
            "not-a-guid.json",
            GUID,
            &format!("{GUID}.json.bak"),
            &format!("{}.json", GUID.to_uppercase()),
            &format!("nested/{GUID}.json"),
            &format!("{GUID}.JSON"),
            &staged_file_name("x"),
        ] {
            assert_eq!(
                app_of_listed_name(TargetState::Active, name, &name),
                None,
                "{name}"
            );
        }
    }

    #[test]
    fn staged_file_names_never_end_in_json_are_hidden_and_short() {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let staged = staged_file_name(&unique);
        assert!(!staged.ends_with(".json"), "{staged}");
        assert!(staged.starts_with('.'), "{staged}");
        assert!(staged.len() < 64, "{staged}");
        assert!(is_staged_file_name(&staged));
        assert_eq!(unique_of_staged_file_name(&staged), Some(unique.as_str()));
        for other in [
            "x.json",
            ".staged-.tmp",
            ".staged-1",
            "staged-1.tmp",
            ".x.json.1.tmp",
        ] {
            assert_eq!(unique_of_staged_file_name(other), None, "{other}");
        }
    }

    #[test]
    fn prefixes_get_exactly_one_trailing_slash() {
        assert_eq!(normalise_prefix("").unwrap(), "");
        assert_eq!(normalise_prefix("/").unwrap(), "");
        assert_eq!(normalise_prefix("eu-west-1").unwrap(), "eu-west-1/");
        assert_eq!(normalise_prefix("/eu-west-1/").unwrap(), "eu-west-1/");
        assert_eq!(normalise_prefix("a/b_c.d").unwrap(), "a/b_c.d/");
    }

    #[test]
    fn prefixes_that_would_need_escaping_or_escape_are_rejected() {
        for bad in ["a b", "a//b", "../x", "a/./b", "x?y", "ü"] {
            assert!(normalise_prefix(bad).is_err(), "{bad:?}");
        }
    }
}
