//! Secret per-binding scrape credentials: the token of a binding, and the bucket document
//! that tells the scrape gateway which of an app's bindings use one.
//!
//! # Where the secret lives: nowhere at rest
//!
//! A binding's token is *derived*:
//!
//! ```text
//! token = base64url_nopad(HMAC-SHA256(key, "gds-prometheus/scrape-token/v1:" + binding_id))
//! ```
//!
//! where `key` is a deployment secret given to the broker and to sd-sync
//! (`SCRAPE_TOKEN_KEY` / `SCRAPE_TOKEN_KEY_FILE`, at least 32 bytes). So no token is in the
//! database, the bucket or any file; an identical repeated bind (OSB wants the same
//! credentials back, and `GET` of a binding) gives the same token without storing it; a
//! new binding (rebind) gets a new token; rotating the key rotates every token.
//!
//! # The credentials document
//!
//! `[<prefix>]credentials/<app_guid>.json`, beside `active/` and `inactive/` (never
//! mirrored into Prometheus' directory, DESIGN.md section 3):
//!
//! ```json
//! {"format":1,"app_guid":"…","bindings":[{"binding_id":"…","auth":"token","created_at":"2026-12-07T12:00:00.123Z"}]}
//! ```
//!
//! It lists *all* the app's bindings, oldest first, and exists only while at least one of
//! them uses a token ([`ScrapeAuth::Token`]). It holds no secret: binding ids are visible
//! to tenants, and a token needs the key. The gateway sends the authorization of the
//! app's **oldest** binding ([`CredentialsDocument::oldest`]), which makes rotation
//! without a gap possible (bind a new binding, restart the app, unbind the old one).

use std::fmt;
use std::path::Path;

use base64::Engine;
use gds_service::Secret;
use gds_targets::{AppGuid, ScrapeAuth};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The shortest key accepted, in bytes: HMAC-SHA256 wants a key as long as its output.
pub const MIN_KEY_BYTES: usize = 32;

/// What is MACed before the binding id: names the purpose and the version of the rule, so
/// the same key could serve another purpose without ever giving the same value.
const TOKEN_CONTEXT: &str = "gds-prometheus/scrape-token/v1:";

/// The deployment's scrape token key. `Debug` never shows it.
#[derive(Clone)]
pub struct ScrapeTokenKey(Secret);

impl fmt::Debug for ScrapeTokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ScrapeTokenKey([redacted])")
    }
}

impl ScrapeTokenKey {
    /// The key given as text (e.g. the output of `openssl rand -base64 32`): its bytes,
    /// leading and trailing whitespace removed (a file's final newline), at least
    /// [`MIN_KEY_BYTES`] of them. The text is used as it is, not decoded, so that the
    /// broker and sd-sync agree whatever encoding the operator chose. The error names no
    /// part of the key.
    pub fn parse(text: &str) -> Result<ScrapeTokenKey, String> {
        let key = text.trim();
        if key.len() < MIN_KEY_BYTES {
            return Err(format!(
                "is {} bytes long; it must be at least {MIN_KEY_BYTES} (e.g. `openssl rand -base64 32`)",
                key.len()
            ));
        }
        Ok(ScrapeTokenKey(Secret::new(key)))
    }

    /// The key in the file at `path` (see [`ScrapeTokenKey::parse`]).
    pub fn read_file(path: &Path) -> Result<ScrapeTokenKey, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        ScrapeTokenKey::parse(&text).map_err(|e| format!("the key in {} {e}", path.display()))
    }

    /// The token of a binding: 256 bits, base64url without padding (43 characters).
    pub fn token_for(&self, binding_id: &str) -> Secret {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.expose().as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(TOKEN_CONTEXT.as_bytes());
        mac.update(binding_id.as_bytes());
        let digest = mac.finalize().into_bytes();
        Secret::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest))
    }
}

/// The only format this code writes and understands.
pub const CREDENTIALS_FORMAT: u32 = 1;

/// Longest binding id accepted in a document (the broker accepts no longer one).
const MAX_BINDING_ID_LEN: usize = 255;

/// One binding in a [`CredentialsDocument`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingAuth {
    pub binding_id: String,
    pub auth: ScrapeAuth,
    /// When the binding was created (RFC 3339), for operators and for ordering.
    pub created_at: String,
}

/// Which bindings of an app use which authorization: `credentials/<app_guid>.json`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialsDocument {
    pub app_guid: AppGuid,
    /// All the app's bindings, oldest first; never empty.
    pub bindings: Vec<BindingAuth>,
}

#[derive(Serialize, Deserialize)]
struct RawDocument {
    format: u32,
    app_guid: String,
    bindings: Vec<RawBinding>,
}

#[derive(Serialize, Deserialize)]
struct RawBinding {
    binding_id: String,
    auth: String,
    created_at: String,
}

impl CredentialsDocument {
    /// The document of `app` for `bindings` (oldest first), or `None` when none of them
    /// uses a token: then the app has no document.
    pub fn for_bindings(app: &AppGuid, bindings: Vec<BindingAuth>) -> Option<CredentialsDocument> {
        bindings
            .iter()
            .any(|b| b.auth == ScrapeAuth::Token)
            .then(|| CredentialsDocument {
                app_guid: app.clone(),
                bindings,
            })
    }

    /// The binding whose authorization the gateway sends: the oldest.
    pub fn oldest(&self) -> &BindingAuth {
        &self.bindings[0]
    }

    /// The document's bytes: compact JSON, deterministic (so "changed?" is an ETag
    /// comparison).
    pub fn to_bytes(&self) -> Vec<u8> {
        let raw = RawDocument {
            format: CREDENTIALS_FORMAT,
            app_guid: self.app_guid.to_string(),
            bindings: self
                .bindings
                .iter()
                .map(|b| RawBinding {
                    binding_id: b.binding_id.clone(),
                    auth: b.auth.as_str().to_owned(),
                    created_at: b.created_at.clone(),
                })
                .collect(),
        };
        serde_json::to_vec(&raw).expect("a credentials document always serialises")
    }

    /// Parses and checks a document found at `credentials/<expected>.json`: format 1, the
    /// app GUID of its name, at least one binding, each with a printable id (unique), a
    /// known `auth` and an RFC 3339 `created_at`. Unknown fields are ignored.
    pub fn parse(body: &[u8], expected: &AppGuid) -> Result<CredentialsDocument, String> {
        let raw: RawDocument =
            serde_json::from_slice(body).map_err(|e| format!("not a credentials document: {e}"))?;
        if raw.format != CREDENTIALS_FORMAT {
            return Err(format!(
                "format {} (this version understands {CREDENTIALS_FORMAT})",
                raw.format
            ));
        }
        if raw.app_guid != expected.as_str() {
            return Err(format!(
                "app_guid {:?} is not the app the document is named after",
                raw.app_guid
            ));
        }
        if raw.bindings.is_empty() {
            return Err("lists no binding".into());
        }
        let mut bindings: Vec<BindingAuth> = Vec::with_capacity(raw.bindings.len());
        for (i, b) in raw.bindings.into_iter().enumerate() {
            if b.binding_id.is_empty()
                || b.binding_id.len() > MAX_BINDING_ID_LEN
                || b.binding_id.chars().any(char::is_control)
            {
                return Err(format!("bindings[{i}].binding_id is not a binding id"));
            }
            if bindings.iter().any(|seen| seen.binding_id == b.binding_id) {
                return Err(format!("bindings[{i}].binding_id is listed twice"));
            }
            let auth = ScrapeAuth::parse(&b.auth).map_err(|e| format!("bindings[{i}].auth {e}"))?;
            time::OffsetDateTime::parse(
                &b.created_at,
                &time::format_description::well_known::Rfc3339,
            )
            .map_err(|e| format!("bindings[{i}].created_at is not RFC 3339: {e}"))?;
            bindings.push(BindingAuth {
                binding_id: b.binding_id,
                auth,
                created_at: b.created_at,
            });
        }
        Ok(CredentialsDocument {
            app_guid: expected.clone(),
            bindings,
        })
    }
}

/// `created_at` of a binding (milliseconds since the Unix epoch, as the database keeps
/// it) in RFC 3339 with milliseconds, UTC.
pub fn rfc3339_millis(millis: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    at.format(&format).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef";
    const GUID: &str = "1cb006ee-fb05-47e1-b541-c34179ddc446";

    fn key() -> ScrapeTokenKey {
        ScrapeTokenKey::parse(KEY).unwrap()
    }

    fn app() -> AppGuid {
        AppGuid::parse(GUID).unwrap()
    }

    fn binding(id: &str, auth: ScrapeAuth) -> BindingAuth {
        BindingAuth {
            binding_id: id.into(),
            auth,
            created_at: "2026-12-07T12:00:00.123Z".into(),
        }
    }

    #[test]
    fn a_token_is_the_hmac_sha256_of_the_binding_id_in_base64url() {
        // Computed independently: Python's hmac, hashlib.sha256 and base64.urlsafe_b64encode.
        assert_eq!(
            key().token_for("binding-1").expose(),
            "oyxgd0AgNNUE1kNAathx-MVnATH1WuHde2ZJifX6txE"
        );
        assert_eq!(
            key().token_for("binding-2").expose(),
            "jEO6DjDIR8qca23uiseKPPLlCcVWOrmzXvTcfaWFvm0"
        );
    }

    #[test]
    fn tokens_differ_per_binding_and_per_key_and_repeat_for_the_same_pair() {
        let other = ScrapeTokenKey::parse(&format!("{KEY}x")).unwrap();
        assert_eq!(key().token_for("b"), key().token_for("b"));
        assert_ne!(key().token_for("b"), key().token_for("c"));
        assert_ne!(key().token_for("b"), other.token_for("b"));
        assert_eq!(key().token_for("b").expose().len(), 43);
    }

    #[test]
    fn a_key_is_trimmed_and_must_have_32_bytes_and_is_never_printed() {
        assert_eq!(
            ScrapeTokenKey::parse(&format!("  {KEY}\n"))
                .unwrap()
                .token_for("binding-1"),
            key().token_for("binding-1")
        );
        let short = ScrapeTokenKey::parse("short-secret-value\n").unwrap_err();
        assert!(short.contains("at least 32"), "{short}");
        assert!(!short.contains("short-secret"), "{short}");
        assert!(!format!("{:?}", key()).contains(KEY));
    }

    #[test]
    fn a_key_file_is_read_and_a_missing_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, format!("{KEY}\n")).unwrap();
        assert_eq!(
            ScrapeTokenKey::read_file(&path)
                .unwrap()
                .token_for("binding-1"),
            key().token_for("binding-1")
        );
        let missing = ScrapeTokenKey::read_file(&dir.path().join("nope")).unwrap_err();
        assert!(missing.contains("nope"), "{missing}");
    }

    #[test]
    fn a_document_exists_only_when_a_binding_uses_a_token() {
        let none = vec![binding("a", ScrapeAuth::AppGuid)];
        assert_eq!(CredentialsDocument::for_bindings(&app(), none), None);
        let some = vec![
            binding("a", ScrapeAuth::AppGuid),
            binding("b", ScrapeAuth::Token),
        ];
        let doc = CredentialsDocument::for_bindings(&app(), some).unwrap();
        assert_eq!(doc.oldest().binding_id, "a");
    }

    #[test]
    fn a_document_round_trips_through_its_exact_bytes() {
        let doc = CredentialsDocument::for_bindings(
            &app(),
            vec![
                binding("b-1", ScrapeAuth::Token),
                binding("b-2", ScrapeAuth::AppGuid),
            ],
        )
        .unwrap();
        let bytes = doc.to_bytes();
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            format!(
                r#"{{"format":1,"app_guid":"{GUID}","bindings":[{{"binding_id":"b-1","auth":"token","created_at":"2026-12-07T12:00:00.123Z"}},{{"binding_id":"b-2","auth":"app_guid","created_at":"2026-12-07T12:00:00.123Z"}}]}}"#
            )
        );
        assert_eq!(CredentialsDocument::parse(&bytes, &app()), Ok(doc));
    }

    #[test]
    fn malformed_documents_are_refused_with_a_reason() {
        let other = "2cb006ee-fb05-47e1-b541-c34179ddc446";
        let entry = r#"{"binding_id":"b","auth":"token","created_at":"2026-12-07T12:00:00Z"}"#;
        for (body, reason) in [
            ("[]".to_owned(), "not a credentials document"),
            (
                format!(r#"{{"format":2,"app_guid":"{GUID}","bindings":[{entry}]}}"#),
                "format 2",
            ),
            (
                format!(r#"{{"format":1,"app_guid":"{other}","bindings":[{entry}]}}"#),
                "not the app",
            ),
            (
                format!(r#"{{"format":1,"app_guid":"{GUID}","bindings":[]}}"#),
                "no binding",
            ),
            (
                format!(r#"{{"format":1,"app_guid":"{GUID}","bindings":[{entry},{entry}]}}"#),
                "twice",
            ),
            (
                format!(
                    r#"{{"format":1,"app_guid":"{GUID}","bindings":[{{"binding_id":"b","auth":"basic","created_at":"2026-12-07T12:00:00Z"}}]}}"#
                ),
                "bindings[0].auth",
            ),
            (
                format!(
                    r#"{{"format":1,"app_guid":"{GUID}","bindings":[{{"binding_id":"","auth":"token","created_at":"2026-12-07T12:00:00Z"}}]}}"#
                ),
                "binding_id",
            ),
            (
                format!(
                    r#"{{"format":1,"app_guid":"{GUID}","bindings":[{{"binding_id":"b","auth":"token","created_at":"yesterday"}}]}}"#
                ),
                "RFC 3339",
            ),
        ] {
            let e = CredentialsDocument::parse(body.as_bytes(), &app()).unwrap_err();
            assert!(e.contains(reason), "{body}: {e}");
        }
    }

    #[test]
    fn creation_times_are_rfc3339_with_milliseconds() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(1_796_644_800_123),
            "2026-12-07T12:00:00.123Z"
        );
    }
}
