-- Notices waiting to be published (SPEC §7): a row is written in the same
-- transaction that opens or resolves an incident or an SLO alert, and removed once
-- the notice is on the bus, so a process killed in between publishes it on restart.
CREATE TABLE notice_outbox (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id     TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('incident', 'slo_alert')),
    subject_id    TEXT NOT NULL,
    event         TEXT NOT NULL CHECK (event IN ('opened', 'resolved')),
    leased_until  INTEGER NOT NULL DEFAULT 0
) STRICT;
