-- Signing in to the dashboard.
--
-- Users besides the admin token: a name, a role (`admin` changes things, `viewer` only looks)
-- and an argon2id hash of the password the server made for them (shown once).
CREATE TABLE users (
    name           TEXT   PRIMARY KEY,
    role           TEXT   NOT NULL,
    password_hash  TEXT   NOT NULL,
    created_at     BIGINT NOT NULL    -- milliseconds since the epoch
);

-- Sessions. A browser holds a random session id in a cookie; the store keeps only its SHA-256
-- (a copy of this table lets no one in), with the token its forms and htmx requests carry
-- against cross-site requests, who signed in (no user: the admin token, whose SHA-256 is kept so
-- that a new admin token ends the sessions of the old one), with which role, and when the
-- session ends. Removing a user ends their sessions.
CREATE TABLE dashboard_sessions (
    id_hash     TEXT   PRIMARY KEY,
    csrf_token  TEXT   NOT NULL,
    user_name   TEXT   REFERENCES users (name) ON DELETE CASCADE,
    admin_token_hash TEXT,
    role        TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX dashboard_sessions_by_expiry ON dashboard_sessions (expires_at);
CREATE INDEX dashboard_sessions_by_user ON dashboard_sessions (user_name);
