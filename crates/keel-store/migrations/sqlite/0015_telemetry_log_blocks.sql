-- Log lines move into blocks (`sqlite::log_blocks`): one row per stored batch,
-- its lines a JSON array of [ts µs, account, level, body, attributes] (null where
-- pruning took a line), and one contentless FTS5 document per block listing the
-- hashes of its distinct words. Ingest then costs the single writer one row and
-- one index document per batch instead of per line.

CREATE TABLE telemetry_log_blocks (
    id          INTEGER PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    min_ts      INTEGER NOT NULL,
    max_ts      INTEGER NOT NULL,
    lines       INTEGER NOT NULL,   -- lines still held (not null in data)
    accounts    TEXT NOT NULL,      -- JSON array of the distinct accounts
    levels      TEXT NOT NULL,      -- JSON array of the distinct levels, as sent
    data        TEXT NOT NULL
) STRICT;
-- Queries walk a tenant's blocks newest span first; pruning oldest first.
CREATE INDEX telemetry_log_blocks_by_newest ON telemetry_log_blocks (tenant_id, max_ts);
CREATE INDEX telemetry_log_blocks_by_oldest ON telemetry_log_blocks (tenant_id, min_ts);

CREATE VIRTUAL TABLE telemetry_log_block_words USING fts5(
    words, content = '', contentless_delete = 1, detail = none, tokenize = 'ascii'
);
INSERT INTO telemetry_log_block_words (telemetry_log_block_words, rank) VALUES ('pgsz', 4050);

-- The lines stored so far, 1,024 to a block in arrival order, then indexed by
-- keel_block_words (registered by the migrating connection).
INSERT INTO telemetry_log_blocks (tenant_id, min_ts, max_ts, lines, accounts, levels, data)
SELECT tenant_id, min(ts), max(ts), count(*),
       json_group_array(DISTINCT account), json_group_array(DISTINCT level),
       json_group_array(json_array(ts, account, level, body, json(attributes)) ORDER BY id)
FROM telemetry_logs
GROUP BY tenant_id, id / 1024
ORDER BY min(id);
INSERT INTO telemetry_log_block_words (rowid, words)
SELECT id, keel_block_words(data) FROM telemetry_log_blocks;

DROP TABLE telemetry_logs_words;
DROP TRIGGER telemetry_logs_unindexed;
DROP TABLE telemetry_logs_text;
DROP TABLE telemetry_logs;
