-- Tenants, keys, accounts, the greeter's birthdays, counters and the audit trail.
-- Times are microseconds since the Unix epoch.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

INSERT INTO tenants (id, name, created_at)
VALUES ('00000000-0000-0000-0000-000000000000', 'default', 0);

CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    prefix        TEXT NOT NULL UNIQUE,
    secret_hash   TEXT NOT NULL,
    scopes        TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER,
    revoked_at    INTEGER
) STRICT;
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, id);

CREATE TABLE accounts (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL UNIQUE REFERENCES tenants(id),
    email          TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    created_at     INTEGER NOT NULL
) STRICT;

CREATE TABLE greeter_birthdays (
    tenant_id      TEXT NOT NULL REFERENCES tenants(id),
    username       TEXT NOT NULL,
    date_of_birth  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, username)
) STRICT, WITHOUT ROWID;

CREATE TABLE counters (
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    name       TEXT NOT NULL,
    value      INTEGER NOT NULL CHECK (value >= 0),
    PRIMARY KEY (tenant_id, name)
) STRICT, WITHOUT ROWID;

-- Append-only and written on every mutating request, so it keeps one index only:
-- the rowid orders events (and is the page cursor), the id is not indexed.
CREATE TABLE audit_events (
    seq          INTEGER PRIMARY KEY,
    id           TEXT NOT NULL,
    at           INTEGER NOT NULL,
    tenant_id    TEXT,
    key_prefix   TEXT,
    method       TEXT NOT NULL,
    route        TEXT NOT NULL,
    resource_id  TEXT,
    status       INTEGER NOT NULL,
    request_id   TEXT NOT NULL,
    source       TEXT
) STRICT;
CREATE INDEX audit_events_by_tenant ON audit_events (tenant_id, seq);
