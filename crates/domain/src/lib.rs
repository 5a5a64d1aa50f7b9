//! Wharf's rules, free of I/O: what a valid name, branch or commit is, how a GitHub webhook is
//! authenticated and read, which moves a build may make between states, what of a compose
//! file Wharf builds and runs, what a build's GitHub deployment and check show, what an agent's token
//! allows, which notifications are sent and which kept quiet, what a pull request's preview is called and who may build one, when work in progress is stuck, and
//! durations as text.
//!
//! Architecture invariant: nothing here touches the network, the disk, a clock or a database.
//! Callers pass in what the rules need (bytes, strings, the current state) and get a decision back,
//! so every rule is tested with plain values.

pub mod agents;
pub mod build;
pub mod check;
pub mod compose;
pub mod deployment;
pub mod duration;
pub mod identity;
pub mod names;
pub mod notification;
pub mod preview;
pub mod release;
pub mod signature;
pub mod stuck;
pub mod webhook;
