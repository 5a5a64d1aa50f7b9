//! Validated names: services and projects (DNS labels), GitHub repositories (`owner/name`),
//! repository sources, branches and commit SHAs.
//!
//! All of these reach external commands (git, podman) and host names, so each is checked
//! once, at the edge, and carried as its own type from then on. The rules are deliberately
//! stricter than git's where git allows characters that mean something to a shell.

use std::fmt;

/// `as_str` and `Display` for the names that are one checked string.
macro_rules! checked_text {
    ($($name:ident),+) => {$(
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    )+};
}

checked_text!(DnsLabel, BranchName, CommitSha);

/// Why a name was refused, as a sentence a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NameError(pub String);

impl NameError {
    /// `invalid {what} "{value}": {advice}`, with the value quoted and cut short.
    pub(crate) fn invalid(what: &str, value: &str, advice: &str) -> NameError {
        NameError(format!("invalid {what} {}: {advice}", quote(value)))
    }
}

/// Accepts a value that passed its check, and refuses one that did not with
/// [`NameError::invalid`].
fn accept(valid: bool, what: &str, value: &str, advice: &str) -> Result<(), NameError> {
    if valid {
        Ok(())
    } else {
        Err(NameError::invalid(what, value, advice))
    }
}

/// The first 80 characters of a value git or GitHub sent, for a message.
fn shortened(value: &str) -> String {
    value.chars().take(80).collect()
}

/// A DNS label: 1 to 63 lowercase letters, digits and hyphens, not starting or ending with a hyphen.
/// Service names become host names and image path segments, so they must be labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DnsLabel(String);

impl DnsLabel {
    /// Checks `value` as a DNS label; `what` names it in the error ("service name").
    pub fn parse(what: &str, value: &str) -> Result<DnsLabel, NameError> {
        let valid_chars = value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if value.is_empty()
            || value.len() > 63
            || !valid_chars
            || value.starts_with('-')
            || value.ends_with('-')
        {
            return Err(NameError::invalid(
                what,
                value,
                "use 1-63 lowercase letters, digits and hyphens, starting and ending with a letter or digit",
            ));
        }
        Ok(DnsLabel(value.to_owned()))
    }
}

/// A GitHub repository's `owner/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepoFullName {
    owner: String,
    name: String,
}

impl RepoFullName {
    /// Checks GitHub's rules: the owner is 1-39 letters, digits or single hyphens (not at either
    /// end); the name is 1-100 letters, digits, `.`, `-` or `_`, and not `.` or `..`.
    pub fn parse(value: &str) -> Result<RepoFullName, NameError> {
        let refuse = || {
            NameError::invalid(
                "repository",
                value,
                "expected owner/name, for example acme/web",
            )
        };
        let (owner, name) = value.split_once('/').ok_or_else(refuse)?;
        let owner_ok = !owner.is_empty()
            && owner.len() <= 39
            && owner
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !owner.starts_with('-')
            && !owner.ends_with('-')
            && !owner.contains("--");
        let name_ok = !name.is_empty()
            && name.len() <= 100
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
            && name != "."
            && name != "..";
        if owner_ok && name_ok {
            Ok(RepoFullName {
                owner: owner.to_owned(),
                name: name.to_owned(),
            })
        } else {
            Err(refuse())
        }
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key repositories are matched by: GitHub names are case-insensitive.
    pub fn key(&self) -> String {
        format!("{}/{}", self.owner, self.name).to_ascii_lowercase()
    }
}

impl fmt::Display for RepoFullName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

/// Where a service's code comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoSource {
    /// A repository reached through the GitHub App (private or public), cloned with an installation token.
    GitHub(RepoFullName),
    /// A public repository by its `https://` URL, cloned without a token.
    PublicUrl(String),
    /// A git repository on the server's own machine by its absolute path, for `wharf up`'s
    /// first steps: built only by the agent `wharf up` runs beside the server, and only where
    /// the server allows local repositories.
    LocalPath(String),
}

impl RepoSource {
    /// Reads `owner/name`, an `https://host/path` URL without credentials, query or fragment,
    /// or an absolute path (`/srv/apps/hello`).
    pub fn parse(value: &str) -> Result<RepoSource, NameError> {
        if value.starts_with('/') {
            let path_ok = value.len() <= 1024
                && value.bytes().all(|b| {
                    b.is_ascii_alphanumeric()
                        || matches!(b, b'/' | b'.' | b'-' | b'_' | b'~' | b'+')
                })
                && !value
                    .split('/')
                    .any(|segment| segment == ".." || segment == ".");
            if path_ok {
                return Ok(RepoSource::LocalPath(value.to_owned()));
            }
            return Err(NameError::invalid(
                "repository path",
                &shortened(value),
                "expected an absolute path of letters, digits and . - _ ~ + with no . or .. segment",
            ));
        }
        if let Some(rest) = value.strip_prefix("https://") {
            let host_end = rest.find('/').unwrap_or(rest.len());
            let host = &rest[..host_end];
            let path = &rest[host_end..];
            let host_ok = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'));
            let path_ok = path.len() > 1
                && path.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'-' | b'_' | b'~')
                })
                && !path.split('/').any(|segment| segment == "..");
            if host_ok && path_ok && value.len() <= 2048 {
                return Ok(RepoSource::PublicUrl(value.to_owned()));
            }
            return Err(NameError::invalid(
                "repository URL",
                value,
                "expected https://host/owner/name with no credentials, query or fragment",
            ));
        }
        if value.contains("://") || value.starts_with("git@") {
            return Err(NameError::invalid(
                "repository",
                value,
                "use owner/name for a repository of the GitHub App, an https:// URL of a public one, or an absolute path on the server's machine",
            ));
        }
        RepoFullName::parse(value).map(RepoSource::GitHub)
    }

    /// The text stored and shown for this source.
    pub fn to_text(&self) -> String {
        match self {
            RepoSource::GitHub(name) => name.to_string(),
            RepoSource::PublicUrl(url) | RepoSource::LocalPath(url) => url.clone(),
        }
    }

    /// The URL git fetches from when no token is needed: a public URL as it is, a local path as
    /// a `file://` URL (git fetches a single commit shallowly only over a transport).
    pub fn plain_clone_url(&self) -> Option<String> {
        match self {
            RepoSource::GitHub(_) => None,
            RepoSource::PublicUrl(url) => Some(url.clone()),
            RepoSource::LocalPath(path) => Some(format!("file://{path}")),
        }
    }

    /// The key a webhook's repository is matched against (none for URL sources: no webhooks reach them).
    pub fn github_key(&self) -> Option<String> {
        match self {
            RepoSource::GitHub(name) => Some(name.key()),
            RepoSource::PublicUrl(_) | RepoSource::LocalPath(_) => None,
        }
    }
}

/// A branch name, checked by git's `check-ref-format` rules and, beyond them, free of anything a
/// shell would read specially.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BranchName(String);

/// The longest branch name Wharf accepts. Git itself allows more; no real workflow needs it.
pub const MAX_BRANCH_LEN: usize = 255;

impl BranchName {
    pub fn parse(value: &str) -> Result<BranchName, NameError> {
        let refuse = |why: &str| NameError::invalid("branch", &shortened(value), why);
        if value.is_empty() {
            return Err(refuse("it is empty"));
        }
        if value.len() > MAX_BRANCH_LEN {
            return Err(refuse(&format!("longer than {MAX_BRANCH_LEN} bytes")));
        }
        if value.contains("..") || value.contains("@{") || value.contains("//") {
            return Err(refuse("it contains '..', '@{' or '//'"));
        }
        if value == "@"
            || value.starts_with('-')
            || value.starts_with('/')
            || value.ends_with('/')
            || value.ends_with('.')
            || value.ends_with(".lock")
        {
            return Err(refuse(
                "it starts or ends with a character git does not allow",
            ));
        }
        if value
            .split('/')
            .any(|part| part.starts_with('.') || part.ends_with(".lock"))
        {
            return Err(refuse(
                "a path component starts with '.' or ends with '.lock'",
            ));
        }
        const FORBIDDEN: &[char] = &[
            ' ', '~', '^', ':', '?', '*', '[', '\\', '$', '`', ';', '|', '&', '<', '>', '\'', '"',
            '(', ')', '{', '}', '!', '#',
        ];
        if value
            .chars()
            .any(|c| c.is_control() || FORBIDDEN.contains(&c) || !c.is_ascii())
        {
            return Err(refuse(
                "it contains a control character, a non-ASCII character or one of  ~^:?*[\\$`;|&<>'\"(){}!#",
            ));
        }
        Ok(BranchName(value.to_owned()))
    }

    /// Reads a full ref: `refs/heads/<branch>` gives the branch; tags and other refs give `None`.
    pub fn from_ref(git_ref: &str) -> Result<Option<BranchName>, NameError> {
        match git_ref.strip_prefix("refs/heads/") {
            Some(branch) => BranchName::parse(branch).map(Some),
            None if git_ref.starts_with("refs/") => Ok(None),
            None => Err(NameError::invalid(
                "ref",
                &shortened(git_ref),
                "expected refs/heads/… or refs/tags/…",
            )),
        }
    }
}

/// A full commit id: 40 hex digits (SHA-1) or 64 (SHA-256 repositories), stored lowercase.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CommitSha(String);

impl CommitSha {
    pub fn parse(value: &str) -> Result<CommitSha, NameError> {
        if (value.len() == 40 || value.len() == 64) && value.bytes().all(|b| b.is_ascii_hexdigit())
        {
            Ok(CommitSha(value.to_ascii_lowercase()))
        } else {
            Err(NameError::invalid(
                "commit",
                &shortened(value),
                "expected a full 40-character SHA",
            ))
        }
    }

    /// True for the all-zero id GitHub sends as `after` when a branch is deleted.
    pub fn is_zero(&self) -> bool {
        self.0.bytes().all(|b| b == b'0')
    }
}

/// A repository-relative path (Dockerfile, build context, compose file): no absolute paths,
/// no `..` components, no NUL, no backslashes.
pub fn check_repo_path(what: &str, value: &str) -> Result<(), NameError> {
    let valid = !value.is_empty()
        && value.len() <= 1024
        && !value.starts_with('/')
        && !value.contains('\0')
        && !value.contains('\\')
        && !value.split('/').any(|part| part == "..");
    accept(
        valid,
        what,
        value,
        "give a path inside the repository, without '..' or a leading '/'",
    )
}

/// A host name for routing: dot-separated DNS labels, 253 characters at most.
pub fn check_domain(value: &str) -> Result<(), NameError> {
    let valid = !value.is_empty()
        && value.len() <= 253
        && value.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    accept(
        valid,
        "domain",
        value,
        "expected a lowercase host name such as app.example.com",
    )
}

/// A URL path for health probes: starts with `/`, printable ASCII without spaces.
pub fn check_http_path(what: &str, value: &str) -> Result<(), NameError> {
    let valid = value.starts_with('/')
        && value.len() <= 1024
        && value.bytes().all(|b| b.is_ascii_graphic());
    accept(valid, what, value, "expected a path such as /healthz")
}

/// An image reference to deploy (`registry/name:tag`, `name@sha256:…`): printable ASCII
/// without spaces, not starting with `-` (it becomes a command argument), at most 512 bytes.
pub fn check_image_ref(value: &str) -> Result<(), NameError> {
    let valid = !value.is_empty()
        && value.len() <= 512
        && !value.starts_with('-')
        && value.bytes().all(|b| b.is_ascii_graphic());
    accept(
        valid,
        "image",
        value,
        "expected a reference such as registry.example.com/team/web:v1",
    )
}

/// `registry/name` of `registry/name:tag`, `registry/name@digest` or both (a registry's port
/// is not a tag).
pub fn image_repository(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    match image.rfind(':') {
        Some(colon) if !image[colon..].contains('/') => &image[..colon],
        _ => image,
    }
}

/// The registry host of an image reference (`docker.io` when it names none): the first part
/// of the name when it looks like a host (holds a `.` or a `:`, or is `localhost`).
pub fn image_registry(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if looks_like_registry_host(first) => first,
        _ => "docker.io",
    }
}

/// The registry host of a registry setting such as `WHARF_REGISTRY` (`host[:port][/prefix]`),
/// the host of every image pushed under it.
pub fn registry_host(registry: &str) -> &str {
    let first = registry.split('/').next().unwrap_or(registry);
    if looks_like_registry_host(first) {
        first
    } else {
        "docker.io"
    }
}

fn looks_like_registry_host(first: &str) -> bool {
    first.contains('.') || first.contains(':') || first == "localhost"
}

/// An image tag: letters, digits, `_`, `.` and `-`, not starting with `.` or `-`, at most 128.
pub fn check_image_tag(value: &str) -> Result<(), NameError> {
    let valid = !value.is_empty()
        && value.len() <= 128
        && !value.starts_with(['.', '-'])
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    accept(
        valid,
        "image tag",
        value,
        "letters, digits, '_', '.' and '-', at most 128",
    )
}

/// A variable name: a letter or `_`, then letters, digits or `_`, at most 255 bytes.
pub fn check_env_name(value: &str) -> Result<(), NameError> {
    let valid = !value.is_empty()
        && value.len() <= 255
        && value
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    accept(
        valid,
        "variable name",
        value,
        "use letters, digits and _, not starting with a digit",
    )
}

/// Quotes a user-given value for an error message, escaping control characters and cutting it short.
pub(crate) fn quote(value: &str) -> String {
    let shown: String = value.chars().take(100).collect();
    let suffix = if value.chars().count() > 100 {
        "…"
    } else {
        ""
    };
    format!("{:?}{suffix}", shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for good in ["web", "a", "api-2", "0x", &"a".repeat(63)] {
            assert!(DnsLabel::parse("service name", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Web",
            "-web",
            "web-",
            "we_b",
            "w.b",
            "wéb",
            &"a".repeat(64),
            "a b",
        ] {
            assert!(DnsLabel::parse("service name", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn repository_names() {
        let repo = RepoFullName::parse("Acme-Inc/web.app_1").unwrap();
        assert_eq!(repo.owner(), "Acme-Inc");
        assert_eq!(repo.key(), "acme-inc/web.app_1");
        for bad in [
            "acme",
            "/web",
            "acme/",
            "acme/web/extra",
            "ac me/web",
            "acme/..",
            "acme/.",
            "-acme/web",
            "acme/we;b",
            "acme/$(id)",
        ] {
            assert!(RepoFullName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn repository_sources() {
        assert_eq!(
            RepoSource::parse("acme/web").unwrap(),
            RepoSource::GitHub(RepoFullName::parse("acme/web").unwrap())
        );
        assert!(matches!(
            RepoSource::parse("https://github.com/acme/web.git").unwrap(),
            RepoSource::PublicUrl(_)
        ));
        let local = RepoSource::parse("/srv/apps/hello").unwrap();
        assert_eq!(local, RepoSource::LocalPath("/srv/apps/hello".to_owned()));
        assert_eq!(
            local.plain_clone_url().as_deref(),
            Some("file:///srv/apps/hello")
        );
        assert_eq!(local.github_key(), None);
        for bad in [
            "/srv/../etc",
            "/srv/./x",
            "/srv/a b",
            "/srv/$(id)",
            "/srv/x\n",
            "http://github.com/acme/web",
            "https://user:pw@github.com/acme/web",
            "https://github.com/acme/web?x=1",
            "https://github.com/../etc",
            "git@github.com:acme/web.git",
            "file:///etc",
            "https://",
        ] {
            assert!(RepoSource::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn branches() {
        for good in ["main", "feature/login", "release-1.2", "user/x_y"] {
            assert!(BranchName::parse(good).is_ok(), "{good}");
        }
        let long = "a".repeat(5000);
        for bad in [
            "",
            "a..b",
            "-rf",
            "a b",
            "a;rm -rf /",
            "$(id)",
            "`id`",
            "a|b",
            "a\0b",
            "a\nb",
            "x.lock",
            "a/.hidden",
            "a//b",
            "trailing/",
            "@",
            long.as_str(),
        ] {
            assert!(BranchName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn refs_split_into_branches_and_others() {
        assert_eq!(
            BranchName::from_ref("refs/heads/main").unwrap(),
            Some(BranchName::parse("main").unwrap())
        );
        assert_eq!(BranchName::from_ref("refs/tags/v1.0").unwrap(), None);
        assert!(BranchName::from_ref("main").is_err());
        assert!(BranchName::from_ref("refs/heads/../x").is_err());
    }

    #[test]
    fn commits() {
        let sha = CommitSha::parse(&"A".repeat(40)).unwrap();
        assert_eq!(sha.as_str(), "a".repeat(40));
        assert!(CommitSha::parse(&"0".repeat(40)).unwrap().is_zero());
        for bad in ["abc", &"g".repeat(40), &"a".repeat(41), ""] {
            assert!(CommitSha::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn repository_paths() {
        for good in ["Dockerfile", "docker/web.Dockerfile", ".", "sub/dir"] {
            assert!(check_repo_path("dockerfile", good).is_ok(), "{good}");
        }
        for bad in ["/etc/passwd", "../../etc", "a/../../b", "", "a\0b", "a\\b"] {
            assert!(check_repo_path("dockerfile", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn domains_and_paths() {
        assert!(check_domain("app.example.com").is_ok());
        assert!(check_domain("App.example.com").is_err());
        assert!(check_domain("a..b").is_err());
        assert!(check_http_path("health path", "/healthz?x=1").is_ok());
        assert!(check_http_path("health path", "healthz").is_err());
        assert!(check_http_path("health path", "/a b").is_err());
    }

    #[test]
    fn variable_names() {
        for good in ["PORT", "_x", "DATABASE_URL", "a1"] {
            assert!(check_env_name(good).is_ok(), "{good}");
        }
        for bad in ["", "1X", "A-B", "A B", "A=B", "$X", "é"] {
            assert!(check_env_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_quote_and_shorten_the_value() {
        let error = BranchName::parse(&format!("{}\n", "x".repeat(300))).unwrap_err();
        assert!(error.0.len() < 400, "{}", error.0);
        assert!(!error.0.contains('\n'));
    }
}

#[cfg(test)]
mod image_tests {
    use super::{image_registry, image_repository, registry_host};

    #[test]
    fn the_registry_of_an_image_or_a_setting_is_its_host() {
        assert_eq!(
            image_registry("127.0.0.1:5000/p/web@sha256:00"),
            "127.0.0.1:5000"
        );
        assert_eq!(image_registry("ghcr.io/team/web:v1"), "ghcr.io");
        assert_eq!(image_registry("localhost/web:v1"), "localhost");
        assert_eq!(image_registry("library/busybox"), "docker.io");
        assert_eq!(image_registry("busybox"), "docker.io");
        assert_eq!(registry_host("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(registry_host("ghcr.io/team"), "ghcr.io");
        assert_eq!(registry_host("team"), "docker.io");
    }

    #[test]
    fn the_repository_of_an_image_drops_its_tag_or_digest_but_not_a_port() {
        assert_eq!(
            image_repository("127.0.0.1:5000/p/web:abc"),
            "127.0.0.1:5000/p/web"
        );
        assert_eq!(
            image_repository("127.0.0.1:5000/p/web"),
            "127.0.0.1:5000/p/web"
        );
        assert_eq!(image_repository("reg/p/web@sha256:0123"), "reg/p/web");
        assert_eq!(image_repository("reg/p/web:v1@sha256:0123"), "reg/p/web");
    }
}
