//! The REST API's OpenAPI 3.1 document, made from the request types themselves: each
//! [`ApiRequest`] gives its method, its path (with the fields that fill it), its body and the
//! type it answers with, and `schemars` gives the JSON Schema of every type, so the document
//! changes whenever a request or an answer does. The few routes no request type describes (an
//! event stream, a delete that answers nothing, optional query parameters) are written here by
//! hand. The server serves the document at `/v1/openapi.json`; its tests check it against the
//! routes it serves, and the API tests check real answers against it.
//!
//! Only with the `openapi` feature, which the server enables; the agent and the CLI never need it.

use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value, json};

use crate::{ApiError, ApiRequest, Method};

/// Who may call an operation: the admin's token, or an agent's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Admin,
    Agent,
    Anyone,
}

/// The document being written: the schemas met so far and the operations by path.
struct Document {
    generator: SchemaGenerator,
    paths: Map<String, Value>,
}

impl Document {
    fn new() -> Document {
        let settings = SchemaSettings::draft2020_12().with(|settings| {
            settings.definitions_path = "#/components/schemas/".into();
        });
        Document {
            generator: SchemaGenerator::new(settings),
            paths: Map::new(),
        }
    }

    /// Describes request type `R`, answered with `status` and `R::Response` on success.
    fn request<R>(&mut self, status: u16, summary: &str)
    where
        R: ApiRequest + JsonSchema,
        R::Response: JsonSchema,
    {
        let (template, mut parameters) = path_template(R::PATH_FORMAT, R::PATH_FIELDS);
        let caller = caller_of(&template);
        let mut operation = json!({
            "operationId": R::schema_name(),
            "summary": summary,
        });
        match R::METHOD {
            Method::Post | Method::Put => {
                operation["requestBody"] = json!({
                    "required": true,
                    "content": {"application/json": {"schema": self.generator.subschema_for::<R>()}},
                });
            }
            Method::Get | Method::Delete => {
                // A request without a body sends its own fields, all optional, as its query.
                let schema = self.generator.root_schema_for::<R>();
                if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                    for (name, schema) in properties {
                        parameters.push(query_parameter(name, schema.clone()));
                    }
                }
            }
        }
        if !parameters.is_empty() {
            operation["parameters"] = Value::Array(parameters);
        }
        let answer = self.generator.subschema_for::<R::Response>().to_value();
        operation["responses"] = self.responses(status, Some(answer));
        self.add(method_name(R::METHOD), &template, operation, caller);
    }

    /// Adds a query parameter the server reads beyond what the request type sends.
    fn query(&mut self, method: Method, template: &str, name: &str, schema: Value) {
        let operation = &mut self.paths[template][method_name(method)];
        if operation.get("parameters").is_none() {
            operation["parameters"] = json!([]);
        }
        if let Some(parameters) = operation["parameters"].as_array_mut() {
            parameters.push(query_parameter(name, schema));
        }
    }

    /// Adds a log's server-sent event stream at `template` (its `{id}` the build or release),
    /// which ends when `ends_when`.
    fn log_stream(&mut self, template: &str, operation_id: &str, summary: &str, ends_when: &str) {
        let log_line = self.generator.subschema_for::<crate::LogLine>();
        let error = self.generator.subschema_for::<ApiError>();
        self.operation(
            Method::Get,
            template,
            json!({
                "operationId": operation_id,
                "summary": summary,
                "description": format!(
                    "Each `line` event's data is a log line as JSON, its id the line's sequence \
                     number; a reconnect with `Last-Event-ID` resumes after it. A `done` event, \
                     whose data names the final state, closes the stream when {ends_when}."
                ),
                "parameters": [
                    path_parameter("id"),
                    query_parameter("after", json!({"type": "integer", "format": "int64"})),
                ],
                "responses": {
                    "200": {
                        "description": "the event stream",
                        "content": {"text/event-stream": {"schema": log_line}},
                    },
                    "default": {
                        "description": "an error",
                        "content": {"application/json": {"schema": error}},
                    },
                },
            }),
        );
    }

    /// Adds an operation written by hand.
    fn operation(&mut self, method: Method, template: &str, operation: Value) {
        self.add(
            method_name(method),
            template,
            operation,
            caller_of(template),
        );
    }

    fn add(&mut self, method: &str, template: &str, mut operation: Value, caller: Caller) {
        operation["security"] = match caller {
            Caller::Admin => json!([{"admin": []}]),
            Caller::Agent => json!([{"agent": []}]),
            Caller::Anyone => json!([]),
        };
        let item = self
            .paths
            .entry(template.to_owned())
            .or_insert_with(|| json!({}));
        item[method] = operation;
    }

    /// The success answer (`status`, with `body` as JSON when there is one) and every error's
    /// body.
    fn responses(&mut self, status: u16, body: Option<Value>) -> Value {
        let success = match body {
            Some(schema) => json!({
                "description": "success",
                "content": {"application/json": {"schema": schema}},
            }),
            None => json!({"description": "success, with no body"}),
        };
        let error = self.generator.subschema_for::<ApiError>().to_value();
        json!({
            status.to_string(): success,
            "default": {
                "description": "an error, in one line a person can act on",
                "content": {"application/json": {"schema": error}},
            },
        })
    }

    fn finish(mut self, version: &str) -> Value {
        let schemas = self.generator.take_definitions(true);
        json!({
            "openapi": "3.1.0",
            "info": {
                "title": "Wharf",
                "version": version,
                "description": "Wharf's REST API: services, builds, releases and agents for \
                    the CLI and the admin (the admin's token), and the agent protocol (an \
                    agent's token). Errors answer `{\"error\": \"…\"}`.",
            },
            "paths": self.paths,
            "components": {
                "schemas": schemas,
                "securitySchemes": {
                    "admin": {"type": "http", "scheme": "bearer", "description": "WHARF_ADMIN_TOKEN"},
                    "agent": {"type": "http", "scheme": "bearer", "description": "an agent's token, from `wharf agents create`"},
                },
            },
        })
    }
}

/// The OpenAPI document of Wharf's `/v1` API, for Wharf `version`.
pub fn document(version: &str) -> Value {
    use crate::*;

    let mut document = Document::new();

    // Services and their variables.
    document.request::<CreateService>(201, "Create a service");
    document.request::<ListServices>(200, "List the services");
    document.request::<ShowService>(200, "Show a service");
    document.request::<UpdateService>(200, "Change a service's settings");
    document.request::<SetEnv>(200, "Set a variable of a service");
    document.request::<ListEnv>(
        200,
        "List a service's variables (secret values never shown)",
    );
    document.request::<UnsetEnv>(200, "Remove a variable of a service");
    document.request::<UnsetPreviewEnv>(200, "Remove a variable of a service's previews");

    // Builds and their logs.
    document.request::<TriggerBuild>(201, "Build a service's branch head (or a given commit)");
    document.request::<ListBuilds>(200, "List builds, newest first");
    document.query(Method::Get, "/v1/builds", "limit", limit());
    document.request::<ShowBuild>(200, "Show a build");
    document.request::<CancelBuild>(200, "Cancel a build");
    document.request::<RetryBuild>(201, "Build a finished build's commit again");
    document.request::<GetLogs>(200, "A page of a build's log, waiting for lines");
    document.log_stream(
        "/v1/builds/{id}/logs/stream",
        "StreamLogs",
        "A build's log as server-sent events, live until the build ends",
        "the build has finished",
    );

    // Releases.
    document.request::<ListReleases>(200, "List a service's releases, newest first");
    document.query(
        Method::Get,
        "/v1/services/{service}/releases",
        "limit",
        limit(),
    );
    document.request::<ShowRelease>(200, "Show a release with its rollouts");
    document.request::<GetReleaseLogs>(
        200,
        "A page of a release's deploy log, every host's lines, waiting for lines",
    );
    document.log_stream(
        "/v1/releases/{id}/logs/stream",
        "StreamReleaseLogs",
        "A release's deploy log as server-sent events, live until it has settled on every host",
        "the release has settled on every host",
    );
    document.request::<DeployService>(201, "Release a built commit or an image");
    document.request::<RollbackService>(201, "Release an earlier release's image again");
    document.request::<RotateDeploySecret>(200, "Make a new deploy-hook secret (shown once)");

    // Agents and installations, as the admin sees them.
    document.request::<CreateAgent>(201, "Issue an agent's token (shown once)");
    document.request::<ListAgents>(200, "List the agents");
    document.request::<RevokeAgent>(
        200,
        "Revoke an agent's token: its builds go back to the queue, its rollouts fail",
    );
    document.request::<SetRegistryLogin>(200, "Set an installation's registry login");

    // Pull request previews.
    document.request::<ListAllPreviews>(200, "List every service's pull request previews");
    document.request::<ListPreviews>(200, "List a service's pull request previews");
    document.request::<ApprovePreview>(200, "Approve a pull request's commit for its preview");
    document.request::<StartPreview>(200, "Bring back a stopped or removed preview");
    document.request::<DestroyPreview>(200, "Remove a pull request's preview from every host");

    // Dashboard users.
    document.request::<CreateUser>(201, "Add a dashboard user (the password is shown once)");
    document.request::<ListUsers>(200, "List the dashboard users");
    document.request::<RemoveUser>(200, "Remove a dashboard user and end their sessions");
    let no_body = document.responses(204, None);
    document.operation(
        Method::Delete,
        "/v1/installations/{installation_id}/registry-login",
        json!({
            "operationId": "RemoveRegistryLogin",
            "summary": "Remove an installation's registry login",
            "parameters": [path_parameter("installation_id")],
            "responses": no_body,
        }),
    );

    // Notifications.
    document.request::<CreateSink>(
        201,
        "Add a notification sink (a generated secret shown once)",
    );
    document.request::<ListSinks>(200, "List the notification sinks");
    document.request::<RemoveSink>(200, "Remove a notification sink and its deliveries");
    document.request::<TestSink>(200, "Send a sink a test message");
    document.request::<ListSinkDeliveries>(200, "List a sink's messages, newest first");
    document.request::<RetrySink>(200, "Make a sink's dead messages pending again");

    // The agent protocol.
    document.request::<RegisterAgent>(200, "Register an agent as it starts");
    document.request::<ClaimBuild>(200, "Claim a build, waiting for one");
    document.request::<Heartbeat>(200, "Renew the leases of the builds an agent runs");
    document.request::<ReportBuildState>(200, "Report a held build's step or outcome");
    document.request::<AppendLogs>(200, "Append lines to a held build's log");
    document.request::<AppendRolloutLogs>(
        200,
        "Append lines to the deploy log of a rollout in progress",
    );
    document.request::<GetCloneCredentials>(200, "A held build's clone URL and token");
    document.request::<ClaimRollout>(200, "Claim a rollout for the agent's host");
    document.request::<ReportRollout>(200, "Report a held rollout's step or outcome");
    document.request::<DesiredState>(200, "What the agent's host should run");

    // The document itself.
    document.operation(
        Method::Get,
        "/v1/openapi.json",
        json!({
            "operationId": "OpenApi",
            "summary": "This document",
            "responses": {"200": {
                "description": "the OpenAPI document",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }},
        }),
    );
    document.finish(version)
}

/// The path template of a path format and its fields (`/v1/services/{}/env` with `service` is
/// `/v1/services/{service}/env`), and the parameters it declares: the path's, and the query's
/// (`?after={}`).
fn path_template(format: &str, fields: &[&str]) -> (String, Vec<Value>) {
    let (path, query) = format.split_once('?').unwrap_or((format, ""));
    let mut names = fields.iter().map(|field| {
        // `service.name` fills the path with the inner field's value.
        field.rsplit('.').next().unwrap_or(field).trim().to_owned()
    });
    let mut template = String::new();
    let mut parameters = Vec::new();
    let mut pieces = path.split("{}").peekable();
    while let Some(piece) = pieces.next() {
        template.push_str(piece);
        if pieces.peek().is_some() {
            let name = names.next().unwrap_or_default();
            template.push_str(&format!("{{{name}}}"));
            parameters.push(path_parameter(&name));
        }
    }
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let name = pair.split_once('=').map_or(pair, |(name, _)| name);
        names.next();
        parameters.push(query_parameter(name, integer_or_string(name)));
    }
    (template, parameters)
}

/// How many items a list answers at most.
fn limit() -> Value {
    json!({"type": "integer", "format": "int64", "minimum": 1})
}

fn path_parameter(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": integer_or_string(name)})
}

fn query_parameter(name: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "required": false, "schema": schema})
}

/// Ids and counts are integers; names are strings.
fn integer_or_string(name: &str) -> Value {
    if name == "id" || name.ends_with("_id") || name == "after" || name.ends_with("_ms") {
        json!({"type": "integer", "format": "int64"})
    } else {
        json!({"type": "string"})
    }
}

/// The agent protocol lives under `/v1/agent/`; the document itself is open; the rest is the
/// admin's.
fn caller_of(template: &str) -> Caller {
    if template.starts_with("/v1/agent/") {
        Caller::Agent
    } else if template == "/v1/openapi.json" {
        Caller::Anyone
    } else {
        Caller::Admin
    }
}

fn method_name(method: Method) -> &'static str {
    match method {
        Method::Get => "get",
        Method::Post => "post",
        Method::Put => "put",
        Method::Delete => "delete",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_fields_that_fill_them_and_queries_become_parameters() {
        let (template, parameters) = path_template("/v1/services/{}/env/{}", &["service", "name"]);
        assert_eq!(template, "/v1/services/{service}/env/{name}");
        assert_eq!(parameters[0]["name"], "service");
        assert_eq!(parameters[1]["in"], "path");

        let (template, _) = path_template("/v1/services/{}", &["service . name"]);
        assert_eq!(template, "/v1/services/{name}");

        let (template, parameters) = path_template(
            "/v1/builds/{}/logs?after={}&wait_ms={}",
            &["id", "after", "wait_ms"],
        );
        assert_eq!(template, "/v1/builds/{id}/logs");
        let names: Vec<_> = parameters.iter().map(|p| p["name"].clone()).collect();
        assert_eq!(names, vec!["id", "after", "wait_ms"]);
        assert_eq!(parameters[1]["in"], "query");
        assert_eq!(parameters[2]["schema"]["type"], "integer");
    }

    #[test]
    fn the_document_describes_bodies_answers_and_who_may_call() {
        let document = document("1.2.3");
        assert_eq!(document["openapi"], "3.1.0");
        assert_eq!(document["info"]["version"], "1.2.3");
        let create = &document["paths"]["/v1/services"]["post"];
        assert_eq!(
            create["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/CreateService"
        );
        assert_eq!(
            create["responses"]["201"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Service"
        );
        assert_eq!(create["security"], json!([{"admin": []}]));
        let claim = &document["paths"]["/v1/agent/claim"]["post"];
        assert_eq!(claim["security"], json!([{"agent": []}]));
        // A request's path fields are not part of its body.
        let cancel = &document["components"]["schemas"]["CancelBuild"];
        assert!(cancel["properties"].get("id").is_none(), "{cancel}");
        // Optional fields of a body-less request are its query.
        let list = &document["paths"]["/v1/builds"]["get"];
        assert_eq!(list["parameters"][0]["name"], "service");
        assert!(document["components"]["schemas"]["Build"].is_object());
    }
}
