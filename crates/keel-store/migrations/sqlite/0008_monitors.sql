-- Uptime monitors (SPEC §7). Times in µs since the epoch.
--
-- A monitor row carries its schedule and its state: the next check's slot, the
-- prober holding it (a lease, so replicas check each monitor once per interval
-- and a dead prober's monitors return when the lease lapses), the last result and
-- the run of consecutive failures that opens an incident.
CREATE TABLE monitors (
    id                    TEXT PRIMARY KEY,
    tenant_id             TEXT NOT NULL,
    name                  TEXT NOT NULL,
    spec                  TEXT NOT NULL,
    interval_s            INTEGER NOT NULL,
    timeout_ms            INTEGER NOT NULL,
    push_token            TEXT,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    status                TEXT NOT NULL DEFAULT 'pending',
    consecutive_failures  INTEGER NOT NULL DEFAULT 0,
    last_check_at         INTEGER,
    last_failure          TEXT,
    open_incident         TEXT,
    next_check_at         INTEGER NOT NULL,
    lease_owner           TEXT,
    lease_until           INTEGER,
    UNIQUE (tenant_id, name)
) STRICT;
CREATE INDEX monitors_due ON monitors (next_check_at);

-- Every check's result, kept for the raw retention (7 days by default).
CREATE TABLE monitor_checks (
    id           INTEGER PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    monitor_id   TEXT NOT NULL,
    at           INTEGER NOT NULL,
    up           INTEGER NOT NULL,
    maintenance  INTEGER NOT NULL,
    latency_us   INTEGER,
    status       INTEGER,
    failure      TEXT
) STRICT;
CREATE INDEX monitor_checks_by_monitor ON monitor_checks (tenant_id, monitor_id, at);
CREATE INDEX monitor_checks_by_time ON monitor_checks (at);

-- Results counted per minute, hour and day (grain 0, 1, 2): what uptime, latency
-- percentiles and the 90-day bars are computed from. `latency` is a sparse
-- latency histogram (`index:count,…`), so buckets merge into any window.
CREATE TABLE monitor_rollups (
    tenant_id    TEXT NOT NULL,
    monitor_id   TEXT NOT NULL,
    grain        INTEGER NOT NULL,
    bucket       INTEGER NOT NULL,
    up           INTEGER NOT NULL,
    down         INTEGER NOT NULL,
    maintenance  INTEGER NOT NULL,
    down_ms      INTEGER NOT NULL,
    latency      TEXT NOT NULL,
    PRIMARY KEY (tenant_id, monitor_id, grain, bucket)
) STRICT, WITHOUT ROWID;
CREATE INDEX monitor_rollups_by_age ON monitor_rollups (grain, bucket);

CREATE TABLE monitor_incidents (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    monitor_id   TEXT NOT NULL,
    opened_at    INTEGER NOT NULL,
    resolved_at  INTEGER,
    cause        TEXT,
    notes        TEXT
) STRICT;
CREATE INDEX monitor_incidents_by_monitor ON monitor_incidents (tenant_id, monitor_id, opened_at);
