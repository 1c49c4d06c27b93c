-- Console sessions (SPEC §12), as on SQLite (migration 12): the SHA-256 of the
-- cookie's token, never the token itself.
CREATE TABLE console_sessions (
    token_hash  TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    key_prefix  TEXT NOT NULL,
    csrf_token  TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX console_sessions_by_expiry ON console_sessions (expires_at);

ALTER TABLE console_sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE console_sessions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_rows ON console_sessions
    USING (tenant_id = current_setting('keel.tenant', true)
           OR current_setting('keel.all_tenants', true) = 'on')
    WITH CHECK (tenant_id = current_setting('keel.tenant', true)
           OR current_setting('keel.all_tenants', true) = 'on');
