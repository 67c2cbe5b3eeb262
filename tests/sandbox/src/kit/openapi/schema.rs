//! A value against an OpenAPI 3.0 schema object: `$ref` (across documents), `allOf`,
//! `anyOf`, `oneOf`, `nullable`, `type`, `enum`, `required`, `properties`,
//! `additionalProperties`, `items`, `minItems`/`maxItems`, `minLength`/`maxLength`,
//! `minimum`/`maximum` (with 3.0's boolean `exclusive*`) and the `date` / `date-time`
//! formats. Not checked, as no operation the emulators check uses them: `pattern`, `not`,
//! `multipleOf`, `uniqueItems`, `min`/`maxProperties`, `discriminator`.

use serde_json::Value;

use super::{ApiSpec, Place, Problem, ProblemKind};

/// Collects the problems of one value (a parameter or a body) against its schema.
pub(super) struct Checker<'s> {
    spec: &'s ApiSpec,
    place: Place,
    /// The parameter's name; empty for a body, whose problems are at JSON pointers.
    name: &'s str,
    problems: Vec<Problem>,
}

impl<'s> Checker<'s> {
    pub(super) fn new(spec: &'s ApiSpec, place: Place, name: &'s str) -> Self {
        Self {
            spec,
            place,
            name,
            problems: Vec::new(),
        }
    }

    pub(super) fn into_problems(self) -> Vec<Problem> {
        self.problems
    }

    fn report(&mut self, at: &str, kind: ProblemKind, detail: String) {
        let at = if self.name.is_empty() {
            at.to_string()
        } else {
            format!("{}{at}", self.name)
        };
        self.problems.push(Problem {
            place: self.place,
            at,
            kind,
            detail,
        });
    }

    /// Whether `value` passes `schema`, without reporting (for `anyOf` / `oneOf`).
    fn passes(&self, doc: &str, schema: &Value, value: &Value) -> bool {
        let mut probe = Checker::new(self.spec, self.place, self.name);
        probe.check(doc, schema, value, "");
        probe.problems.is_empty()
    }

    /// Checks `value` (at JSON pointer `at`) against `schema` of document `doc`.
    pub(super) fn check(&mut self, doc: &str, schema: &Value, value: &Value, at: &str) {
        let (doc, schema) = self.spec.resolve(doc, schema);
        let Some(schema) = schema.as_object() else {
            return; // `true`, `{}` or a missing schema: anything goes.
        };
        if value.is_null() && schema.get("nullable").and_then(Value::as_bool) == Some(true) {
            return;
        }
        for part in schema
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.check(doc, part, value, at);
        }
        if let Some(options) = schema.get("anyOf").and_then(Value::as_array) {
            if !options.iter().any(|option| self.passes(doc, option, value)) {
                self.report(
                    at,
                    ProblemKind::NoMatch,
                    format!("matches none of the {} anyOf schemas", options.len()),
                );
            }
        }
        if let Some(options) = schema.get("oneOf").and_then(Value::as_array) {
            let matched = options
                .iter()
                .filter(|option| self.passes(doc, option, value))
                .count();
            if matched != 1 {
                self.report(
                    at,
                    ProblemKind::NoMatch,
                    format!("matches {matched} of the oneOf schemas, not exactly one"),
                );
            }
        }
        if let Some(kind) = schema.get("type").and_then(Value::as_str) {
            if !is_of_type(kind, value) {
                self.report(
                    at,
                    ProblemKind::WrongType,
                    format!("expected {kind}, got {}", describe(value)),
                );
                return;
            }
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
            if !allowed.iter().any(|a| same_value(a, value)) {
                let listed: Vec<String> = allowed.iter().map(Value::to_string).collect();
                self.report(
                    at,
                    ProblemKind::NotInEnum,
                    format!("{value} is not one of {}", listed.join(", ")),
                );
            }
        }
        match value {
            Value::String(text) => self.check_string(schema, text, at),
            Value::Number(number) => self.check_number(schema, number.as_f64(), at),
            Value::Array(items) => self.check_array(doc, schema, items, at),
            Value::Object(object) => self.check_object(doc, schema, object, at),
            Value::Null | Value::Bool(_) => {}
        }
    }

    fn check_string(&mut self, schema: &serde_json::Map<String, Value>, text: &str, at: &str) {
        let length = text.chars().count() as u64;
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
            if length > max {
                self.report(
                    at,
                    ProblemKind::TooLarge,
                    format!("{length} characters, at most {max}"),
                );
            }
        }
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
            if length < min {
                self.report(
                    at,
                    ProblemKind::TooSmall,
                    format!("{length} characters, at least {min}"),
                );
            }
        }
        let well_formed = match schema.get("format").and_then(Value::as_str) {
            Some("date") => chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok(),
            Some("date-time") => chrono::DateTime::parse_from_rfc3339(text).is_ok(),
            _ => true,
        };
        if !well_formed {
            let format = schema
                .get("format")
                .and_then(Value::as_str)
                .unwrap_or_default();
            self.report(
                at,
                ProblemKind::BadFormat,
                format!("{text:?} is not a {format}"),
            );
        }
    }

    fn check_number(
        &mut self,
        schema: &serde_json::Map<String, Value>,
        number: Option<f64>,
        at: &str,
    ) {
        let Some(number) = number else {
            return;
        };
        let exclusive = |key: &str| schema.get(key).and_then(Value::as_bool) == Some(true);
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
            if number > max || (exclusive("exclusiveMaximum") && number >= max) {
                self.report(
                    at,
                    ProblemKind::TooLarge,
                    format!("{number} is over the maximum {max}"),
                );
            }
        }
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
            if number < min || (exclusive("exclusiveMinimum") && number <= min) {
                self.report(
                    at,
                    ProblemKind::TooSmall,
                    format!("{number} is under the minimum {min}"),
                );
            }
        }
    }

    fn check_array(
        &mut self,
        doc: &str,
        schema: &serde_json::Map<String, Value>,
        items: &[Value],
        at: &str,
    ) {
        let count = items.len() as u64;
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
            if count > max {
                self.report(
                    at,
                    ProblemKind::TooLarge,
                    format!("{count} items, at most {max}"),
                );
            }
        }
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
            if count < min {
                self.report(
                    at,
                    ProblemKind::TooSmall,
                    format!("{count} items, at least {min}"),
                );
            }
        }
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                self.check(doc, item_schema, item, &format!("{at}/{i}"));
            }
        }
    }

    fn check_object(
        &mut self,
        doc: &str,
        schema: &serde_json::Map<String, Value>,
        object: &serde_json::Map<String, Value>,
        at: &str,
    ) {
        let properties = schema.get("properties").and_then(Value::as_object);
        for required in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(name) = required.as_str() else {
                continue;
            };
            if !object.contains_key(name) {
                let pointer = format!("{at}/{}", name.replace('~', "~0").replace('/', "~1"));
                self.report(&pointer, ProblemKind::Missing, "required, not given".into());
            }
        }
        for (name, value) in object {
            let pointer = format!("{at}/{}", name.replace('~', "~0").replace('/', "~1"));
            match (
                properties.and_then(|p| p.get(name)),
                schema.get("additionalProperties"),
            ) {
                (Some(property), _) => self.check(doc, property, value, &pointer),
                (None, Some(Value::Bool(false))) => self.report(
                    &pointer,
                    ProblemKind::Unknown,
                    "not a property of the schema, which allows no others".into(),
                ),
                (None, Some(extra @ Value::Object(_))) => self.check(doc, extra, value, &pointer),
                (None, _) => {}
            }
        }
    }
}

fn is_of_type(kind: &str, value: &Value) -> bool {
    match kind {
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "number" => value.is_number(),
        // 3 and 3.0 are both integers (JSON Schema since draft 6).
        "integer" => {
            value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|n| n.fract() == 0.0)
        }
        _ => true,
    }
}

/// Enum members compare as JSON values, numbers by value (`1` is `1.0`).
fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn describe(value: &Value) -> String {
    let kind = match value {
        Value::Null => return "null".into(),
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => return "an array".into(),
        Value::Object(_) => return "an object".into(),
    };
    let shown = value.to_string();
    if shown.chars().count() > 40 {
        format!("{kind} {}…", shown.chars().take(40).collect::<String>())
    } else {
        format!("{kind} {shown}")
    }
}
