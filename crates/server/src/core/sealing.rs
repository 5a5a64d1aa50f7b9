//! Secret values at rest: sealed with AES-256-GCM under the server's secret key before they
//! reach the store, opened only to hand them to the agent that needs them. Each sealed value is
//! bound to what it belongs to (the AEAD's associated data, one of the contexts below), so a
//! sealed value copied to another row does not open.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;

const PREFIX: &str = "v1:";

/// The key secret values are sealed with.
pub struct SealingKey {
    key: LessSafeKey,
}

/// Why a value could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SealingError {
    #[error("the secret key must be 32 bytes, given as 64 hex digits or base64")]
    KeyLength,
    #[error(
        "a stored secret could not be opened: the secret key is not the one it was sealed with"
    )]
    Open,
    #[error("the system's random number generator failed")]
    Random,
}

impl SealingKey {
    /// Reads a key given as 64 hex digits or as base64 of 32 bytes.
    pub fn parse(text: &str) -> Result<SealingKey, SealingError> {
        let text = text.trim();
        let bytes = hex::decode(text)
            .ok()
            .or_else(|| base64::engine::general_purpose::STANDARD.decode(text).ok())
            .filter(|bytes| bytes.len() == 32)
            .ok_or(SealingError::KeyLength)?;
        let unbound = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| SealingError::KeyLength)?;
        Ok(SealingKey {
            key: LessSafeKey::new(unbound),
        })
    }

    /// A new random key, as 64 hex digits.
    pub fn generate() -> Result<String, SealingError> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| SealingError::Random)?;
        Ok(hex::encode(bytes))
    }

    /// Seals `value`, bound to `context` (such as `service-id/NAME`).
    pub fn seal(&self, context: &str, value: &str) -> Result<String, SealingError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| SealingError::Random)?;
        let mut sealed = value.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| SealingError::Random)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(out)
        ))
    }

    /// Opens a value sealed by [`SealingKey::seal`] with the same context.
    pub fn open(&self, context: &str, sealed: &str) -> Result<String, SealingError> {
        let bytes = sealed
            .strip_prefix(PREFIX)
            .and_then(|encoded| {
                base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .ok()
            })
            .filter(|bytes| bytes.len() > NONCE_LEN)
            .ok_or(SealingError::Open)?;
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealingError::Open)?;
        let mut buffer = ciphertext.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut buffer)
            .map_err(|_| SealingError::Open)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SealingError::Open)
    }
}

/// The context a service's secret variable is sealed under: it binds the value to its row.
pub(crate) fn variable_context(service_id: i64, name: &str) -> String {
    format!("service-env/{service_id}/{name}")
}

/// The context a variable of a service's previews is sealed under: apart from the service's
/// own, so a sealed value copied from one table to the other does not open.
pub(crate) fn preview_variable_context(service_id: i64, name: &str) -> String {
    format!("preview-env/{service_id}/{name}")
}

/// The context an installation's registry password is sealed under.
pub(crate) fn registry_login_context(installation_id: i64) -> String {
    format!("registry-login/{installation_id}")
}

/// The context a notification sink's URL is sealed under.
pub(crate) fn notification_url_context(sink: &str) -> String {
    format!("notification-url/{sink}")
}

/// The context a webhook sink's signing secret is sealed under.
pub(crate) fn notification_secret_context(sink: &str) -> String {
    format!("notification-secret/{sink}")
}

/// The context the private key of the GitHub App made from the dashboard is sealed under.
pub(crate) const GITHUB_APP_KEY_CONTEXT: &str = "github-app/private-key";

/// The context the webhook secret of the GitHub App made from the dashboard is sealed under.
pub(crate) const GITHUB_APP_WEBHOOK_SECRET_CONTEXT: &str = "github-app/webhook-secret";

/// The context a service's deploy-hook secret is sealed under.
pub(crate) fn deploy_secret_context(service_id: i64) -> String {
    format!("deploy-secret/{service_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_context() {
        let key = SealingKey::parse(&SealingKey::generate().unwrap()).unwrap();
        let sealed = key.seal("7/TOKEN", "s3cret value").unwrap();
        assert!(!sealed.contains("s3cret"));
        assert_ne!(
            sealed,
            key.seal("7/TOKEN", "s3cret value").unwrap(),
            "a fresh nonce each time"
        );
        assert_eq!(key.open("7/TOKEN", &sealed).unwrap(), "s3cret value");
        assert!(key.open("8/TOKEN", &sealed).is_err(), "bound to its row");
        let other = SealingKey::parse(&SealingKey::generate().unwrap()).unwrap();
        assert!(other.open("7/TOKEN", &sealed).is_err());
        assert!(key.open("7/TOKEN", "v1:garbage").is_err());
    }

    #[test]
    fn keys_are_32_bytes_in_hex_or_base64() {
        assert!(SealingKey::parse(&"ab".repeat(32)).is_ok());
        assert!(
            SealingKey::parse(&base64::engine::general_purpose::STANDARD.encode([7u8; 32])).is_ok()
        );
        assert!(SealingKey::parse("short").is_err());
        assert!(SealingKey::parse(&"ab".repeat(16)).is_err());
    }
}
