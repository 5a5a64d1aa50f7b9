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

/// An error with its sources, one after the other (`error: cause: cause`): the whole story,
/// since a library's own message alone is often only "error sending request".
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_error_chain_shows_every_cause() {
        let error = crate::process::SpawnError {
            program: "caddy".to_owned(),
            source: std::io::Error::other("permission denied"),
        };
        assert_eq!(
            super::error_chain(&error),
            "cannot run caddy: permission denied: permission denied"
        );
    }
}
