//! How Wharf runs external programs: git to fetch a commit, podman (or docker) to build, push
//! and run images, Caddy as the edge in front of the apps. Every program runs from an argument
//! vector, never a shell string, because branch names, paths and repository names are user data.
//!
//! Architecture invariant: no other crate starts a process. Secrets reach programs only through
//! their environment (never arguments, which `ps` shows), and output is read as lines with
//! bounded memory.

pub mod cgroup;
pub mod edge;
pub mod engine;
pub mod files;
pub mod git;
pub mod process;
pub mod railpack;
pub mod registry;
