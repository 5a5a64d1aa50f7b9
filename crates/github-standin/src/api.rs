//! The HTTP side of the stand-in: one axum fallback handler that records every request, checks request
//! bodies, query strings and response bodies against GitHub's OpenAPI description, applies injected failures, and routes to
//! the REST endpoints Wharf uses or to `git http-backend` for `/git/{owner}/{repo}.git/...`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use rand::Rng as _;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use crate::RecordedRequest;
use crate::auth::{self, Authentication, GIT_USER};
use crate::git;
use crate::state::{
    self, APP_SLUG, Deployment, IssuedToken, Repository, Shared, app_object, bot_user, error_body,
    github_time, installation_object, node_id, repository_object,
};

/// The largest request body the stand-in reads (git pushes of test repositories stay far below it).
const MAX_BODY_BYTES: usize = 256 * 1024 * 1024;
/// GitHub's limit on a deployment status description.
const MAX_STATUS_DESCRIPTION_CHARACTERS: usize = 140;
/// The states a deployment status may have.
const DEPLOYMENT_STATES: [&str; 7] = [
    "error",
    "failure",
    "inactive",
    "in_progress",
    "queued",
    "pending",
    "success",
];

/// A response before it becomes an HTTP response, so that its JSON can be checked and recorded.
#[derive(Debug)]
pub(crate) struct ApiResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: ResponseBody,
}

#[derive(Debug)]
enum ResponseBody {
    Json(Value),
    Text(String),
    Bytes(Vec<u8>),
    Empty,
}

impl ApiResponse {
    fn json(status: u16, value: Value) -> ApiResponse {
        ApiResponse {
            status,
            headers: Vec::new(),
            body: ResponseBody::Json(value),
        }
    }

    fn error(status: u16, message: &str) -> ApiResponse {
        ApiResponse::json(status, error_body(status, message))
    }

    fn not_found() -> ApiResponse {
        ApiResponse::error(404, "Not Found")
    }

    fn text(status: u16, text: impl Into<String>) -> ApiResponse {
        ApiResponse {
            status,
            headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
            body: ResponseBody::Text(text.into()),
        }
    }

    fn empty(status: u16) -> ApiResponse {
        ApiResponse {
            status,
            headers: Vec::new(),
            body: ResponseBody::Empty,
        }
    }

    fn with_header(mut self, name: &str, value: impl Into<String>) -> ApiResponse {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// GitHub's 422 answer for a request body that breaks the endpoint's schema.
    fn invalid_request(problem: &str) -> ApiResponse {
        ApiResponse::json(
            422,
            json!({
                "message": format!("Invalid request.\n\n{problem}"),
                "documentation_url": state::DOCUMENTATION_URL,
                "status": "422"
            }),
        )
    }

    fn into_response(self, api_headers: bool) -> Response {
        let (content_type, bytes) = match self.body {
            ResponseBody::Json(value) => (
                Some("application/json; charset=utf-8"),
                serde_json::to_vec(&value).unwrap_or_default(),
            ),
            ResponseBody::Text(text) => (None, text.into_bytes()),
            ResponseBody::Bytes(bytes) => (None, bytes),
            ResponseBody::Empty => (None, Vec::new()),
        };
        let mut response = Response::new(Body::from(bytes));
        *response.status_mut() =
            StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let headers = response.headers_mut();
        if let Some(content_type) = content_type {
            append_header(headers, "content-type", content_type);
        }
        if api_headers {
            let reset = OffsetDateTime::now_utc().unix_timestamp() + 3600;
            for (name, value) in [
                ("x-github-media-type", "github.v3; format=json".to_string()),
                ("x-github-api-version-selected", "2022-11-28".to_string()),
                ("x-github-request-id", request_id()),
                ("x-ratelimit-limit", "5000".to_string()),
                ("x-ratelimit-resource", "core".to_string()),
            ] {
                append_header(headers, name, &value);
            }
            // Explicit rate-limit headers of the response (an injected rate limit) win.
            if !self
                .headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("x-ratelimit-remaining"))
            {
                append_header(headers, "x-ratelimit-remaining", "4999");
                append_header(headers, "x-ratelimit-used", "1");
                append_header(headers, "x-ratelimit-reset", &reset.to_string());
            }
        }
        for (name, value) in &self.headers {
            append_header(headers, name, value);
        }
        response
    }
}

fn append_header(headers: &mut HeaderMap, name: &str, value: &str) {
    if let (Ok(name), Ok(value)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        headers.append(name, value);
    }
}

fn request_id() -> String {
    let mut random = rand::rng();
    format!(
        "{:04X}:{:06X}:{:07X}:{:07X}:{:08X}",
        random.random::<u16>(),
        random.random::<u32>() & 0xFF_FFFF,
        random.random::<u32>() & 0xFFF_FFFF,
        random.random::<u32>() & 0xFFF_FFFF,
        random.random::<u32>()
    )
}

/// The entry point for every request.
pub(crate) async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let method = parts.method.as_str().to_string();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().map(str::to_string);
    let recorded_headers = redacted_headers(&parts.headers);
    let authentication = auth::authenticate(&shared, &parts.headers);

    let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => {
            let response = ApiResponse::error(413, "The request body could not be read");
            record(
                &shared,
                RecordedRequest {
                    method,
                    path,
                    query,
                    auth: authentication.label().to_string(),
                    installation_id: authentication.installation_id(),
                    body: None,
                    status: response.status,
                    headers: recorded_headers,
                },
            );
            return response.into_response(false);
        }
    };

    if path == "/git" || path.starts_with("/git/") {
        let response = serve_git(
            &shared,
            &method,
            &path,
            query.as_deref().unwrap_or(""),
            &parts.headers,
            bytes.to_vec(),
            &authentication,
        )
        .await;
        record(
            &shared,
            RecordedRequest {
                method,
                path,
                query,
                auth: authentication.label().to_string(),
                installation_id: authentication.installation_id(),
                body: None,
                status: response.status,
                headers: recorded_headers,
            },
        );
        return response.into_response(false);
    }

    let (body, body_is_json) = if bytes.is_empty() {
        (None, true)
    } else {
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(value) => (Some(value), true),
            Err(_) => (None, false),
        }
    };

    let mut violations = Vec::new();
    let mut body_problem = None;
    let operation = match &shared.openapi {
        Some(openapi) => match openapi.find_operation(&method, &path) {
            Some(operation) => {
                violations.extend(
                    openapi
                        .query_violations(operation, &parse_query(query.as_deref().unwrap_or(""))),
                );
                if body_is_json {
                    let found = openapi.request_violations(operation, body.as_ref());
                    body_problem = found.first().map(|violation| github_problem(violation));
                    violations.extend(found);
                } else {
                    violations.push(format!(
                        "{} request: the body is not valid JSON",
                        operation.label()
                    ));
                }
                Some(operation.clone())
            }
            None => {
                violations.push(format!(
                    "{method} {path}: no such operation in GitHub's API"
                ));
                None
            }
        },
        None => None,
    };

    let path_segments: Vec<String> = path.split('/').skip(1).map(percent_decode).collect();
    let injected = shared.lock().take_failure(&path);
    let (response, check_response) = if let Some(status) = injected {
        (injected_failure(status, &authentication, true), false)
    } else if !parts.headers.contains_key("user-agent") {
        // GitHub refuses API requests without a User-Agent header.
        (
            ApiResponse::text(
                403,
                "Request forbidden by administrative rules. Please make sure your request has a \
                 User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required). \
                 Check https://developer.github.com for other possible causes.\n",
            ),
            false,
        )
    } else if !body_is_json {
        (ApiResponse::error(400, "Problems parsing JSON"), true)
    } else {
        let context = ApiRequest {
            shared: &shared,
            method: &method,
            segments: path_segments.iter().map(String::as_str).collect(),
            query: parse_query(query.as_deref().unwrap_or("")),
            headers: &parts.headers,
            body: body.as_ref(),
            authentication: &authentication,
            body_problem,
        };
        (route(&context).await.unwrap_or_else(|error| error), true)
    };

    if check_response
        && let (Some(openapi), Some(operation), ResponseBody::Json(value)) =
            (&shared.openapi, &operation, &response.body)
    {
        violations.extend(openapi.response_violations(operation, response.status, value));
    }

    let installation_id =
        authentication
            .installation_id()
            .or_else(|| match path_segments.as_slice() {
                [app, installations, id, ..]
                    if app == "app" && installations == "installations" =>
                {
                    id.parse().ok()
                }
                _ => None,
            });
    {
        let mut state = shared.lock();
        for violation in &violations {
            tracing::warn!(%violation, "GitHub stand-in schema violation");
        }
        state.violations.extend(violations);
    }
    record(
        &shared,
        RecordedRequest {
            method,
            path,
            query,
            auth: authentication.label().to_string(),
            installation_id,
            body,
            status: response.status,
            headers: recorded_headers,
        },
    );
    response.into_response(true)
}

/// Words a request-body violation like GitHub's 422 message does where the two agree
/// (`"ref" wasn't supplied.`), and keeps the validator's wording otherwise.
fn github_problem(violation: &str) -> String {
    let problem = violation
        .split_once(": ")
        .map_or(violation, |(_, problem)| problem);
    match problem.strip_suffix(": required property is missing") {
        Some(location) => match location.strip_prefix("$.") {
            Some(name) if !name.contains(['.', '[']) => format!("\"{name}\" wasn't supplied."),
            _ => format!("{location} wasn't supplied."),
        },
        None => problem.to_string(),
    }
}

fn record(shared: &Shared, request: RecordedRequest) {
    shared.lock().requests.push(request);
}

/// The request headers with the Authorization value replaced, so recorded requests never hold a
/// credential.
fn redacted_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let value = if name == axum::http::header::AUTHORIZATION {
                let scheme = value
                    .to_str()
                    .ok()
                    .and_then(|text| text.split_whitespace().next())
                    .unwrap_or("");
                format!("{scheme} <redacted>")
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            (name.as_str().to_string(), value)
        })
        .collect()
}

/// The answer to a request that `fail_next` told the stand-in to fail.
fn injected_failure(status: u16, authentication: &Authentication, api: bool) -> ApiResponse {
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|code| code.canonical_reason())
        .unwrap_or("Error");
    if status == 403 || status == 429 {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let message = match authentication.installation_id() {
            Some(id) => format!("API rate limit exceeded for installation ID {id}."),
            None => "API rate limit exceeded.".to_string(),
        };
        let response = if api {
            ApiResponse::json(
                status,
                json!({
                    "message": message,
                    "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
                    "status": status.to_string()
                }),
            )
        } else {
            ApiResponse::text(status, format!("{message}\n"))
        };
        let response = response
            .with_header("x-ratelimit-limit", "5000")
            .with_header("x-ratelimit-remaining", "0")
            .with_header("x-ratelimit-used", "5000")
            .with_header("x-ratelimit-reset", (now + 1).to_string())
            .with_header("x-ratelimit-resource", "core");
        return if status == 429 {
            response.with_header("retry-after", "1")
        } else {
            response
        };
    }
    if api {
        ApiResponse::error(status, reason)
    } else {
        ApiResponse::text(status, format!("{reason}\n"))
    }
}

/// One API request, decoded.
struct ApiRequest<'a> {
    shared: &'a Arc<Shared>,
    method: &'a str,
    segments: Vec<&'a str>,
    query: Vec<(String, String)>,
    headers: &'a HeaderMap,
    body: Option<&'a Value>,
    authentication: &'a Authentication,
    /// The first schema violation of the request body, which GitHub answers with 422.
    body_problem: Option<String>,
}

type Handled = Result<ApiResponse, ApiResponse>;

impl ApiRequest<'_> {
    fn query_value(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    fn api_url(&self) -> &str {
        &self.shared.api_url
    }

    /// Requires a valid App JWT.
    fn require_app(&self) -> Result<(), ApiResponse> {
        match self.authentication {
            Authentication::App => Ok(()),
            Authentication::None => Err(ApiResponse::error(401, "Requires authentication")),
            Authentication::RejectedJwt(message) => Err(ApiResponse::error(401, message)),
            Authentication::Installation { .. } | Authentication::Invalid => Err(
                ApiResponse::error(401, "A JSON web token could not be decoded"),
            ),
        }
    }

    /// Requires a valid installation token. Anonymous requests for a (private) repository get 404
    /// like on GitHub; elsewhere 401.
    fn require_installation(&self, repository_scoped: bool) -> Result<&IssuedToken, ApiResponse> {
        match self.authentication {
            Authentication::Installation {
                suspended: true, ..
            } => Err(ApiResponse::error(
                403,
                "This installation has been suspended",
            )),
            Authentication::Installation { token, .. } => Ok(token),
            Authentication::None if repository_scoped => Err(ApiResponse::not_found()),
            Authentication::None => Err(ApiResponse::error(401, "Requires authentication")),
            Authentication::App => Err(ApiResponse::error(
                403,
                "Resource not accessible by integration",
            )),
            Authentication::RejectedJwt(_) | Authentication::Invalid => {
                Err(ApiResponse::error(401, "Bad credentials"))
            }
        }
    }

    /// Finds a repository the token may see (404 otherwise, like GitHub) and checks a permission.
    fn repository(
        &self,
        token: &IssuedToken,
        owner: &str,
        name: &str,
        permission: Option<(&str, &str)>,
    ) -> Result<Repository, ApiResponse> {
        let repository = self
            .shared
            .lock()
            .repository(owner, name)
            .filter(|repository| token.grants(repository))
            .cloned()
            .ok_or_else(ApiResponse::not_found)?;
        if let Some((permission, level)) = permission
            && !token.allows(permission, level)
        {
            return Err(ApiResponse::error(
                403,
                "Resource not accessible by integration",
            ));
        }
        Ok(repository)
    }

    /// Answers 422 when the request body broke the endpoint's schema.
    fn reject_invalid_body(&self) -> Result<(), ApiResponse> {
        match &self.body_problem {
            Some(problem) => Err(ApiResponse::invalid_request(problem)),
            None => Ok(()),
        }
    }

    fn body_object(&self) -> Map<String, Value> {
        self.body
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    }
}

async fn route(request: &ApiRequest<'_>) -> Handled {
    let segments = request.segments.as_slice();
    match (request.method, segments) {
        ("GET", ["app"]) => get_app(request),
        ("GET", ["app", "installations"]) => list_installations(request),
        ("GET", ["app", "installations", id]) => get_installation(request, id),
        ("POST", ["app", "installations", id, "access_tokens"]) => create_token(request, id),
        ("GET", ["installation", "repositories"]) => list_installation_repositories(request),
        ("DELETE", ["installation", "token"]) => revoke_token(request),
        ("GET", ["repos", owner, name]) => get_repository(request, owner, name),
        ("GET", ["repos", owner, name, "installation"]) => {
            find_installation(request, Some((owner, name)), None)
        }
        ("GET", ["orgs", login, "installation"]) | ("GET", ["users", login, "installation"]) => {
            find_installation(request, None, Some(login))
        }
        ("GET", ["repos", owner, name, "commits", reference @ ..]) if !reference.is_empty() => {
            get_commit(request, owner, name, &reference.join("/")).await
        }
        ("GET", ["repos", owner, name, "deployments"]) => list_deployments(request, owner, name),
        ("POST", ["repos", owner, name, "deployments"]) => {
            create_deployment(request, owner, name).await
        }
        ("GET", ["repos", owner, name, "deployments", id]) => {
            get_deployment(request, owner, name, id)
        }
        ("GET", ["repos", owner, name, "deployments", id, "statuses"]) => {
            list_deployment_statuses(request, owner, name, id)
        }
        ("POST", ["repos", owner, name, "deployments", id, "statuses"]) => {
            create_deployment_status(request, owner, name, id)
        }
        _ => Err(ApiResponse::not_found()),
    }
}

fn get_app(request: &ApiRequest<'_>) -> Handled {
    request.require_app()?;
    let count = request.shared.lock().installations.len();
    Ok(ApiResponse::json(
        200,
        app_object(request.api_url(), request.shared.app_id, count),
    ))
}

fn list_installations(request: &ApiRequest<'_>) -> Handled {
    request.require_app()?;
    let objects: Vec<Value> = request
        .shared
        .lock()
        .installations
        .values()
        .map(|installation| {
            installation_object(request.api_url(), request.shared.app_id, installation)
        })
        .collect();
    Ok(paginate(request, "/app/installations", objects, |page| {
        Value::Array(page)
    }))
}

fn get_installation(request: &ApiRequest<'_>, id: &str) -> Handled {
    request.require_app()?;
    let id: u64 = id.parse().map_err(|_| ApiResponse::not_found())?;
    let state = request.shared.lock();
    let installation = state
        .installations
        .get(&id)
        .ok_or_else(ApiResponse::not_found)?;
    Ok(ApiResponse::json(
        200,
        installation_object(request.api_url(), request.shared.app_id, installation),
    ))
}

fn find_installation(
    request: &ApiRequest<'_>,
    repository: Option<(&str, &str)>,
    account: Option<&str>,
) -> Handled {
    request.require_app()?;
    let state = request.shared.lock();
    let installation_id = match (repository, account) {
        (Some((owner, name)), _) => state
            .repository(owner, name)
            .map(|repository| repository.installation_id),
        (None, Some(login)) => state
            .installations
            .values()
            .find(|installation| installation.account_login.eq_ignore_ascii_case(login))
            .map(|installation| installation.id),
        (None, None) => None,
    };
    let installation = installation_id
        .and_then(|id| state.installations.get(&id))
        .ok_or_else(ApiResponse::not_found)?;
    Ok(ApiResponse::json(
        200,
        installation_object(request.api_url(), request.shared.app_id, installation),
    ))
}

fn create_token(request: &ApiRequest<'_>, id: &str) -> Handled {
    request.require_app()?;
    let installation_id: u64 = id.parse().map_err(|_| ApiResponse::not_found())?;
    let mut state = request.shared.lock();
    let installation = state
        .installations
        .get(&installation_id)
        .cloned()
        .ok_or_else(ApiResponse::not_found)?;
    if installation.suspended_at.is_some() {
        return Err(ApiResponse::error(
            403,
            "This installation has been suspended",
        ));
    }
    request.reject_invalid_body()?;
    let body = request.body_object();

    // Limit the token to some repositories when asked, like GitHub.
    let mut repository_ids: Option<Vec<u64>> = None;
    const INACCESSIBLE: &str = "There is at least one repository that does not exist or is not accessible to the parent installation.";
    if let Some(names) = body.get("repositories").and_then(Value::as_array) {
        let mut ids = Vec::new();
        for name in names {
            let name = name.as_str().unwrap_or_default();
            let repository = state
                .repositories
                .iter()
                .find(|repository| {
                    repository.installation_id == installation_id
                        && (repository.name.eq_ignore_ascii_case(name)
                            || repository.full_name().eq_ignore_ascii_case(name))
                })
                .ok_or_else(|| ApiResponse::error(422, INACCESSIBLE))?;
            ids.push(repository.id);
        }
        repository_ids = Some(ids);
    }
    if let Some(requested) = body.get("repository_ids").and_then(Value::as_array) {
        let mut ids = repository_ids.take().unwrap_or_default();
        for id in requested {
            let id = id.as_u64().unwrap_or_default();
            let accessible = state.repositories.iter().any(|repository| {
                repository.id == id && repository.installation_id == installation_id
            });
            if !accessible {
                return Err(ApiResponse::error(422, INACCESSIBLE));
            }
            ids.push(id);
        }
        repository_ids = Some(ids);
    }

    // Narrow the permissions when asked; asking for more than the installation has is refused.
    let permissions = match body.get("permissions").and_then(Value::as_object) {
        Some(requested) => {
            let granted = IssuedToken {
                installation_id,
                expires_at: OffsetDateTime::now_utc(),
                permissions: installation.permissions.clone(),
                repository_ids: None,
                revoked: false,
            };
            for (permission, level) in requested {
                if !granted.allows(permission, level.as_str().unwrap_or("write")) {
                    return Err(ApiResponse::error(
                        422,
                        "The permissions requested are not granted to this installation.",
                    ));
                }
            }
            requested.clone()
        }
        None => installation.permissions.clone(),
    };

    let ttl =
        time::Duration::try_from(request.shared.token_ttl).unwrap_or(time::Duration::hours(1));
    let expires_at = OffsetDateTime::now_utc()
        .checked_add(ttl)
        .unwrap_or(OffsetDateTime::now_utc());
    let secret = new_installation_token();
    state.tokens.insert(
        secret.clone(),
        IssuedToken {
            installation_id,
            expires_at,
            permissions: permissions.clone(),
            repository_ids: repository_ids.clone(),
            revoked: false,
        },
    );
    state.issued_tokens.push(secret.clone());

    let mut object = json!({
        "token": secret,
        "expires_at": github_time(expires_at),
        "permissions": Value::Object(permissions),
        "repository_selection": if repository_ids.is_some() { "selected" } else { "all" }
    });
    if let (Some(ids), Some(members)) = (&repository_ids, object.as_object_mut()) {
        let repositories: Vec<Value> = ids
            .iter()
            .filter_map(|id| state.repository_by_id(*id))
            .map(|repository| {
                repository_object(
                    request.api_url(),
                    repository,
                    installation.account_id,
                    &installation.account_type,
                    false,
                )
            })
            .collect();
        members.insert("repositories".into(), Value::Array(repositories));
    }
    Ok(ApiResponse::json(201, object))
}

/// A fresh installation token in GitHub's format: `ghs_` and 36 alphanumeric characters.
fn new_installation_token() -> String {
    let random: String = rand::rng()
        .sample_iter(&rand::distr::Alphanumeric)
        .take(36)
        .map(char::from)
        .collect();
    format!("ghs_{random}")
}

fn revoke_token(request: &ApiRequest<'_>) -> Handled {
    request.require_installation(false)?;
    let secret = request
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_whitespace().nth(1))
        .unwrap_or_default()
        .to_string();
    if let Some(token) = request.shared.lock().tokens.get_mut(&secret) {
        token.revoked = true;
    }
    Ok(ApiResponse::empty(204))
}

fn list_installation_repositories(request: &ApiRequest<'_>) -> Handled {
    let token = request.require_installation(false)?;
    let state = request.shared.lock();
    let (account_id, account_type) = state
        .installations
        .get(&token.installation_id)
        .map(|installation| (installation.account_id, installation.account_type.clone()))
        .unwrap_or((0, "Organization".to_string()));
    let mut repositories: Vec<&Repository> = state
        .repositories
        .iter()
        .filter(|repository| token.grants(repository))
        .collect();
    repositories.sort_by_key(|repository| repository.id);
    let objects: Vec<Value> = repositories
        .iter()
        .map(|repository| {
            repository_object(
                request.api_url(),
                repository,
                account_id,
                &account_type,
                false,
            )
        })
        .collect();
    let total = objects.len();
    let selection = if token.repository_ids.is_some() {
        "selected"
    } else {
        "all"
    };
    Ok(paginate(
        request,
        "/installation/repositories",
        objects,
        |page| {
            json!({
                "total_count": total,
                "repository_selection": selection,
                "repositories": page
            })
        },
    ))
}

fn get_repository(request: &ApiRequest<'_>, owner: &str, name: &str) -> Handled {
    let token = request.require_installation(true)?;
    let repository = request.repository(token, owner, name, None)?;
    let state = request.shared.lock();
    let (account_id, account_type) = state
        .installations
        .get(&repository.installation_id)
        .map(|installation| (installation.account_id, installation.account_type.clone()))
        .unwrap_or((0, "Organization".to_string()));
    Ok(ApiResponse::json(
        200,
        repository_object(
            request.api_url(),
            &repository,
            account_id,
            &account_type,
            true,
        ),
    ))
}

/// Resolves a ref on a blocking thread (it runs git).
async fn resolve_ref(
    request: &ApiRequest<'_>,
    repository: &Repository,
    reference: &str,
) -> Result<Option<String>, ApiResponse> {
    let git_dir = request.shared.git_dir(repository);
    let reference = reference.to_string();
    tokio::task::spawn_blocking(move || git::resolve_commit(&git_dir, &reference))
        .await
        .map_err(|_| ApiResponse::error(500, "Server Error"))?
        .map_err(|error| {
            tracing::warn!(%error, "resolving a ref failed");
            ApiResponse::error(500, "Server Error")
        })
}

async fn get_commit(request: &ApiRequest<'_>, owner: &str, name: &str, reference: &str) -> Handled {
    let token = request.require_installation(true)?;
    let repository = request.repository(token, owner, name, Some(("contents", "read")))?;
    if !repository.has_commits {
        return Err(ApiResponse::error(409, "Git Repository is empty."));
    }
    let sha = resolve_ref(request, &repository, reference)
        .await?
        .ok_or_else(|| ApiResponse::error(422, &format!("No commit found for SHA: {reference}")))?;
    let wants_sha = request
        .headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.contains("application/vnd.github.sha"));
    if wants_sha {
        return Ok(ApiResponse::text(200, sha));
    }
    let git_dir = request.shared.git_dir(&repository);
    let details = tokio::task::spawn_blocking(move || git::commit_details(&git_dir, &sha))
        .await
        .map_err(|_| ApiResponse::error(500, "Server Error"))?
        .map_err(|error| {
            tracing::warn!(%error, "reading a commit failed");
            ApiResponse::error(500, "Server Error")
        })?;
    let api_url = request.api_url();
    let full_name = repository.full_name();
    let commit_url = format!("{api_url}/repos/{full_name}/commits/{}", details.sha);
    let parents: Vec<Value> = details
        .parents
        .iter()
        .map(|parent| {
            json!({
                "sha": parent,
                "url": format!("{api_url}/repos/{full_name}/commits/{parent}"),
                "html_url": format!("{api_url}/{full_name}/commit/{parent}")
            })
        })
        .collect();
    Ok(ApiResponse::json(
        200,
        json!({
            "sha": details.sha,
            "node_id": node_id("Commit", format!("{}:{}", repository.id, details.sha)),
            "commit": {
                "author": {
                    "name": details.author_name,
                    "email": details.author_email,
                    "date": details.author_date
                },
                "committer": {
                    "name": details.committer_name,
                    "email": details.committer_email,
                    "date": details.committer_date
                },
                "message": details.message,
                "tree": {
                    "sha": details.tree,
                    "url": format!("{api_url}/repos/{full_name}/git/trees/{}", details.tree)
                },
                "url": format!("{api_url}/repos/{full_name}/git/commits/{}", details.sha),
                "comment_count": 0,
                "verification": {
                    "verified": false,
                    "reason": "unsigned",
                    "signature": null,
                    "payload": null,
                    "verified_at": null
                }
            },
            "url": commit_url,
            "html_url": format!("{api_url}/{full_name}/commit/{}", details.sha),
            "comments_url": format!("{commit_url}/comments"),
            "author": null,
            "committer": null,
            "parents": parents
        }),
    ))
}

async fn create_deployment(request: &ApiRequest<'_>, owner: &str, name: &str) -> Handled {
    let token = request.require_installation(true)?;
    let repository = request.repository(token, owner, name, Some(("deployments", "write")))?;
    request.reject_invalid_body()?;
    let body = request.body_object();
    let Some(reference) = body.get("ref").and_then(Value::as_str) else {
        return Err(ApiResponse::invalid_request("\"ref\" wasn't supplied."));
    };
    let sha = resolve_ref(request, &repository, reference)
        .await?
        .ok_or_else(|| ApiResponse::error(422, &format!("No ref found for: {reference}")))?;
    if let Some(contexts) = body.get("required_contexts").and_then(Value::as_array)
        && !contexts.is_empty()
    {
        // No commit statuses are ever reported to the stand-in, so required contexts never pass.
        return Err(ApiResponse::json(
            409,
            json!({
                "message": format!("Conflict: Commit status checks failed for {reference}."),
                "errors": [{
                    "contexts": contexts,
                    "resource": "Deployment",
                    "field": "required_contexts"
                }],
                "documentation_url": state::DOCUMENTATION_URL,
                "status": "409"
            }),
        ));
    }

    let environment = body
        .get("environment")
        .and_then(Value::as_str)
        .unwrap_or("production")
        .to_string();
    let task = body
        .get("task")
        .and_then(Value::as_str)
        .unwrap_or("deploy")
        .to_string();
    let payload = match body.get("payload") {
        None | Some(Value::Null) => json!({}),
        Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
            Ok(parsed @ Value::Object(_)) => parsed,
            _ => Value::String(text.clone()),
        },
        Some(other) => other.clone(),
    };
    let description = match body.get("description") {
        None => json!(""),
        Some(value) => value.clone(),
    };
    let transient = body
        .get("transient_environment")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let production = body
        .get("production_environment")
        .and_then(Value::as_bool)
        .unwrap_or(environment == "production");

    let api_url = request.api_url();
    let mut state = request.shared.lock();
    let id = state.next_deployment_id;
    state.next_deployment_id += 1;
    let now = github_time(OffsetDateTime::now_utc());
    let repository_url = format!("{api_url}/repos/{}", repository.full_name());
    let url = format!("{repository_url}/deployments/{id}");
    let object = json!({
        "url": url,
        "id": id,
        "node_id": node_id("Deployment", id),
        "sha": sha,
        "ref": reference,
        "task": task,
        "payload": payload,
        "original_environment": environment,
        "environment": environment,
        "description": description,
        "creator": bot_user(api_url),
        "created_at": now,
        "updated_at": now,
        "statuses_url": format!("{url}/statuses"),
        "repository_url": repository_url,
        "transient_environment": transient,
        "production_environment": production,
        "performed_via_github_app": app_object(api_url, request.shared.app_id, state.installations.len())
    });
    state.deployments.push(Deployment {
        id,
        repository_id: repository.id,
        object: object.clone(),
        statuses: Vec::new(),
    });
    Ok(ApiResponse::json(201, object).with_header("location", url))
}

fn list_deployments(request: &ApiRequest<'_>, owner: &str, name: &str) -> Handled {
    let token = request.require_installation(true)?;
    let repository = request.repository(token, owner, name, Some(("deployments", "read")))?;
    let filters: Vec<(&str, &str)> = ["sha", "ref", "task", "environment"]
        .into_iter()
        .filter_map(|field| {
            request
                .query_value(field)
                .filter(|value| *value != "none")
                .map(|value| (field, value))
        })
        .collect();
    let objects: Vec<Value> = request
        .shared
        .lock()
        .deployments
        .iter()
        .rev()
        .filter(|deployment| deployment.repository_id == repository.id)
        .filter(|deployment| {
            filters.iter().all(|(field, value)| {
                deployment.object.get(*field).and_then(Value::as_str) == Some(*value)
            })
        })
        .map(|deployment| deployment.object.clone())
        .collect();
    let path = format!("/repos/{}/deployments", repository.full_name());
    Ok(paginate(request, &path, objects, Value::Array))
}

/// Looks up a deployment of `repository` by the id in the path.
fn find_deployment(
    request: &ApiRequest<'_>,
    repository: &Repository,
    id: &str,
) -> Result<u64, ApiResponse> {
    let id: u64 = id.parse().map_err(|_| ApiResponse::not_found())?;
    let exists = request
        .shared
        .lock()
        .deployments
        .iter()
        .any(|deployment| deployment.id == id && deployment.repository_id == repository.id);
    if exists {
        Ok(id)
    } else {
        Err(ApiResponse::not_found())
    }
}

fn get_deployment(request: &ApiRequest<'_>, owner: &str, name: &str, id: &str) -> Handled {
    let token = request.require_installation(true)?;
    let repository = request.repository(token, owner, name, Some(("deployments", "read")))?;
    let id = find_deployment(request, &repository, id)?;
    let state = request.shared.lock();
    let deployment = state
        .deployments
        .iter()
        .find(|deployment| deployment.id == id)
        .ok_or_else(ApiResponse::not_found)?;
    Ok(ApiResponse::json(200, deployment.object.clone()))
}

fn list_deployment_statuses(
    request: &ApiRequest<'_>,
    owner: &str,
    name: &str,
    id: &str,
) -> Handled {
    let token = request.require_installation(true)?;
    let repository = request.repository(token, owner, name, Some(("deployments", "read")))?;
    let id = find_deployment(request, &repository, id)?;
    // GitHub lists the newest status first.
    let objects: Vec<Value> = request
        .shared
        .lock()
        .deployments
        .iter()
        .find(|deployment| deployment.id == id)
        .map(|deployment| deployment.statuses.iter().rev().cloned().collect())
        .unwrap_or_default();
    let path = format!(
        "/repos/{}/deployments/{id}/statuses",
        repository.full_name()
    );
    Ok(paginate(request, &path, objects, Value::Array))
}

fn create_deployment_status(
    request: &ApiRequest<'_>,
    owner: &str,
    name: &str,
    id: &str,
) -> Handled {
    let token = request.require_installation(true)?;
    let repository = request.repository(token, owner, name, Some(("deployments", "write")))?;
    let deployment_id = find_deployment(request, &repository, id)?;
    request.reject_invalid_body()?;
    let body = request.body_object();
    let state_name = match body.get("state").and_then(Value::as_str) {
        Some(state_name) if DEPLOYMENT_STATES.contains(&state_name) => state_name.to_string(),
        Some(state_name) => {
            return Err(ApiResponse::invalid_request(&format!(
                "For 'properties/state', \"{state_name}\" is not a possible value."
            )));
        }
        None => return Err(ApiResponse::invalid_request("\"state\" wasn't supplied.")),
    };
    let description = body
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if description.chars().count() > MAX_STATUS_DESCRIPTION_CHARACTERS {
        return Err(ApiResponse::json(
            422,
            json!({
                "message": "Validation Failed",
                "errors": [{
                    "resource": "DeploymentStatus",
                    "code": "custom",
                    "field": "description",
                    "message": "description is too long (maximum is 140 characters)"
                }],
                "documentation_url": state::DOCUMENTATION_URL,
                "status": "422"
            }),
        ));
    }
    let text_field = |field: &str| body.get(field).and_then(Value::as_str).map(str::to_string);
    // Setting log_url also sets target_url; an old client's target_url alone fills both.
    let log_url = text_field("log_url")
        .or_else(|| text_field("target_url"))
        .unwrap_or_default();
    let environment_url = text_field("environment_url").unwrap_or_default();
    let auto_inactive = body
        .get("auto_inactive")
        .and_then(Value::as_bool)
        .unwrap_or(true);

    let api_url = request.api_url();
    let mut state = request.shared.lock();
    let Some(index) = state
        .deployments
        .iter()
        .position(|deployment| deployment.id == deployment_id)
    else {
        return Err(ApiResponse::not_found());
    };
    let deployment = &state.deployments[index];
    let environment = text_field("environment")
        .or_else(|| {
            deployment
                .statuses
                .last()
                .and_then(|status| status.get("environment"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .or_else(|| {
            deployment
                .object
                .get("environment")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| "production".to_string());
    let now = OffsetDateTime::now_utc();
    let app = app_object(api_url, request.shared.app_id, state.installations.len());
    let status = status_object(
        &mut state,
        api_url,
        &repository,
        deployment_id,
        StatusFields {
            app: &app,
            state: &state_name,
            description: &description,
            environment: &environment,
            log_url: &log_url,
            environment_url: &environment_url,
        },
        now,
    );
    let deployment = &mut state.deployments[index];
    deployment.statuses.push(status.clone());
    if let Some(members) = deployment.object.as_object_mut() {
        members.insert("updated_at".into(), json!(github_time(now)));
    }

    if auto_inactive && state_name == "success" {
        mark_earlier_deployments_inactive(
            &mut state,
            api_url,
            &app,
            &repository,
            deployment_id,
            &environment,
            now,
        );
    }
    let location = status
        .get("url")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Ok(ApiResponse::json(201, status).with_header("location", location))
}

struct StatusFields<'a> {
    app: &'a Value,
    state: &'a str,
    description: &'a str,
    environment: &'a str,
    log_url: &'a str,
    environment_url: &'a str,
}

fn status_object(
    state: &mut state::State,
    api_url: &str,
    repository: &Repository,
    deployment_id: u64,
    fields: StatusFields<'_>,
    now: OffsetDateTime,
) -> Value {
    let id = state.next_status_id;
    state.next_status_id += 1;
    let repository_url = format!("{api_url}/repos/{}", repository.full_name());
    let deployment_url = format!("{repository_url}/deployments/{deployment_id}");
    let now = github_time(now);
    json!({
        "url": format!("{deployment_url}/statuses/{id}"),
        "id": id,
        "node_id": node_id("DeploymentStatus", id),
        "state": fields.state,
        "creator": bot_user(api_url),
        "description": fields.description,
        "environment": fields.environment,
        "target_url": fields.log_url,
        "log_url": fields.log_url,
        "environment_url": fields.environment_url,
        "created_at": now,
        "updated_at": now,
        "deployment_url": deployment_url,
        "repository_url": repository_url,
        "performed_via_github_app": fields.app
    })
}

/// GitHub's `auto_inactive`: a successful status marks earlier deployments of the same repository and
/// environment inactive when they are neither transient nor production and their latest status was
/// success.
fn mark_earlier_deployments_inactive(
    state: &mut state::State,
    api_url: &str,
    app: &Value,
    repository: &Repository,
    deployment_id: u64,
    environment: &str,
    now: OffsetDateTime,
) {
    let candidates: Vec<usize> = state
        .deployments
        .iter()
        .enumerate()
        .filter(|(_, deployment)| {
            deployment.repository_id == repository.id
                && deployment.id < deployment_id
                && deployment.object.get("environment").and_then(Value::as_str) == Some(environment)
                && deployment.object.get("transient_environment") != Some(&json!(true))
                && deployment.object.get("production_environment") != Some(&json!(true))
                && deployment
                    .statuses
                    .last()
                    .and_then(|status| status.get("state"))
                    .and_then(Value::as_str)
                    == Some("success")
        })
        .map(|(index, _)| index)
        .collect();
    for index in candidates {
        let earlier_id = state.deployments[index].id;
        let status = status_object(
            state,
            api_url,
            repository,
            earlier_id,
            StatusFields {
                app,
                state: "inactive",
                description: "",
                environment,
                log_url: "",
                environment_url: "",
            },
            now,
        );
        state.deployments[index].statuses.push(status);
    }
}

/// Slices `items` by the `per_page` (default 30, at most 100) and `page` query parameters, wraps the
/// page with `wrap`, and adds GitHub's `Link` header when there is more than one page.
fn paginate(
    request: &ApiRequest<'_>,
    path: &str,
    items: Vec<Value>,
    wrap: impl FnOnce(Vec<Value>) -> Value,
) -> ApiResponse {
    let per_page = request
        .query_value("per_page")
        .and_then(|value| value.parse::<usize>().ok())
        .filter(|value| *value > 0)
        .unwrap_or(30)
        .min(100);
    let page = request
        .query_value("page")
        .and_then(|value| value.parse::<usize>().ok())
        .filter(|value| *value > 0)
        .unwrap_or(1);
    let last_page = items.len().div_ceil(per_page).max(1);
    let page_items: Vec<Value> = items
        .into_iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .collect();
    let response = ApiResponse::json(200, wrap(page_items));
    let link = |number: usize, relation: &str| {
        format!(
            "<{}{path}?per_page={per_page}&page={number}>; rel=\"{relation}\"",
            request.api_url()
        )
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(link(page - 1, "prev"));
    }
    if page < last_page {
        links.push(link(page + 1, "next"));
        links.push(link(last_page, "last"));
    }
    if page > 1 {
        links.push(link(1, "first"));
    }
    if links.is_empty() {
        response
    } else {
        response.with_header("link", links.join(", "))
    }
}

/// Serves `/git/{owner}/{repo}.git/...` with `git http-backend` after checking HTTP Basic credentials
/// like github.com does for a private repository.
async fn serve_git(
    shared: &Arc<Shared>,
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: Vec<u8>,
    authentication: &Authentication,
) -> ApiResponse {
    if let Some(status) = shared.lock().take_failure(path) {
        return injected_failure(status, authentication, false);
    }
    let unauthorized = || {
        ApiResponse::text(401, "Invalid username or token. Password authentication is not supported for Git operations.\n")
            .with_header("www-authenticate", "Basic realm=\"GitHub\"")
    };
    let token = match authentication {
        Authentication::Installation {
            token,
            suspended: false,
            basic: true,
        } => token,
        Authentication::Installation {
            suspended: true,
            basic: true,
            ..
        } => return ApiResponse::text(403, "This installation has been suspended.\n"),
        _ => return unauthorized(),
    };

    let mut parts = path.trim_start_matches("/git/").splitn(3, '/');
    let owner = percent_decode(parts.next().unwrap_or_default());
    let repository_part = percent_decode(parts.next().unwrap_or_default());
    let rest = parts.next().unwrap_or_default().to_string();
    let not_found = || ApiResponse::text(404, "Repository not found.\n");
    let Some(name) = repository_part.strip_suffix(".git") else {
        return not_found();
    };
    if rest
        .split('/')
        .any(|segment| segment == ".." || segment == ".")
    {
        return not_found();
    }
    let Some(repository) = shared
        .lock()
        .repository(&owner, name)
        .filter(|repository| token.grants(repository))
        .cloned()
    else {
        return not_found();
    };

    let pushing = rest == "git-receive-pack" || query.contains("service=git-receive-pack");
    let level = if pushing { "write" } else { "read" };
    if !token.allows("contents", level) {
        return ApiResponse::text(
            403,
            format!(
                "Permission to {}.git denied to {APP_SLUG}[bot].\n",
                repository.full_name()
            ),
        );
    }

    let header_text = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string)
    };
    let request = git::CgiRequest {
        method: method.to_string(),
        path_info: format!("/{}/{}.git/{rest}", repository.owner, repository.name),
        query: query.to_string(),
        content_type: header_text("content-type"),
        content_encoding: header_text("content-encoding"),
        git_protocol: header_text("git-protocol"),
        remote_user: GIT_USER.to_string(),
        body,
    };
    match git::http_backend(&shared.repository_root, request).await {
        Ok(output) => ApiResponse {
            status: output.status,
            headers: output.headers,
            body: ResponseBody::Bytes(output.body),
        },
        Err(error) => {
            tracing::warn!(%error, "git http-backend failed");
            ApiResponse::text(500, "git http-backend failed\n")
        }
    }
}

/// Decodes `%XX` escapes; invalid escapes and non-UTF-8 results are kept as they are.
pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%'
            && index + 2 < bytes.len()
            && let Some(byte) = std::str::from_utf8(&bytes[index + 1..index + 3])
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            decoded.push(byte);
            index += 3;
            continue;
        }
        decoded.push(bytes[index]);
        index += 1;
    }
    String::from_utf8(decoded).unwrap_or_else(|_| text.to_string())
}

/// Parses `a=1&b=two` into pairs, decoding `+` and `%XX`.
fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (
                percent_decode(&key.replace('+', " ")),
                percent_decode(&value.replace('+', " ")),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_problems_are_worded_like_github() {
        assert_eq!(
            github_problem(
                "POST /repos/{owner}/{repo}/deployments request: $.ref: required property is missing"
            ),
            "\"ref\" wasn't supplied."
        );
        assert_eq!(
            github_problem("POST /x request: $.a: expected array, got string"),
            "$.a: expected array, got string"
        );
    }

    #[test]
    fn percent_escapes_are_decoded() {
        assert_eq!(percent_decode("feature%2Fx"), "feature/x");
        assert_eq!(percent_decode("plain"), "plain");
        assert_eq!(percent_decode("bad%zz"), "bad%zz");
        assert_eq!(percent_decode("end%2"), "end%2");
        assert_eq!(
            parse_query("per_page=2&page=3&q=a+b"),
            vec![
                ("per_page".to_string(), "2".to_string()),
                ("page".to_string(), "3".to_string()),
                ("q".to_string(), "a b".to_string())
            ]
        );
    }
}
