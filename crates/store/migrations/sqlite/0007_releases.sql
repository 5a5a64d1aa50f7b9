-- Releases: what a service should run in an environment, and its rollout on each host.

-- The service's deploy settings (JSON of DeploySettings) and its sealed CI deploy-hook secret.
ALTER TABLE services ADD COLUMN deploy TEXT;
ALTER TABLE services ADD COLUMN deploy_secret TEXT;

CREATE TABLE releases (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    service_id   INTEGER NOT NULL REFERENCES services (id),
    environment  TEXT    NOT NULL,
    build_id     INTEGER REFERENCES builds (id),
    image        TEXT    NOT NULL,           -- the reference hosts pull, by digest when known
    trigger      TEXT    NOT NULL,           -- build, manual, rollback or hook
    state        TEXT    NOT NULL,           -- the release as a whole
    reason       TEXT,
    rollback_of  INTEGER,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    live_at      INTEGER,                    -- when it first went live everywhere
    finished_at  INTEGER
);
CREATE INDEX releases_by_service ON releases (service_id, environment, id);
CREATE INDEX releases_by_build ON releases (build_id);

CREATE TABLE rollouts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    release_id   INTEGER NOT NULL REFERENCES releases (id),
    agent_id     INTEGER NOT NULL REFERENCES agents (id),
    state        TEXT    NOT NULL,
    reason       TEXT,
    probes       TEXT,                       -- JSON: the last health probes
    log_tail     TEXT,                       -- JSON: the new container's last log lines
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    finished_at  INTEGER
);
CREATE INDEX rollouts_by_agent_state ON rollouts (agent_id, state, id);
CREATE INDEX rollouts_by_release ON rollouts (release_id);

-- Completed builds the release scheduler has still to look at. Builds finished before releases
-- existed are not deployed retroactively.
ALTER TABLE builds ADD COLUMN release_pending BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX builds_release_pending ON builds (id) WHERE release_pending;
