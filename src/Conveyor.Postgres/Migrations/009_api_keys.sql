-- API keys (IApiKeyStore): only the SHA-256 of each key is kept. scopes and queues are comma-joined; times in ms since
-- the Unix epoch.
CREATE TABLE api_keys (
    id text PRIMARY KEY,
    name text NOT NULL,
    key_hash text NOT NULL UNIQUE,
    scopes text NOT NULL,
    queues text NOT NULL,
    created_at bigint NOT NULL,
    last_used_at bigint,
    revoked_at bigint
);
