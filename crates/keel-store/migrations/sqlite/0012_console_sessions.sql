-- Console sessions (SPEC §12): the SHA-256 of the cookie's token, never the
-- token itself, so a copy of the database signs nobody in.
CREATE TABLE console_sessions (
    token_hash  TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    key_prefix  TEXT NOT NULL,
    csrf_token  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX console_sessions_by_expiry ON console_sessions (expires_at);
