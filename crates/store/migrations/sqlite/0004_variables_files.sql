-- Global variables, owned by a user; names are unique per user. `value` holds a Credential's
-- ciphertext (the server encrypts it; the plaintext never reaches the database) or a Generic
-- value as given. `default_fields` is a JSON list of strings. Timestamps are UTC microseconds.
-- Uploaded files keep no rows: their bytes live under DATA_DIR/files/<user_id>/<flow_id>/ and
-- every access checks, here, that the caller owns the flow (so deleting a flow or its owner
-- makes its files unreachable).
CREATE TABLE variables (
    id             TEXT PRIMARY KEY NOT NULL,
    user_id        TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    value          TEXT NOT NULL,
    var_type       TEXT NOT NULL DEFAULT 'Credential',
    default_fields TEXT NOT NULL DEFAULT '[]',
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);
CREATE UNIQUE INDEX variables_user_name ON variables(user_id, name);
