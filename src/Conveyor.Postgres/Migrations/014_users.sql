-- The dashboard's users (IUserStore). Times in ms since the Unix epoch; version is the compare-and-set token of every
-- update; recovery_codes the unused codes' hashes, space-separated; mfa_secret as the server stores it (encrypted when a
-- payload key is configured); "C" collation so that names order as the other backends order them.
CREATE TABLE users (
    name text COLLATE "C" PRIMARY KEY,
    role text NOT NULL,
    password_hash text NOT NULL,
    created_at bigint NOT NULL,
    version bigint NOT NULL,
    mfa_secret text,
    mfa_enabled integer NOT NULL,
    recovery_codes text NOT NULL,
    failed_attempts integer NOT NULL,
    locked_until bigint,
    last_totp_step bigint
);
