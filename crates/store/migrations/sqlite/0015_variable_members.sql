-- The compose members a variable reaches, as JSON: "routed" (the member that takes the
-- service's traffic) or a list of compose service names. NULL is every member, which is what
-- the variables set before this step reach, so running stacks keep their variables.
ALTER TABLE service_env ADD COLUMN members TEXT;
