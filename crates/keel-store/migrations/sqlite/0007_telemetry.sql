-- Telemetry (SPEC §6): log lines with a full-text index, metric points, and the
-- imports already done (so a redelivered import event lands once). Times in µs.

CREATE TABLE telemetry_logs (
    id          INTEGER PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    ts          INTEGER NOT NULL,
    account     TEXT NOT NULL,
    level       TEXT NOT NULL,
    body        TEXT NOT NULL,
    attributes  TEXT NOT NULL
) STRICT;
CREATE INDEX telemetry_logs_by_time ON telemetry_logs (tenant_id, ts);

-- External content: the text is stored once, in telemetry_logs; the triggers keep
-- the index in step with inserts and deletes (pruning).
CREATE VIRTUAL TABLE telemetry_logs_text USING fts5(
    body, content = 'telemetry_logs', content_rowid = 'id', tokenize = 'unicode61'
);
-- How many lines hold each word (over every tenant): a query starts from the
-- index when its rarest word is rare, and from the newest lines otherwise.
CREATE VIRTUAL TABLE telemetry_logs_words USING fts5vocab(telemetry_logs_text, 'row');
CREATE TRIGGER telemetry_logs_indexed AFTER INSERT ON telemetry_logs BEGIN
    INSERT INTO telemetry_logs_text (rowid, body) VALUES (new.id, new.body);
END;
CREATE TRIGGER telemetry_logs_unindexed AFTER DELETE ON telemetry_logs BEGIN
    INSERT INTO telemetry_logs_text (telemetry_logs_text, rowid, body)
    VALUES ('delete', old.id, old.body);
END;

CREATE TABLE telemetry_points (
    id          INTEGER PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    name        TEXT NOT NULL,
    ts          INTEGER NOT NULL,
    account     TEXT NOT NULL,
    value       REAL NOT NULL,
    labels      TEXT NOT NULL      -- JSON object of strings
) STRICT;
CREATE INDEX telemetry_points_by_name ON telemetry_points (tenant_id, name, ts);
CREATE INDEX telemetry_points_by_time ON telemetry_points (tenant_id, ts);

CREATE TABLE telemetry_imports (
    tenant_id    TEXT NOT NULL,
    id           TEXT NOT NULL,
    imported_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
) STRICT, WITHOUT ROWID;
CREATE INDEX telemetry_imports_by_time ON telemetry_imports (tenant_id, imported_at);

-- A tenant's own retention, when it set one (else the process's default).
CREATE TABLE telemetry_settings (
    tenant_id       TEXT PRIMARY KEY,
    retention_days  INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- A built-in worker's report of what one delivery did (telemetry-import: imported,
-- rejected, first errors), as JSON.
ALTER TABLE delivery_attempts ADD COLUMN report TEXT;
