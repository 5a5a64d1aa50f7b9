-- Dashboard sign-ins. A browser holds a random session id in a cookie; the store keeps only its
-- SHA-256 (a copy of this table lets no one in), with the token its forms and htmx requests
-- carry against cross-site requests, and when the session ends.
CREATE TABLE dashboard_sessions (
    id_hash     TEXT   PRIMARY KEY,
    csrf_token  TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,   -- milliseconds since the epoch
    expires_at  BIGINT NOT NULL
);
CREATE INDEX dashboard_sessions_by_expiry ON dashboard_sessions (expires_at);
