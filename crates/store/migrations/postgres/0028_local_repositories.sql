-- A service may build from a git repository on the server's own machine (an absolute path,
-- for `wharf up`'s first steps). Only the agent `wharf up` runs beside the server may build
-- it: any other agent would read its own machine's files instead, or be handed the server's.
ALTER TABLE agents ADD COLUMN local_repositories BOOLEAN NOT NULL DEFAULT FALSE;
