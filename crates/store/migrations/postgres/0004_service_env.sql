-- Per-service variables: plain values, or secrets sealed by the server (never stored in the
-- clear). `build` ones reach the image build (build arguments, or build secrets when secret).
CREATE TABLE service_env (
    service_id  BIGINT  NOT NULL REFERENCES services (id),
    name        TEXT    NOT NULL,
    value       TEXT,                        -- the value, when not secret
    sealed      TEXT,                        -- the sealed value, when secret
    secret      BOOLEAN NOT NULL,
    build       BOOLEAN NOT NULL,
    updated_at  BIGINT  NOT NULL,
    PRIMARY KEY (service_id, name)
);

-- A newer push also cancels the service's running builds, not only its pending ones.
ALTER TABLE services ADD COLUMN cancel_running BOOLEAN NOT NULL DEFAULT FALSE;
