-- The audit log (IAuditLog): sign-ins and admin actions. id is the UUIDv7's lower-case text; at in ms since the Unix
-- epoch; "C" collation so that ids compare as the other backends compare them. The index serves the newest-first list and retention's oldest-first delete.
CREATE TABLE audit_log (
    id text COLLATE "C" PRIMARY KEY,
    at bigint NOT NULL,
    actor text NOT NULL,
    actor_kind text NOT NULL,
    action text NOT NULL,
    target text,
    outcome text NOT NULL,
    status integer,
    remote_address text,
    user_agent text,
    details text
);
CREATE INDEX audit_log_at ON audit_log (at, id);
