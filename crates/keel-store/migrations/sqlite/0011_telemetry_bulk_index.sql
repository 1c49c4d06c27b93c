-- Lines are indexed once per stored batch (`INSERT … SELECT` over the batch's ids,
-- in `sqlite::telemetry`) instead of by a trigger per line. FTS5 writes out its
-- pending terms at the end of every statement, so a trigger made one index segment
-- per line, and merging those took most of ingest's time. Deletes keep their
-- trigger (pruning deletes many lines in one statement).
DROP TRIGGER telemetry_logs_indexed;

-- Index segments in leaves of a page (FTS5's default is 1,000 bytes, a quarter of
-- SQLite's 4 KiB page) and merged 8 at a time rather than 4: fewer, fuller pages
-- written per batch, for a few more segments per query.
INSERT INTO telemetry_logs_text (telemetry_logs_text, rank) VALUES ('pgsz', 4050);
INSERT INTO telemetry_logs_text (telemetry_logs_text, rank) VALUES ('automerge', 8);
