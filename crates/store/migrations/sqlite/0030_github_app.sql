-- The GitHub App made from the dashboard through GitHub's manifest flow: its id, slug and page,
-- with its private key and webhook secret sealed. One row at most; WHARF_GITHUB_* settings,
-- when set, win over it.
CREATE TABLE github_app (
    singleton              INTEGER PRIMARY KEY CHECK (singleton = 1),
    app_id                 BIGINT  NOT NULL,
    slug                   TEXT    NOT NULL,
    html_url               TEXT    NOT NULL,
    private_key_sealed     TEXT    NOT NULL,
    webhook_secret_sealed  TEXT    NOT NULL,
    created_at             BIGINT  NOT NULL   -- milliseconds since the epoch
);
