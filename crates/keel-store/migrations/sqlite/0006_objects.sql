-- Objects (SPEC §6). The bytes live in the blob store under names Keel makes up;
-- these tables say which blob a key points at, hold buckets with their
-- notification rules, the outbox of event records (committed with the change that
-- caused them), and the blobs waiting to be collected.

CREATE TABLE buckets (
    tenant_id   TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    rules       TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (tenant_id, name)
) STRICT, WITHOUT ROWID;

-- Keys compare byte by byte (SQLite's BINARY collation on UTF-8), as S3 orders them.
CREATE TABLE objects (
    tenant_id     TEXT NOT NULL,
    bucket        TEXT NOT NULL,
    key           TEXT NOT NULL,
    blob          TEXT NOT NULL,
    size          INTEGER NOT NULL,
    etag          TEXT NOT NULL,
    content_type  TEXT NOT NULL,
    modified_at   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, bucket, key)
) STRICT, WITHOUT ROWID;

CREATE TABLE object_outbox (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id     TEXT NOT NULL,
    topic         TEXT NOT NULL,
    body          TEXT NOT NULL,
    dedup_id      TEXT NOT NULL,
    leased_until  INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE blob_garbage (
    name          TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    collect_at    INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX blob_garbage_due ON blob_garbage (collect_at);
