-- What is live and what is rolling out, for every service at once (the dashboard's overview),
-- without reading every release ever made.
CREATE INDEX releases_by_state ON releases (state, id);
