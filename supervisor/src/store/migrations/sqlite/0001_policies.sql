-- Stored policies: one row per (tenant, name), never removed (delete is a
-- flag), so revision numbers and history survive a delete and a revive.
CREATE TABLE policies (
    id            INTEGER PRIMARY KEY,
    tenant        TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    active        INTEGER,
    deleted       INTEGER NOT NULL DEFAULT 0,
    updated_at_ms INTEGER NOT NULL,
    UNIQUE (tenant, name)
);

-- Immutable revisions; numbers are per policy, 1, 2, 3...
CREATE TABLE revisions (
    policy        INTEGER NOT NULL REFERENCES policies (id),
    number        INTEGER NOT NULL,
    policy_id     TEXT    NOT NULL,
    text          TEXT    NOT NULL,
    bytes         INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    created_by    TEXT    NOT NULL,
    PRIMARY KEY (policy, number)
);
CREATE INDEX revisions_by_policy_id ON revisions (policy, policy_id);

-- Bytes of all stored revision texts of a tenant, kept with each insert so
-- the storage quota is not a scan.
CREATE TABLE tenant_usage (
    tenant       TEXT    PRIMARY KEY,
    stored_bytes INTEGER NOT NULL
);

-- The change history. AUTOINCREMENT: a seq is never reused, and writers are
-- serialized, so seq order is commit order (replicas poll with seq > last).
-- active_after is the active revision after the change (what rollback walks).
CREATE TABLE changes (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant        TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    kind          TEXT    NOT NULL CHECK (kind IN ('store', 'activate', 'rollback', 'delete')),
    from_revision INTEGER,
    to_revision   INTEGER,
    active_after  INTEGER,
    actor         TEXT    NOT NULL,
    at_ms         INTEGER NOT NULL
);
CREATE INDEX changes_by_policy ON changes (tenant, name, seq);
