-- What an agent's token allows, set when the token is issued: the labels it may register with
-- (comma-separated; `build` to take builds, `deploy` to run releases, any other for the
-- services whose hosts name `label:NAME`), and the projects and services it may serve
-- (comma-separated names; both empty for any service). A revoked token no longer authenticates.
ALTER TABLE agents ADD COLUMN allowed_labels TEXT NOT NULL DEFAULT 'build,deploy';
ALTER TABLE agents ADD COLUMN projects TEXT NOT NULL DEFAULT '';
ALTER TABLE agents ADD COLUMN services TEXT NOT NULL DEFAULT '';
ALTER TABLE agents ADD COLUMN revoked_at INTEGER;

-- A token issued before allows build and deploy, and the labels its agent last registered with,
-- so that the hosts running today keep running what names them when they start again.
UPDATE agents SET allowed_labels = 'build,deploy,' || labels WHERE labels <> '';
