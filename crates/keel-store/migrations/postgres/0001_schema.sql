-- Keel on PostgreSQL: the same tables as the SQLite adapter's migrations 1-4.
-- Times are microseconds since the Unix epoch; ids are text (UUIDs).
--
-- Every tenant-owned table has row-level security enabled and FORCEd, with one
-- policy: a row is visible and writable only when its tenant_id equals the
-- transaction's `keel.tenant` setting, or when the transaction has declared that
-- it spans tenants (`keel.all_tenants = 'on'`, set only by the adapter's explicit
-- cross-tenant path). The application role is neither the owner nor a superuser,
-- so a statement that forgets its tenant filter still sees one tenant.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
INSERT INTO tenants (id, name, created_at)
VALUES ('00000000-0000-0000-0000-000000000000', 'default', 0);

CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    prefix        TEXT NOT NULL UNIQUE,
    secret_hash   TEXT NOT NULL,
    scopes        TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT,
    revoked_at    BIGINT
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, id);

CREATE TABLE accounts (
    id             TEXT PRIMARY KEY,
    tenant_id      TEXT NOT NULL UNIQUE REFERENCES tenants(id),
    email          TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    created_at     BIGINT NOT NULL
);

CREATE TABLE greeter_birthdays (
    tenant_id      TEXT NOT NULL REFERENCES tenants(id),
    username       TEXT NOT NULL,
    date_of_birth  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, username)
);

CREATE TABLE counters (
    tenant_id  TEXT NOT NULL REFERENCES tenants(id),
    name       TEXT NOT NULL,
    value      BIGINT NOT NULL CHECK (value >= 0),
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE audit_events (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id           TEXT NOT NULL,
    at           BIGINT NOT NULL,
    tenant_id    TEXT,
    key_prefix   TEXT,
    method       TEXT NOT NULL,
    route        TEXT NOT NULL,
    resource_id  TEXT,
    status       INTEGER NOT NULL,
    request_id   TEXT NOT NULL,
    source       TEXT
);
CREATE INDEX audit_events_by_tenant ON audit_events (tenant_id, seq);

CREATE TABLE topics (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE subscriptions (
    tenant_id             TEXT NOT NULL,
    topic                 TEXT NOT NULL,
    name                  TEXT NOT NULL,
    filter                TEXT,
    filter_scope          TEXT NOT NULL,
    target                TEXT NOT NULL,
    target_type           TEXT NOT NULL,
    max_receives          INTEGER NOT NULL,
    visibility_timeout_s  INTEGER NOT NULL,
    retry_backoff_s       TEXT NOT NULL,
    created_at            BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, topic, name),
    FOREIGN KEY (tenant_id, topic) REFERENCES topics (tenant_id, name)
);

CREATE TABLE message_dedup (
    tenant_id   TEXT NOT NULL,
    topic       TEXT NOT NULL,
    dedup_id    TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, topic, dedup_id)
);
CREATE INDEX message_dedup_expiry ON message_dedup (expires_at);

-- One row per (subscription, matching message); state 0 = queued, 1 = dead letter.
CREATE TABLE deliveries (
    seq            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id      TEXT NOT NULL,
    topic          TEXT NOT NULL,
    subscription   TEXT NOT NULL,
    message_id     TEXT NOT NULL,
    body           TEXT NOT NULL,
    attributes     TEXT NOT NULL,
    published_at   BIGINT NOT NULL,
    state          SMALLINT NOT NULL DEFAULT 0,
    visible_at     BIGINT NOT NULL,
    receive_count  INTEGER NOT NULL DEFAULT 0,
    receipt        TEXT,
    last_error     TEXT
);
CREATE INDEX deliveries_ready ON deliveries (tenant_id, topic, subscription, state, visible_at, seq);

CREATE TABLE records (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    collection  TEXT NOT NULL,
    id          TEXT NOT NULL,
    data        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE UNIQUE INDEX records_by_id ON records (tenant_id, collection, id);
CREATE INDEX records_newest ON records (tenant_id, collection, seq);

CREATE TABLE delivery_attempts (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    topic         TEXT NOT NULL,
    subscription  TEXT NOT NULL,
    message_id    TEXT NOT NULL,
    attempt       INTEGER NOT NULL,
    at            BIGINT NOT NULL,
    outcome       TEXT NOT NULL,
    status        INTEGER,
    error         TEXT,
    latency_ms    DOUBLE PRECISION NOT NULL
);
CREATE INDEX delivery_attempts_by_subscription ON delivery_attempts (tenant_id, topic, subscription, seq);

-- Not tenant-owned: keys the server derives from its store (cursor sealing).
CREATE TABLE server_secrets (
    name        TEXT PRIMARY KEY,
    value       BYTEA NOT NULL,
    created_at  BIGINT NOT NULL
);

DO $$
DECLARE
    t TEXT;
BEGIN
    FOREACH t IN ARRAY ARRAY['api_keys', 'accounts', 'greeter_birthdays', 'counters',
        'audit_events', 'topics', 'subscriptions', 'message_dedup', 'deliveries',
        'records', 'delivery_attempts']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format($p$CREATE POLICY tenant_rows ON %I
            USING (tenant_id = current_setting('keel.tenant', true)
                   OR current_setting('keel.all_tenants', true) = 'on')
            WITH CHECK (tenant_id = current_setting('keel.tenant', true)
                   OR current_setting('keel.all_tenants', true) = 'on')$p$, t);
    END LOOP;
END
$$;

-- A tenant row belongs to itself.
ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON tenants
    USING (id = current_setting('keel.tenant', true)
           OR current_setting('keel.all_tenants', true) = 'on')
    WITH CHECK (id = current_setting('keel.tenant', true)
           OR current_setting('keel.all_tenants', true) = 'on');
