-- A console session signed in with an owner's email and password acts as a key
-- issued for it alone; that key ends with the session (sign-out or expiry).
ALTER TABLE console_sessions ADD COLUMN owns_key INTEGER NOT NULL DEFAULT 0;
