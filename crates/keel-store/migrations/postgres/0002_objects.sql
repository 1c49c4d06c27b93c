-- Objects (SPEC §6): see migrations/sqlite/0006_objects.sql for what each table is.

CREATE TABLE buckets (
    tenant_id   TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    rules       TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (tenant_id, name)
);

-- COLLATE "C": keys compare byte by byte, as on SQLite and S3.
CREATE TABLE objects (
    tenant_id     TEXT NOT NULL,
    bucket        TEXT NOT NULL,
    key           TEXT COLLATE "C" NOT NULL,
    blob          TEXT NOT NULL,
    size          BIGINT NOT NULL,
    etag          TEXT NOT NULL,
    content_type  TEXT NOT NULL,
    modified_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, bucket, key)
);

CREATE TABLE object_outbox (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    topic         TEXT NOT NULL,
    body          TEXT NOT NULL,
    dedup_id      TEXT NOT NULL,
    leased_until  BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE blob_garbage (
    name          TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    collect_at    BIGINT NOT NULL
);
CREATE INDEX blob_garbage_due ON blob_garbage (collect_at);

DO $$
DECLARE
    t TEXT;
BEGIN
    FOREACH t IN ARRAY ARRAY['buckets', 'objects', 'object_outbox', 'blob_garbage']
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
