-- Stored policies: one row per (tenant, name), never removed (delete is a
-- flag), so revision numbers and history survive a delete and a revive.
CREATE TABLE policies (
    id            BIGSERIAL PRIMARY KEY,
    tenant        TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    active        BIGINT,
    deleted       BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at_ms BIGINT  NOT NULL,
    UNIQUE (tenant, name)
);

-- Immutable revisions; numbers are per policy, 1, 2, 3... The text is
-- BYTEA: PostgreSQL's TEXT cannot hold a NUL, which valid UTF-8 may.
CREATE TABLE revisions (
    policy        BIGINT NOT NULL REFERENCES policies (id),
    number        BIGINT NOT NULL,
    policy_id     TEXT   NOT NULL,
    text          BYTEA  NOT NULL,
    bytes         BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    created_by    TEXT   NOT NULL,
    PRIMARY KEY (policy, number)
);
CREATE INDEX revisions_by_policy_id ON revisions (policy, policy_id);

-- Bytes of all stored revision texts of a tenant, kept with each insert so
-- the storage quota is not a scan.
CREATE TABLE tenant_usage (
    tenant       TEXT   PRIMARY KEY,
    stored_bytes BIGINT NOT NULL
);

-- The change history. Writers hold one advisory lock while they take a seq
-- and commit, so seq order is commit order (replicas poll with seq > last
-- and never skip a change that commits late). active_after is the active
-- revision after the change (what rollback walks).
CREATE TABLE changes (
    seq           BIGSERIAL PRIMARY KEY,
    tenant        TEXT   NOT NULL,
    name          TEXT   NOT NULL,
    kind          TEXT   NOT NULL CHECK (kind IN ('store', 'activate', 'rollback', 'delete')),
    from_revision BIGINT,
    to_revision   BIGINT,
    active_after  BIGINT,
    actor         TEXT   NOT NULL,
    at_ms         BIGINT NOT NULL
);
CREATE INDEX changes_by_policy ON changes (tenant, name, seq);
