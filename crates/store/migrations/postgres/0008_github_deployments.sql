-- Builds reported to GitHub as deployments: what GitHub last accepted for each, and when the
-- reporter looks at it next. A build is reported when it is queued with a GitHub App
-- installation, from its service's tracked branch, by a push, a manual trigger or a retry (the
-- INSERT in builds.rs decides); builds from before this migration are not.

ALTER TABLE builds ADD COLUMN github_report BOOLEAN NOT NULL DEFAULT FALSE; -- keep GitHub told; FALSE once given up
ALTER TABLE builds ADD COLUMN github_deployment_id BIGINT;                   -- the deployment GitHub made for it
ALTER TABLE builds ADD COLUMN github_status TEXT;                            -- the last status GitHub accepted
ALTER TABLE builds ADD COLUMN github_attempts BIGINT NOT NULL DEFAULT 0;     -- passes begun since one last finished
ALTER TABLE builds ADD COLUMN github_next_at BIGINT;                         -- when to look next; NULL: nothing to do
ALTER TABLE builds ADD COLUMN github_changes BIGINT NOT NULL DEFAULT 0;      -- changes of its state or its release's
ALTER TABLE builds ADD COLUMN github_error TEXT;                             -- the last failure, one line

-- The reporter's work: builds due for a look.
CREATE INDEX builds_github_due ON builds (github_next_at) WHERE github_next_at IS NOT NULL;

-- A change of a reported build's state, or of a release made from it, counts as a change and
-- makes the build due (unless it already is, or waits out a backoff). Triggers, so that no
-- writer of builds or releases can forget it, and it commits with the change itself.
CREATE FUNCTION wharf_build_changed_for_github() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.github_changes := NEW.github_changes + 1;
    NEW.github_next_at := COALESCE(NEW.github_next_at, NEW.updated_at);
    RETURN NEW;
END
$$;

CREATE TRIGGER builds_github_changed BEFORE UPDATE OF state ON builds
FOR EACH ROW WHEN (NEW.github_report AND OLD.state IS DISTINCT FROM NEW.state)
EXECUTE FUNCTION wharf_build_changed_for_github();

CREATE FUNCTION wharf_release_changed_for_github() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE builds SET github_changes = github_changes + 1,
        github_next_at = COALESCE(github_next_at, NEW.updated_at)
    WHERE id = NEW.build_id AND github_report;
    RETURN NULL;
END
$$;

CREATE TRIGGER releases_github_inserted AFTER INSERT ON releases
FOR EACH ROW WHEN (NEW.build_id IS NOT NULL)
EXECUTE FUNCTION wharf_release_changed_for_github();

CREATE TRIGGER releases_github_changed AFTER UPDATE OF state ON releases
FOR EACH ROW WHEN (NEW.build_id IS NOT NULL AND OLD.state IS DISTINCT FROM NEW.state)
EXECUTE FUNCTION wharf_release_changed_for_github();
