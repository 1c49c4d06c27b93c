-- SLOs, their event counts and burn-rate alerts; notification channels and
-- maintenance windows (SPEC §7). Times in µs since the epoch.
CREATE TABLE slos (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    name        TEXT NOT NULL,
    spec        TEXT NOT NULL,
    -- Set for a monitor SLI: recording a check adds to its counts.
    monitor_id  TEXT,
    created_at  BIGINT NOT NULL,
    UNIQUE (tenant_id, name)
);
CREATE INDEX slos_by_monitor ON slos (tenant_id, monitor_id) WHERE monitor_id IS NOT NULL;

-- Good and total events per SLO and minute: budgets and burn rates are sums.
CREATE TABLE slo_counts (
    tenant_id  TEXT NOT NULL,
    slo_id     TEXT NOT NULL,
    minute     BIGINT NOT NULL,
    good       BIGINT NOT NULL,
    total      BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, slo_id, minute)
);
CREATE INDEX slo_counts_by_age ON slo_counts (minute);

-- At most one open alert per SLO and severity: the index makes opening one a
-- race that exactly one evaluator wins.
CREATE TABLE slo_alerts (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    slo_id       TEXT NOT NULL,
    severity     TEXT NOT NULL,
    windows      TEXT NOT NULL,
    opened_at    BIGINT NOT NULL,
    resolved_at  BIGINT
);
CREATE UNIQUE INDEX slo_alerts_one_open ON slo_alerts (tenant_id, slo_id, severity)
    WHERE resolved_at IS NULL;
CREATE INDEX slo_alerts_by_slo ON slo_alerts (tenant_id, slo_id, opened_at);

CREATE TABLE channels (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    name        TEXT NOT NULL,
    spec        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE maintenance_windows (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    spec        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX maintenance_by_tenant ON maintenance_windows (tenant_id, created_at);

DO $$
DECLARE
    t TEXT;
BEGIN
    FOREACH t IN ARRAY ARRAY['slos', 'slo_counts', 'slo_alerts', 'channels', 'maintenance_windows']
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
