//! The moves a build may make between its states.
//!
//! `pending → claimed → cloning → building → pushing → completed`, with `failed` and
//! `cancelled` reachable from any state that is not final. A lease that runs out moves a
//! leased build back to `pending` (the store does that, guarded by the same rules).

use wharf_wire::{BuildState, BuiltImage};

/// A move the rules refuse, with the states involved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a build cannot move from {from} to {to}")]
pub struct TransitionError {
    pub from: BuildState,
    pub to: BuildState,
}

/// Checks that an agent may report `to` for a build that is now `from`.
///
/// Agents move forward through the working states (skipping is allowed: a compose build
/// may push as part of building) and may end the build as completed or failed.
pub fn check_agent_report(from: BuildState, to: BuildState) -> Result<(), TransitionError> {
    use BuildState::*;
    let allowed = match (from, to) {
        (from, _) if !from.is_leased() => false,
        (_, Failed) => true,
        (_, Pending | Claimed | Cancelled) => false,
        (from, to) => rank(to) >= rank(from),
    };
    if allowed {
        Ok(())
    } else {
        Err(TransitionError { from, to })
    }
}

/// Checks that a user may cancel a build that is now `from`.
pub fn check_cancel(from: BuildState) -> Result<(), TransitionError> {
    if from.is_final() {
        Err(TransitionError {
            from,
            to: BuildState::Cancelled,
        })
    } else {
        Ok(())
    }
}

/// Checks that a user may retry a build that is now `from`: only finished builds are retried.
pub fn check_retry(from: BuildState) -> Result<(), TransitionError> {
    if from.is_final() {
        Ok(())
    } else {
        Err(TransitionError {
            from,
            to: BuildState::Pending,
        })
    }
}

/// The reason kept on a build that a newer build of its service cancelled.
pub fn superseded_reason(newer_build_id: i64) -> String {
    format!("{SUPERSEDED_PREFIX}{newer_build_id}")
}

/// True when a cancelled build's reason says a newer build superseded it.
pub fn is_superseded_reason(reason: &str) -> bool {
    reason.starts_with(SUPERSEDED_PREFIX)
}

const SUPERSEDED_PREFIX: &str = "superseded by build #";

/// What a completed build of one commit of one service must have pushed, as the server knows it.
#[derive(Debug, Clone, Copy)]
pub struct ExpectedImages<'a> {
    /// The server's registry (`WHARF_REGISTRY`), without a trailing `/`.
    pub registry: &'a str,
    pub project: &'a str,
    pub service: &'a str,
    pub commit: &'a str,
    /// The service's compose file path, for a service built from one.
    pub compose: Option<&'a str>,
}

/// What an agent reported of a completed build.
#[derive(Debug, Clone, Copy)]
pub struct ReportedImages<'a> {
    pub image: Option<&'a str>,
    pub digest: Option<&'a str>,
    pub images: &'a [BuiltImage],
    pub compose_file: Option<&'a str>,
}

/// Checks an agent's report of a completed build against what the build must have pushed:
/// every image exactly `{registry}/{project}/{service}:{commit}` (a compose service: one
/// `{registry}/{project}/{service}/{component}:{commit}` per compose service with a `build:`
/// section, each once), every digest `sha256:` and 64 lowercase hex digits, and a compose file
/// only for a service built from one. Returns the images to keep; `Err` holds the reason the
/// build fails with.
pub fn check_built_images(
    expected: &ExpectedImages<'_>,
    reported: &ReportedImages<'_>,
) -> Result<Vec<BuiltImage>, String> {
    let base = format!(
        "{}/{}/{}",
        expected.registry, expected.project, expected.service
    );
    // Agents from before compose builds reported one image and digest alone.
    let images: Vec<BuiltImage> = match (reported.images, reported.image, reported.digest) {
        ([], Some(image), Some(digest)) => vec![BuiltImage {
            component: None,
            image: image.to_owned(),
            digest: digest.to_owned(),
        }],
        (images, _, _) => images.to_vec(),
    };
    if images.is_empty() {
        return Err("the agent reported the build completed without an image".to_owned());
    }
    for image in &images {
        if !is_sha256_digest(&image.digest) {
            return Err(format!(
                "the agent reported the digest {:?} for {}, which is not sha256: and 64 lowercase hex digits",
                shortened(&image.digest),
                shortened(&image.image)
            ));
        }
    }
    match expected.compose {
        None => {
            if reported.compose_file.is_some() {
                return Err(format!(
                    "the agent reported a compose file for {}, which is not built from one",
                    expected.service
                ));
            }
            let wanted = format!("{base}:{}", expected.commit);
            let [only] = images.as_slice() else {
                return Err(format!(
                    "the agent reported {} images; a build of {} pushes one, {wanted}",
                    images.len(),
                    expected.service
                ));
            };
            if only.component.is_some() || only.image != wanted {
                return Err(format!(
                    "the agent reported the image {}, but this build pushes {wanted}",
                    shortened(&only.image)
                ));
            }
            if reported.image.is_some_and(|image| image != only.image)
                || reported.digest.is_some_and(|digest| digest != only.digest)
            {
                return Err(
                    "the agent reported an image and digest that differ from its list of images"
                        .to_owned(),
                );
            }
        }
        Some(path) => {
            let Some(file) = reported.compose_file else {
                return Err(format!(
                    "the agent reported no compose file for {}, which is built from {path}",
                    expected.service
                ));
            };
            let builds = crate::compose::builds(path, file)
                .map_err(|error| format!("the reported compose file: {}", error.0))?;
            if reported.image.is_some() || reported.digest.is_some() {
                return Err(
                    "the agent reported a single image for a compose build, which pushes one per compose service"
                        .to_owned(),
                );
            }
            let mut components: Vec<&str> = Vec::new();
            for image in &images {
                let Some(component) = image.component.as_deref() else {
                    return Err(format!(
                        "the agent reported the image {} without its compose service",
                        shortened(&image.image)
                    ));
                };
                if !builds.iter().any(|build| build.component == component) {
                    return Err(format!(
                        "the agent reported an image for {:?}, which is not a service with a build: section in {path}",
                        shortened(component)
                    ));
                }
                if components.contains(&component) {
                    return Err(format!(
                        "the agent reported two images for the compose service {component}"
                    ));
                }
                components.push(component);
                let wanted = format!("{base}/{component}:{}", expected.commit);
                if image.image != wanted {
                    return Err(format!(
                        "the agent reported the image {}, but this build pushes {wanted}",
                        shortened(&image.image)
                    ));
                }
            }
            if let Some(missing) = builds
                .iter()
                .find(|build| !components.contains(&build.component.as_str()))
            {
                return Err(format!(
                    "the agent reported no image for the compose service {}",
                    missing.component
                ));
            }
        }
    }
    Ok(images)
}

/// True for `sha256:` followed by 64 lowercase hex digits.
pub fn is_sha256_digest(value: &str) -> bool {
    value.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
    })
}

/// An agent's text in a reason: at most 200 characters, and only printable ones.
fn shortened(text: &str) -> String {
    text.chars()
        .take(200)
        .map(|character| {
            if character.is_control() {
                '?'
            } else {
                character
            }
        })
        .collect()
}

fn rank(state: BuildState) -> usize {
    BuildState::ALL
        .iter()
        .position(|candidate| *candidate == state)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use BuildState::*;

    #[test]
    fn agents_move_forward_and_may_fail_at_any_working_step() {
        let allowed = [
            (Claimed, Cloning),
            (Cloning, Building),
            (Building, Pushing),
            (Pushing, Completed),
            (Claimed, Failed),
            (Building, Failed),
            (Building, Completed),
            (Cloning, Cloning),
        ];
        for (from, to) in allowed {
            assert_eq!(check_agent_report(from, to), Ok(()), "{from} -> {to}");
        }
        let refused = [
            (Pending, Cloning),
            (Building, Cloning),
            (Completed, Failed),
            (Cancelled, Building),
            (Failed, Completed),
            (Building, Pending),
            (Building, Cancelled),
            (Claimed, Claimed),
        ];
        for (from, to) in refused {
            assert!(check_agent_report(from, to).is_err(), "{from} -> {to}");
        }
    }

    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

    fn digest(digit: char) -> String {
        format!("sha256:{}", digit.to_string().repeat(64))
    }

    fn expected(compose: Option<&str>) -> ExpectedImages<'_> {
        ExpectedImages {
            registry: "registry.example.com:5000",
            project: "acme",
            service: "web",
            commit: COMMIT,
            compose,
        }
    }

    fn single(image: &str, digest: &str) -> Vec<BuiltImage> {
        vec![BuiltImage {
            component: None,
            image: image.to_owned(),
            digest: digest.to_owned(),
        }]
    }

    fn check(
        expected: &ExpectedImages<'_>,
        images: &[BuiltImage],
        compose_file: Option<&str>,
    ) -> Result<Vec<BuiltImage>, String> {
        check_built_images(
            expected,
            &ReportedImages {
                image: None,
                digest: None,
                images,
                compose_file,
            },
        )
    }

    #[test]
    fn a_build_pushes_exactly_its_own_image_with_a_sha256_digest() {
        let good = format!("registry.example.com:5000/acme/web:{COMMIT}");
        assert!(check(&expected(None), &single(&good, &digest('a')), None).is_ok());
        // Older agents sent the image and digest alone.
        let kept = check_built_images(
            &expected(None),
            &ReportedImages {
                image: Some(&good),
                digest: Some(&digest('b')),
                images: &[],
                compose_file: None,
            },
        )
        .unwrap();
        assert_eq!(kept, single(&good, &digest('b')));
        for (image, digest_text, reason) in [
            (
                format!("registry.example.com:5000/acme/api:{COMMIT}"),
                digest('a'),
                "this build pushes",
            ),
            (
                format!("evil.example.com/acme/web:{COMMIT}"),
                digest('a'),
                "this build pushes",
            ),
            (
                format!("registry.example.com:5000/other/web:{COMMIT}"),
                digest('a'),
                "this build pushes",
            ),
            (
                format!("registry.example.com:5000/acme/web:{}", "f".repeat(40)),
                digest('a'),
                "this build pushes",
            ),
            (
                format!("registry.example.com:5000/acme/web/x:{COMMIT}"),
                digest('a'),
                "this build pushes",
            ),
            (good.clone(), "sha256:00".to_owned(), "not sha256:"),
            (good.clone(), digest('A'), "not sha256:"),
            (
                good.clone(),
                format!("sha512:{}", "a".repeat(64)),
                "not sha256:",
            ),
        ] {
            let refused = check(&expected(None), &single(&image, &digest_text), None).unwrap_err();
            assert!(refused.contains(reason), "{image} {digest_text}: {refused}");
        }
        let refused = check(&expected(None), &[], None).unwrap_err();
        assert!(refused.contains("without an image"), "{refused}");
        let refused = check(
            &expected(None),
            &single(&good, &digest('a')),
            Some("services:\n  web:\n    build: .\n"),
        )
        .unwrap_err();
        assert!(
            refused.contains("compose file for web, which is not built from one"),
            "{refused}"
        );
    }

    #[test]
    fn a_compose_build_pushes_one_image_per_service_with_a_build_section() {
        let file = "services:\n  web:\n    build: ./web\n  worker:\n    build: ./worker\n  db:\n    image: postgres:15\n";
        let image = |component: &str| BuiltImage {
            component: Some(component.to_owned()),
            image: format!("registry.example.com:5000/acme/web/{component}:{COMMIT}"),
            digest: digest('c'),
        };
        let compose = expected(Some("compose.yml"));
        assert!(check(&compose, &[image("web"), image("worker")], Some(file)).is_ok());
        for (images, reason) in [
            (
                vec![image("web")],
                "no image for the compose service worker",
            ),
            (
                vec![image("web"), image("worker"), image("db")],
                "not a service with a build: section",
            ),
            (
                vec![image("web"), image("web"), image("worker")],
                "two images",
            ),
        ] {
            let refused = check(&compose, &images, Some(file)).unwrap_err();
            assert!(refused.contains(reason), "{refused}");
        }
        let mut moved = image("worker");
        moved.image = format!("registry.example.com:5000/acme/api/worker:{COMMIT}");
        assert!(check(&compose, &[image("web"), moved], Some(file)).is_err());
        let refused = check(&compose, &[image("web"), image("worker")], None).unwrap_err();
        assert!(refused.contains("no compose file"), "{refused}");
    }

    #[test]
    fn superseded_reasons_are_recognised() {
        assert_eq!(superseded_reason(12), "superseded by build #12");
        assert!(is_superseded_reason(&superseded_reason(12)));
        assert!(!is_superseded_reason("cancelled by a user"));
    }

    #[test]
    fn only_unfinished_builds_cancel_and_only_finished_ones_retry() {
        for state in BuildState::ALL {
            assert_eq!(check_cancel(state).is_ok(), !state.is_final(), "{state}");
            assert_eq!(check_retry(state).is_ok(), state.is_final(), "{state}");
        }
    }
}
