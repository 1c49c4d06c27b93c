-- Queue entries clustered by (queue, seq), with an integer queue id: a publish
-- inserts one B-tree entry per subscription and an ack deletes one, where the
-- `deliveries` table kept a second, text-keyed index that every insert, receive
-- and delete also rewrote. Receives in flight are held in memory by the process
-- serving the bus (src/sqlite/leases.rs), so an entry records only when it may be
-- received again and how often it was. Dead letters move to a table of their own,
-- out of the way of the scans that find the next message.

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
    visible_at     INTEGER NOT NULL,  -- after a nack's delay; otherwise published_at
    receive_count  INTEGER NOT NULL DEFAULT 0,  -- stored on nack and redelivery
    last_error     TEXT,
    PRIMARY KEY (queue, seq)
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

INSERT INTO queue_entries
        (queue, seq, message_id, body, attributes, published_at, visible_at, receive_count, last_error)
    SELECT q.id, d.seq, d.message_id, d.body, d.attributes, d.published_at, d.visible_at,
           d.receive_count, d.last_error
    FROM deliveries d
    JOIN queues q ON q.tenant_id = d.tenant_id AND q.topic = d.topic AND q.subscription = d.subscription
    WHERE d.state = 0;

INSERT INTO dead_letters
        (queue, seq, message_id, body, attributes, published_at, receive_count, last_error)
    SELECT q.id, d.seq, d.message_id, d.body, d.attributes, d.published_at, d.receive_count,
           d.last_error
    FROM deliveries d
    JOIN queues q ON q.tenant_id = d.tenant_id AND q.topic = d.topic AND q.subscription = d.subscription
    WHERE d.state = 1;

DROP TABLE deliveries;
