-- What a service's build `RUN` steps may reach over the network: 'isolated' (the internet, not
-- the build host's own addresses nor link-local ones) or 'open' (the engine's default network).
-- Services made before keep building, now isolated.
ALTER TABLE services ADD COLUMN build_network TEXT NOT NULL DEFAULT 'isolated';
