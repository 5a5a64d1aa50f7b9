-- Wharf's first schema. Times are milliseconds since the Unix epoch (UTC).

CREATE TABLE installations (
    id             INTEGER PRIMARY KEY,      -- GitHub's installation id
    account_login  TEXT    NOT NULL,
    account_type   TEXT    NOT NULL,
    suspended      BOOLEAN NOT NULL DEFAULT FALSE,
    deleted        BOOLEAN NOT NULL DEFAULT FALSE,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);

CREATE TABLE repositories (
    id               INTEGER PRIMARY KEY,    -- GitHub's repository id
    installation_id  INTEGER NOT NULL REFERENCES installations (id),
    full_name        TEXT    NOT NULL,
    repo_key         TEXT    NOT NULL,       -- full_name in lowercase
    private          BOOLEAN NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX repositories_by_key ON repositories (repo_key);

CREATE TABLE projects (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

CREATE TABLE services (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id   INTEGER NOT NULL REFERENCES projects (id),
    name         TEXT    NOT NULL UNIQUE,
    repo         TEXT    NOT NULL,           -- owner/name, or an https:// URL
    repo_key     TEXT,                       -- lowercase owner/name; NULL for URL sources
    branch       TEXT    NOT NULL,
    dockerfile   TEXT,
    context      TEXT,
    compose      TEXT,
    port         INTEGER,
    health_path  TEXT,
    domain       TEXT,
    created_at   INTEGER NOT NULL
);
CREATE INDEX services_by_repo_branch ON services (repo_key, branch);

CREATE TABLE agents (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT    NOT NULL UNIQUE,
    token_hash    TEXT    NOT NULL UNIQUE,   -- SHA-256 of the token, hex
    labels        TEXT    NOT NULL DEFAULT '',
    version       TEXT,
    hostname      TEXT,
    created_at    INTEGER NOT NULL,
    last_seen_at  INTEGER
);

CREATE TABLE deliveries (
    id           TEXT    PRIMARY KEY,        -- X-GitHub-Delivery
    event        TEXT    NOT NULL,
    action       TEXT,
    dedupe_key   TEXT    UNIQUE,             -- the logical event, e.g. one push of one commit
    body         TEXT    NOT NULL,
    outcome      TEXT    NOT NULL,
    received_at  INTEGER NOT NULL
);
CREATE INDEX deliveries_by_time ON deliveries (received_at);

CREATE TABLE builds (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    service_id        INTEGER NOT NULL REFERENCES services (id),
    commit_sha        TEXT    NOT NULL,
    branch            TEXT,
    trigger           TEXT    NOT NULL,
    state             TEXT    NOT NULL,
    reason            TEXT,
    attempt           INTEGER NOT NULL DEFAULT 0,
    max_attempts      INTEGER NOT NULL,
    agent_id          INTEGER REFERENCES agents (id),
    lease_expires_at  INTEGER,
    installation_id   INTEGER,
    delivery_id       TEXT,
    retry_of          INTEGER,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    claimed_at        INTEGER,
    finished_at       INTEGER
);
CREATE INDEX builds_by_state ON builds (state, id);
CREATE INDEX builds_by_service ON builds (service_id, id);
