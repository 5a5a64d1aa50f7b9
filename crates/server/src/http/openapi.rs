//! `GET /v1/openapi.json`: the OpenAPI document of the `/v1` API, made once from the request
//! types (`wharf_wire::openapi`) and served as it is, to anyone. Its tests hold it to the routes
//! the REST API serves: every `/v1` route is in the document, and the document names none
//! that is not served.

use axum::Router;
use axum::body::Bytes;
use axum::http::header;
use axum::routing::get;

use crate::core::Core;

pub(crate) fn router() -> Router<Core> {
    // Made once; each answer shares the bytes.
    let document =
        Bytes::from(wharf_wire::openapi::document(env!("CARGO_PKG_VERSION")).to_string());
    Router::new().route(
        "/v1/openapi.json",
        get(move || async move {
            (
                [(header::CONTENT_TYPE, "application/json")],
                document.clone(),
            )
        }),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// The REST API's modules, as compiled: every route is declared in one of them.
    const SOURCES: &[(&str, &str)] = &[
        ("agent_api.rs", include_str!("agent_api.rs")),
        ("agents.rs", include_str!("agents.rs")),
        ("builds.rs", include_str!("builds.rs")),
        ("github_setup.rs", include_str!("github_setup.rs")),
        ("health.rs", include_str!("health.rs")),
        ("notifications.rs", include_str!("notifications.rs")),
        ("openapi.rs", include_str!("openapi.rs")),
        ("releases.rs", include_str!("releases.rs")),
        ("services.rs", include_str!("services.rs")),
        ("previews.rs", include_str!("previews.rs")),
        ("users.rs", include_str!("users.rs")),
        ("webhooks.rs", include_str!("webhooks.rs")),
    ];

    /// Every `.route("PATH", METHOD(handler)…)` of a module: the method in lower case and the
    /// path with its parameters unnamed (`/v1/builds/{}`), since the router and the document
    /// may name a parameter differently.
    fn declared_routes(source: &str) -> Vec<(String, String)> {
        let mut routes = Vec::new();
        let mut rest = source;
        while let Some(start) = rest.find(".route(") {
            rest = &rest[start + ".route(".len()..];
            // A route's path is the literal right after `.route(`.
            let open = rest.len() - rest.trim_start().len();
            if !rest[open..].starts_with('"') {
                continue;
            }
            let Some(close) = rest[open + 1..].find('"') else {
                break;
            };
            let path = &rest[open + 1..open + 1 + close];
            // The route's method router runs to the parenthesis that closes `.route(`.
            let mut depth = 1;
            let mut end = rest.len();
            for (index, character) in rest.char_indices() {
                match character {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            end = index;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let methods = &rest[open + 1 + close + 1..end];
            for method in ["get", "post", "put", "delete", "patch"] {
                let called = methods.match_indices(&format!("{method}(")).any(|(at, _)| {
                    at == 0
                        || !methods.as_bytes()[at - 1].is_ascii_alphanumeric()
                            && methods.as_bytes()[at - 1] != b'_'
                });
                if called {
                    routes.push((method.to_owned(), unnamed(path)));
                }
            }
            rest = &rest[end..];
        }
        routes
    }

    fn unnamed(template: &str) -> String {
        let mut unnamed = String::new();
        let mut inside = false;
        for character in template.chars() {
            match character {
                '{' => {
                    inside = true;
                    unnamed.push_str("{}");
                }
                '}' => inside = false,
                _ if inside => {}
                other => unnamed.push(other),
            }
        }
        unnamed
    }

    #[test]
    fn the_route_reader_finds_methods_and_unnames_parameters() {
        let source = r#"Router::new()
            .route("/v1/services/{name}", get(show).put(update))
            .route(
                "/v1/installations/{id}/registry-login",
                post(set_registry_login).delete(remove_registry_login),
            )
            .route("/deploy", post(hook).layer(DefaultBodyLimit::max(MAX_HOOK_BYTES)))"#;
        let routes = declared_routes(source);
        assert_eq!(
            routes,
            vec![
                ("get".to_owned(), "/v1/services/{}".to_owned()),
                ("put".to_owned(), "/v1/services/{}".to_owned()),
                (
                    "post".to_owned(),
                    "/v1/installations/{}/registry-login".to_owned()
                ),
                (
                    "delete".to_owned(),
                    "/v1/installations/{}/registry-login".to_owned()
                ),
                ("post".to_owned(), "/deploy".to_owned()),
            ]
        );
    }

    #[test]
    fn every_v1_route_is_in_the_openapi_document_and_nothing_else_is() {
        let served: BTreeSet<(String, String)> = SOURCES
            .iter()
            // A module's own tests may spell routes that are not served.
            .map(|(_, source)| source.split("#[cfg(test)]").next().unwrap_or(source))
            .flat_map(declared_routes)
            .filter(|(_, path)| path.starts_with("/v1/"))
            .collect();
        let document = wharf_wire::openapi::document("test");
        let documented: BTreeSet<(String, String)> = document["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(template, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .map(|method| (method.clone(), unnamed(template)))
                    .collect::<Vec<_>>()
            })
            .collect();
        let undocumented: Vec<_> = served.difference(&documented).collect();
        let unserved: Vec<_> = documented.difference(&served).collect();
        assert!(
            undocumented.is_empty(),
            "routes missing from the OpenAPI document (wharf_wire::openapi::document): {undocumented:?}"
        );
        assert!(
            unserved.is_empty(),
            "the OpenAPI document names routes the REST API does not serve: {unserved:?}"
        );
        assert!(served.len() > 30, "the route reader found only {served:?}");
    }

    #[test]
    fn every_module_of_the_rest_api_is_read_for_routes() {
        let mut modules: Vec<String> =
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/src/http"))
                .unwrap()
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(".rs"))
                .filter(|name| {
                    let path = format!("{}/src/http/{name}", env!("CARGO_MANIFEST_DIR"));
                    std::fs::read_to_string(path).unwrap().contains(".route(")
                })
                .collect();
        modules.sort();
        let read: Vec<String> = SOURCES.iter().map(|(name, _)| (*name).to_owned()).collect();
        for module in &modules {
            assert!(
                read.contains(module),
                "http/{module} declares routes but the OpenAPI check does not read it"
            );
        }
    }
}
