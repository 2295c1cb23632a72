//! The writers' record: what the writers (broker, updater) say `active/` should hold.
//!
//! One small JSON object beside the two state directories, `[<prefix>]record/active.json`,
//! outside `active/` and `inactive/` so that an old `aws s3 sync .../active/` or an old
//! sd-sync never sees it (DESIGN.md section 3):
//!
//! ```json
//! {"format":1,"generation":42,"active_count":1234,"writer":"updater","written_at":"2026-12-07T12:00:00Z"}
//! ```
//!
//! sd-sync reads it before applying a deletion its safety valve would hold back: a mass
//! deletion goes through only when the record agrees (the listing holds at least
//! `active_count` objects), never because time passed (DESIGN.md section 5).
//!
//! # Publication protocol
//!
//! A writer changes `active/` first, then publishes: read the record (its ETag), list
//! `active/`, and replace the record with `generation + 1` and the listed count *only if
//! it still has the ETag read* (a conditional put); on a conflict, start the publication
//! again. The last successful publication therefore always follows a listing taken after
//! every writer's change: two writers racing can never leave a record that claims less
//! than the bucket holds (see [`crate::TargetStore::publish_record`]).

use serde::{Deserialize, Serialize};

/// The record's key relative to the store's root (the bucket prefix): a sibling of
/// `active/` and `inactive/`.
pub const RECORD_KEY: &str = "record/active.json";

/// The only format this code writes and understands.
pub const RECORD_FORMAT: u32 = 1;

/// The writers' record of what `active/` should hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WritersRecord {
    /// [`RECORD_FORMAT`]; a reader refuses a record of another format.
    pub format: u32,
    /// Increases by one with every publication.
    pub generation: u64,
    /// How many app files `active/` held when the writer listed it, after its change.
    pub active_count: u64,
    /// Which service published it (`broker`, `updater`), for operators.
    pub writer: String,
    /// When it was published (RFC 3339, the writer's clock), for operators.
    pub written_at: String,
}

impl WritersRecord {
    /// Parses a record object; unknown fields are ignored (a later format may add some),
    /// another `format` is an error.
    pub fn parse(body: &[u8]) -> Result<WritersRecord, String> {
        let record: WritersRecord = serde_json::from_slice(body)
            .map_err(|e| format!("the writers' record is not valid: {e}"))?;
        if record.format != RECORD_FORMAT {
            return Err(format!(
                "the writers' record has format {}, this version understands {RECORD_FORMAT}",
                record.format
            ));
        }
        Ok(record)
    }

    /// The record's object body.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a record always serialises")
    }

    /// Whether a complete listing of `listed` objects in `active/` agrees with the record:
    /// it holds at least what the writers say it should.
    pub fn agrees_with(&self, listed: usize) -> bool {
        listed as u64 >= self.active_count
    }
}

/// The key of the record for an sd-sync mapping whose prefix is `active_prefix`
/// (`""` or ending in `/`): `eu-west-2/active/` -> `eu-west-2/record/active.json`.
/// `None` when the prefix does not end in `active/`, so no record can be located.
pub fn record_key_for_active_prefix(active_prefix: &str) -> Option<String> {
    let root = active_prefix.strip_suffix("active/")?;
    if !(root.is_empty() || root.ends_with('/')) {
        return None;
    }
    Some(format!("{root}{RECORD_KEY}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(active_count: u64) -> WritersRecord {
        WritersRecord {
            format: RECORD_FORMAT,
            generation: 7,
            active_count,
            writer: "updater".into(),
            written_at: "2026-12-07T12:00:00Z".into(),
        }
    }

    #[test]
    fn a_record_round_trips_through_its_bytes() {
        let r = record(12);
        assert_eq!(WritersRecord::parse(&r.to_bytes()), Ok(r));
    }

    #[test]
    fn unknown_fields_are_ignored_and_another_format_is_refused() {
        let body = br#"{"format":1,"generation":3,"active_count":2,"writer":"broker","written_at":"x","later":true}"#;
        assert_eq!(WritersRecord::parse(body).unwrap().active_count, 2);
        let body =
            br#"{"format":2,"generation":3,"active_count":2,"writer":"broker","written_at":"x"}"#;
        assert!(WritersRecord::parse(body).unwrap_err().contains("format 2"));
        assert!(WritersRecord::parse(b"[]").is_err());
    }

    #[test]
    fn a_listing_agrees_when_it_holds_at_least_the_recorded_count() {
        assert!(record(0).agrees_with(0));
        assert!(record(3).agrees_with(3));
        assert!(record(3).agrees_with(4));
        assert!(!record(3).agrees_with(2));
        assert!(!record(1).agrees_with(0));
    }

    #[test]
    fn the_record_sits_beside_the_active_directory() {
        assert_eq!(
            record_key_for_active_prefix("active/").as_deref(),
            Some("record/active.json")
        );
        assert_eq!(
            record_key_for_active_prefix("eu-west-2/active/").as_deref(),
            Some("eu-west-2/record/active.json")
        );
        assert_eq!(record_key_for_active_prefix("eu-west-2/"), None);
        assert_eq!(record_key_for_active_prefix("inactive/"), None);
        assert_eq!(record_key_for_active_prefix(""), None);
    }
}
