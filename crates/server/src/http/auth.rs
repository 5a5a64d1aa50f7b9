//! Authentication as extractors: [`Admin`] for the REST API (the `WHARF_TOKEN` bearer token)
//! and [`AgentIdentity`] for the agent API (a token the server issued, stored hashed).
//! Both compare in constant time and never echo a token back.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use wharf_wire::Agent;

use crate::core::Core;
use crate::http::HttpError;

/// Proof that the request carries the admin token.
pub(crate) struct Admin;

/// The agent a request comes from.
pub(crate) struct AgentIdentity(pub Agent);

fn bearer(parts: &Parts) -> Result<&str, HttpError> {
    let header = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| HttpError::Unauthorized("missing Authorization: Bearer token".to_owned()))?;
    header
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or_else(|| {
            HttpError::Unauthorized(
                "malformed Authorization header: expected Bearer <token>".to_owned(),
            )
        })
}

impl FromRequestParts<Core> for Admin {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, core: &Core) -> Result<Admin, HttpError> {
        let given = bearer(parts)?;
        // Comparing digests keeps the comparison constant-time whatever the lengths.
        let expected = Sha256::digest(core.config.admin_token.expose_secret().as_bytes());
        let given = Sha256::digest(given.as_bytes());
        if bool::from(expected.ct_eq(&given)) {
            Ok(Admin)
        } else {
            Err(HttpError::Unauthorized("invalid token".to_owned()))
        }
    }
}

impl FromRequestParts<Core> for AgentIdentity {
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut Parts,
        core: &Core,
    ) -> Result<AgentIdentity, HttpError> {
        let given = bearer(parts)?;
        core.agent_by_token(given)
            .await?
            .map(AgentIdentity)
            .ok_or_else(|| HttpError::Unauthorized("invalid agent token".to_owned()))
    }
}
