-- Which way a delivery's dedupe_key was made. 1: before every stored delivery had one (a push
-- of a branch was known by repository, ref and `after`; other events by their delivery id
-- alone). 2: today's (a push of a branch by repository, ref, `before`, `after` and
-- `pushed_at`; any other event by a hash of its body). The periodic jobs key the earlier ones
-- again from their stored bodies, so a body stored before is recognised when it is sent again.
ALTER TABLE deliveries ADD COLUMN key_scheme INTEGER NOT NULL DEFAULT 1;
CREATE INDEX deliveries_keyed_before ON deliveries (received_at) WHERE key_scheme < 2;
