-- Each queue's entry counts, kept by the writer in the same savepoint as every
-- insert and delete of its entries (src/sqlite/queue_counts.rs): a queue's
-- statistics were count(*) scans of the entry tables, whose rows hold the
-- bodies, and took ~160 ms per request with a million messages queued. The
-- delayed entries stay counted by their (queue, visible_at) order, which
-- splits them into due and waiting.

ALTER TABLE queues ADD COLUMN ready_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE queues ADD COLUMN delayed_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE queues ADD COLUMN dead_count INTEGER NOT NULL DEFAULT 0;

UPDATE queues SET
    ready_count = (SELECT count(*) FROM queue_entries e WHERE e.queue = queues.id),
    delayed_count = (SELECT count(*) FROM delayed_entries d WHERE d.queue = queues.id),
    dead_count = (SELECT count(*) FROM dead_letters d WHERE d.queue = queues.id);
