-- The dashboard's users (IUserStore). Times in ms since the Unix epoch; version is the compare-and-set token of every
-- update; recovery_codes the unused codes' hashes, space-separated; mfa_secret as the server stores it (encrypted when a
-- payload key is configured).
CREATE TABLE users (
    name TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    version INTEGER NOT NULL,
    mfa_secret TEXT,
    mfa_enabled INTEGER NOT NULL,
    recovery_codes TEXT NOT NULL,
    failed_attempts INTEGER NOT NULL,
    locked_until INTEGER,
    last_totp_step INTEGER
) WITHOUT ROWID;
