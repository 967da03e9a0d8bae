-- Flows as Langflow exports them. `data` keeps the original JSON text byte for byte; `extra`
-- keeps top-level fields flowgate does not model, so an export gives back what was imported.
-- `problems` is the engine's verdict (a JSON list; empty = runnable), computed under the component
-- registry named by `problems_version`; flows checked under another registry are re-checked.
CREATE TABLE flows (
    id                 TEXT PRIMARY KEY NOT NULL,
    user_id            TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name               TEXT NOT NULL,
    description        TEXT,
    icon               TEXT,
    icon_bg_color      TEXT,
    gradient           TEXT,
    data               TEXT,
    is_component       BIGINT NOT NULL DEFAULT 0,
    webhook            BIGINT NOT NULL DEFAULT 0,
    endpoint_name      TEXT,
    tags               TEXT,
    locked             BIGINT NOT NULL DEFAULT 0,
    mcp_enabled        BIGINT NOT NULL DEFAULT 0,
    action_name        TEXT,
    action_description TEXT,
    access_type        TEXT NOT NULL DEFAULT 'PRIVATE',
    flow_type          TEXT NOT NULL DEFAULT 'workflow',
    folder_id          TEXT,
    extra              TEXT NOT NULL DEFAULT '{}',
    problems           TEXT NOT NULL DEFAULT '[]',
    problems_version   TEXT NOT NULL DEFAULT '',
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
CREATE UNIQUE INDEX flows_user_name ON flows(user_id, name);
CREATE UNIQUE INDEX flows_user_endpoint ON flows(user_id, endpoint_name);
CREATE INDEX flows_user_updated ON flows(user_id, updated_at);
