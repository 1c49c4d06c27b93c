-- Queue entries clustered by (queue, seq), with an integer queue id: a publish
-- inserts one B-tree entry per subscription and an ack deletes one, where the
-- `deliveries` table kept a second, text-keyed index that every insert, receive
-- and delete also rewrote. Receives in flight are held in memory by the process
-- serving the bus (src/sqlite/leases.rs), so an entry records only when it may be
-- received again and how often it was. Entries a nack delayed, and dead letters,
-- move to tables of their own, out of the way of the scan that finds the next
-- message: that scan then reads only entries that are ready or leased.

CREATE TABLE queues (
    id            INTEGER PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    topic         TEXT NOT NULL,
    subscription  TEXT NOT NULL,
    UNIQUE (tenant_id, topic, subscription)
) STRICT;

INSERT INTO queues (tenant_id, topic, subscription)
    SELECT tenant_id, topic, name FROM subscriptions;

CREATE TABLE queue_entries (
    queue          INTEGER NOT NULL,
    seq            INTEGER NOT NULL,
    message_id     TEXT NOT NULL,
    body           TEXT NOT NULL,
    attributes     TEXT NOT NULL,
    published_at   INTEGER NOT NULL,
    receive_count  INTEGER NOT NULL DEFAULT 0,  -- stored on nack and redelivery
    last_error     TEXT,
    PRIMARY KEY (queue, seq)
) STRICT, WITHOUT ROWID;

-- Entries a nack delayed, by when they are due; a receive moves the due ones back
-- to queue_entries, under the same seq.
CREATE TABLE delayed_entries (
    queue          INTEGER NOT NULL,
    visible_at     INTEGER NOT NULL,
    seq            INTEGER NOT NULL,
    message_id     TEXT NOT NULL,
    body           TEXT NOT NULL,
    attributes     TEXT NOT NULL,
    published_at   INTEGER NOT NULL,
    receive_count  INTEGER NOT NULL,
    last_error     TEXT,
    PRIMARY KEY (queue, visible_at, seq)
) STRICT, WITHOUT ROWID;

CREATE TABLE dead_letters (
    queue          INTEGER NOT NULL,
    seq            INTEGER NOT NULL,  -- kept, so a redrive puts it back in place
    message_id     TEXT NOT NULL,
    body           TEXT NOT NULL,
    attributes     TEXT NOT NULL,
    published_at   INTEGER NOT NULL,
    receive_count  INTEGER NOT NULL,
    last_error     TEXT,
    PRIMARY KEY (queue, seq)
) STRICT, WITHOUT ROWID;

-- Entries received or nacked under the old layout keep their visible time.
INSERT INTO queue_entries
        (queue, seq, message_id, body, attributes, published_at, receive_count, last_error)
    SELECT q.id, d.seq, d.message_id, d.body, d.attributes, d.published_at,
           d.receive_count, d.last_error
    FROM deliveries d
    JOIN queues q ON q.tenant_id = d.tenant_id AND q.topic = d.topic AND q.subscription = d.subscription
    WHERE d.state = 0 AND d.visible_at <= CAST(strftime('%s', 'now') AS INTEGER) * 1000000;

INSERT INTO delayed_entries
        (queue, visible_at, seq, message_id, body, attributes, published_at, receive_count, last_error)
    SELECT q.id, d.visible_at, d.seq, d.message_id, d.body, d.attributes, d.published_at,
           d.receive_count, d.last_error
    FROM deliveries d
    JOIN queues q ON q.tenant_id = d.tenant_id AND q.topic = d.topic AND q.subscription = d.subscription
    WHERE d.state = 0 AND d.visible_at > CAST(strftime('%s', 'now') AS INTEGER) * 1000000;

INSERT INTO dead_letters
        (queue, seq, message_id, body, attributes, published_at, receive_count, last_error)
    SELECT q.id, d.seq, d.message_id, d.body, d.attributes, d.published_at, d.receive_count,
           d.last_error
    FROM deliveries d
    JOIN queues q ON q.tenant_id = d.tenant_id AND q.topic = d.topic AND q.subscription = d.subscription
    WHERE d.state = 1;

DROP TABLE deliveries;
