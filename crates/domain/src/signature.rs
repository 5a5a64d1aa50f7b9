//! GitHub's webhook signature: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`.
//!
//! The CI `/deploy` hook signs the same way, over `"{timestamp}.{body}"`, with the time of
//! signing in `X-Wharf-Timestamp` (Unix seconds): a request is good only near the time it was
//! signed. Verification compares in constant time and happens before the body is parsed at all.

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

/// The header that says when a deploy-hook request was signed, in Unix seconds.
pub const TIMESTAMP_HEADER: &str = "X-Wharf-Timestamp";

/// How far a deploy-hook request's timestamp may be from the server's clock, either way.
pub const MAX_TIMESTAMP_SKEW_SECONDS: i64 = 300;

/// Why a deploy-hook request's timestamp was refused. Safe to send back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    #[error(
        "missing X-Wharf-Timestamp header: send the Unix time in seconds, and sign \"{{timestamp}}.{{body}}\""
    )]
    Missing,
    #[error("malformed X-Wharf-Timestamp header: expected the Unix time in seconds")]
    Malformed,
    #[error(
        "X-Wharf-Timestamp is {0} s away from the server's clock; at most {max} s are accepted (sign each request when it is sent)",
        max = MAX_TIMESTAMP_SKEW_SECONDS
    )]
    Skewed(i64),
}

/// A deploy-hook request's signing time, read from its `X-Wharf-Timestamp` header and checked
/// against `now` (Unix seconds): at most [`MAX_TIMESTAMP_SKEW_SECONDS`] away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningTime {
    /// The header's text, which the signature covers.
    text: String,
    /// The same, in Unix seconds.
    pub seconds: i64,
}

impl SigningTime {
    pub fn check(header: Option<&[u8]>, now: i64) -> Result<SigningTime, TimestampError> {
        let header = header.ok_or(TimestampError::Missing)?;
        if header.is_empty() || header.len() > 12 || !header.iter().all(u8::is_ascii_digit) {
            return Err(TimestampError::Malformed);
        }
        let text = String::from_utf8_lossy(header).into_owned();
        let seconds: i64 = text.parse().map_err(|_| TimestampError::Malformed)?;
        let skew = seconds - now;
        if skew.abs() > MAX_TIMESTAMP_SKEW_SECONDS {
            return Err(TimestampError::Skewed(skew));
        }
        Ok(SigningTime { text, seconds })
    }

    /// What the signature covers: `"{timestamp}.{body}"`.
    fn signed_message(&self, body: &[u8]) -> Vec<u8> {
        timestamped(&self.text, body)
    }
}

fn timestamped(timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(timestamp.len() + 1 + body.len());
    message.extend_from_slice(timestamp.as_bytes());
    message.push(b'.');
    message.extend_from_slice(body);
    message
}

/// Computes the `X-Hub-Signature-256` value of a deploy-hook request signed at `timestamp`
/// (Unix seconds): the HMAC of `"{timestamp}.{body}"`.
pub fn sign_timestamped(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    sign(secret, &timestamped(&timestamp.to_string(), body))
}

/// Checks a deploy-hook request's `X-Hub-Signature-256` value against its body and signing time.
pub fn verify_timestamped(
    secret: &[u8],
    time: &SigningTime,
    body: &[u8],
    header: Option<&[u8]>,
) -> Result<(), SignatureError> {
    verify(secret, &time.signed_message(body), header)
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
    fn a_deploy_hook_signature_covers_its_time_and_body() {
        let secret = b"whd_secret";
        let body = br#"{"service":"web","image_sha":"abc"}"#;
        let now = 1_800_000_000;
        let header = sign_timestamped(secret, now, body);
        // What a shell script computes: openssl dgst -sha256 -hmac over "{timestamp}.{body}".
        assert_eq!(
            header,
            sign(
                secret,
                format!("{now}.{}", std::str::from_utf8(body).unwrap()).as_bytes()
            )
        );
        let time = SigningTime::check(Some(b"1800000000"), now).unwrap();
        assert_eq!(time.seconds, now);
        assert_eq!(
            verify_timestamped(secret, &time, body, Some(header.as_bytes())),
            Ok(())
        );
        // The signature of the body alone, or at another time, is not the request's.
        let body_only = sign(secret, body);
        assert_eq!(
            verify_timestamped(secret, &time, body, Some(body_only.as_bytes())),
            Err(SignatureError::Mismatch)
        );
        let later = SigningTime::check(Some(b"1800000001"), now).unwrap();
        assert_eq!(
            verify_timestamped(secret, &later, body, Some(header.as_bytes())),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_deploy_hook_timestamp_is_unix_seconds_near_now() {
        let now = 1_800_000_000;
        let check = |header: &[u8]| SigningTime::check(Some(header), now).map(|time| time.seconds);
        assert_eq!(SigningTime::check(None, now), Err(TimestampError::Missing));
        assert!(
            TimestampError::Missing
                .to_string()
                .contains(TIMESTAMP_HEADER)
        );
        assert_eq!(check(b"1800000300"), Ok(now + 300));
        assert_eq!(check(b"1799999700"), Ok(now - 300));
        assert_eq!(check(b"1800000301"), Err(TimestampError::Skewed(301)));
        assert_eq!(check(b"1799999699"), Err(TimestampError::Skewed(-301)));
        for malformed in [
            &b""[..],
            b"-1800000000",
            b"+1800000000",
            b"18e8",
            b"1800000000.5",
            b"1800000000000",
        ] {
            assert_eq!(
                check(malformed),
                Err(TimestampError::Malformed),
                "{malformed:?}"
            );
        }
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
