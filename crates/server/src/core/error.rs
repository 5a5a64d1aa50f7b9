//! The core's one error type. Each kind says what went wrong in Wharf's terms, with a message
//! the caller can act on; an edge maps each kind to its own answer (the REST API to a status).
//! Faults of Wharf itself keep their detail for the log and never reach a caller.

use wharf_store::StoreError;

use crate::core::sealing::SealingError;

#[derive(Debug, thiserror::Error)]
pub(crate) enum CoreError {
    /// What was asked for is malformed or breaks a rule.
    #[error("{0}")]
    Invalid(String),
    /// The caller could not prove it may do this (a wrong deploy-hook signature).
    #[error("{0}")]
    Refused(String),
    /// The caller is who it says, but may not do this (an agent asking for a label its token
    /// does not allow).
    #[error("{0}")]
    Forbidden(String),
    /// What was named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// It cannot be done in the state things are in now.
    #[error("{0}")]
    Conflict(String),
    /// The caller speaks a protocol version this server no longer serves.
    #[error("{0}")]
    Incompatible(String),
    /// GitHub or a repository's host failed or refused.
    #[error("{0}")]
    Upstream(String),
    /// A part of the server this needs is not configured.
    #[error("{0}")]
    Unavailable(String),
    /// A stored secret cannot be opened: the server's secret key is not the one it was sealed with.
    #[error("{0}")]
    Sealing(#[from] SealingError),
    /// A fault of Wharf itself.
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl From<StoreError> for CoreError {
    fn from(error: StoreError) -> CoreError {
        match error {
            StoreError::NotFound(message) => CoreError::NotFound(message),
            StoreError::Conflict(message) => CoreError::Conflict(message),
            other => CoreError::Internal(other.into()),
        }
    }
}

impl From<wharf_domain::names::NameError> for CoreError {
    fn from(error: wharf_domain::names::NameError) -> CoreError {
        CoreError::Invalid(error.0)
    }
}
