-- Binds in progress: one row per binding whose bind has started (before its Cloud
-- Controller look-up) and has neither committed its binding nor given up. The row is
-- how an unbind that arrives while the bind still runs (the platform's orphan mitigation
-- after its broker timeout) learns about it, on whichever broker process it lands: the
-- unbind deletes the row and answers 200, and the bind, which checks under the app's lock
-- that its row is still there (same `attempt`) before writing anything, then gives up.
-- A bind commits its binding and deletes its row in one transaction. A row left by a
-- crashed broker blocks nothing: a later bind of the same binding id takes it over, and
-- an unbind removes it.
CREATE TABLE binding_attempts (
    binding_id  TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL,
    app_guid    TEXT NOT NULL,
    -- Validated binding parameters, normalised as in `service_bindings`.
    parameters  TEXT NOT NULL,
    -- Random id of the bind request(s) that own the row: identical concurrent requests
    -- share it, a different or later one replaces it.
    attempt     TEXT NOT NULL,
    started_at  BIGINT NOT NULL
);

CREATE INDEX binding_attempts_by_instance ON binding_attempts (instance_id);
