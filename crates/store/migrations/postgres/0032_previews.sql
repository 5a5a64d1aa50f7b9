-- Preview environments of pull requests.
--
-- One row per service and pull request, kept after the pull request closes (state `closed`)
-- so that a reopened one comes back under the same environment. `state` is what Wharf does
-- with it: `open` (its head builds and deploys), `waiting_approval` (its head needs an
-- approval: a fork, or an author who may not push), `draft` (waiting for "ready for
-- review"), `stopped` (past the service's preview limit) or `closed` (torn down). The head
-- commit builds without an approval only when `approved_sha` is it or the author may push to
-- the repository the head is in.
--
-- The pull request's comment: GitHub's id for it, the body GitHub last accepted, a lease for
-- the replica writing it, and whether it is final (the preview was removed and the comment says
-- so); `label_cleared_sha` is the head whose approval label Wharf last removed.
CREATE TABLE previews (
    id               BIGSERIAL PRIMARY KEY,
    service_id       BIGINT  NOT NULL REFERENCES services (id) ON DELETE CASCADE,
    number           BIGINT  NOT NULL,
    environment      TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    reason           TEXT,
    head_sha         TEXT    NOT NULL,
    head_branch      TEXT    NOT NULL,
    from_fork        BOOLEAN NOT NULL,
    author_may_push  BOOLEAN NOT NULL,
    approved_sha     TEXT,
    approved_by      TEXT,
    installation_id  BIGINT,
    pushed_at        BIGINT  NOT NULL,      -- milliseconds since the epoch
    created_at       BIGINT  NOT NULL,
    updated_at       BIGINT  NOT NULL,
    comment_id       BIGINT,
    comment_body     TEXT,
    comment_lease_until BIGINT,
    comment_done     BOOLEAN NOT NULL DEFAULT FALSE,
    label_cleared_sha TEXT,
    UNIQUE (service_id, number)
);
CREATE INDEX previews_by_state ON previews (state, service_id);

-- A preview's builds wait behind every other build: an idle agent takes production work first.
ALTER TABLE builds ADD COLUMN preview BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX builds_pending_by_preview ON builds (preview, id) WHERE state = 'pending';

-- Variables for the service's previews only, as `service_env` holds the service's: in a
-- preview they override the service's variables of the same name.
CREATE TABLE preview_env (
    service_id  BIGINT NOT NULL REFERENCES services (id),
    name        TEXT    NOT NULL,
    value       TEXT,
    sealed      TEXT,
    secret      BOOLEAN NOT NULL,
    build       BOOLEAN NOT NULL,
    updated_at  BIGINT NOT NULL,
    members     TEXT,
    PRIMARY KEY (service_id, name)
);

-- A teardown's images leave the registry once it is done: whether that was seen to.
ALTER TABLE releases ADD COLUMN registry_cleaned BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX releases_teardowns_to_clean ON releases (id)
    WHERE trigger = 'teardown' AND state = 'removed' AND NOT registry_cleaned;
