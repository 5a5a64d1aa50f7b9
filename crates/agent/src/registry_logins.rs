//! Which registry login the engine gets for an image: a login goes only to the registry it
//! belongs to. The server's login (an installation's) names its registry; the agent's own
//! (`WHARF_REGISTRY_USERNAME`) belongs to `WHARF_REGISTRY`. An image of any other registry is
//! pulled or pushed with no login at all.

use secrecy::SecretString;
use wharf_domain::names::image_registry;
use wharf_runtime::engine::RegistryCredentials;
use wharf_wire::RegistryLogin;

/// The login for `image`, if one belongs to its registry: the server's `login` first (for
/// its own registry, or for `default_registry` when it names none), else the agent's `own`.
pub(crate) fn login_for(
    image: &str,
    login: Option<&RegistryLogin>,
    default_registry: Option<&str>,
    own: Option<&RegistryCredentials>,
) -> Option<RegistryCredentials> {
    let registry = image_registry(image);
    let from_server = login.and_then(|login| {
        let belongs_to = login.registry.as_deref().or(default_registry)?;
        belongs_to
            .eq_ignore_ascii_case(registry)
            .then(|| RegistryCredentials {
                registry: registry.to_owned(),
                username: login.username.clone(),
                password: SecretString::from(login.password.expose()),
            })
    });
    // The agent's own login names no registry until the server names its own: then it
    // belongs to the registry the agent pushes to.
    from_server.or_else(|| {
        own.filter(|own| {
            let belongs_to = if own.registry.is_empty() {
                default_registry.unwrap_or_default()
            } else {
                own.registry.as_str()
            };
            !belongs_to.is_empty() && belongs_to.eq_ignore_ascii_case(registry)
        })
        .map(|own| RegistryCredentials {
            registry: registry.to_owned(),
            ..own.clone()
        })
    })
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;
    use wharf_wire::SecretText;

    use super::*;

    fn server_login(registry: Option<&str>) -> RegistryLogin {
        RegistryLogin {
            registry: registry.map(str::to_owned),
            username: "installation".to_owned(),
            password: SecretText::new("server-secret"),
        }
    }

    fn own() -> RegistryCredentials {
        RegistryCredentials {
            registry: "wharf.example:5000".to_owned(),
            username: "agent".to_owned(),
            password: SecretString::from("agent-secret"),
        }
    }

    fn user(login: Option<RegistryCredentials>) -> Option<(String, String)> {
        login.map(|login| (login.registry, login.username))
    }

    #[test]
    fn a_login_goes_only_to_the_registry_it_belongs_to() {
        let server = server_login(Some("wharf.example:5000"));
        let own = own();
        let wharf_image = "wharf.example:5000/default/web@sha256:00";
        assert_eq!(
            user(login_for(wharf_image, Some(&server), None, Some(&own))),
            Some(("wharf.example:5000".to_owned(), "installation".to_owned()))
        );
        assert_eq!(
            user(login_for(wharf_image, None, None, Some(&own))),
            Some(("wharf.example:5000".to_owned(), "agent".to_owned()))
        );
        for elsewhere in [
            "other.example/x:1",
            "wharf.example:5001/default/web:1",
            "wharf.example/default/web:1",
            "busybox:1",
        ] {
            assert_eq!(
                user(login_for(elsewhere, Some(&server), None, Some(&own))),
                None,
                "{elsewhere}"
            );
        }
        let auth = login_for(wharf_image, Some(&server), None, None)
            .unwrap()
            .auth_file_json();
        assert!(auth.contains("\"wharf.example:5000\""), "{auth}");
        assert!(!auth.contains("other"), "{auth}");
    }

    #[test]
    fn a_login_that_names_no_registry_belongs_to_the_default_one() {
        let unnamed = server_login(None);
        let login =
            login_for("r.example/p/web:1", Some(&unnamed), Some("r.example"), None).unwrap();
        assert_eq!(login.password.expose_secret(), "server-secret");
        assert!(login_for("o.example/p/web:1", Some(&unnamed), Some("r.example"), None).is_none());
        assert!(login_for("r.example/p/web:1", Some(&unnamed), None, None).is_none());
    }
}
