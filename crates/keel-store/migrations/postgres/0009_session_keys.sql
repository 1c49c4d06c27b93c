-- As SQLite migration 14: a session signed in with email and password owns the
-- key issued for it, which ends with the session.
ALTER TABLE console_sessions ADD COLUMN owns_key BOOLEAN NOT NULL DEFAULT false;
