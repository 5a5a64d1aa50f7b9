-- GitHub is a notification sink like the others in the API and the CLI: its dead letters are
-- the builds whose report GitHub refused for good. They are listed and counted from this index
-- rather than by reading every build.
CREATE INDEX builds_github_dead ON builds (id) WHERE github_error IS NOT NULL AND NOT github_report;
