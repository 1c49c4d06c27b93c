-- Keys the server derives from its store, so every replica on the same store
-- shares them and they survive restarts (e.g. the key that seals pagination
-- cursors). Created on first use.
CREATE TABLE server_secrets (
    name        TEXT PRIMARY KEY,
    value       BLOB NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
