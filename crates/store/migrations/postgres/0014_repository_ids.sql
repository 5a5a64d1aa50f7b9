-- A service is linked to one GitHub repository by GitHub's id, not only by its name, so a
-- repository deleted and created again under the same name, or another one given a renamed
-- repository's old name, does not inherit the service (its builds, secrets and releases).
-- NULL: not linked yet; the service links to the first repository of its name that pushes.
ALTER TABLE services ADD COLUMN github_repository_id BIGINT;

-- Services of repositories the installations already name are linked to them now.
UPDATE services SET github_repository_id = (
    SELECT MIN(r.id) FROM repositories r WHERE r.repo_key = services.repo_key
) WHERE repo_key IS NOT NULL
  AND (SELECT COUNT(*) FROM repositories r WHERE r.repo_key = services.repo_key) = 1;
