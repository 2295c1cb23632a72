-- The updater's state: orphaned bindings, the reconcile lease, the audit-event cursor.

-- Set when the Cloud Controller no longer knows the binding's app (deleted while the
-- platform's unbind never reached us): the app's files are gone, the row stays for the
-- operator to see (and for the platform's eventual unbind), NULL otherwise.
ALTER TABLE service_bindings ADD COLUMN orphaned_at BIGINT;

-- Leases: "only one updater reconciles at a time" across every process sharing the
-- database. One portable row per lease; a holder renews it while it works, and a crashed
-- holder's lease simply expires.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- Where the updater's audit-event poll continues: the last event second seen
-- (`YYYY-MM-DDThh:mm:ssZ`, the Cloud Controller's one-second precision) and the GUIDs of
-- the events of that second already handled (a JSON array), because the next poll asks
-- again from that second (`created_ats[gte]`).
CREATE TABLE event_cursors (
    name        TEXT PRIMARY KEY,
    last_second TEXT NOT NULL,
    seen_guids  TEXT NOT NULL,
    updated_at  BIGINT NOT NULL
);
