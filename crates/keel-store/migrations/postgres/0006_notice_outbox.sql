-- Notices waiting to be published (SPEC §7), as on SQLite (migration 10): written
-- with the change that opens or resolves an incident or an SLO alert, removed once
-- the notice is on the bus.
CREATE TABLE notice_outbox (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('incident', 'slo_alert')),
    subject_id    TEXT NOT NULL,
    event         TEXT NOT NULL CHECK (event IN ('opened', 'resolved')),
    leased_until  BIGINT NOT NULL DEFAULT 0
);

ALTER TABLE notice_outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE notice_outbox FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON notice_outbox
    USING (tenant_id = current_setting('keel.tenant', true)
           OR current_setting('keel.all_tenants', true) = 'on')
    WITH CHECK (tenant_id = current_setting('keel.tenant', true)
           OR current_setting('keel.all_tenants', true) = 'on');
