//! Where the audit-event fast path continues (`event_cursors`).

use std::collections::BTreeSet;

use crate::{Db, DbError, now_millis};

/// Where an audit-event poll continues (see the `event_cursors` table).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventCursor {
    /// The newest event second handled, `YYYY-MM-DDThh:mm:ssZ`; the next poll asks for
    /// events created at or after it.
    pub last_second: String,
    /// GUIDs of the events of `last_second` already handled, to drop on the next poll.
    pub seen: BTreeSet<String>,
}

impl Db {
    /// The cursor `name`, if one was saved.
    pub async fn event_cursor(&self, name: &str) -> Result<Option<EventCursor>, DbError> {
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT last_second, seen_guids FROM event_cursors WHERE name = $1")
                .bind(name)
                .fetch_optional(self.pool())
                .await
                .map_err(DbError::query("reading the event cursor"))?;
        row.map(|(last_second, seen)| {
            let seen = serde_json::from_str(&seen).map_err(|e| {
                DbError::Corrupt(format!(
                    "event cursor {name}: seen_guids is not a list: {e}"
                ))
            })?;
            Ok(EventCursor { last_second, seen })
        })
        .transpose()
    }

    /// Saves the cursor `name` (replacing the previous one).
    pub async fn save_event_cursor(&self, name: &str, cursor: &EventCursor) -> Result<(), DbError> {
        let seen = serde_json::to_string(&cursor.seen).expect("a set of strings serialises");
        sqlx::query(
            "INSERT INTO event_cursors (name, last_second, seen_guids, updated_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE SET \
             last_second = excluded.last_second, seen_guids = excluded.seen_guids, \
             updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(&cursor.last_second)
        .bind(seen)
        .bind(now_millis())
        .execute(self.pool())
        .await
        .map(drop)
        .map_err(DbError::query("saving the event cursor"))
    }
}

/// The event cursor's part of the repository suite (see [`crate::conformance`]).
#[cfg(any(test, feature = "conformance"))]
pub mod checks {
    use super::*;
    use crate::conformance::must;

    pub async fn the_event_cursor_round_trips(db: &Db) {
        assert_eq!(must("event_cursor", db.event_cursor("audit").await), None);
        let cursor = EventCursor {
            last_second: "2026-01-02T03:04:05Z".into(),
            seen: ["e-1".to_owned(), "e-2".to_owned()].into(),
        };
        must("save", db.save_event_cursor("audit", &cursor).await);
        assert_eq!(
            must("event_cursor", db.event_cursor("audit").await),
            Some(cursor)
        );
        let later = EventCursor {
            last_second: "2026-01-02T03:04:06Z".into(),
            seen: BTreeSet::new(),
        };
        must("save", db.save_event_cursor("audit", &later).await);
        assert_eq!(
            must("event_cursor", db.event_cursor("audit").await),
            Some(later)
        );
    }
}
