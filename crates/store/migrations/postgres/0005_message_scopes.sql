-- A message's scope: one row per (user, session, flow) that has messages; see the SQLite
-- migration of the same name for why. `flow_key` is the flow id, or '' for messages of no flow.
-- Scopes are never deleted but with their user, and ids are never reused, so writers may cache
-- them.
CREATE TABLE message_scopes (
    id          BIGSERIAL PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    session_id  TEXT NOT NULL,
    flow_key    TEXT NOT NULL,
    UNIQUE (user_id, session_id, flow_key)
);
CREATE INDEX message_scopes_user_flow ON message_scopes(user_id, flow_key);

INSERT INTO message_scopes (user_id, session_id, flow_key)
    SELECT DISTINCT user_id, session_id, COALESCE(flow_id, '') FROM messages;
ALTER TABLE messages ADD COLUMN scope BIGINT REFERENCES message_scopes(id) ON DELETE CASCADE;
UPDATE messages m SET scope = s.id FROM message_scopes s
    WHERE s.user_id = m.user_id AND s.session_id = m.session_id
      AND s.flow_key = COALESCE(m.flow_id, '');
ALTER TABLE messages ALTER COLUMN scope SET NOT NULL;
DROP INDEX messages_user_flow_session;
DROP INDEX messages_user_session;
CREATE INDEX messages_scope ON messages(scope, timestamp);
