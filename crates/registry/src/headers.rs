//! The headers a registry answers with that need reading beyond their value: the challenges of
//! `WWW-Authenticate` and the next page a `Link` names.

use reqwest::header::HeaderMap;

/// Docker's token authentication, as a registry asks for it: `WWW-Authenticate: Bearer
/// realm="…",service="…",scope="…"`. A token from the realm, asked for with the service and
/// scope, is what the registry then accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BearerChallenge {
    /// The token service's URL.
    pub realm: String,
    pub service: Option<String>,
    /// The scopes the request needs (`repository:default/web:pull`); a challenge may name
    /// several, separated by spaces.
    pub scopes: Vec<String>,
}

/// The first `Bearer` challenge among a response's `WWW-Authenticate` headers that names a
/// realm.
pub(crate) fn bearer_challenge(headers: &HeaderMap) -> Option<BearerChallenge> {
    headers
        .get_all(reqwest::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(parse_challenges)
        .find_map(|(scheme, params)| {
            if !scheme.eq_ignore_ascii_case("bearer") {
                return None;
            }
            let param = |name: &str| {
                params
                    .iter()
                    .find(|(key, _)| key.eq_ignore_ascii_case(name))
                    .map(|(_, value)| value.clone())
            };
            Some(BearerChallenge {
                realm: param("realm").filter(|realm| !realm.is_empty())?,
                service: param("service").filter(|service| !service.is_empty()),
                scopes: param("scope")
                    .map(|scope| scope.split_whitespace().map(str::to_owned).collect())
                    .unwrap_or_default(),
            })
        })
}

/// The challenges of one `WWW-Authenticate` value (RFC 9110: a scheme, then `name=value`
/// parameters separated by commas, values plain or quoted with `\` escapes; several challenges
/// may share one value).
fn parse_challenges(header: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut challenges: Vec<(String, Vec<(String, String)>)> = Vec::new();
    let mut rest = header;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return challenges;
        }
        let end = rest.find([' ', '\t', ',', '=']).unwrap_or(rest.len());
        let token = &rest[..end];
        rest = &rest[end..];
        let after_spaces = rest.trim_start_matches([' ', '\t']);
        match after_spaces.strip_prefix('=') {
            // A token68 (`Negotiate abc==`) is no parameter; Wharf reads none.
            Some(equals) if token.is_empty() || equals.starts_with('=') => {
                rest = equals.trim_start_matches('=');
            }
            Some(value_and_rest) => {
                let value_and_rest = value_and_rest.trim_start_matches([' ', '\t']);
                let (value, remaining) = match value_and_rest.strip_prefix('"') {
                    Some(quoted) => read_quoted(quoted),
                    None => {
                        let end = value_and_rest
                            .find([',', ' ', '\t'])
                            .unwrap_or(value_and_rest.len());
                        (value_and_rest[..end].to_owned(), &value_and_rest[end..])
                    }
                };
                rest = remaining;
                if let Some((_, params)) = challenges.last_mut() {
                    params.push((token.to_owned(), value));
                }
            }
            None => {
                challenges.push((token.to_owned(), Vec::new()));
                rest = after_spaces;
            }
        }
    }
}

/// A quoted string's value after its opening quote, and what follows its closing quote.
fn read_quoted(text: &str) -> (String, &str) {
    let mut value = String::new();
    let mut characters = text.char_indices();
    while let Some((index, character)) = characters.next() {
        match character {
            '"' => return (value, &text[index + 1..]),
            '\\' => {
                if let Some((_, escaped)) = characters.next() {
                    value.push(escaped);
                }
            }
            other => value.push(other),
        }
    }
    (value, "")
}

/// The target of the `rel="next"` link of a response's `Link` headers, as written (often a
/// path such as `/v2/web/tags/list?last=v9&n=100`, to resolve against the request's URL).
pub(crate) fn next_link(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(reqwest::header::LINK)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(|value| {
            let mut rest = value;
            while let Some(open) = rest.find('<') {
                let after = &rest[open + 1..];
                let close = after.find('>')?;
                let target = &after[..close];
                let params_end = after[close..]
                    .find('<')
                    .map_or(after.len(), |next| close + next);
                let params = &after[close + 1..params_end];
                let is_next = params.split([';', ',']).any(|param| {
                    param.split_once('=').is_some_and(|(name, value)| {
                        name.trim().eq_ignore_ascii_case("rel")
                            && value
                                .trim()
                                .trim_matches('"')
                                .split_whitespace()
                                .any(|relation| relation.eq_ignore_ascii_case("next"))
                    })
                });
                if is_next {
                    return Some(target.trim().to_owned());
                }
                rest = &after[params_end..];
            }
            None
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderValue, LINK, WWW_AUTHENTICATE};

    fn headers(name: reqwest::header::HeaderName, values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn a_bearer_challenge_gives_realm_service_and_scopes_even_with_commas_in_quotes() {
        let challenge = bearer_challenge(&headers(
            WWW_AUTHENTICATE,
            &[
                r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:team/web:pull,push repository:team/db:pull""#,
            ],
        ))
        .unwrap();
        assert_eq!(challenge.realm, "https://auth.example.com/token");
        assert_eq!(challenge.service.as_deref(), Some("registry.example.com"));
        assert_eq!(
            challenge.scopes,
            ["repository:team/web:pull,push", "repository:team/db:pull"]
        );
    }

    #[test]
    fn the_bearer_challenge_is_found_beside_others_and_without_a_scope() {
        let challenge = bearer_challenge(&headers(
            WWW_AUTHENTICATE,
            &[
                r#"Basic realm="registry", charset="UTF-8""#,
                r#"Negotiate abc==, bearer Realm = "http://127.0.0.1:1/token" , error="invalid_token""#,
            ],
        ))
        .unwrap();
        assert_eq!(challenge.realm, "http://127.0.0.1:1/token");
        assert_eq!(challenge.service, None);
        assert!(challenge.scopes.is_empty());
    }

    #[test]
    fn quoted_values_keep_their_escapes_as_characters() {
        let challenges = parse_challenges(r#"Bearer realm="a\"b\\c",service=plain"#);
        assert_eq!(
            challenges,
            [(
                "Bearer".to_owned(),
                vec![
                    ("realm".to_owned(), r#"a"b\c"#.to_owned()),
                    ("service".to_owned(), "plain".to_owned()),
                ]
            )]
        );
    }

    #[test]
    fn no_bearer_challenge_without_a_realm_or_with_basic_only() {
        assert_eq!(
            bearer_challenge(&headers(WWW_AUTHENTICATE, &[r#"Basic realm="registry""#])),
            None
        );
        assert_eq!(
            bearer_challenge(&headers(WWW_AUTHENTICATE, &[r#"Bearer service="x""#])),
            None
        );
        assert_eq!(bearer_challenge(&HeaderMap::new()), None);
    }

    #[test]
    fn the_next_link_is_the_one_marked_next() {
        assert_eq!(
            next_link(&headers(
                LINK,
                &[r#"</v2/web/tags/list?last=b&n=2>; rel="next""#]
            ))
            .as_deref(),
            Some("/v2/web/tags/list?last=b&n=2")
        );
        assert_eq!(
            next_link(&headers(
                LINK,
                &[r#"<https://r.example/v2/a?n=1,2>; rel="prev", <https://r.example/v2/b>; rel=next"#]
            ))
            .as_deref(),
            Some("https://r.example/v2/b")
        );
        assert_eq!(next_link(&headers(LINK, &[r#"</v2/a>; rel="prev""#])), None);
        assert_eq!(next_link(&HeaderMap::new()), None);
    }
}
