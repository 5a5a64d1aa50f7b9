-- Registry credentials of an installation's builds: the password sealed by the server.
CREATE TABLE registry_credentials (
    installation_id  INTEGER PRIMARY KEY,
    username         TEXT    NOT NULL,
    sealed_password  TEXT    NOT NULL,
    updated_at       INTEGER NOT NULL
);
