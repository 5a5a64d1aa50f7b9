//! Wharf's integration tests, all in one binary: the real server on port 0 with a fresh
//! database of the backend this run tests, the GitHub stand-in where GitHub is involved, and
//! the real `wharf` binary for the CLI.

mod agent_reports;
mod agent_scopes;
mod builds;
mod catch_up;
mod checks;
mod cli;
mod compose_deploys;
mod dashboard;
mod data_at_rest;
mod deploy_hook;
mod deploys;
mod durability;
mod email;
mod github_app;
mod github_deployments;
mod helpers;
mod limits;
mod local_repositories;
mod notifications;
mod operations;
mod parts;
mod previews;
mod queue;
mod webhooks;
