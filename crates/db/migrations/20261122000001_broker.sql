-- The broker's state: service instances and their bindings, plus one lock row per app.
--
-- Portable between SQLite and PostgreSQL through sqlx's Any driver, which only knows
-- BIGINT, TEXT and friends: timestamps are BIGINT milliseconds since the Unix epoch,
-- GUIDs and JSON are TEXT (JSON normalised: compact, keys sorted).

CREATE TABLE service_instances (
    instance_id       TEXT PRIMARY KEY,
    service_id        TEXT NOT NULL,
    plan_id           TEXT NOT NULL,
    organization_guid TEXT NOT NULL,
    space_guid        TEXT NOT NULL,
    -- The provision request's `parameters` object, '{}' when none were given.
    parameters        TEXT NOT NULL,
    -- The provision request's `context` object (org and space names etc.), '{}' when absent.
    context           TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);

CREATE TABLE service_bindings (
    binding_id  TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL REFERENCES service_instances (instance_id),
    app_guid    TEXT NOT NULL,
    -- Validated binding parameters, normalised (`BindingParams::to_json`).
    parameters  TEXT NOT NULL,
    -- Strictly increasing per app (assigned under the app's lock), so "the most recently
    -- created binding" of an app is well defined even when two arrive in one millisecond.
    created_at  BIGINT NOT NULL
);

CREATE INDEX service_bindings_by_app ON service_bindings (app_guid, created_at);
CREATE INDEX service_bindings_by_instance ON service_bindings (instance_id);

-- One row per app that was ever bound. Every change to an app's bindings and target
-- files happens in a transaction that first upserts this row, which serialises them per
-- app across every broker (and updater) process sharing the database; see `AppTx`.
CREATE TABLE app_locks (
    app_guid  TEXT PRIMARY KEY,
    locked_at BIGINT NOT NULL
);
