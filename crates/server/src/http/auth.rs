//! Authentication as extractors: [`Admin`] for the REST API (the `WHARF_TOKEN` bearer token, or
//! a dashboard session's cookie)
//! and [`AgentIdentity`] for the agent API (a token the server issued, stored hashed).
//! Both compare in constant time and never echo a token back.

use axum::extract::FromRequestParts;
use axum::http::Method;
use axum::http::request::Parts;
use wharf_wire::Agent;

use crate::core::Core;
use crate::http::HttpError;
use crate::ui::session::{CSRF_HEADER, SESSION_COOKIE, cookie, csrf_matches};

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
        if !parts
            .headers
            .contains_key(axum::http::header::AUTHORIZATION)
            && let Some(id) = cookie(&parts.headers, SESSION_COOKIE)
        {
            return signed_in_admin(parts, core, id).await;
        }
        let given = bearer(parts)?;
        if core.is_admin_token(given) {
            Ok(Admin)
        } else {
            Err(HttpError::Unauthorized("invalid token".to_owned()))
        }
    }
}

/// A dashboard session stands for the admin token: for reading as it is, for writing with the
/// session's CSRF token in `X-CSRF-Token`, so that another site cannot make a signed-in browser
/// change anything, and only when it is an admin's (a viewer's writes are refused).
async fn signed_in_admin(parts: &Parts, core: &Core, id: &str) -> Result<Admin, HttpError> {
    let session = core.session(id).await?.ok_or_else(|| {
        HttpError::Unauthorized("the session has ended: sign in again".to_owned())
    })?;
    let reads = matches!(parts.method, Method::GET | Method::HEAD);
    let token = parts
        .headers
        .get(CSRF_HEADER)
        .and_then(|value| value.to_str().ok());
    if reads {
        Ok(Admin)
    } else if !csrf_matches(&session, token) {
        Err(HttpError::Forbidden(
            "a write with the dashboard's session needs its X-CSRF-Token header".to_owned(),
        ))
    } else if !session.can_write() {
        Err(HttpError::Forbidden(
            "a viewer sees everything and changes nothing".to_owned(),
        ))
    } else {
        Ok(Admin)
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
