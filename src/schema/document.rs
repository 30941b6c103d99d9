//! The schema document: its parsed form and the checks on the document
//! itself.

use std::collections::HashMap;
use std::fmt;

use regex::{Regex, RegexBuilder};
use serde_json::{Number, Value};

use super::number::{as_integer, compare};
use super::pointer::{describe, push_token};
use crate::body::{value_kind, Body};
use crate::error::NameKind;
use crate::key::validate_name;

/// Longest `pattern` accepted, in bytes. Together with the compiled-size
/// limits below it keeps a hostile schema from costing much memory; the
/// regex engine itself matches in linear time, so no pattern can make
/// validation slow.
pub const MAX_PATTERN_LEN: usize = 1024;
/// Largest compiled program of one pattern, in bytes.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;
/// Largest lazy DFA cache of one pattern, in bytes.
const PATTERN_DFA_SIZE_LIMIT: usize = 1 << 20;
/// Deepest nesting of groups and repetitions in a pattern.
const PATTERN_NEST_LIMIT: u32 = 64;

/// The type of an attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AttributeType {
    /// A string.
    String,
    /// An integer (i64 or u64). A number written with a fraction or an
    /// exponent, such as `1.0`, is a float and is refused.
    Integer,
    /// Any finite number; integers are accepted as floats.
    Float,
    /// `true` or `false`.
    Boolean,
    /// An RFC 3339 date-time string (see the module documentation).
    Datetime,
    /// One of the strings listed in `values`.
    Enum,
    /// A sequence of strings.
    ListOfStrings,
    /// A sequence of integers.
    ListOfIntegers,
    /// A sequence of any values.
    ListOfAny,
    /// A mapping.
    Dict,
}

impl AttributeType {
    /// Every type, in documentation order.
    pub const ALL: [AttributeType; 10] = [
        AttributeType::String,
        AttributeType::Integer,
        AttributeType::Float,
        AttributeType::Boolean,
        AttributeType::Datetime,
        AttributeType::Enum,
        AttributeType::ListOfStrings,
        AttributeType::ListOfIntegers,
        AttributeType::ListOfAny,
        AttributeType::Dict,
    ];

    /// The name used in schema documents (`"list_of_strings"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            AttributeType::String => "string",
            AttributeType::Integer => "integer",
            AttributeType::Float => "float",
            AttributeType::Boolean => "boolean",
            AttributeType::Datetime => "datetime",
            AttributeType::Enum => "enum",
            AttributeType::ListOfStrings => "list_of_strings",
            AttributeType::ListOfIntegers => "list_of_integers",
            AttributeType::ListOfAny => "list_of_any",
            AttributeType::Dict => "dict",
        }
    }

    /// The type named `name` in a schema document.
    pub fn from_name(name: &str) -> Option<AttributeType> {
        AttributeType::ALL.into_iter().find(|t| t.as_str() == name)
    }

    fn is_list(self) -> bool {
        matches!(
            self,
            AttributeType::ListOfStrings | AttributeType::ListOfIntegers | AttributeType::ListOfAny
        )
    }

    /// Whether `min`/`max` apply (to the value, or to each item of a list).
    fn takes_numeric_bounds(self) -> bool {
        matches!(
            self,
            AttributeType::Integer | AttributeType::Float | AttributeType::ListOfIntegers
        )
    }

    /// Whether `min_length`/`max_length`/`pattern` apply (to the value, or
    /// to each item of a list).
    fn takes_string_rules(self) -> bool {
        matches!(self, AttributeType::String | AttributeType::ListOfStrings)
    }

    fn integer_bounds(self) -> bool {
        matches!(self, AttributeType::Integer | AttributeType::ListOfIntegers)
    }
}

impl fmt::Display for AttributeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happens to an attribute a body holds but the schema does not
/// declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UndeclaredPolicy {
    /// Refuse the write, naming the attribute (the default).
    #[default]
    Reject,
    /// Keep it, unchecked.
    Allow,
}

/// One declared attribute, checked for consistency by [`Schema::parse`].
#[derive(Debug, Clone)]
pub struct Attribute {
    pub(super) name: String,
    pub(super) kind: AttributeType,
    pub(super) description: Option<String>,
    pub(super) required: bool,
    pub(super) default: Option<Value>,
    pub(super) min: Option<Number>,
    pub(super) max: Option<Number>,
    pub(super) min_length: Option<u64>,
    pub(super) max_length: Option<u64>,
    pub(super) min_items: Option<u64>,
    pub(super) max_items: Option<u64>,
    pub(super) pattern: Option<Regex>,
    pub(super) values: Vec<String>,
}

impl Attribute {
    /// The attribute's name: a key-like name, unique in its schema.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its type.
    pub fn kind(&self) -> AttributeType {
        self.kind
    }

    /// Its description, if the schema gives one.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// Whether a create must hold it and an update may not remove it.
    pub fn required(&self) -> bool {
        self.required
    }

    /// Its default, which satisfies the attribute's own rules.
    pub fn default(&self) -> Option<&Value> {
        self.default.as_ref()
    }

    /// The allowed values of an enum (empty for other types).
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// The source of its `pattern`, if any.
    pub fn pattern(&self) -> Option<&str> {
        self.pattern.as_ref().map(Regex::as_str)
    }
}

/// A parsed schema document, every part of it checked: see
/// [`Schema::parse`]. Patterns are compiled here once, so building a
/// [`CompiledSchema`](super::CompiledSchema) from it compiles nothing again.
#[derive(Debug, Clone)]
pub struct Schema {
    pub(super) description: Option<String>,
    pub(super) undeclared: UndeclaredPolicy,
    pub(super) attributes: Vec<Attribute>,
}

/// One problem in a schema document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaProblem {
    /// JSON Pointer into the schema document, e.g. `/attributes/2/default`
    /// (empty for the document as a whole).
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

impl fmt::Display for SchemaProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = if self.path.is_empty() {
            "/"
        } else {
            &self.path
        };
        write!(f, "{path}: {}", self.message)
    }
}

/// A schema document that is not valid, with **every** problem found (never
/// only the first).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid schema document: {}", join(.problems))]
pub struct SchemaError {
    /// The problems, in document order; never empty.
    pub problems: Vec<SchemaProblem>,
}

fn join<T: fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

const TOP_FIELDS: [&str; 3] = ["description", "undeclared", "attributes"];
const ATTRIBUTE_FIELDS: [&str; 13] = [
    "name",
    "type",
    "description",
    "required",
    "default",
    "min",
    "max",
    "min_length",
    "max_length",
    "min_items",
    "max_items",
    "pattern",
    "values",
];

impl Schema {
    /// Parses and checks a schema document (the body of
    /// `_schema/<collection>`).
    ///
    /// # Errors
    /// [`SchemaError`] listing every problem, each with the JSON Pointer of
    /// the offending part: unknown fields, unknown types, bounds that do not
    /// apply to the type or are not non-negative integers (lengths, item
    /// counts), `min` above `max`, an enum without `values` or with
    /// duplicates, a `pattern` that is too long or does not compile, an
    /// invalid or duplicate attribute name, and a `default` that breaks its
    /// own attribute's rules.
    pub fn parse(body: &Body) -> Result<Schema, SchemaError> {
        let mut problems = Problems::default();
        let mut description = None;
        let mut undeclared = UndeclaredPolicy::Reject;
        for (field, value) in body {
            let path = pointer(&["", field]);
            match field.as_str() {
                "description" => description = problems.string(&path, value),
                "undeclared" => match value.as_str() {
                    Some("reject") => undeclared = UndeclaredPolicy::Reject,
                    Some("allow") => undeclared = UndeclaredPolicy::Allow,
                    _ => problems.add(&path, "must be `reject` or `allow`"),
                },
                "attributes" => {}
                _ => problems.unknown_field(&path, &TOP_FIELDS),
            }
        }
        let mut attributes = Vec::new();
        match body.get("attributes") {
            None => problems.add("", "`attributes` is missing (it may be an empty list)"),
            Some(Value::Array(items)) => {
                let mut seen: HashMap<&str, usize> = HashMap::new();
                for (i, item) in items.iter().enumerate() {
                    let path = format!("/attributes/{i}");
                    if let Some(Value::String(name)) = item.get("name") {
                        if let Some(&first) = seen.get(name.as_str()) {
                            problems.add(
                                &format!("{path}/name"),
                                format!("duplicate attribute name {name:?} (first at /attributes/{first})"),
                            );
                        } else {
                            seen.insert(name, i);
                        }
                    }
                    if let Some(attribute) = parse_attribute(&path, item, &mut problems) {
                        attributes.push(attribute);
                    }
                }
            }
            Some(other) => problems.add(
                "/attributes",
                format!("must be a sequence of mappings, not {}", value_kind(other)),
            ),
        }
        problems.finish(Schema {
            description,
            undeclared,
            attributes,
        })
    }

    /// The schema's description, if it has one.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// What happens to undeclared attributes.
    pub fn undeclared(&self) -> UndeclaredPolicy {
        self.undeclared
    }

    /// The declared attributes, in document order.
    pub fn attributes(&self) -> &[Attribute] {
        &self.attributes
    }
}

/// Parses one attribute; `None` when it has any problem (all of which are
/// recorded).
fn parse_attribute(path: &str, item: &Value, problems: &mut Problems) -> Option<Attribute> {
    let Value::Object(fields) = item else {
        problems.add(
            path,
            format!("an attribute must be a mapping, not {}", value_kind(item)),
        );
        return None;
    };
    let before = problems.len();
    let at = |field: &str| format!("{path}/{field}");

    let name = match fields.get("name") {
        None => {
            problems.add(path, "`name` is missing");
            None
        }
        Some(Value::String(name)) => match validate_name(NameKind::Name, name) {
            Ok(()) => Some(name.clone()),
            Err(_) => {
                problems.add(
                    &at("name"),
                    format!(
                        "{name:?} is not a valid attribute name (1-128 ASCII letters, digits, `_`, `.`, `-`, starting with a letter or digit, not ending in `.`)"
                    ),
                );
                None
            }
        },
        Some(other) => {
            problems.add(
                &at("name"),
                format!("must be a string, not {}", value_kind(other)),
            );
            None
        }
    };
    let kind = match fields.get("type") {
        None => {
            problems.add(path, "`type` is missing");
            None
        }
        Some(Value::String(t)) => {
            let kind = AttributeType::from_name(t);
            if kind.is_none() {
                let known: Vec<&str> = AttributeType::ALL.iter().map(|t| t.as_str()).collect();
                problems.add(
                    &at("type"),
                    format!("unknown type {t:?}; expected one of {}", known.join(", ")),
                );
            }
            kind
        }
        Some(other) => {
            problems.add(
                &at("type"),
                format!("must be a string, not {}", value_kind(other)),
            );
            None
        }
    };

    let mut attribute = Attribute {
        name: name.unwrap_or_default(),
        kind: kind.unwrap_or(AttributeType::Dict),
        description: None,
        required: false,
        default: None,
        min: None,
        max: None,
        min_length: None,
        max_length: None,
        min_items: None,
        max_items: None,
        pattern: None,
        values: Vec::new(),
    };
    // Whether a rule applies can only be judged once the type is known.
    let applies = |problems: &mut Problems, field: &str, ok: fn(AttributeType) -> bool| match kind {
        Some(k) if !ok(k) => {
            problems.add(&at(field), format!("`{field}` does not apply to type {k}"));
            false
        }
        _ => true,
    };
    for (field, value) in fields {
        let path = at(field);
        match field.as_str() {
            "name" | "type" => {}
            "description" => attribute.description = problems.string(&path, value),
            "required" => match value {
                Value::Bool(b) => attribute.required = *b,
                other => problems.add(
                    &path,
                    format!("must be true or false, not {}", value_kind(other)),
                ),
            },
            "default" => attribute.default = Some(value.clone()),
            "min" | "max" => {
                if applies(problems, field, AttributeType::takes_numeric_bounds) {
                    let bound = numeric_bound(&path, value, kind, problems);
                    if field == "min" {
                        attribute.min = bound;
                    } else {
                        attribute.max = bound;
                    }
                }
            }
            "min_length" | "max_length" | "pattern" => {
                if applies(problems, field, AttributeType::takes_string_rules) {
                    match field.as_str() {
                        "min_length" => attribute.min_length = problems.count(&path, value),
                        "max_length" => attribute.max_length = problems.count(&path, value),
                        _ => attribute.pattern = compile_pattern(&path, value, problems),
                    }
                }
            }
            "min_items" | "max_items" => {
                if applies(problems, field, AttributeType::is_list) {
                    let count = problems.count(&path, value);
                    if field == "min_items" {
                        attribute.min_items = count;
                    } else {
                        attribute.max_items = count;
                    }
                }
            }
            "values" => {
                if applies(problems, field, |k| k == AttributeType::Enum) {
                    attribute.values = enum_values(&path, value, problems);
                }
            }
            _ => problems.unknown_field(&path, &ATTRIBUTE_FIELDS),
        }
    }
    if kind == Some(AttributeType::Enum) && !fields.contains_key("values") {
        problems.add(path, "an enum needs `values`, a list of strings");
    }
    if let (Some(min), Some(max)) = (&attribute.min, &attribute.max) {
        if compare(min, max) == Some(std::cmp::Ordering::Greater) {
            problems.add(&at("min"), format!("min {min} is greater than max {max}"));
        }
    }
    for (lo, hi, field) in [
        (attribute.min_length, attribute.max_length, "min_length"),
        (attribute.min_items, attribute.max_items, "min_items"),
    ] {
        if let (Some(lo), Some(hi)) = (lo, hi) {
            if lo > hi {
                let other = field.replace("min", "max");
                problems.add(
                    &at(field),
                    format!("{field} {lo} is greater than {other} {hi}"),
                );
            }
        }
    }
    if problems.len() != before {
        return None;
    }
    // The default is judged by the very rules it must satisfy, once they
    // are known to be consistent.
    if let Some(default) = &attribute.default {
        let mut violations = Vec::new();
        attribute.check(default, None, &at("default"), &mut violations);
        for v in violations {
            problems.add(
                &v.path,
                format!(
                    "the default breaks its own attribute's {} rule: {}",
                    v.rule, v.message
                ),
            );
        }
        if problems.len() != before {
            return None;
        }
    }
    Some(attribute)
}

fn numeric_bound(
    path: &str,
    value: &Value,
    kind: Option<AttributeType>,
    problems: &mut Problems,
) -> Option<Number> {
    let Value::Number(n) = value else {
        problems.add(path, format!("must be a number, not {}", value_kind(value)));
        return None;
    };
    match kind {
        Some(k) if k.integer_bounds() && as_integer(n).is_none() => {
            problems.add(path, format!("must be an integer for type {k}, not {n}"));
            None
        }
        _ => Some(n.clone()),
    }
}

fn compile_pattern(path: &str, value: &Value, problems: &mut Problems) -> Option<Regex> {
    let Value::String(source) = value else {
        problems.add(path, format!("must be a string, not {}", value_kind(value)));
        return None;
    };
    if source.len() > MAX_PATTERN_LEN {
        problems.add(
            path,
            format!(
                "is {} bytes long; a pattern may have at most {MAX_PATTERN_LEN}",
                source.len()
            ),
        );
        return None;
    }
    match RegexBuilder::new(source)
        .size_limit(PATTERN_SIZE_LIMIT)
        .dfa_size_limit(PATTERN_DFA_SIZE_LIMIT)
        .nest_limit(PATTERN_NEST_LIMIT)
        .build()
    {
        Ok(regex) => Some(regex),
        Err(e) => {
            // The engine's message spans several lines with a caret diagram;
            // one line reads better inside a list of problems.
            let message = e
                .to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            problems.add(path, format!("the pattern does not compile: {message}"));
            None
        }
    }
}

fn enum_values(path: &str, value: &Value, problems: &mut Problems) -> Vec<String> {
    let Value::Array(items) = value else {
        problems.add(
            path,
            format!("must be a list of strings, not {}", value_kind(value)),
        );
        return Vec::new();
    };
    if items.is_empty() {
        problems.add(path, "an enum needs at least one value");
    }
    let mut values: Vec<String> = Vec::with_capacity(items.len());
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        match item {
            Value::String(s) => {
                if let Some(&first) = seen.get(s.as_str()) {
                    problems.add(
                        &format!("{path}/{i}"),
                        format!("duplicate value {s:?} (first at {path}/{first})"),
                    );
                } else {
                    seen.insert(s, i);
                }
                values.push(s.clone());
            }
            other => problems.add(
                &format!("{path}/{i}"),
                format!("an enum value must be a string, not {}", value_kind(other)),
            ),
        }
    }
    values
}

/// JSON Pointer from unescaped tokens; the first token is the (empty) root.
fn pointer(tokens: &[&str]) -> String {
    let mut out = String::new();
    for token in tokens.iter().skip(1) {
        push_token(&mut out, token);
    }
    out
}

#[derive(Default)]
struct Problems(Vec<SchemaProblem>);

impl Problems {
    fn add(&mut self, path: &str, message: impl Into<String>) {
        self.0.push(SchemaProblem {
            path: path.to_owned(),
            message: message.into(),
        });
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn unknown_field(&mut self, path: &str, known: &[&str]) {
        self.add(
            path,
            format!("unknown field; expected one of {}", known.join(", ")),
        );
    }

    fn string(&mut self, path: &str, value: &Value) -> Option<String> {
        match value {
            Value::String(s) => Some(s.clone()),
            other => {
                self.add(path, format!("must be a string, not {}", value_kind(other)));
                None
            }
        }
    }

    fn count(&mut self, path: &str, value: &Value) -> Option<u64> {
        match value.as_u64() {
            Some(n) => Some(n),
            None => {
                self.add(
                    path,
                    format!("must be a non-negative integer, not {}", describe(value)),
                );
                None
            }
        }
    }

    fn finish<T>(self, value: T) -> Result<T, SchemaError> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(SchemaError { problems: self.0 })
        }
    }
}
