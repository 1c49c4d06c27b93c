-- The embedded event bus: topics, subscriptions, dedup ids, and one queue entry
-- per (subscription, matching message). Times are microseconds since the Unix epoch.

CREATE TABLE topics (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name)
) STRICT, WITHOUT ROWID;

CREATE TABLE subscriptions (
    tenant_id             TEXT NOT NULL,
    topic                 TEXT NOT NULL,
    name                  TEXT NOT NULL,
    filter                TEXT,              -- the policy as given (JSON), NULL = all
    filter_scope          TEXT NOT NULL,     -- 'attributes' | 'body'
    target                TEXT NOT NULL,     -- JSON
    max_receives          INTEGER NOT NULL,
    visibility_timeout_s  INTEGER NOT NULL,
    retry_backoff_s       TEXT NOT NULL,     -- JSON array
    created_at            INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, topic, name),
    FOREIGN KEY (tenant_id, topic) REFERENCES topics (tenant_id, name)
) STRICT, WITHOUT ROWID;

-- Publish ids seen within the dedup window.
CREATE TABLE message_dedup (
    tenant_id   TEXT NOT NULL,
    topic       TEXT NOT NULL,
    dedup_id    TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, topic, dedup_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX message_dedup_expiry ON message_dedup (expires_at);

-- A subscription's queue: one row per (subscription, matching message), carrying
-- its own copy of the message, as an SQS queue behind an SNS topic does. Fan-out
-- copies the body; in exchange a queue entry is one row, with no join on receive
-- and nothing to garbage-collect when it is acked.
-- state 0 = queued (visible at visible_at), 1 = dead letter.
CREATE TABLE deliveries (
    seq            INTEGER PRIMARY KEY,
    tenant_id      TEXT NOT NULL,
    topic          TEXT NOT NULL,
    subscription   TEXT NOT NULL,
    message_id     TEXT NOT NULL,
    body           TEXT NOT NULL,
    attributes     TEXT NOT NULL,
    published_at   INTEGER NOT NULL,
    state          INTEGER NOT NULL DEFAULT 0,
    visible_at     INTEGER NOT NULL,
    receive_count  INTEGER NOT NULL DEFAULT 0,
    receipt        TEXT,              -- nonce of the current receive, if in flight
    last_error     TEXT
) STRICT;
CREATE INDEX deliveries_ready ON deliveries (tenant_id, topic, subscription, state, visible_at, seq);
