//! The HTTP side of the stand-in: one axum fallback handler that records every request, checks
//! request bodies, query strings and response bodies against GitHub's OpenAPI description, applies
//! injected failures, and routes to the REST endpoints Wharf uses or to `git http-backend` for
//! `/git/{owner}/{repo}.git/...`.
//!
//! The endpoints live by the part of GitHub's API they serve: `apps` (the App, its installations and
//! their tokens), `hooks` (the App's webhook deliveries and redeliveries), `repositories`
//! (repositories, branches and commits), `deployments` (deployments and their
//! statuses), `checks` (check runs and commit statuses), `pulls` (the list of pull requests),
//! `issues` (comments and labels of issues and pull requests) and `git_http` (git over HTTP). `request` decodes a request and checks who sent it;
//! `response` is what every endpoint answers with, pagination and injected failures included.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use serde_json::Value;

use crate::RecordedRequest;
use crate::auth;
use crate::state::Shared;

mod apps;
mod checks;
mod deployments;
mod git_http;
pub(crate) mod hooks;
pub(crate) mod issues;
mod pulls;
mod repositories;
mod request;
mod response;

use request::{ApiRequest, Handled, github_problem, parse_query, percent_decode, redacted_headers};
use response::{ApiResponse, ResponseBody, injected_failure};

/// The largest request body the stand-in reads (git pushes of test repositories stay far below it).
const MAX_BODY_BYTES: usize = 256 * 1024 * 1024;

/// The entry point for every request.
pub(crate) async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let authentication = auth::authenticate(&shared, &parts.headers);
    let received = Received {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        auth: authentication.label().to_string(),
        headers: redacted_headers(&parts.headers),
    };
    let (method, path) = (received.method.as_str(), received.path.as_str());
    let query = received.query.as_deref().unwrap_or("");

    let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => {
            let response = ApiResponse::error(413, "The request body could not be read");
            record(
                &shared,
                received.answered(authentication.installation_id(), None, response.status),
            );
            return response.into_response(false);
        }
    };

    if path == "/git" || path.starts_with("/git/") {
        let response = git_http::serve_git(
            &shared,
            method,
            path,
            query,
            &parts.headers,
            bytes.to_vec(),
            &authentication,
        )
        .await;
        record(
            &shared,
            received.answered(authentication.installation_id(), None, response.status),
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
        Some(openapi) => match openapi.find_operation(method, path) {
            Some(operation) => {
                violations.extend(openapi.query_violations(operation, &parse_query(query)));
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
    let injected = shared.lock().take_failure(path);
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
            method,
            segments: path_segments.iter().map(String::as_str).collect(),
            query: parse_query(query),
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
        received.answered(installation_id, body, response.status),
    );
    response.into_response(true)
}

/// What the stand-in records of every request, known before its body is read.
struct Received {
    method: String,
    /// The path as sent (still percent-encoded), without the query.
    path: String,
    query: Option<String>,
    /// The Authorization scheme used (see [`RecordedRequest::auth`]).
    auth: String,
    /// The request headers, the Authorization value redacted.
    headers: Vec<(String, String)>,
}

impl Received {
    /// The record of this request once it has been answered with `status`.
    fn answered(
        self,
        installation_id: Option<u64>,
        body: Option<Value>,
        status: u16,
    ) -> RecordedRequest {
        RecordedRequest {
            method: self.method,
            path: self.path,
            query: self.query,
            auth: self.auth,
            installation_id,
            body,
            status,
            headers: self.headers,
        }
    }
}

fn record(shared: &Shared, request: RecordedRequest) {
    shared.lock().requests.push(request);
}

/// Sends an API request to the endpoint that serves its method and path.
async fn route(request: &ApiRequest<'_>) -> Handled {
    let segments = request.segments.as_slice();
    match (request.method, segments) {
        ("GET", ["app"]) => apps::get_app(request),
        ("POST", ["app-manifests", code, "conversions"]) => apps::convert_manifest(request, code),
        ("GET", ["app", "installations"]) => apps::list_installations(request),
        ("GET", ["app", "installations", id]) => apps::get_installation(request, id),
        ("POST", ["app", "installations", id, "access_tokens"]) => apps::create_token(request, id),
        ("GET", ["app", "hook", "deliveries"]) => hooks::list_deliveries(request),
        ("POST", ["app", "hook", "deliveries", id, "attempts"]) => {
            hooks::redeliver(request, id).await
        }
        ("GET", ["installation", "repositories"]) => apps::list_installation_repositories(request),
        ("DELETE", ["installation", "token"]) => apps::revoke_token(request),
        ("GET", ["repos", owner, name]) => repositories::get_repository(request, owner, name),
        ("GET", ["repos", owner, name, "installation"]) => {
            apps::find_installation(request, Some((owner, name)), None)
        }
        ("GET", ["orgs", login, "installation"]) | ("GET", ["users", login, "installation"]) => {
            apps::find_installation(request, None, Some(login))
        }
        (
            "GET",
            [
                "repos",
                owner,
                name,
                "commits",
                reference @ ..,
                "check-runs",
            ],
        ) if !reference.is_empty() => {
            checks::list_check_runs_for_ref(request, owner, name, &reference.join("/")).await
        }
        ("POST", ["repos", owner, name, "check-runs"]) => {
            checks::create_check_run(request, owner, name).await
        }
        ("PATCH", ["repos", owner, name, "check-runs", id]) => {
            checks::update_check_run(request, owner, name, id)
        }
        ("POST", ["repos", owner, name, "statuses", sha]) => {
            checks::create_commit_status(request, owner, name, sha).await
        }
        ("GET", ["repos", owner, name, "commits", reference @ ..]) if !reference.is_empty() => {
            repositories::get_commit(request, owner, name, &reference.join("/")).await
        }
        ("GET", ["repos", owner, name, "branches", branch @ ..]) if !branch.is_empty() => {
            repositories::get_branch(request, owner, name, &branch.join("/")).await
        }
        ("GET", ["repos", owner, name, "deployments"]) => {
            deployments::list_deployments(request, owner, name)
        }
        ("POST", ["repos", owner, name, "deployments"]) => {
            deployments::create_deployment(request, owner, name).await
        }
        ("GET", ["repos", owner, name, "deployments", id]) => {
            deployments::get_deployment(request, owner, name, id)
        }
        ("GET", ["repos", owner, name, "deployments", id, "statuses"]) => {
            deployments::list_deployment_statuses(request, owner, name, id)
        }
        ("POST", ["repos", owner, name, "deployments", id, "statuses"]) => {
            deployments::create_deployment_status(request, owner, name, id)
        }
        ("GET", ["repos", owner, name, "pulls"]) => pulls::list_pull_requests(request, owner, name),
        ("GET", ["repos", owner, name, "issues", number, "comments"]) => {
            issues::list_comments(request, owner, name, number)
        }
        ("POST", ["repos", owner, name, "issues", number, "comments"]) => {
            issues::create_comment(request, owner, name, number)
        }
        ("PATCH", ["repos", owner, name, "issues", "comments", id]) => {
            issues::update_comment(request, owner, name, id)
        }
        ("DELETE", ["repos", owner, name, "issues", number, "labels", label]) => {
            issues::remove_label(request, owner, name, number, label)
        }
        _ => Err(ApiResponse::not_found()),
    }
}
