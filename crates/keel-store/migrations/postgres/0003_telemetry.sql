-- Telemetry (SPEC §6): see migrations/sqlite/0007_telemetry.sql for the tables.
-- Words are runs of letters and digits on both stores: the text is split on
-- everything else before PostgreSQL's `simple` configuration lowercases it, as
-- SQLite's unicode61 tokenizer splits it.

CREATE TABLE telemetry_logs (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    ts          BIGINT NOT NULL,
    account     TEXT NOT NULL,
    level       TEXT NOT NULL,
    body        TEXT NOT NULL,
    attributes  TEXT NOT NULL,
    words       TSVECTOR GENERATED ALWAYS AS
                (to_tsvector('simple', regexp_replace(body, '[^[:alnum:]]+', ' ', 'g'))) STORED
);
CREATE INDEX telemetry_logs_by_time ON telemetry_logs (tenant_id, ts);
CREATE INDEX telemetry_logs_words ON telemetry_logs USING GIN (words);

CREATE TABLE telemetry_points (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    name        TEXT NOT NULL,
    ts          BIGINT NOT NULL,
    account     TEXT NOT NULL,
    value       DOUBLE PRECISION NOT NULL,
    labels      JSONB NOT NULL
);
CREATE INDEX telemetry_points_by_name ON telemetry_points (tenant_id, name, ts);
CREATE INDEX telemetry_points_by_time ON telemetry_points (tenant_id, ts);

CREATE TABLE telemetry_imports (
    tenant_id    TEXT NOT NULL,
    id           TEXT NOT NULL,
    imported_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX telemetry_imports_by_time ON telemetry_imports (tenant_id, imported_at);

CREATE TABLE telemetry_settings (
    tenant_id       TEXT PRIMARY KEY,
    retention_days  INTEGER NOT NULL
);

ALTER TABLE delivery_attempts ADD COLUMN report TEXT;

DO $$
DECLARE
    t TEXT;
BEGIN
    FOREACH t IN ARRAY ARRAY['telemetry_logs', 'telemetry_points', 'telemetry_imports', 'telemetry_settings']
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
