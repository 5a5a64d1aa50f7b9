-- A reported build's check on its commit (a Check Run `wharf/<service>`, or a commit status of
-- that name where the App may not write checks): the check run GitHub made for it and the last
-- check state GitHub accepted, by Wharf's name (queued, in_progress, success, failure,
-- cancelled, skipped). The reporter compares it with what the build and its release say, like
-- github_status; the triggers of 0008 already make the build due when either changes.
ALTER TABLE builds ADD COLUMN github_check_run_id INTEGER; -- the check run GitHub made for it
ALTER TABLE builds ADD COLUMN github_check TEXT;      -- the last check state GitHub accepted

-- When GitHub said the installation may not write checks (403 "Resource not accessible by
-- integration"): its builds get commit statuses instead, and that is logged once. NULL: checks
-- are tried. Any installation event (new permissions accepted among them) clears it.
ALTER TABLE installations ADD COLUMN checks_refused_at INTEGER;
