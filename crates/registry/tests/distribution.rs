//! The client against a real registry: Debian's `docker-registry` (Distribution 2.8) on
//! 127.0.0.1, holding images Podman built from scratch and pushed.

use std::path::Path;

use secrecy::SecretString;
use wharf_registry::{Deleted, RegistryClient, RegistryError};
use wharf_runtime::registry::LocalRegistry;

/// A registry on 127.0.0.1 storing into a temporary directory; dropping it stops it.
struct Registry {
    /// `127.0.0.1:PORT`.
    address: String,
    _registry: LocalRegistry,
    _dir: tempfile::TempDir,
}

/// How a test registry is configured.
enum Setup<'a> {
    /// Deletes enabled, no login.
    Deleting,
    /// Distribution's defaults: deletes disabled, no login.
    KeepingEverything,
    /// Deletes enabled, and every request must log in as this user with this password.
    WithLogin(&'a str, &'a str),
}

impl Registry {
    async fn start(setup: Setup<'_>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("registry");
        let started = match setup {
            Setup::Deleting => LocalRegistry::start(&data, "127.0.0.1:0").await,
            Setup::KeepingEverything => {
                LocalRegistry::start_without_deletes(&data, "127.0.0.1:0").await
            }
            Setup::WithLogin(user, password) => {
                let htpasswd = dir.path().join("htpasswd");
                let output = std::process::Command::new("htpasswd")
                    .args(["-Bbn", user, password])
                    .output()
                    .expect("htpasswd runs (scripts/test installs apache2-utils)");
                assert!(output.status.success());
                std::fs::write(&htpasswd, &output.stdout).unwrap();
                LocalRegistry::start_with_auth(&data, "127.0.0.1:0", Some(&htpasswd)).await
            }
        };
        let registry = started.expect("docker-registry runs (scripts/test installs it)");
        Registry {
            address: registry.address.clone(),
            _registry: registry,
            _dir: dir,
        }
    }

    fn client(&self) -> RegistryClient {
        RegistryClient::new(&self.address, true, None).unwrap()
    }
}

/// Builds an image from scratch holding Debian's static busybox and a note of `note` (in
/// `format`, `oci` or `docker`), pushes it to `{registry}/{repository}` as each of `tags` with
/// `login`, and answers the digest Podman reported for the pushes (the same for every tag).
async fn push(
    registry: &str,
    repository: &str,
    tags: &[&str],
    note: &str,
    format: &str,
    login: Option<(&str, &str)>,
) -> String {
    let context = tempfile::tempdir().unwrap();
    std::fs::write(
        context.path().join("Containerfile"),
        "FROM scratch\nCOPY --chmod=755 busybox /bin/busybox\nCOPY note /note\nCMD [\"/bin/busybox\", \"cat\", \"/note\"]\n",
    )
    .unwrap();
    std::fs::write(
        context.path().join("busybox"),
        std::fs::read("/bin/busybox")
            .expect("busybox-static is installed (scripts/test installs it)"),
    )
    .unwrap();
    std::fs::write(context.path().join("note"), note).unwrap();
    let images: Vec<String> = tags
        .iter()
        .map(|tag| format!("{registry}/{repository}:{tag}"))
        .collect();
    let mut build = vec!["build", "--format", format];
    for image in &images {
        build.extend(["-t", image.as_str()]);
    }
    build.push(context.path().to_str().unwrap());
    let (built, _, stderr) = podman(&build).await;
    assert!(built, "{stderr}");
    let mut digests = Vec::new();
    for image in &images {
        let digest_file = context.path().join("digest");
        let digest_path = digest_file.to_str().unwrap();
        let credentials = login.map(|(user, password)| format!("{user}:{password}"));
        let mut args = vec!["push", "--tls-verify=false", "--digestfile", digest_path];
        if let Some(credentials) = &credentials {
            args.extend(["--creds", credentials.as_str()]);
        }
        args.push(image);
        let (pushed, _, stderr) = podman(&args).await;
        assert!(pushed, "{stderr}");
        digests.push(read_digest(&digest_file));
    }
    let mut remove = vec!["rmi", "--force"];
    remove.extend(images.iter().map(String::as_str));
    let _ = podman(&remove).await;
    assert!(
        digests.windows(2).all(|pair| pair[0] == pair[1]),
        "{digests:?}"
    );
    digests.remove(0)
}

fn read_digest(path: &Path) -> String {
    let digest = std::fs::read_to_string(path).unwrap().trim().to_owned();
    assert!(digest.starts_with("sha256:"), "{digest}");
    digest
}

/// Runs podman and returns (success, stdout, stderr).
async fn podman(args: &[&str]) -> (bool, String, String) {
    let output = tokio::process::Command::new("podman")
        .args(args)
        .output()
        .await
        .expect("podman runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn sorted(mut tags: Vec<String>) -> Vec<String> {
    tags.sort();
    tags
}

#[tokio::test]
async fn a_tag_resolves_to_the_pushed_digest_and_deleting_the_digest_removes_its_tags() {
    let registry = Registry::start(Setup::Deleting).await;
    // Podman's own format (OCI) under two tags, and Docker's schema 2 under a third.
    let web = push(
        &registry.address,
        "default/web",
        &["one", "two"],
        "web",
        "oci",
        None,
    )
    .await;
    let other = push(
        &registry.address,
        "default/web",
        &["three"],
        "other",
        "docker",
        None,
    )
    .await;
    assert_ne!(web, other);
    let client = registry.client();

    for (reference, digest) in [("one", &web), ("two", &web), ("three", &other)] {
        assert_eq!(
            client
                .manifest_digest("default/web", reference)
                .await
                .unwrap()
                .as_ref(),
            Some(digest),
            "{reference}"
        );
    }
    assert_eq!(
        client.manifest_digest("default/web", &web).await.unwrap(),
        Some(web.clone())
    );
    assert_eq!(
        sorted(client.tags("default/web").await.unwrap()),
        ["one", "three", "two"]
    );

    assert_eq!(
        client.delete_manifest("default/web", &web).await.unwrap(),
        Deleted::Deleted
    );
    // Both tags of the deleted manifest are gone; the other image is untouched.
    assert_eq!(client.tags("default/web").await.unwrap(), ["three"]);
    assert_eq!(
        client.manifest_digest("default/web", "one").await.unwrap(),
        None
    );
    assert_eq!(
        client.manifest_digest("default/web", "two").await.unwrap(),
        None
    );
    assert_eq!(
        client.manifest_digest("default/web", &web).await.unwrap(),
        None
    );
    assert_eq!(
        client
            .manifest_digest("default/web", "three")
            .await
            .unwrap(),
        Some(other.clone())
    );
    assert_eq!(
        client.delete_manifest("default/web", &web).await.unwrap(),
        Deleted::Missing
    );

    // With its last manifest deleted the repository lists no tags (Distribution answers
    // `"tags": null`).
    assert_eq!(
        client.delete_manifest("default/web", &other).await.unwrap(),
        Deleted::Deleted
    );
    assert!(client.tags("default/web").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_repository_the_registry_does_not_know_has_no_tags_and_no_manifests() {
    let registry = Registry::start(Setup::Deleting).await;
    let client = registry.client();
    assert!(client.tags("default/nothing").await.unwrap().is_empty());
    assert_eq!(
        client
            .manifest_digest("default/nothing", "latest")
            .await
            .unwrap(),
        None
    );
    let digest = format!("sha256:{}", "0".repeat(64));
    assert_eq!(
        client
            .manifest_digest("default/nothing", &digest)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        client
            .delete_manifest("default/nothing", &digest)
            .await
            .unwrap(),
        Deleted::Missing
    );
}

#[tokio::test]
async fn a_registry_without_deletes_refuses_them_and_keeps_the_image() {
    let registry = Registry::start(Setup::KeepingEverything).await;
    let digest = push(
        &registry.address,
        "default/web",
        &["v1"],
        "kept",
        "oci",
        None,
    )
    .await;
    let client = registry.client();

    let Deleted::Refused(reason) = client
        .delete_manifest("default/web", &digest)
        .await
        .unwrap()
    else {
        panic!("the delete was not refused");
    };
    assert!(reason.contains("405"), "{reason}");
    assert!(reason.contains("UNSUPPORTED"), "{reason}");
    assert!(reason.contains("does not delete manifests"), "{reason}");
    assert!(reason.contains(&registry.address), "{reason}");
    assert_eq!(client.tags("default/web").await.unwrap(), ["v1"]);
    assert_eq!(
        client.manifest_digest("default/web", "v1").await.unwrap(),
        Some(digest)
    );
}

#[tokio::test]
async fn a_registry_that_asks_for_a_login_gets_it_and_never_sees_it_quoted() {
    let password = "registry-pass-5821";
    let registry = Registry::start(Setup::WithLogin("pusher", password)).await;
    let digest = push(
        &registry.address,
        "default/web",
        &["v1"],
        "login",
        "oci",
        Some(("pusher", password)),
    )
    .await;

    let client = RegistryClient::new(
        &registry.address,
        true,
        Some(("pusher".to_owned(), SecretString::from(password))),
    )
    .unwrap();
    assert_eq!(
        client.manifest_digest("default/web", "v1").await.unwrap(),
        Some(digest.clone())
    );
    assert_eq!(client.tags("default/web").await.unwrap(), ["v1"]);

    let anonymous = registry.client();
    let error = anonymous.tags("default/web").await.unwrap_err();
    assert_eq!(error.status(), Some(401), "{error}");
    assert_eq!(error.code(), Some("UNAUTHORIZED"), "{error}");

    let wrong_password = "wrong-pass-7730";
    let wrong = RegistryClient::new(
        &registry.address,
        true,
        Some(("pusher".to_owned(), SecretString::from(wrong_password))),
    )
    .unwrap();
    for error in [
        wrong.tags("default/web").await.unwrap_err(),
        wrong
            .manifest_digest("default/web", "v1")
            .await
            .unwrap_err(),
    ] {
        assert!(
            matches!(error, RegistryError::Status { status: 401, .. }),
            "{error}"
        );
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains(wrong_password), "{shown}");
        assert!(!shown.contains(password), "{shown}");
    }
    assert_eq!(
        client
            .delete_manifest("default/web", &digest)
            .await
            .unwrap(),
        Deleted::Deleted
    );
    assert!(client.tags("default/web").await.unwrap().is_empty());
}
