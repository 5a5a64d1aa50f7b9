//! Image references and the names the distribution API takes: a repository's name, a tag and
//! a digest, each checked before it becomes part of a URL.

use wharf_domain::names::{check_image_ref, check_image_tag, image_registry, image_repository};
use wharf_wire::text::{ECHOED_CHARS, clip};

use crate::RegistryError;

/// An image reference split into what a registry addresses: its host, a repository in it, and
/// a tag or digest in that repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReference {
    /// The registry's host with its port when it has one (`127.0.0.1:5000`); `docker.io` when
    /// the reference names no registry.
    pub registry: String,
    /// The repository within the registry (`default/web`). Docker Hub's official images, named
    /// by one word, are `library/{name}` there.
    pub repository: String,
    /// The digest when the reference has one (`sha256:…`), else its tag, else `latest`.
    pub reference: String,
}

/// Splits an image reference such as `127.0.0.1:5000/default/web@sha256:…`,
/// `ghcr.io/team/web:v1` or `busybox` into registry, repository and tag or digest. A reference
/// with both a tag and a digest is addressed by its digest, as the engines pull it.
pub fn split_reference(image: &str) -> Result<ImageReference, RegistryError> {
    check_image_ref(image).map_err(|error| RegistryError::Invalid(error.to_string()))?;
    let registry = image_registry(image);
    let named = image_repository(image);
    let repository = match named
        .strip_prefix(registry)
        .and_then(|rest| rest.strip_prefix('/'))
    {
        Some(repository) => repository,
        None => named,
    };
    let repository = if registry == "docker.io" && !repository.contains('/') {
        format!("library/{repository}")
    } else {
        repository.to_owned()
    };
    check_repository(&repository)?;
    let reference = match image.split_once('@') {
        Some((_, digest)) => {
            check_digest(digest)?;
            digest.to_owned()
        }
        None => match image[named.len()..].strip_prefix(':') {
            Some(tag) => {
                check_tag(tag)?;
                tag.to_owned()
            }
            None => "latest".to_owned(),
        },
    };
    Ok(ImageReference {
        registry: registry.to_owned(),
        repository,
        reference,
    })
}

/// A repository's name as the distribution specification allows it: `/`-separated components
/// of lowercase letters and digits joined by `.`, `_`, `__` or dashes, at most 255 bytes.
pub(crate) fn check_repository(repository: &str) -> Result<(), RegistryError> {
    let valid = !repository.is_empty()
        && repository.len() <= 255
        && repository.split('/').all(valid_component);
    if valid {
        Ok(())
    } else {
        Err(RegistryError::Invalid(format!(
            "{:?} is no repository name (lowercase letters and digits joined by '.', '_', '__' or '-', in parts separated by '/')",
            clip(repository, ECHOED_CHARS)
        )))
    }
}

fn valid_component(component: &str) -> bool {
    let alphanumeric = |byte: u8| byte.is_ascii_lowercase() || byte.is_ascii_digit();
    let bytes = component.as_bytes();
    let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !alphanumeric(first) || !alphanumeric(last) {
        return false;
    }
    // Between runs of letters and digits: exactly `.`, `_`, `__`, or one or more `-`.
    component
        .split(|character: char| character.is_ascii_lowercase() || character.is_ascii_digit())
        .all(|separator| {
            matches!(separator, "" | "." | "_" | "__") || separator.bytes().all(|byte| byte == b'-')
        })
}

/// A tag (`v1`, `latest`) or a digest (`sha256:…`): what a manifest is addressed by.
pub(crate) fn check_reference(reference: &str) -> Result<(), RegistryError> {
    if reference.contains(':') {
        check_digest(reference)
    } else {
        check_tag(reference)
    }
}

/// True for a digest as [`check_digest`] takes it.
pub(crate) fn is_digest(value: &str) -> bool {
    check_digest(value).is_ok()
}

fn check_tag(tag: &str) -> Result<(), RegistryError> {
    check_image_tag(tag).map_err(|error| RegistryError::Invalid(error.to_string()))
}

/// A digest as the distribution specification writes it: `algorithm:encoded`, the algorithm
/// lowercase letters and digits joined by `+`, `.`, `_` or `-`, the encoded part letters,
/// digits, `=`, `_` and `-`.
fn check_digest(digest: &str) -> Result<(), RegistryError> {
    let valid = digest.len() <= 1024
        && digest.split_once(':').is_some_and(|(algorithm, encoded)| {
            !algorithm.is_empty()
                && algorithm.split(['+', '.', '_', '-']).all(|part| {
                    !part.is_empty()
                        && part
                            .bytes()
                            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit())
                })
                && !encoded.is_empty()
                && encoded
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || b"=_-".contains(&byte))
        });
    if valid {
        Ok(())
    } else {
        Err(RegistryError::Invalid(format!(
            "{:?} is no digest (expected algorithm:hex, such as sha256:…)",
            clip(digest, ECHOED_CHARS)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(image: &str) -> (String, String, String) {
        let reference = split_reference(image).unwrap();
        (
            reference.registry,
            reference.repository,
            reference.reference,
        )
    }

    fn owned(parts: (&str, &str, &str)) -> (String, String, String) {
        (parts.0.to_owned(), parts.1.to_owned(), parts.2.to_owned())
    }

    #[test]
    fn a_reference_splits_into_registry_repository_and_digest_or_tag() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(
            split(&format!("host:5000/default/web@{digest}")),
            owned(("host:5000", "default/web", &digest))
        );
        assert_eq!(
            split(&format!("host:5000/default/web:v1@{digest}")),
            owned(("host:5000", "default/web", &digest))
        );
        assert_eq!(
            split("host:5000/default/web@sha256:abc"),
            owned(("host:5000", "default/web", "sha256:abc"))
        );
        assert_eq!(
            split("ghcr.io/team/web:v1"),
            owned(("ghcr.io", "team/web", "v1"))
        );
        assert_eq!(
            split("127.0.0.1:5000/web"),
            owned(("127.0.0.1:5000", "web", "latest"))
        );
        assert_eq!(split("localhost/web:v2"), owned(("localhost", "web", "v2")));
        assert_eq!(
            split("busybox"),
            owned(("docker.io", "library/busybox", "latest"))
        );
        assert_eq!(
            split("docker.io/busybox:1.36"),
            owned(("docker.io", "library/busybox", "1.36"))
        );
        assert_eq!(split("team/web:v1"), owned(("docker.io", "team/web", "v1")));
    }

    #[test]
    fn a_reference_that_names_nothing_is_refused() {
        for image in [
            "",
            "host:5000/Default/web:v1",
            "host:5000/default//web",
            "host:5000/default/web:-v1",
            "host:5000/default/web@",
            "host:5000/default/web@sha256",
            "host:5000/default/web@sha256:ab/cd",
            "host:5000/-web",
            "host:5000/a b",
        ] {
            assert!(
                matches!(split_reference(image), Err(RegistryError::Invalid(_))),
                "{image:?}"
            );
        }
    }

    #[test]
    fn repository_names_follow_the_distribution_grammar() {
        for good in ["web", "default/web", "a.b/c_d/e__f/g---h", "0/1"] {
            assert!(check_repository(good).is_ok(), "{good}");
        }
        for bad in [
            "", "/web", "web/", "a..b", "a._b", "a___b", "Web", "a/-b", "a/b-", "a%2fb", "a?b",
        ] {
            assert!(check_repository(bad).is_err(), "{bad}");
        }
        assert!(check_repository(&"a".repeat(256)).is_err());
    }

    #[test]
    fn a_manifest_is_addressed_by_a_tag_or_a_digest() {
        assert!(check_reference("v1.2_3-x").is_ok());
        assert!(check_reference("sha256:0123abc").is_ok());
        assert!(check_reference("sha256+b64:AZaz09=_-").is_ok());
        for bad in [
            "",
            ".v1",
            "v1/x",
            "sha256:",
            ":abc",
            "SHA256:ab",
            "v1?x",
            "a#b",
        ] {
            assert!(check_reference(bad).is_err(), "{bad}");
        }
    }
}
