//! Checks requests against a vendor's OpenAPI 3.0 documents: finds the operation by its path
//! template, then checks the path and query parameters, the security scheme's header, the
//! content type and the body against the operation's schema (see `schema.rs` for what of
//! the schema dialect is checked).
//!
//! A contract is one or more documents (Zoho splits its API into one file per area, with
//! cross-file `$ref`s; Pipedrive has v1 and v2); operations come from the documents named
//! as entries, under the path of their first server (`/api/v2` for Pipedrive's v2). Where a
//! vendor's documentation corrects its spec, the emulator amends the loaded copy
//! ([`ApiSpec::amend`]) and says why; the vendored files stay as published.

mod schema;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Once, OnceLock};

use axum::http::{header, HeaderMap};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use schema::Checker;

/// Where in a request a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Place {
    /// The method and path: no operation has them.
    Route,
    Path,
    Query,
    Header,
    Body,
}

/// What is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// No operation of the spec has this path (or this method on it).
    UnknownOperation,
    /// A required parameter, property or body is absent.
    Missing,
    /// A parameter or property the spec does not declare (where it declares them all).
    Unknown,
    /// A value of another type than the schema's, or null where it is not nullable.
    WrongType,
    /// A value outside the schema's `enum`.
    NotInEnum,
    /// More items, characters or a larger number than the schema allows.
    TooLarge,
    /// Fewer items, characters or a smaller number than the schema allows.
    TooSmall,
    /// A string not in the schema's `format` (`date`, `date-time`).
    BadFormat,
    /// A body of a media type the operation does not take, or a body where it takes none.
    ContentType,
    /// A body that does not parse as its media type.
    Unreadable,
    /// A value matching none (`anyOf`, `oneOf`) or several (`oneOf`) of the alternatives.
    NoMatch,
}

/// One thing wrong with a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub place: Place,
    /// The parameter's name, or the body's JSON pointer (`/data/0/Last_Name`; empty: the
    /// whole body).
    pub at: String,
    pub kind: ProblemKind,
    pub detail: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = match self.place {
            Place::Route => "route",
            Place::Path => "path parameter",
            Place::Query => "query parameter",
            Place::Header => "header",
            Place::Body => "body",
        };
        if self.at.is_empty() {
            write!(f, "{place}: {}", self.detail)
        } else {
            write!(f, "{place} {}: {}", self.at, self.detail)
        }
    }
}

/// A request the spec refuses: which operation it was for, and everything wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecViolation {
    pub method: String,
    /// The request's path, without the query.
    pub path: String,
    /// `operationId (METHOD /template)`, or none when no operation has the path.
    pub operation: Option<String>,
    pub problems: Vec<Problem>,
}

impl fmt::Display for SpecViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let operation = self.operation.as_deref().unwrap_or("no operation");
        write!(f, "{} {} ({operation}): ", self.method, self.path)?;
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

/// A request as the emulator received it. `path` is under the vendor's host (what the
/// spec's server URL plus its templates spell), `query` the raw query string.
#[derive(Debug, Clone, Copy)]
pub struct SpecRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

/// One operation of an entry document.
#[derive(Debug)]
struct Operation {
    method: String,
    /// The server's path and the template, split at `/`.
    segments: Vec<Segment>,
    /// `operationId (METHOD /template)`.
    label: String,
    document: String,
    /// JSON pointers of its path item and of the operation in `document`.
    path_item: String,
    pointer: String,
}

/// A vendor's contract, read on first use (the files are megabytes of JSON and YAML) or
/// ahead of it on another thread.
pub(crate) struct LazySpec {
    spec: OnceLock<ApiSpec>,
    started: Once,
    load: fn() -> ApiSpec,
}

impl LazySpec {
    pub(crate) const fn new(load: fn() -> ApiSpec) -> Self {
        Self {
            spec: OnceLock::new(),
            started: Once::new(),
            load,
        }
    }

    pub(crate) fn get(&'static self) -> &'static ApiSpec {
        self.spec.get_or_init(self.load)
    }

    /// Reads the spec on another thread, if that has not started yet: called when a tenant
    /// is added, so that its first requests do not all wait for the parse and then reach
    /// the routes at once, unlike a real API's.
    pub(crate) fn load_in_background(&'static self) {
        self.started.call_once(|| {
            std::thread::spawn(|| {
                self.get();
            });
        });
    }
}

/// How an `oauth2` or `http` security scheme's credentials arrive in `Authorization`.
const DEFAULT_OAUTH2_PREFIX: &str = "Bearer ";

/// A vendor's contract: its documents and the operations of its entry documents.
#[derive(Debug)]
pub struct ApiSpec {
    documents: HashMap<String, Value>,
    operations: Vec<Operation>,
    oauth2_prefix: &'static str,
}

impl ApiSpec {
    /// A contract of `documents` (name → JSON or YAML text; `$ref`s between them name files
    /// as `./name#/pointer`), whose operations are those of `entries`.
    ///
    /// # Panics
    /// If a document does not parse or an entry is not among the documents: the vendored
    /// files are part of the build, so that is a bug.
    pub fn new(documents: &[(&str, &str)], entries: &[&str]) -> Self {
        let documents: HashMap<String, Value> = documents
            .iter()
            .map(|(name, text)| {
                let value: Value = if name.ends_with(".json") {
                    serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"))
                } else {
                    serde_norway::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"))
                };
                ((*name).to_string(), value)
            })
            .collect();
        let mut operations = Vec::new();
        for entry in entries {
            let document = documents
                .get(*entry)
                .unwrap_or_else(|| panic!("{entry} is not among the documents"));
            operations.extend(operations_of(entry, document));
        }
        Self {
            documents,
            operations,
            oauth2_prefix: DEFAULT_OAUTH2_PREFIX,
        }
    }

    /// The vendor's `Authorization` prefix for its `oauth2` scheme (Zoho: `Zoho-oauthtoken `,
    /// where the spec's scheme implies `Bearer`).
    pub fn with_oauth2_prefix(mut self, prefix: &'static str) -> Self {
        self.oauth2_prefix = prefix;
        self
    }

    /// Changes the loaded copy of `document` at `pointer`, where the vendor's documentation
    /// corrects its spec.
    ///
    /// # Panics
    /// If there is nothing at `pointer`, so a new spec that moved it fails the tests.
    pub fn amend(mut self, document: &str, pointer: &str, change: impl FnOnce(&mut Value)) -> Self {
        let target = self
            .documents
            .get_mut(document)
            .and_then(|doc| doc.pointer_mut(pointer))
            .unwrap_or_else(|| panic!("{document}#{pointer} is not in the spec"));
        change(target);
        self
    }

    /// The problems of `value` against `schema`, a schema without `$ref`s written from a
    /// vendor's documentation for what its spec lacks (Zoho's token endpoint).
    pub fn check_value(&self, schema: &Value, value: &Value, place: Place) -> Vec<Problem> {
        let mut checker = Checker::new(self, place, "");
        checker.check("", schema, value, "");
        checker.into_problems()
    }

    /// Checks `request`: `Ok` if it is valid for an operation whose template its path
    /// matches (the most literal templates first; ties, e.g. Zoho's `{id}` and
    /// `{external_field_value}`, are valid if any accepts it), else what is wrong.
    pub fn check(&self, request: &SpecRequest<'_>) -> Result<(), SpecViolation> {
        let violation = |operation: Option<String>, problems: Vec<Problem>| SpecViolation {
            method: request.method.to_string(),
            path: request.path.to_string(),
            operation,
            problems,
        };
        let segments: Vec<&str> = request.path.split('/').skip(1).collect();
        let mut matching: Vec<(&Operation, Vec<bool>)> = self
            .operations
            .iter()
            .filter_map(|op| literal_mask(&op.segments, &segments).map(|mask| (op, mask)))
            .collect();
        // Literal segments win over templated ones, from the left (`/Contacts/upsert` is
        // the upsert, not the record whose id is "upsert").
        let best = matching.iter().map(|(_, mask)| mask.clone()).max();
        matching.retain(|(_, mask)| Some(mask) == best.as_ref());
        if matching.is_empty() {
            let problem = Problem {
                place: Place::Route,
                at: String::new(),
                kind: ProblemKind::UnknownOperation,
                detail: "no path of the spec matches".into(),
            };
            return Err(violation(None, vec![problem]));
        }
        let method = request.method.to_ascii_uppercase();
        let candidates: Vec<&Operation> = matching
            .iter()
            .map(|(op, _)| *op)
            .filter(|op| op.method == method)
            .collect();
        if candidates.is_empty() {
            let allowed: Vec<&str> = matching.iter().map(|(op, _)| op.method.as_str()).collect();
            let problem = Problem {
                place: Place::Route,
                at: String::new(),
                kind: ProblemKind::UnknownOperation,
                detail: format!("the path takes {}", allowed.join(", ")),
            };
            return Err(violation(None, vec![problem]));
        }
        let mut first = None;
        for op in candidates {
            let problems = self.check_operation(op, &segments, request);
            if problems.is_empty() {
                return Ok(());
            }
            first.get_or_insert((op.label.clone(), problems));
        }
        let (label, problems) = first.expect("at least one candidate");
        Err(violation(Some(label), problems))
    }

    fn check_operation(
        &self,
        op: &Operation,
        segments: &[&str],
        request: &SpecRequest<'_>,
    ) -> Vec<Problem> {
        let document = &self.documents[&op.document];
        let operation = document.pointer(&op.pointer).unwrap_or(&Value::Null);
        let mut problems = Vec::new();
        let parameters = self.parameters(&op.document, document, &op.path_item, operation);

        // Path parameters, by their place in the template.
        let path_values: HashMap<&str, String> = op
            .segments
            .iter()
            .zip(segments)
            .filter_map(|(segment, given)| match segment {
                Segment::Param(name) => Some((name.as_str(), percent_decode(given))),
                Segment::Literal(_) => None,
            })
            .collect();
        for ((name, place), (doc, param)) in &parameters {
            if place != "path" {
                continue;
            }
            if let (Some(value), Some(schema)) =
                (path_values.get(name.as_str()), param.get("schema"))
            {
                self.check_raw(
                    doc,
                    schema,
                    std::slice::from_ref(value),
                    Place::Path,
                    name,
                    &mut problems,
                );
            }
        }

        // Query parameters: each declared one, and none undeclared.
        let mut query: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (key, value) in form_urlencoded::parse(request.query.as_bytes()) {
            query
                .entry(key.into_owned())
                .or_default()
                .push(value.into_owned());
        }
        for ((name, place), (doc, param)) in &parameters {
            if place != "query" {
                continue;
            }
            match (query.get(name), param.get("schema")) {
                (None, _) if is_true(param.get("required")) => problems.push(Problem {
                    place: Place::Query,
                    at: name.clone(),
                    kind: ProblemKind::Missing,
                    detail: "required, not given".into(),
                }),
                (Some(values), Some(schema)) => {
                    self.check_raw(doc, schema, values, Place::Query, name, &mut problems);
                }
                _ => {}
            }
        }
        for name in query.keys() {
            if !parameters.contains_key(&(name.clone(), "query".to_string())) {
                problems.push(Problem {
                    place: Place::Query,
                    at: name.clone(),
                    kind: ProblemKind::Unknown,
                    detail: "not a parameter of the operation".into(),
                });
            }
        }

        // Header parameters: required ones present, values of their type. Other headers
        // are not the spec's business (clients add their own).
        for ((name, place), (doc, param)) in &parameters {
            if place != "header" {
                continue;
            }
            let values: Vec<String> = request
                .headers
                .get_all(name.as_str())
                .iter()
                .filter_map(|v| v.to_str().ok().map(str::to_string))
                .collect();
            if values.is_empty() {
                if is_true(param.get("required")) {
                    problems.push(Problem {
                        place: Place::Header,
                        at: name.clone(),
                        kind: ProblemKind::Missing,
                        detail: "required, not given".into(),
                    });
                }
            } else if let Some(schema) = param.get("schema") {
                self.check_raw(doc, schema, &values, Place::Header, name, &mut problems);
            }
        }

        self.check_security(
            &op.document,
            document,
            operation,
            request.headers,
            &mut problems,
        );
        self.check_body(&op.document, operation, request, &mut problems);
        problems
    }

    /// The operation's parameters with its path item's, the operation's winning where both
    /// name one; `(name, in)` → (document, parameter object).
    fn parameters<'s>(
        &'s self,
        doc_name: &'s str,
        document: &'s Value,
        path_item: &str,
        operation: &'s Value,
    ) -> BTreeMap<(String, String), (&'s str, &'s Value)> {
        let mut parameters = BTreeMap::new();
        let item_params = document
            .pointer(path_item)
            .and_then(|item| item.get("parameters"));
        for list in [item_params, operation.get("parameters")]
            .into_iter()
            .flatten()
        {
            for param in list.as_array().into_iter().flatten() {
                let (doc, param) = self.resolve(doc_name, param);
                let name = param
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let place = param.get("in").and_then(Value::as_str).unwrap_or_default();
                // Header names are case-insensitive; HeaderMap looks them up in lower case.
                let name = if place == "header" {
                    name.to_ascii_lowercase()
                } else {
                    name.to_string()
                };
                parameters.insert((name, place.to_string()), (doc, param));
            }
        }
        parameters
    }

    /// Parameter values (strings on the wire) read as the schema's type, then checked.
    fn check_raw(
        &self,
        doc: &str,
        schema: &Value,
        values: &[String],
        place: Place,
        name: &str,
        problems: &mut Vec<Problem>,
    ) {
        let value = match self.schema_type(doc, schema).as_deref() {
            Some("array") => {
                let items = self
                    .resolve(doc, schema)
                    .1
                    .get("items")
                    .cloned()
                    .unwrap_or(Value::Null);
                // `form` style: repeated, or comma-separated when given once.
                let raw: Vec<String> = if values.len() == 1 {
                    values[0].split(',').map(str::to_string).collect()
                } else {
                    values.to_vec()
                };
                Value::Array(
                    raw.iter()
                        .map(|v| self.read_scalar(doc, &items, v))
                        .collect(),
                )
            }
            _ if values.len() > 1 => {
                problems.push(Problem {
                    place,
                    at: name.to_string(),
                    kind: ProblemKind::TooLarge,
                    detail: format!("given {} times, takes one value", values.len()),
                });
                return;
            }
            _ => self.read_scalar(doc, schema, &values[0]),
        };
        let mut checker = Checker::new(self, place, name);
        checker.check(doc, schema, &value, "");
        problems.extend(checker.into_problems());
    }

    /// A wire string as the schema's scalar type, or left a string when it is not one (so
    /// the check says so).
    fn read_scalar(&self, doc: &str, schema: &Value, raw: &str) -> Value {
        match self.schema_type(doc, schema).as_deref() {
            Some("integer") => raw
                .parse::<i64>()
                .map_or_else(|_| Value::String(raw.into()), Value::from),
            Some("number") => raw
                .parse::<f64>()
                .ok()
                .and_then(|n| serde_json::Number::from_f64(n).map(Value::Number))
                .unwrap_or_else(|| Value::String(raw.into())),
            Some("boolean") => match raw {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => Value::String(raw.into()),
            },
            _ => Value::String(raw.into()),
        }
    }

    /// The schema's `type`, through `$ref` and the first `allOf` that has one.
    fn schema_type(&self, doc: &str, schema: &Value) -> Option<String> {
        let (doc, schema) = self.resolve(doc, schema);
        if let Some(kind) = schema.get("type").and_then(Value::as_str) {
            return Some(kind.to_string());
        }
        schema
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find_map(|part| self.schema_type(doc, part))
    }

    /// The operation's security (or its document's): met if any one requirement is.
    fn check_security(
        &self,
        doc_name: &str,
        document: &Value,
        operation: &Value,
        headers: &HeaderMap,
        problems: &mut Vec<Problem>,
    ) {
        let Some(requirements) = operation
            .get("security")
            .or_else(|| document.get("security"))
            .and_then(Value::as_array)
        else {
            return;
        };
        if requirements.is_empty() {
            return;
        }
        let schemes = document.pointer("/components/securitySchemes");
        let met = |requirement: &Value| {
            requirement.as_object().is_some_and(|names| {
                names.keys().all(|name| {
                    let scheme = schemes
                        .and_then(|s| s.get(name))
                        .map(|s| self.resolve(doc_name, s).1);
                    scheme.is_some_and(|scheme| self.scheme_met(scheme, headers))
                })
            })
        };
        if !requirements.iter().any(met) {
            let names: Vec<String> = requirements
                .iter()
                .filter_map(Value::as_object)
                .map(|r| r.keys().cloned().collect::<Vec<_>>().join(" + "))
                .collect();
            problems.push(Problem {
                place: Place::Header,
                at: header::AUTHORIZATION.to_string(),
                kind: ProblemKind::Missing,
                detail: format!("no credentials of {}", names.join(" or ")),
            });
        }
    }

    fn scheme_met(&self, scheme: &Value, headers: &HeaderMap) -> bool {
        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        match scheme.get("type").and_then(Value::as_str) {
            Some("apiKey") => {
                let name = scheme
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                // Query and cookie keys are not used by the vendors emulated here.
                scheme.get("in").and_then(Value::as_str) == Some("header")
                    && headers.contains_key(name.to_ascii_lowercase().as_str())
            }
            Some("oauth2" | "openIdConnect") => {
                authorization.len() > self.oauth2_prefix.len()
                    && authorization.starts_with(self.oauth2_prefix)
            }
            Some("http") => {
                let wanted = scheme
                    .get("scheme")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                authorization.split_once(' ').is_some_and(|(given, rest)| {
                    given.eq_ignore_ascii_case(wanted) && !rest.is_empty()
                })
            }
            _ => false,
        }
    }

    /// The body against the operation's `requestBody`: present if required, of a media type
    /// it lists, and valid against that media type's schema.
    fn check_body(
        &self,
        doc_name: &str,
        operation: &Value,
        request: &SpecRequest<'_>,
        problems: &mut Vec<Problem>,
    ) {
        let problem = |kind: ProblemKind, detail: String| Problem {
            place: Place::Body,
            at: String::new(),
            kind,
            detail,
        };
        let empty = request.body.iter().all(u8::is_ascii_whitespace);
        let Some(request_body) = operation.get("requestBody") else {
            if !empty {
                problems.push(problem(
                    ProblemKind::ContentType,
                    "the operation takes no body".into(),
                ));
            }
            return;
        };
        let (doc, request_body) = self.resolve(doc_name, request_body);
        if empty {
            if is_true(request_body.get("required")) {
                problems.push(problem(ProblemKind::Missing, "required, not given".into()));
            }
            return;
        }
        let given = request
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let content = request_body.get("content").and_then(Value::as_object);
        let media = content.and_then(|content| {
            content
                .iter()
                .find(|(listed, _)| media_matches(listed, &given))
        });
        let Some((listed, media)) = media else {
            let listed: Vec<&str> = content
                .map(|c| c.keys().map(String::as_str).collect())
                .unwrap_or_default();
            problems.push(problem(
                ProblemKind::ContentType,
                format!("content type {given:?} is not one of {}", listed.join(", ")),
            ));
            return;
        };
        let Some(schema) = media.get("schema") else {
            return;
        };
        let value = if listed.ends_with("json") {
            match serde_json::from_slice::<Value>(request.body) {
                Ok(value) => value,
                Err(error) => {
                    problems.push(problem(
                        ProblemKind::Unreadable,
                        format!("not JSON: {error}"),
                    ));
                    return;
                }
            }
        } else if listed == "application/x-www-form-urlencoded" {
            self.read_form(doc, schema, request.body)
        } else {
            // Multipart and binary bodies are not sent by billsync; their schema is not read.
            return;
        };
        let mut checker = Checker::new(self, Place::Body, "");
        checker.check(doc, schema, &value, "");
        problems.extend(checker.into_problems());
    }

    /// A form body as an object, each value read as its property's type.
    fn read_form(&self, doc: &str, schema: &Value, body: &[u8]) -> Value {
        let (doc, schema) = self.resolve(doc, schema);
        let mut object = Map::new();
        for (key, value) in form_urlencoded::parse(body) {
            let property = schema
                .get("properties")
                .and_then(|p| p.get(key.as_ref()))
                .cloned()
                .unwrap_or(Value::Null);
            object.insert(key.into_owned(), self.read_scalar(doc, &property, &value));
        }
        Value::Object(object)
    }

    /// Follows `$ref`s (`#/pointer` in the same document, `./file#/pointer` in another) to
    /// the object they name, with the document it is in. An unresolvable reference is a bug
    /// of the vendored files.
    fn resolve<'s>(&'s self, doc: &'s str, mut value: &'s Value) -> (&'s str, &'s Value) {
        let mut doc = doc;
        // A reference chain longer than this is a cycle.
        for _ in 0..32 {
            let Some(reference) = value.get("$ref").and_then(Value::as_str) else {
                return (doc, value);
            };
            let (file, pointer) = reference.split_once('#').unwrap_or((reference, ""));
            if !file.is_empty() {
                let file = file.strip_prefix("./").unwrap_or(file);
                doc = self
                    .documents
                    .get_key_value(file)
                    .map(|(name, _)| name.as_str())
                    .unwrap_or_else(|| panic!("$ref {reference}: {file} is not vendored"));
            }
            value = self.documents[doc]
                .pointer(pointer)
                .unwrap_or_else(|| panic!("$ref {reference} names nothing in {doc}"));
        }
        panic!("$ref cycle at {doc}");
    }
}

#[cfg(test)]
impl ApiSpec {
    /// [`ApiSpec::check`] of `target` (`/path?query`) with these headers and body.
    pub(crate) fn check_target(
        &self,
        method: &str,
        target: &str,
        headers: &HeaderMap,
        body: &str,
    ) -> Result<(), SpecViolation> {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        self.check(&SpecRequest {
            method,
            path,
            query,
            headers,
            body: body.as_bytes(),
        })
    }
}

/// The problems of a refused request as `(place, at, kind)`, sorted, for tests to compare.
///
/// # Panics
/// If the request was not refused.
#[cfg(test)]
pub(crate) fn problems_of<T: fmt::Debug>(
    result: Result<T, SpecViolation>,
) -> Vec<(Place, String, ProblemKind)> {
    let mut found: Vec<_> = result
        .expect_err("the request is invalid")
        .problems
        .into_iter()
        .map(|p| (p.place, p.at, p.kind))
        .collect();
    found.sort();
    found
}

fn operations_of(document_name: &str, document: &Value) -> Vec<Operation> {
    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    let base = document
        .pointer("/servers/0/url")
        .and_then(Value::as_str)
        .map(server_path)
        .unwrap_or_default();
    let mut operations = Vec::new();
    let Some(paths) = document.get("paths").and_then(Value::as_object) else {
        return operations;
    };
    for (template, item) in paths {
        let full = format!("{base}{template}");
        let segments: Vec<Segment> = full
            .split('/')
            .skip(1)
            .map(
                |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) => Segment::Param(name.to_string()),
                    None => Segment::Literal(s.to_string()),
                },
            )
            .collect();
        let path_item = format!("/paths/{}", escape_pointer(template));
        for method in METHODS {
            let Some(operation) = item.get(method) else {
                continue;
            };
            let id = operation
                .get("operationId")
                .and_then(Value::as_str)
                .unwrap_or("-");
            operations.push(Operation {
                method: method.to_ascii_uppercase(),
                segments: segments.clone(),
                label: format!("{id} ({} {full})", method.to_ascii_uppercase()),
                document: document_name.to_string(),
                pointer: format!("{path_item}/{method}"),
                path_item: path_item.clone(),
            });
        }
    }
    operations
}

/// `https://api.pipedrive.com/api/v2` → `/api/v2`; `https://zohoapis.com` → ``.
fn server_path(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.find('/')
        .map(|i| rest[i..].trim_end_matches('/').to_string())
        .unwrap_or_default()
}

fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// For a template matching `path`, which of its segments are literal, left to right; none
/// if it does not match.
fn literal_mask(template: &[Segment], path: &[&str]) -> Option<Vec<bool>> {
    if template.len() != path.len() {
        return None;
    }
    template
        .iter()
        .zip(path)
        .map(|(segment, given)| match segment {
            Segment::Literal(literal) => (literal == given).then_some(true),
            Segment::Param(_) => (!given.is_empty()).then_some(false),
        })
        .collect()
}

fn media_matches(listed: &str, given: &str) -> bool {
    let listed = listed.to_ascii_lowercase();
    match listed.split_once('/') {
        _ if listed == given => true,
        Some(("*", "*")) => true,
        Some((kind, "*")) => given.split_once('/').is_some_and(|(g, _)| g == kind),
        _ => false,
    }
}

fn is_true(value: Option<&Value>) -> bool {
    value.and_then(Value::as_bool).unwrap_or(false)
}

fn percent_decode(segment: &str) -> String {
    form_urlencoded::parse(format!("x={}", segment.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}
