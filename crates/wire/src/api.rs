//! What every request has: the [`ApiRequest`] trait that names a request's method, path and
//! answer, the error body, and the encoding of values in paths.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A request to the server's REST API: its method, its path and the type it answers with.
pub trait ApiRequest: Serialize {
    /// What the server answers on success.
    type Response: DeserializeOwned;
    /// The HTTP method.
    const METHOD: Method;
    /// The path as a format string: each `{}` takes a field of the request, named in
    /// [`ApiRequest::PATH_FIELDS`] in order; what follows a `?` is the query. The OpenAPI
    /// document reads its path templates from it.
    const PATH_FORMAT: &'static str;
    /// The fields (as `field` or `outer.field`) whose values fill the `{}`s of
    /// [`ApiRequest::PATH_FORMAT`], in order.
    const PATH_FIELDS: &'static [&'static str];
    /// The path below the server's base URL, starting with `/`.
    fn path(&self) -> String;
}

/// Implements [`ApiRequest`] for a request type, on one line: the type, its method, its path and
/// the type it answers with. The path is a format string whose `{}` take the listed fields of
/// the request in order, each percent-encoded:
///
/// `api_request!(UnsetEnv: Delete "/v1/services/{}/env/{}" [service, name] -> Vec<EnvVar>);`
macro_rules! api_request {
    ($request:ident: $method:ident $path:literal -> $response:ty) => {
        impl $crate::ApiRequest for $request {
            type Response = $response;
            const METHOD: $crate::Method = $crate::Method::$method;
            const PATH_FORMAT: &'static str = $path;
            const PATH_FIELDS: &'static [&'static str] = &[];
            fn path(&self) -> String {
                $path.to_owned()
            }
        }
    };
    ($request:ident: $method:ident $path:literal [$($($field:ident).+),+] -> $response:ty) => {
        impl $crate::ApiRequest for $request {
            type Response = $response;
            const METHOD: $crate::Method = $crate::Method::$method;
            const PATH_FORMAT: &'static str = $path;
            const PATH_FIELDS: &'static [&'static str] = &[$(stringify!($($field).+)),+];
            fn path(&self) -> String {
                format!($path, $($crate::url_component(&self.$($field).+.to_string())),+)
            }
        }
    };
}

pub(crate) use api_request;

/// The HTTP methods the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
    Delete,
}

/// The body of every error answer: one human-readable line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(schemars::JsonSchema))]
pub struct ApiError {
    pub error: String,
}

/// Percent-encodes a value for use in a path segment or query value.
pub fn url_component(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                encoded.push(byte as char)
            }
            _ => encoded.push_str(&format!("%{byte:02X}")),
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_name_their_method_and_path() {
        use crate::{GetLogs, ListServices, UnsetEnv, UpdateService};

        fn route<R: ApiRequest>(request: &R) -> (Method, String) {
            (R::METHOD, request.path())
        }
        assert_eq!(
            route(&ListServices {}),
            (Method::Get, "/v1/services".to_owned())
        );
        let unset = UnsetEnv {
            service: "web".into(),
            name: "A B/C".into(),
        };
        assert_eq!(
            route(&unset),
            (Method::Delete, "/v1/services/web/env/A%20B%2FC".to_owned())
        );
        let update = UpdateService {
            service: crate::CreateService {
                name: "api-2".into(),
                ..Default::default()
            },
            relink_repository: false,
        };
        assert_eq!(
            route(&update),
            (Method::Put, "/v1/services/api-2".to_owned())
        );
        let logs = GetLogs {
            id: 7,
            after: -1,
            wait_ms: 500,
        };
        assert_eq!(
            route(&logs),
            (
                Method::Get,
                "/v1/builds/7/logs?after=-1&wait_ms=500".to_owned()
            )
        );
    }

    #[test]
    fn url_component_escapes_everything_outside_unreserved() {
        assert_eq!(url_component("web-1"), "web-1");
        assert_eq!(url_component("a b/c?d"), "a%20b%2Fc%3Fd");
    }
}
