//! A small validator for the JSON Schema subset that GitHub's OpenAPI 3.0 description uses, plus the
//! look-up of an operation by method and request path.
//!
//! The stand-in uses it to check every request body and query string that Wharf sends and every JSON
//! response it answers against @octokit/openapi's `api.github.com.json`. Supported keywords: `$ref` (any local JSON pointer),
//! `type` (a name or a list of names), `nullable`, `enum`, `const`, `required`, `properties`,
//! `additionalProperties` (a boolean or a schema), `items`, `oneOf`, `anyOf`, `allOf`, `minLength`,
//! `maxLength`, `minimum`, `maximum`, `exclusiveMinimum`/`exclusiveMaximum` (the 3.0 boolean form),
//! `minItems`, `maxItems`, `uniqueItems`, `minProperties`, `maxProperties` and `format: date-time`.
//! Other keywords (`pattern`, other formats) are ignored.

use std::path::Path;

use anyhow::Context as _;
use serde_json::Value;

/// How deep schemas may nest before the validator gives up (it guards against `$ref` cycles that
/// consume no part of the instance).
const MAX_DEPTH: usize = 128;

/// The HTTP methods an OpenAPI path item may describe.
const METHODS: [&str; 7] = ["get", "put", "post", "delete", "patch", "head", "options"];

/// A parsed OpenAPI document with an index of its operations.
pub struct OpenApi {
    document: Value,
    operations: Vec<Operation>,
}

/// One operation of the OpenAPI document: a method and a path template such as
/// `/repos/{owner}/{repo}/deployments`.
#[derive(Debug, Clone)]
pub struct Operation {
    /// The method in upper case, e.g. `POST`.
    pub method: String,
    /// The path template exactly as the document spells it.
    pub template: String,
    segments: Vec<TemplateSegment>,
}

#[derive(Debug, Clone)]
enum TemplateSegment {
    Literal(String),
    Parameter,
}

impl Operation {
    /// The prefix used in violation messages, e.g. `POST /repos/{owner}/{repo}/deployments`.
    pub fn label(&self) -> String {
        format!("{} {}", self.method, self.template)
    }

    /// Whether a raw request path (without query) fits this template.
    fn matches(&self, request_segments: &[&str]) -> bool {
        self.segments.len() == request_segments.len()
            && self
                .segments
                .iter()
                .zip(request_segments)
                .all(|(template, actual)| match template {
                    TemplateSegment::Literal(literal) => literal == actual,
                    TemplateSegment::Parameter => !actual.is_empty(),
                })
    }

    /// A ranking that prefers templates whose literal segments come first, so that
    /// `/repos/{owner}/{repo}/deployments` wins over a template with a parameter in that place.
    fn specificity(&self) -> Vec<bool> {
        self.segments
            .iter()
            .map(|segment| matches!(segment, TemplateSegment::Literal(_)))
            .collect()
    }
}

impl OpenApi {
    /// Reads and parses the OpenAPI document at `path`.
    pub fn load(path: &Path) -> anyhow::Result<OpenApi> {
        let text = std::fs::read(path)
            .with_context(|| format!("reading the OpenAPI document {}", path.display()))?;
        let document: Value = serde_json::from_slice(&text)
            .with_context(|| format!("parsing the OpenAPI document {}", path.display()))?;
        OpenApi::from_document(document)
    }

    /// Indexes an already parsed OpenAPI document.
    pub fn from_document(document: Value) -> anyhow::Result<OpenApi> {
        let paths = document
            .get("paths")
            .and_then(Value::as_object)
            .context("the OpenAPI document has no `paths` object")?;
        let mut operations = Vec::new();
        for (template, item) in paths {
            let segments: Vec<TemplateSegment> = template
                .split('/')
                .skip(1)
                .map(|segment| {
                    if segment.contains('{') {
                        TemplateSegment::Parameter
                    } else {
                        TemplateSegment::Literal(segment.to_string())
                    }
                })
                .collect();
            for method in METHODS {
                if item.get(method).is_some() {
                    operations.push(Operation {
                        method: method.to_uppercase(),
                        template: template.clone(),
                        segments: segments.clone(),
                    });
                }
            }
        }
        Ok(OpenApi {
            document,
            operations,
        })
    }

    /// Finds the operation that GitHub would route `method` and the raw (still percent-encoded)
    /// request `path` to.
    pub fn find_operation(&self, method: &str, path: &str) -> Option<&Operation> {
        let request_segments: Vec<&str> = path.split('/').skip(1).collect();
        self.operations
            .iter()
            .filter(|operation| {
                operation.method.eq_ignore_ascii_case(method)
                    && operation.matches(&request_segments)
            })
            .max_by_key(|operation| operation.specificity())
    }

    fn operation_object(&self, operation: &Operation) -> Option<&Value> {
        self.document
            .get("paths")?
            .get(&operation.template)?
            .get(operation.method.to_lowercase())
    }

    /// Checks a request body against the operation's `requestBody`. Each violation is a readable
    /// sentence that starts with the operation, e.g.
    /// `POST /repos/{owner}/{repo}/deployments request: $.ref: required property is missing`.
    pub fn request_violations(&self, operation: &Operation, body: Option<&Value>) -> Vec<String> {
        let prefix = format!("{} request", operation.label());
        let request_body = self
            .operation_object(operation)
            .and_then(|object| object.get("requestBody"))
            .map(|request_body| self.resolve_refs(request_body));
        let Some(request_body) = request_body else {
            return match body {
                Some(_) => vec![format!(
                    "{prefix}: the operation takes no request body, but one was sent"
                )],
                None => Vec::new(),
            };
        };
        let Some(body) = body else {
            let required = request_body
                .get("required")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            return if required {
                vec![format!(
                    "{prefix}: a request body is required but none was sent"
                )]
            } else {
                Vec::new()
            };
        };
        let Some(schema) = json_schema(request_body) else {
            return vec![format!(
                "{prefix}: the operation takes no application/json request body"
            )];
        };
        self.validate_as(&prefix, schema, body)
    }

    /// Checks a request's query parameters (decoded name and value pairs) against the operation's
    /// `in: query` parameters: each must be documented, its value must fit its schema (integers and
    /// booleans are read from their text), and required ones must be present. Each violation starts
    /// with the operation, e.g. `GET /repos/{owner}/{repo}/deployments query: unknown parameter "shas"`.
    pub fn query_violations(
        &self,
        operation: &Operation,
        query: &[(String, String)],
    ) -> Vec<String> {
        let prefix = format!("{} query", operation.label());
        let path_item = self
            .document
            .get("paths")
            .and_then(|paths| paths.get(&operation.template));
        let parameters: Vec<&Value> = [
            path_item.and_then(|item| item.get("parameters")),
            self.operation_object(operation)
                .and_then(|object| object.get("parameters")),
        ]
        .into_iter()
        .flatten()
        .filter_map(Value::as_array)
        .flatten()
        .map(|parameter| self.resolve_refs(parameter))
        .filter(|parameter| parameter.get("in").and_then(Value::as_str) == Some("query"))
        .collect();
        let named = |name: &str| {
            parameters
                .iter()
                .find(|parameter| parameter.get("name").and_then(Value::as_str) == Some(name))
        };
        let mut violations = Vec::new();
        for (name, text) in query {
            let Some(parameter) = named(name) else {
                violations.push(format!("{prefix}: unknown parameter {name:?}"));
                continue;
            };
            let Some(schema) = parameter.get("schema") else {
                continue;
            };
            let schema_type = self
                .resolve_refs(schema)
                .get("type")
                .and_then(Value::as_str);
            let value = match schema_type {
                Some("integer") => match text.parse::<i64>() {
                    Ok(number) => Value::from(number),
                    Err(_) => {
                        violations.push(format!("{prefix}: {name}={text:?} is not an integer"));
                        continue;
                    }
                },
                Some("boolean") => match text.as_str() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    _ => {
                        violations.push(format!("{prefix}: {name}={text:?} is not a boolean"));
                        continue;
                    }
                },
                _ => Value::String(text.clone()),
            };
            violations.extend(
                validate(&self.document, schema, &value)
                    .into_iter()
                    .map(|violation| format!("{prefix}: {name}: {violation}")),
            );
        }
        for parameter in &parameters {
            let required = parameter
                .get("required")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            let name = parameter.get("name").and_then(Value::as_str).unwrap_or("");
            if required && !query.iter().any(|(given, _)| given == name) {
                violations.push(format!("{prefix}: required parameter {name:?} is missing"));
            }
        }
        violations
    }

    /// Checks a JSON response body against `responses[status]` of the operation. An undocumented
    /// error status is not checked (GitHub documents few of its 401s); an undocumented success status
    /// is itself a violation.
    pub fn response_violations(
        &self,
        operation: &Operation,
        status: u16,
        body: &Value,
    ) -> Vec<String> {
        let prefix = format!("{} response {status}", operation.label());
        let responses = self
            .operation_object(operation)
            .and_then(|object| object.get("responses"));
        let response = responses.and_then(|responses| {
            responses
                .get(status.to_string())
                .or_else(|| responses.get("default"))
        });
        let Some(response) = response else {
            return if (200..300).contains(&status) {
                vec![format!(
                    "{prefix}: the status is not documented for this operation"
                )]
            } else {
                Vec::new()
            };
        };
        let response = self.resolve_refs(response);
        let Some(schema) = json_schema(response) else {
            return vec![format!(
                "{prefix}: the operation documents no JSON body for this status, but one was sent"
            )];
        };
        self.validate_as(&prefix, schema, body)
    }

    /// Validates `value` against `schema`, each violation starting with `prefix`.
    fn validate_as(&self, prefix: &str, schema: &Value, value: &Value) -> Vec<String> {
        validate(&self.document, schema, value)
            .into_iter()
            .map(|violation| format!("{prefix}: {violation}"))
            .collect()
    }

    /// Follows `$ref` chains (for example to `#/components/responses/not_found`) until a value that is
    /// not a reference is reached. An unresolvable reference yields the reference object itself.
    fn resolve_refs<'a>(&'a self, mut value: &'a Value) -> &'a Value {
        for _ in 0..MAX_DEPTH {
            let Some(reference) = value.get("$ref").and_then(Value::as_str) else {
                return value;
            };
            match resolve_pointer(&self.document, reference) {
                Some(target) => value = target,
                None => return value,
            }
        }
        value
    }
}

/// Validates `instance` against `schema`, resolving `$ref`s inside `root`. Returns one string per
/// violation in the form `$.path.to[0].field: what is wrong`.
pub fn validate(root: &Value, schema: &Value, instance: &Value) -> Vec<String> {
    let mut violations = Vec::new();
    Validator { root }.check(schema, instance, "$", 0, &mut violations);
    violations
}

/// The `application/json` schema of a request body or a response object, if it documents one.
fn json_schema(body_or_response: &Value) -> Option<&Value> {
    body_or_response
        .get("content")
        .and_then(|content| content.get("application/json"))
        .and_then(|media| media.get("schema"))
}

/// Resolves a local JSON pointer reference such as `#/components/schemas/simple-user`.
fn resolve_pointer<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    if pointer.is_empty() {
        return Some(root);
    }
    root.pointer(pointer)
}

struct Validator<'a> {
    root: &'a Value,
}

impl Validator<'_> {
    fn check(
        &self,
        schema: &Value,
        instance: &Value,
        location: &str,
        depth: usize,
        violations: &mut Vec<String>,
    ) {
        if depth > MAX_DEPTH {
            violations.push(format!("{location}: the schema nests too deeply to check"));
            return;
        }
        let schema = match schema {
            Value::Bool(true) => return,
            Value::Bool(false) => {
                violations.push(format!("{location}: no value is allowed here"));
                return;
            }
            Value::Object(object) => object,
            _ => {
                violations.push(format!("{location}: the schema is not an object"));
                return;
            }
        };

        if instance.is_null() && schema.get("nullable").and_then(Value::as_bool) == Some(true) {
            return;
        }

        if let Some(reference) = schema.get("$ref") {
            let Some(reference) = reference.as_str() else {
                violations.push(format!("{location}: the schema has a non-string $ref"));
                return;
            };
            match resolve_pointer(self.root, reference) {
                Some(target) => self.check(target, instance, location, depth + 1, violations),
                None => violations.push(format!("{location}: unresolvable $ref {reference}")),
            }
            return;
        }

        if let Some(expected) = schema.get("type") {
            let allowed: Vec<&str> = match expected {
                Value::String(name) => vec![name.as_str()],
                Value::Array(names) => names.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if !allowed.is_empty() && !allowed.iter().any(|name| has_type(instance, name)) {
                violations.push(format!(
                    "{location}: expected {}, got {}",
                    allowed.join(" or "),
                    type_name(instance)
                ));
                return;
            }
        }

        if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
            && !allowed
                .iter()
                .any(|candidate| json_equal(candidate, instance))
        {
            let listed: Vec<String> = allowed.iter().map(Value::to_string).collect();
            violations.push(format!(
                "{location}: {instance} is not one of [{}]",
                listed.join(", ")
            ));
        }

        if let Some(expected) = schema.get("const")
            && !json_equal(expected, instance)
        {
            violations.push(format!("{location}: {instance} is not {expected}"));
        }

        match instance {
            Value::String(text) => self.check_string(schema, text, location, violations),
            Value::Number(number) => {
                if let Some(value) = number.as_f64() {
                    check_number(schema, value, location, violations);
                }
            }
            Value::Array(items) => self.check_array(schema, items, location, depth, violations),
            Value::Object(members) => {
                self.check_object(schema, members, location, depth, violations)
            }
            Value::Null | Value::Bool(_) => {}
        }

        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for branch in all {
                self.check(branch, instance, location, depth + 1, violations);
            }
        }

        if let Some(any) = schema.get("anyOf").and_then(Value::as_array) {
            let outcomes = self.branch_outcomes(any, instance, location, depth);
            if !outcomes.iter().any(Vec::is_empty) {
                violations.push(format!(
                    "{location}: does not match any schema in anyOf{}",
                    closest_branch_hint(&outcomes)
                ));
            }
        }

        if let Some(one) = schema.get("oneOf").and_then(Value::as_array) {
            let outcomes = self.branch_outcomes(one, instance, location, depth);
            let matched = outcomes.iter().filter(|errors| errors.is_empty()).count();
            if matched == 0 {
                violations.push(format!(
                    "{location}: does not match any schema in oneOf{}",
                    closest_branch_hint(&outcomes)
                ));
            } else if matched > 1 {
                violations.push(format!(
                    "{location}: matches {matched} schemas in oneOf, expected exactly one"
                ));
            }
        }
    }

    fn branch_outcomes(
        &self,
        branches: &[Value],
        instance: &Value,
        location: &str,
        depth: usize,
    ) -> Vec<Vec<String>> {
        branches
            .iter()
            .map(|branch| {
                let mut errors = Vec::new();
                self.check(branch, instance, location, depth + 1, &mut errors);
                errors
            })
            .collect()
    }

    fn check_string(
        &self,
        schema: &serde_json::Map<String, Value>,
        text: &str,
        location: &str,
        violations: &mut Vec<String>,
    ) {
        let length = text.chars().count() as u64;
        if let Some(minimum) = schema.get("minLength").and_then(Value::as_u64)
            && length < minimum
        {
            violations.push(format!(
                "{location}: string is {length} characters long, shorter than minLength {minimum}"
            ));
        }
        if let Some(maximum) = schema.get("maxLength").and_then(Value::as_u64)
            && length > maximum
        {
            violations.push(format!(
                "{location}: string is {length} characters long, longer than maxLength {maximum}"
            ));
        }
        if schema.get("format").and_then(Value::as_str) == Some("date-time")
            && time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .is_err()
        {
            violations.push(format!("{location}: {text:?} is not an RFC 3339 date-time"));
        }
    }

    fn check_array(
        &self,
        schema: &serde_json::Map<String, Value>,
        items: &[Value],
        location: &str,
        depth: usize,
        violations: &mut Vec<String>,
    ) {
        let count = items.len() as u64;
        if let Some(minimum) = schema.get("minItems").and_then(Value::as_u64)
            && count < minimum
        {
            violations.push(format!(
                "{location}: array has {count} items, fewer than minItems {minimum}"
            ));
        }
        if let Some(maximum) = schema.get("maxItems").and_then(Value::as_u64)
            && count > maximum
        {
            violations.push(format!(
                "{location}: array has {count} items, more than maxItems {maximum}"
            ));
        }
        if schema.get("uniqueItems").and_then(Value::as_bool) == Some(true) {
            for (index, item) in items.iter().enumerate() {
                if items[..index]
                    .iter()
                    .any(|earlier| json_equal(earlier, item))
                {
                    violations.push(format!(
                        "{location}[{index}]: duplicate item in an array with uniqueItems"
                    ));
                }
            }
        }
        if let Some(item_schema) = schema.get("items") {
            for (index, item) in items.iter().enumerate() {
                self.check(
                    item_schema,
                    item,
                    &format!("{location}[{index}]"),
                    depth + 1,
                    violations,
                );
            }
        }
    }

    fn check_object(
        &self,
        schema: &serde_json::Map<String, Value>,
        members: &serde_json::Map<String, Value>,
        location: &str,
        depth: usize,
        violations: &mut Vec<String>,
    ) {
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for name in required.iter().filter_map(Value::as_str) {
                if !members.contains_key(name) {
                    violations.push(format!(
                        "{}: required property is missing",
                        member_location(location, name)
                    ));
                }
            }
        }
        let count = members.len() as u64;
        if let Some(minimum) = schema.get("minProperties").and_then(Value::as_u64)
            && count < minimum
        {
            violations.push(format!(
                "{location}: object has {count} properties, fewer than minProperties {minimum}"
            ));
        }
        if let Some(maximum) = schema.get("maxProperties").and_then(Value::as_u64)
            && count > maximum
        {
            violations.push(format!(
                "{location}: object has {count} properties, more than maxProperties {maximum}"
            ));
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties");
        for (name, value) in members {
            let child_location = member_location(location, name);
            if let Some(property_schema) = properties.and_then(|properties| properties.get(name)) {
                self.check(
                    property_schema,
                    value,
                    &child_location,
                    depth + 1,
                    violations,
                );
                continue;
            }
            match additional {
                None | Some(Value::Bool(true)) => {}
                Some(Value::Bool(false)) => {
                    violations.push(format!("{child_location}: property is not allowed"));
                }
                Some(additional_schema) => {
                    self.check(
                        additional_schema,
                        value,
                        &child_location,
                        depth + 1,
                        violations,
                    );
                }
            }
        }
    }
}

fn check_number(
    schema: &serde_json::Map<String, Value>,
    value: f64,
    location: &str,
    violations: &mut Vec<String>,
) {
    let exclusive_minimum = schema.get("exclusiveMinimum").and_then(Value::as_bool) == Some(true);
    let exclusive_maximum = schema.get("exclusiveMaximum").and_then(Value::as_bool) == Some(true);
    if let Some(minimum) = schema.get("minimum").and_then(Value::as_f64) {
        let too_small = if exclusive_minimum {
            value <= minimum
        } else {
            value < minimum
        };
        if too_small {
            violations.push(format!(
                "{location}: {value} is less than the minimum {minimum}"
            ));
        }
    }
    if let Some(maximum) = schema.get("maximum").and_then(Value::as_f64) {
        let too_large = if exclusive_maximum {
            value >= maximum
        } else {
            value > maximum
        };
        if too_large {
            violations.push(format!(
                "{location}: {value} is more than the maximum {maximum}"
            ));
        }
    }
}

/// Summarises why the branch with the fewest errors failed, to make oneOf/anyOf failures readable.
fn closest_branch_hint(outcomes: &[Vec<String>]) -> String {
    outcomes
        .iter()
        .enumerate()
        .filter(|(_, errors)| !errors.is_empty())
        .min_by_key(|(_, errors)| errors.len())
        .map(|(index, errors)| format!(" (closest is branch {index}: {})", errors.join("; ")))
        .unwrap_or_default()
}

fn member_location(location: &str, name: &str) -> String {
    let plain = !name.is_empty()
        && name.chars().all(|character| {
            character.is_ascii_alphanumeric() || character == '_' || character == '-'
        });
    if plain {
        format!("{location}.{name}")
    } else {
        format!("{location}[{}]", Value::String(name.to_string()))
    }
}

fn has_type(instance: &Value, name: &str) -> bool {
    match name {
        "null" => instance.is_null(),
        "boolean" => instance.is_boolean(),
        "string" => instance.is_string(),
        "array" => instance.is_array(),
        "object" => instance.is_object(),
        "number" => instance.is_number(),
        "integer" => match instance {
            Value::Number(number) => {
                number.is_i64()
                    || number.is_u64()
                    || number.as_f64().is_some_and(|value| value.fract() == 0.0)
            }
            _ => false,
        },
        // An unknown type name constrains nothing.
        _ => true,
    }
}

fn type_name(instance: &Value) -> &'static str {
    match instance {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(number) if number.is_i64() || number.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Compares two JSON values, treating numbers of equal value as equal (1 and 1.0).
fn json_equal(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(left), Value::Number(right)) => match (left.as_f64(), right.as_f64()) {
            (Some(left), Some(right)) => left == right,
            _ => left == right,
        },
        _ => left == right,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(schema: Value, instance: Value) -> Vec<String> {
        validate(&json!({}), &schema, &instance)
    }

    #[test]
    fn type_mismatch_is_reported_with_its_location() {
        let schema = json!({
            "type": "object",
            "properties": {"required_contexts": {"type": "array", "items": {"type": "string"}}}
        });
        assert_eq!(
            check(schema.clone(), json!({"required_contexts": "ci"})),
            vec!["$.required_contexts: expected array, got string".to_string()]
        );
        assert_eq!(
            check(schema, json!({"required_contexts": ["ci", 3]})),
            vec!["$.required_contexts[1]: expected string, got integer".to_string()]
        );
        assert!(check(json!({"type": "integer"}), json!(3.0)).is_empty());
        assert_eq!(
            check(json!({"type": "integer"}), json!(3.5)),
            vec!["$: expected integer, got number".to_string()]
        );
    }

    #[test]
    fn missing_required_property_is_reported() {
        let schema = json!({
            "type": "object",
            "required": ["ref", "task"],
            "properties": {"ref": {"type": "string"}}
        });
        assert_eq!(
            check(schema.clone(), json!({"task": "deploy"})),
            vec!["$.ref: required property is missing".to_string()]
        );
        assert!(check(schema, json!({"ref": "main", "task": "deploy"})).is_empty());
    }

    #[test]
    fn enum_rejects_values_outside_the_list() {
        let schema = json!({"type": "string", "enum": ["success", "failure"]});
        assert!(check(schema.clone(), json!("success")).is_empty());
        let violations = check(schema, json!("done"));
        assert_eq!(violations.len(), 1);
        assert!(
            violations[0].starts_with("$: \"done\" is not one of"),
            "{violations:?}"
        );
    }

    #[test]
    fn const_allows_its_value_alone() {
        let schema = json!({"oneOf": [{"const": "push"}, {"const": "manual"}]});
        assert!(check(schema.clone(), json!("manual")).is_empty());
        let violations = check(schema, json!("retry"));
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(
            violations[0].starts_with("$: does not match any schema in oneOf"),
            "{violations:?}"
        );
    }

    #[test]
    fn nullable_allows_null_and_only_null_in_addition() {
        let schema = json!({"type": "string", "nullable": true});
        assert!(check(schema.clone(), json!(null)).is_empty());
        assert!(check(schema.clone(), json!("text")).is_empty());
        assert_eq!(
            check(schema, json!(5)),
            vec!["$: expected string, got integer".to_string()]
        );
        assert_eq!(
            check(json!({"type": "string"}), json!(null)),
            vec!["$: expected string, got null".to_string()]
        );
    }

    #[test]
    fn one_of_requires_exactly_one_match() {
        let schema = json!({
            "oneOf": [
                {"type": "object", "additionalProperties": true},
                {"type": "string"}
            ]
        });
        assert!(check(schema.clone(), json!({"a": 1})).is_empty());
        assert!(check(schema.clone(), json!("text")).is_empty());
        let violations = check(schema, json!(7));
        assert_eq!(violations.len(), 1);
        assert!(
            violations[0].starts_with("$: does not match any schema in oneOf"),
            "{violations:?}"
        );

        let overlapping = json!({"oneOf": [{"type": "integer"}, {"type": "number"}]});
        assert_eq!(
            check(overlapping, json!(4)),
            vec!["$: matches 2 schemas in oneOf, expected exactly one".to_string()]
        );
    }

    #[test]
    fn any_of_and_all_of_combine_branches() {
        let any = json!({"anyOf": [{"type": "integer"}, {"type": "number"}]});
        assert!(check(any.clone(), json!(4)).is_empty());
        assert_eq!(check(any, json!("x")).len(), 1);
        let all = json!({"allOf": [
            {"type": "object", "required": ["a"]},
            {"type": "object", "required": ["b"]}
        ]});
        assert_eq!(
            check(all, json!({"a": 1})),
            vec!["$.b: required property is missing".to_string()]
        );
    }

    #[test]
    fn refs_are_resolved_inside_the_root_document() {
        let root = json!({
            "components": {"schemas": {
                "user": {
                    "type": "object",
                    "required": ["login"],
                    "properties": {"login": {"type": "string"}}
                },
                "nullable-user": {
                    "type": "object",
                    "nullable": true,
                    "required": ["login"],
                    "properties": {"login": {"type": "string"}}
                }
            }}
        });
        let schema = json!({
            "type": "object",
            "properties": {
                "owner": {"$ref": "#/components/schemas/user"},
                "creator": {"$ref": "#/components/schemas/nullable-user"}
            }
        });
        assert!(
            validate(
                &root,
                &schema,
                &json!({"owner": {"login": "a"}, "creator": null})
            )
            .is_empty()
        );
        assert_eq!(
            validate(&root, &schema, &json!({"owner": {"login": 1}})),
            vec!["$.owner.login: expected string, got integer".to_string()]
        );
        assert_eq!(
            validate(
                &root,
                &json!({"$ref": "#/components/schemas/missing"}),
                &json!(1)
            ),
            vec!["$: unresolvable $ref #/components/schemas/missing".to_string()]
        );
    }

    #[test]
    fn additional_properties_and_lengths_are_checked() {
        let closed = json!({"type": "object", "properties": {}, "additionalProperties": false});
        assert_eq!(
            check(closed, json!({"x y": 1})),
            vec!["$[\"x y\"]: property is not allowed".to_string()]
        );
        let typed = json!({"type": "object", "additionalProperties": {"type": "string"}});
        assert_eq!(
            check(typed, json!({"issues": 3})),
            vec!["$.issues: expected string, got integer".to_string()]
        );
        let bounded = json!({"type": "string", "minLength": 2, "maxLength": 3});
        assert_eq!(check(bounded.clone(), json!("a")).len(), 1);
        assert_eq!(check(bounded, json!("abcd")).len(), 1);
        let limited = json!({"type": "array", "maxItems": 1});
        assert_eq!(check(limited, json!([1, 2])).len(), 1);
        let range = json!({"type": "integer", "minimum": 1, "maximum": 100});
        assert!(check(range.clone(), json!(100)).is_empty());
        assert_eq!(check(range.clone(), json!(0)).len(), 1);
        assert_eq!(check(range, json!(101)).len(), 1);
        let stamp = json!({"type": "string", "format": "date-time"});
        assert!(check(stamp.clone(), json!("2024-01-02T03:04:05Z")).is_empty());
        assert_eq!(check(stamp, json!("yesterday")).len(), 1);
    }

    #[test]
    fn operations_are_found_by_method_and_path() {
        let document = json!({
            "paths": {
                "/repos/{owner}/{repo}": {"get": {"parameters": [
                    {"$ref": "#/components/parameters/per-page"},
                    {"name": "sha", "in": "query", "schema": {"type": "string"}}
                ]}},
                "/repos/{owner}/{repo}/deployments": {"post": {
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {
                        "type": "object", "required": ["ref"], "properties": {"ref": {"type": "string"}}
                    }}}},
                    "responses": {"404": {"$ref": "#/components/responses/not_found"}}
                }},
                "/repos/{owner}/{repo}/{anything}": {"post": {}}
            },
            "components": {"parameters": {"per-page": {
                "name": "per_page", "in": "query",
                "schema": {"type": "integer", "default": 30, "maximum": 100}
            }}, "responses": {"not_found": {"content": {"application/json": {"schema": {
                "type": "object", "properties": {"message": {"type": "string"}}
            }}}}}}
        });
        let api = OpenApi::from_document(document).unwrap();
        let operation = api
            .find_operation("POST", "/repos/acme/web/deployments")
            .unwrap();
        assert_eq!(operation.template, "/repos/{owner}/{repo}/deployments");
        assert!(
            api.find_operation("GET", "/repos/acme/web/deployments")
                .is_none()
        );
        assert!(api.find_operation("GET", "/nothing").is_none());
        assert_eq!(
            api.request_violations(operation, Some(&json!({"task": "x"}))),
            vec!["POST /repos/{owner}/{repo}/deployments request: $.ref: required property is missing"
                .to_string()]
        );
        assert_eq!(api.request_violations(operation, None).len(), 1);
        assert_eq!(
            api.response_violations(operation, 404, &json!({"message": 1})),
            vec!["POST /repos/{owner}/{repo}/deployments response 404: $.message: expected string, got integer"
                .to_string()]
        );
        assert_eq!(api.response_violations(operation, 201, &json!({})).len(), 1);
        let listing = api.find_operation("GET", "/repos/acme/web").unwrap();
        let query = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect()
        };
        assert!(
            api.query_violations(listing, &query(&[("per_page", "100"), ("sha", "abc")]))
                .is_empty()
        );
        assert_eq!(
            api.query_violations(
                listing,
                &query(&[("per_page", "many"), ("shas", "abc"), ("per_page", "1000")])
            ),
            vec![
                "GET /repos/{owner}/{repo} query: per_page=\"many\" is not an integer".to_string(),
                "GET /repos/{owner}/{repo} query: unknown parameter \"shas\"".to_string(),
                "GET /repos/{owner}/{repo} query: per_page: $: 1000 is more than the maximum 100"
                    .to_string(),
            ]
        );
        assert!(
            api.response_violations(operation, 500, &json!({}))
                .is_empty()
        );
    }
}
