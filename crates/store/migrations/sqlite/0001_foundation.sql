-- Users, API keys (hash only) and refresh tokens. Timestamps are UTC microseconds since the
-- epoch (BIGINT) so the same SQL runs on SQLite and PostgreSQL; flags are 0/1 integers.
CREATE TABLE users (
    id             TEXT PRIMARY KEY NOT NULL,
    username       TEXT NOT NULL,
    username_lower TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    profile_image  TEXT,
    is_active      INTEGER NOT NULL DEFAULT 1,
    is_superuser   INTEGER NOT NULL DEFAULT 0,
    create_at      BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    last_login_at  BIGINT
);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY NOT NULL,
    user_id      TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name         TEXT,
    key_hash     TEXT NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    key_length   INTEGER NOT NULL,
    scope        TEXT NOT NULL DEFAULT 'full',
    flows        TEXT,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    last_used_at BIGINT,
    total_uses   BIGINT NOT NULL DEFAULT 0,
    is_active    INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX api_keys_user ON api_keys(user_id);

CREATE TABLE refresh_tokens (
    jti        TEXT PRIMARY KEY NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    expires_at BIGINT NOT NULL,
    revoked    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX refresh_tokens_user ON refresh_tokens(user_id);
