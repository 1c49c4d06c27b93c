-- Each queue's live (not dead) and dead delivery counts, so its statistics read
-- a few rows instead of counting a million (~500 ms per request under row
-- security). Triggers keep them in the writing transaction on every path that
-- inserts, deletes or buries deliveries. Concurrent writers of one queue must not
-- queue up behind one counter row, so each statement appends a delta row, and
-- the deltas are folded into `queue_counts` now and then (src/postgres/
-- queue_counts.rs); a queue's count is its folded row plus its pending deltas.
CREATE TABLE queue_counts (
    tenant_id     TEXT NOT NULL,
    topic         TEXT NOT NULL,
    subscription  TEXT NOT NULL,
    live          BIGINT NOT NULL,
    dead          BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, topic, subscription)
);

CREATE TABLE queue_count_deltas (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    topic         TEXT NOT NULL,
    subscription  TEXT NOT NULL,
    live          BIGINT NOT NULL,
    dead          BIGINT NOT NULL
);
CREATE INDEX queue_count_deltas_by_queue ON queue_count_deltas (tenant_id, topic, subscription);

ALTER TABLE queue_counts ENABLE ROW LEVEL SECURITY;
ALTER TABLE queue_counts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON queue_counts
    USING (tenant_id = current_setting('keel.tenant', true)
           OR current_setting('keel.all_tenants', true) = 'on')
    WITH CHECK (tenant_id = current_setting('keel.tenant', true)
           OR current_setting('keel.all_tenants', true) = 'on');
ALTER TABLE queue_count_deltas ENABLE ROW LEVEL SECURITY;
ALTER TABLE queue_count_deltas FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON queue_count_deltas
    USING (tenant_id = current_setting('keel.tenant', true)
           OR current_setting('keel.all_tenants', true) = 'on')
    WITH CHECK (tenant_id = current_setting('keel.tenant', true)
           OR current_setting('keel.all_tenants', true) = 'on');

-- One delta row per queue a statement touched.
CREATE FUNCTION count_inserted_deliveries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO queue_count_deltas (tenant_id, topic, subscription, live, dead)
    SELECT tenant_id, topic, subscription,
           count(*) FILTER (WHERE state = 0), count(*) FILTER (WHERE state = 1)
    FROM inserted GROUP BY tenant_id, topic, subscription;
    RETURN NULL;
END $$;

CREATE FUNCTION count_deleted_deliveries() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO queue_count_deltas (tenant_id, topic, subscription, live, dead)
    SELECT tenant_id, topic, subscription,
           -count(*) FILTER (WHERE state = 0), -count(*) FILTER (WHERE state = 1)
    FROM deleted GROUP BY tenant_id, topic, subscription;
    RETURN NULL;
END $$;

-- Burying and redriving change the state of a few rows: counted row by row,
-- so the receives' and nacks' updates (which never change it) cost nothing.
CREATE FUNCTION count_moved_delivery() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO queue_count_deltas (tenant_id, topic, subscription, live, dead)
    VALUES (NEW.tenant_id, NEW.topic, NEW.subscription,
            CASE WHEN NEW.state = 0 THEN 1 ELSE -1 END,
            CASE WHEN NEW.state = 1 THEN 1 ELSE -1 END);
    RETURN NULL;
END $$;

-- The triggers first: their lock holds writers off until this migration
-- commits, so the counts below miss nothing.
CREATE TRIGGER deliveries_inserted AFTER INSERT ON deliveries
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT
    EXECUTE FUNCTION count_inserted_deliveries();
CREATE TRIGGER deliveries_deleted AFTER DELETE ON deliveries
    REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT
    EXECUTE FUNCTION count_deleted_deliveries();
CREATE TRIGGER deliveries_moved AFTER UPDATE OF state ON deliveries
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION count_moved_delivery();

-- Row security binds the owner too: this transaction reads every tenant's rows.
SELECT set_config('keel.all_tenants', 'on', true);
INSERT INTO queue_counts (tenant_id, topic, subscription, live, dead)
SELECT tenant_id, topic, subscription,
       count(*) FILTER (WHERE state = 0), count(*) FILTER (WHERE state = 1)
FROM deliveries GROUP BY tenant_id, topic, subscription;
