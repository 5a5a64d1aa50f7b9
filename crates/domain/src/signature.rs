//! GitHub's webhook signature: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`.
//!
//! The same scheme signs the CI `/deploy` hook. Verification compares in constant time and
//! happens before the body is parsed at all.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Why a signature was refused. The messages are safe to send back: they reveal nothing of the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Hub-Signature-256 header")]
    Missing,
    #[error("malformed X-Hub-Signature-256 header: expected sha256=<64 hex digits>")]
    Malformed,
    #[error("X-Hub-Signature-256 does not match the body")]
    Mismatch,
}

/// Computes the header value for `body` signed with `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hex::encode(mac(secret, body)))
}

/// Checks a `X-Hub-Signature-256` header value against the body.
pub fn verify(secret: &[u8], body: &[u8], header: Option<&[u8]>) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_digest = header
        .strip_prefix(b"sha256=")
        .ok_or(SignatureError::Malformed)?;
    if hex_digest.len() != 64 {
        return Err(SignatureError::Malformed);
    }
    let mut claimed = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut claimed).map_err(|_| SignatureError::Malformed)?;
    let expected = mac(secret, body);
    if bool::from(expected.ct_eq(&claimed)) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

fn mac(secret: &[u8], body: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(body);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_githubs_documented_example() {
        // The example from GitHub's "Validating webhook deliveries" documentation.
        let header = sign(b"It's a Secret to Everybody", b"Hello, World!");
        assert_eq!(
            header,
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        assert_eq!(
            verify(
                b"It's a Secret to Everybody",
                b"Hello, World!",
                Some(header.as_bytes())
            ),
            Ok(())
        );
    }

    #[test]
    fn refuses_what_is_not_a_valid_signature() {
        let secret = b"s3cret";
        let body = b"{}";
        let good = sign(secret, body);
        assert_eq!(verify(secret, body, None), Err(SignatureError::Missing));
        assert_eq!(
            verify(secret, body, Some(b"sha1=abcdef")),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(secret, body, Some(&good.as_bytes()[..good.len() - 2])),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(
                secret,
                body,
                Some(good.replace("sha256=", "sha256=zz").as_bytes())
            ),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(b"other secret", body, Some(good.as_bytes())),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(secret, b"{ }", Some(good.as_bytes())),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(secret, body, Some(good.to_uppercase().as_bytes())),
            Err(SignatureError::Malformed)
        );
    }
}
