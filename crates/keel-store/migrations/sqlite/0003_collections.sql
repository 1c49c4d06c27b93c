-- Collections: rows written by the built-in store target (upserted by message id),
-- and the record of every webhook delivery attempt.

CREATE TABLE records (
    seq         INTEGER PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    collection  TEXT NOT NULL,
    id          TEXT NOT NULL,
    data        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX records_by_id ON records (tenant_id, collection, id);
CREATE INDEX records_newest ON records (tenant_id, collection, seq);

CREATE TABLE delivery_attempts (
    seq           INTEGER PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    topic         TEXT NOT NULL,
    subscription  TEXT NOT NULL,
    message_id    TEXT NOT NULL,
    attempt       INTEGER NOT NULL,
    at            INTEGER NOT NULL,
    outcome       TEXT NOT NULL,      -- 'delivered' | 'failed' | 'dead-lettered'
    status        INTEGER,            -- HTTP status, when there was one
    error         TEXT,
    latency_ms    REAL NOT NULL
) STRICT;
CREATE INDEX delivery_attempts_by_subscription ON delivery_attempts (tenant_id, topic, subscription, seq);
