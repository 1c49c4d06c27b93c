-- Uptime monitors (SPEC §7): see migrations/sqlite/0008_monitors.sql for the
-- tables. Times in µs since the epoch.

CREATE TABLE monitors (
    id                    TEXT PRIMARY KEY,
    tenant_id             TEXT NOT NULL,
    name                  TEXT NOT NULL,
    spec                  TEXT NOT NULL,
    interval_s            INTEGER NOT NULL,
    timeout_ms            INTEGER NOT NULL,
    push_token            TEXT,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL,
    status                TEXT NOT NULL DEFAULT 'pending',
    consecutive_failures  INTEGER NOT NULL DEFAULT 0,
    last_check_at         BIGINT,
    last_failure          TEXT,
    open_incident         TEXT,
    next_check_at         BIGINT NOT NULL,
    lease_owner           TEXT,
    lease_until           BIGINT,
    UNIQUE (tenant_id, name)
);
CREATE INDEX monitors_due ON monitors (next_check_at);

CREATE TABLE monitor_checks (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    monitor_id   TEXT NOT NULL,
    at           BIGINT NOT NULL,
    up           BOOLEAN NOT NULL,
    maintenance  BOOLEAN NOT NULL,
    latency_us   BIGINT,
    status       INTEGER,
    failure      TEXT
);
CREATE INDEX monitor_checks_by_monitor ON monitor_checks (tenant_id, monitor_id, at);
CREATE INDEX monitor_checks_by_time ON monitor_checks (at);

CREATE TABLE monitor_rollups (
    tenant_id    TEXT NOT NULL,
    monitor_id   TEXT NOT NULL,
    grain        SMALLINT NOT NULL,
    bucket       BIGINT NOT NULL,
    up           BIGINT NOT NULL,
    down         BIGINT NOT NULL,
    maintenance  BIGINT NOT NULL,
    down_ms      BIGINT NOT NULL,
    latency      TEXT NOT NULL,
    PRIMARY KEY (tenant_id, monitor_id, grain, bucket)
);
CREATE INDEX monitor_rollups_by_age ON monitor_rollups (grain, bucket);

CREATE TABLE monitor_incidents (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    monitor_id   TEXT NOT NULL,
    opened_at    BIGINT NOT NULL,
    resolved_at  BIGINT,
    cause        TEXT,
    notes        TEXT
);
CREATE INDEX monitor_incidents_by_monitor ON monitor_incidents (tenant_id, monitor_id, opened_at);

DO $$
DECLARE
    t TEXT;
BEGIN
    FOREACH t IN ARRAY ARRAY['monitors', 'monitor_checks', 'monitor_rollups', 'monitor_incidents']
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
