-- Every image a build pushed (one, or one per compose service), as JSON, and the compose file
-- a compose build read, kept for the deploy that runs the stack.
ALTER TABLE builds ADD COLUMN images TEXT;
ALTER TABLE builds ADD COLUMN compose_file TEXT;
