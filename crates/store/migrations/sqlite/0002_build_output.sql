-- What a build produced: its image and digest, the failing step when it failed, and its log.

ALTER TABLE builds ADD COLUMN image TEXT;
ALTER TABLE builds ADD COLUMN digest TEXT;
ALTER TABLE builds ADD COLUMN failed_step TEXT;
ALTER TABLE builds ADD COLUMN failed_command TEXT;
ALTER TABLE builds ADD COLUMN exit_code INTEGER;
ALTER TABLE builds ADD COLUMN output_tail TEXT;
ALTER TABLE builds ADD COLUMN log_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE builds ADD COLUMN log_truncated BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TABLE build_logs (
    build_id  INTEGER NOT NULL REFERENCES builds (id),
    seq       INTEGER NOT NULL,              -- 1, 2, 3… within the build
    stream    TEXT    NOT NULL,              -- stdout, stderr or wharf
    line      TEXT    NOT NULL,
    at        INTEGER NOT NULL,
    PRIMARY KEY (build_id, seq)
);
