//! Authentication the way GitHub does it: App JWTs (RS256, checked against the App's public key and
//! GitHub's claim rules), installation access tokens (`token X` or `Bearer X`), and HTTP Basic with
//! `x-access-token:<token>` for git.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use time::OffsetDateTime;

use crate::state::{IssuedToken, Shared};

/// The longest lifetime GitHub accepts for an App JWT (`exp - iat`), in seconds.
const MAX_JWT_LIFETIME_SECONDS: i64 = 600;
/// How far in the future GitHub tolerates `iat` (clock drift), in seconds.
const MAX_IAT_DRIFT_SECONDS: i64 = 60;

/// The user name git must send with an installation token.
pub(crate) const GIT_USER: &str = "x-access-token";

/// What a request authenticated as.
#[derive(Debug, Clone)]
pub(crate) enum Authentication {
    /// No Authorization header.
    None,
    /// A valid App JWT.
    App,
    /// A bearer credential shaped like a JWT that GitHub would refuse; the message says why.
    RejectedJwt(String),
    /// A valid, unexpired installation token, sent as `token X` / `Bearer X` (`basic` false) or as
    /// HTTP Basic `x-access-token:X` (`basic` true).
    Installation {
        token: IssuedToken,
        suspended: bool,
        basic: bool,
    },
    /// Unknown, expired or revoked credentials, or a header that could not be parsed.
    Invalid,
}

impl Authentication {
    /// The label recorded in `RecordedRequest::auth`.
    pub fn label(&self) -> &'static str {
        match self {
            Authentication::None => "none",
            Authentication::App => "jwt",
            Authentication::Installation { basic: true, .. } => "basic",
            Authentication::Installation { basic: false, .. } => "token",
            Authentication::RejectedJwt(_) | Authentication::Invalid => "invalid",
        }
    }

    /// The installation the credentials belong to, when they are an installation token.
    pub fn installation_id(&self) -> Option<u64> {
        match self {
            Authentication::Installation { token, .. } => Some(token.installation_id),
            _ => None,
        }
    }
}

/// Reads the Authorization header and checks the credentials it carries.
pub(crate) fn authenticate(shared: &Shared, headers: &HeaderMap) -> Authentication {
    let Some(header) = headers.get(AUTHORIZATION) else {
        return Authentication::None;
    };
    let Ok(header) = header.to_str() else {
        return Authentication::Invalid;
    };
    let Some((scheme, credentials)) = header.trim().split_once(' ') else {
        return Authentication::Invalid;
    };
    let credentials = credentials.trim();
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" if looks_like_jwt(credentials) => {
            let now = OffsetDateTime::now_utc().unix_timestamp();
            match verify_app_jwt(credentials, &shared.decoding_key, shared.app_id, now) {
                Ok(()) => Authentication::App,
                Err(message) => Authentication::RejectedJwt(message),
            }
        }
        "bearer" | "token" => installation_token(shared, credentials, false),
        "basic" => {
            let Some((user, password)) = decode_basic(credentials) else {
                return Authentication::Invalid;
            };
            if user != GIT_USER {
                return Authentication::Invalid;
            }
            installation_token(shared, &password, true)
        }
        _ => Authentication::Invalid,
    }
}

fn installation_token(shared: &Shared, secret: &str, basic: bool) -> Authentication {
    let state = shared.lock();
    let Some(token) = state.tokens.get(secret) else {
        return Authentication::Invalid;
    };
    if token.revoked || token.expires_at <= OffsetDateTime::now_utc() {
        return Authentication::Invalid;
    }
    let suspended = state
        .installations
        .get(&token.installation_id)
        .is_none_or(|installation| installation.suspended_at.is_some());
    Authentication::Installation {
        token: token.clone(),
        suspended,
        basic,
    }
}

fn looks_like_jwt(credentials: &str) -> bool {
    credentials.split('.').count() == 3
}

/// Decodes the credentials of an HTTP Basic header into user and password.
fn decode_basic(credentials: &str) -> Option<(String, String)> {
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials)
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Verifies an App JWT like GitHub: RS256 only, signed by the App's key, `iss` equal to the App id (a
/// number or a numeric string), `exp` in the future, `iat` at most 60 s in the future, and a lifetime
/// (`exp - iat`) of at most ten minutes. The error is GitHub's message.
pub(crate) fn verify_app_jwt(
    jwt: &str,
    key: &DecodingKey,
    app_id: u64,
    now: i64,
) -> Result<(), String> {
    const UNDECODABLE: &str = "A JSON web token could not be decoded";
    let mut validation = Validation::new(Algorithm::RS256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation.leeway = 0;
    let claims = jsonwebtoken::decode::<Value>(jwt, key, &validation)
        .map_err(|_| UNDECODABLE.to_string())?
        .claims;

    let issued_at = claims.get("iat").and_then(numeric_claim).ok_or_else(|| {
        "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued"
            .to_string()
    })?;
    let expires_at = claims.get("exp").and_then(numeric_claim).ok_or_else(|| {
        "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires"
            .to_string()
    })?;
    if issued_at > now + MAX_IAT_DRIFT_SECONDS {
        return Err(
            "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued"
                .to_string(),
        );
    }
    if expires_at <= now {
        return Err(
            "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires"
                .to_string(),
        );
    }
    if expires_at - issued_at > MAX_JWT_LIFETIME_SECONDS {
        return Err("'Expiration time' claim ('exp') is too far in the future".to_string());
    }
    let issuer = match claims.get("iss") {
        Some(Value::Number(number)) => number.as_u64(),
        Some(Value::String(text)) => text.parse::<u64>().ok(),
        _ => None,
    };
    match issuer {
        None => Err("'Issuer' claim ('iss') must be an Integer".to_string()),
        Some(issuer) if issuer != app_id => Err(UNDECODABLE.to_string()),
        Some(_) => Ok(()),
    }
}

fn numeric_claim(value: &Value) -> Option<i64> {
    value
        .as_i64()
        .or_else(|| value.as_f64().map(|seconds| seconds.floor() as i64))
}
