-- The audit log (IAuditLog): sign-ins and admin actions. id is the UUIDv7's lower-case text; at in ms since the Unix
-- epoch. The index serves the newest-first list and retention's oldest-first delete.
CREATE TABLE audit_log (
    id TEXT PRIMARY KEY,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    actor_kind TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    outcome TEXT NOT NULL,
    status INTEGER,
    remote_address TEXT,
    user_agent TEXT,
    details TEXT
) WITHOUT ROWID;
CREATE INDEX audit_log_at ON audit_log (at, id);
