-- A release's deploy log: what each host's agent did for it (pull, start, every health probe,
-- the switch, the rollback and its reason), stored and followed as build logs are. Lines are
-- numbered within the release across its hosts; each names the rollout (and so the host) that
-- wrote it. A release's log has a size limit, as a build's has.
ALTER TABLE releases ADD COLUMN log_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE releases ADD COLUMN log_truncated BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TABLE release_logs (
    release_id  INTEGER NOT NULL REFERENCES releases (id),
    seq         INTEGER NOT NULL,              -- 1, 2, 3… within the release
    rollout_id  INTEGER NOT NULL REFERENCES rollouts (id),
    stream      TEXT    NOT NULL,              -- stdout, stderr or wharf
    line        TEXT    NOT NULL,
    at          INTEGER NOT NULL,
    PRIMARY KEY (release_id, seq)
);
