-- Chat messages stored by runs (ChatInput, ChatOutput, Memory in store mode), owned by the user
-- whose key ran the flow. `data` is the full message JSON; the other columns are what queries
-- filter and sort on. Timestamps are UTC microseconds; writes arrive in batches (upsert by id).
CREATE TABLE messages (
    id          TEXT PRIMARY KEY NOT NULL,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    flow_id     TEXT,
    session_id  TEXT NOT NULL,
    context_id  TEXT NOT NULL DEFAULT '',
    timestamp   BIGINT NOT NULL,
    sender      TEXT,
    sender_name TEXT,
    text        TEXT NOT NULL,
    data        TEXT NOT NULL
);
CREATE INDEX messages_user_flow_session ON messages(user_id, flow_id, session_id, timestamp);
CREATE INDEX messages_user_session ON messages(user_id, session_id, timestamp);
