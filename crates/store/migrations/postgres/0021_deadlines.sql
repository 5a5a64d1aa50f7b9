-- When a build or rollout must have ended, set when its agent takes it: a build by the agent's
-- build timeout (which the agent names when it claims) and a lease's grace, a rollout by its
-- service's health deadline and the time a pull may take. One still running past it is
-- reported `rollout.stuck`, once. NULL: no deadline (taken before this column, or by an agent
-- that names no timeout); the lease alone then says when it is stuck.
ALTER TABLE builds ADD COLUMN deadline_at BIGINT;
ALTER TABLE rollouts ADD COLUMN deadline_at BIGINT;
CREATE INDEX rollouts_by_state ON rollouts (state, deadline_at);
