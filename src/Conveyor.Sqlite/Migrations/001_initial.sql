CREATE TABLE tasks (
    seq INTEGER PRIMARY KEY,
    id BLOB NOT NULL,
    task TEXT NOT NULL,
    queue TEXT NOT NULL,
    state INTEGER NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    args TEXT,
    result TEXT,
    error TEXT,
    errors TEXT,
    attempt INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    retry_base_ms INTEGER NOT NULL,
    retry_max_ms INTEGER NOT NULL,
    retry_jitter REAL NOT NULL,
    timeout_ms INTEGER,
    not_before INTEGER,
    expires_at INTEGER,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    idempotency_key TEXT,
    headers TEXT,
    lease_owner TEXT,
    lease_token INTEGER,
    lease_expires INTEGER,
    redelivered INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    history TEXT NOT NULL
);
CREATE UNIQUE INDEX tasks_id ON tasks(id);
CREATE UNIQUE INDEX tasks_idempotency ON tasks(idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX tasks_ready ON tasks(queue, priority DESC, seq) WHERE state = 1;
CREATE INDEX tasks_due ON tasks(not_before) WHERE state IN (0, 4);
CREATE INDEX tasks_leased ON tasks(lease_expires) WHERE state = 2;
CREATE INDEX tasks_finished ON tasks(finished_at) WHERE state IN (3, 5, 6, 7);
CREATE TABLE queues (name TEXT PRIMARY KEY, paused INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;
CREATE TABLE workers (id TEXT PRIMARY KEY, info TEXT NOT NULL, heartbeat_at INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE leaders (name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at INTEGER NOT NULL) WITHOUT ROWID;
