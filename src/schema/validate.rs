//! Checking bodies against a compiled schema, with ratcheting.

use std::collections::HashMap;
use std::fmt;

use serde_json::{Number, Value};

use super::datetime;
use super::document::{Attribute, AttributeType, Schema, SchemaError, UndeclaredPolicy};
use super::number::{as_integer, compare};
use super::pointer::{child, describe, quote};
use crate::body::{value_kind, Body};

/// One rule a body breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON Pointer of the offending value in the body, e.g. `/size` or
    /// `/tags/3`.
    pub path: String,
    /// The rule broken: `"type"`, `"format"` (datetime), `"enum"`,
    /// `"min"`, `"max"`, `"min_length"`, `"max_length"`, `"pattern"`,
    /// `"min_items"`, `"max_items"`, `"required"` or `"undeclared"`.
    pub rule: &'static str,
    /// What is wrong, for people.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} ({})", self.path, self.message, self.rule)
    }
}

/// All violations on one line, `; `-separated (for an error's message).
pub fn describe_violations(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A schema ready to validate bodies: built once per (collection, schema
/// revision) and then only read.
///
/// It is immutable, `Send + Sync`, and meant to be shared as
/// `Arc<CompiledSchema>` (see [`SchemaCache`](super::SchemaCache)).
#[derive(Debug, Clone)]
pub struct CompiledSchema {
    schema: Schema,
    by_name: HashMap<String, usize>,
}

impl CompiledSchema {
    /// Prepares a parsed schema for validation. Its patterns were compiled
    /// by [`Schema::parse`]; nothing is compiled again.
    pub fn new(schema: Schema) -> CompiledSchema {
        let by_name = schema
            .attributes
            .iter()
            .enumerate()
            .map(|(i, a)| (a.name.clone(), i))
            .collect();
        CompiledSchema { schema, by_name }
    }

    /// Parses a schema document and prepares it: [`Schema::parse`] then
    /// [`CompiledSchema::new`].
    ///
    /// # Errors
    /// [`SchemaError`] listing every problem of the document.
    pub fn compile(body: &Body) -> Result<CompiledSchema, SchemaError> {
        Schema::parse(body).map(CompiledSchema::new)
    }

    /// The parsed schema.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The declared attribute called `name`.
    pub fn attribute(&self, name: &str) -> Option<&Attribute> {
        self.by_name.get(name).map(|&i| &self.schema.attributes[i])
    }

    /// Checks a body about to be written.
    ///
    /// `old` is the current body for an update, `None` for a create.
    ///
    /// - On a create every rule is checked: types and bounds of every
    ///   declared attribute present, `required` attributes, and (under
    ///   [`UndeclaredPolicy::Reject`]) every undeclared attribute is refused
    ///   by name.
    /// - On an update only what the write changes is checked
    ///   (**ratcheting**), so documents written under an older, looser schema
    ///   stay patchable: an attribute whose value equals the old one is not
    ///   checked at all (nor is an unchanged undeclared one); a changed list
    ///   has its own rules (type, item counts) checked, but an item equal to
    ///   the old item at the same position is not; a removed attribute is
    ///   checked only against `required`, and a required attribute that was
    ///   already missing may stay missing.
    ///
    /// Values are compared as JSON values: `1` and `1.0` differ, mapping key
    /// order does not matter. A `null` is a value like any other and fails
    /// the type check of every declared type.
    ///
    /// # Errors
    /// Every violation found (never only the first), in schema order, then
    /// undeclared attributes in body order.
    pub fn validate(&self, new: &Body, old: Option<&Body>) -> Result<(), Vec<Violation>> {
        let mut out = Vec::new();
        for attribute in &self.schema.attributes {
            let name = attribute.name.as_str();
            let path = child("", name);
            let before = old.and_then(|o| o.get(name));
            match new.get(name) {
                Some(value) if before == Some(value) => {}
                Some(value) => attribute.check(value, before, &path, &mut out),
                None if !attribute.required => {}
                None => match old {
                    None => out.push(Violation {
                        path,
                        rule: "required",
                        message: format!("required attribute {} is missing", quote(name)),
                    }),
                    Some(_) if before.is_some() => out.push(Violation {
                        path,
                        rule: "required",
                        message: format!("required attribute {} cannot be removed", quote(name)),
                    }),
                    Some(_) => {}
                },
            }
        }
        if self.schema.undeclared == UndeclaredPolicy::Reject {
            for (name, value) in new {
                if self.by_name.contains_key(name) {
                    continue;
                }
                if old.and_then(|o| o.get(name)) == Some(value) {
                    continue;
                }
                out.push(Violation {
                    path: child("", name),
                    rule: "undeclared",
                    message: format!(
                        "attribute {} is not declared by the schema, which rejects undeclared attributes",
                        quote(name)
                    ),
                });
            }
        }
        if out.is_empty() {
            Ok(())
        } else {
            Err(out)
        }
    }

    /// Fills in every declared attribute that has a default and is missing
    /// from `body`, appended in schema order. Meant for creates only: an
    /// update keeps what its writer sent. Present values, `null` included,
    /// are left alone.
    pub fn apply_defaults(&self, body: &mut Body) {
        for attribute in &self.schema.attributes {
            if let Some(default) = &attribute.default {
                if !body.contains_key(&attribute.name) {
                    body.insert(attribute.name.clone(), default.clone());
                }
            }
        }
    }

    /// Whether [`apply_defaults`](Self::apply_defaults) would add anything
    /// to `body`: a shared body is copied only when it would.
    pub fn lacks_defaults(&self, body: &Body) -> bool {
        self.schema
            .attributes
            .iter()
            .any(|a| a.default.is_some() && !body.contains_key(&a.name))
    }

    /// The names of the body's attributes that the schema does not declare,
    /// in body order, whatever the [`UndeclaredPolicy`] (for migrations:
    /// which documents would a stricter schema refuse?).
    pub fn undeclared_attributes(&self, body: &Body) -> Vec<String> {
        body.keys()
            .filter(|k| !self.by_name.contains_key(k.as_str()))
            .cloned()
            .collect()
    }
}

impl Attribute {
    /// Checks one value of this attribute at `path`; `old` is the previous
    /// value, whose unchanged list items are not checked again.
    pub(super) fn check(
        &self,
        value: &Value,
        old: Option<&Value>,
        path: &str,
        out: &mut Vec<Violation>,
    ) {
        match self.kind {
            AttributeType::String => match value {
                Value::String(s) => self.check_string(s, path, out),
                other => out.push(wrong_type(path, "a string", other)),
            },
            AttributeType::Integer => match value {
                Value::Number(n) if as_integer(n).is_some() => self.check_number(n, path, out),
                other => out.push(wrong_type(path, "an integer", other)),
            },
            AttributeType::Float => match value {
                Value::Number(n) => self.check_number(n, path, out),
                other => out.push(wrong_type(path, "a number", other)),
            },
            AttributeType::Boolean => {
                if !value.is_boolean() {
                    out.push(wrong_type(path, "true or false", value));
                }
            }
            AttributeType::Datetime => match value {
                Value::String(s) => {
                    if let Err(reason) = datetime::check(s) {
                        out.push(Violation {
                            path: path.to_owned(),
                            rule: "format",
                            message: format!("{} is not an RFC 3339 date-time: {reason}", quote(s)),
                        });
                    }
                }
                other => out.push(wrong_type(path, "an RFC 3339 date-time string", other)),
            },
            AttributeType::Enum => match value {
                Value::String(s) if self.values.iter().any(|v| v == s) => {}
                Value::String(s) => out.push(Violation {
                    path: path.to_owned(),
                    rule: "enum",
                    message: format!(
                        "{} is not one of {}",
                        quote(s),
                        self.values
                            .iter()
                            .map(|v| quote(v))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                }),
                other => out.push(wrong_type(path, "one of the enum's strings", other)),
            },
            AttributeType::ListOfStrings
            | AttributeType::ListOfIntegers
            | AttributeType::ListOfAny => match value {
                Value::Array(items) => {
                    let old_items = old.and_then(Value::as_array);
                    self.check_list(items, old_items, path, out);
                }
                other => out.push(wrong_type(path, "a list", other)),
            },
            AttributeType::Dict => {
                if !value.is_object() {
                    out.push(wrong_type(path, "a mapping", value));
                }
            }
        }
    }

    fn check_list(
        &self,
        items: &[Value],
        old_items: Option<&Vec<Value>>,
        path: &str,
        out: &mut Vec<Violation>,
    ) {
        let count = u64::try_from(items.len()).unwrap_or(u64::MAX);
        if let Some(min) = self.min_items.filter(|&m| count < m) {
            out.push(Violation {
                path: path.to_owned(),
                rule: "min_items",
                message: format!("has {count} items, fewer than min_items {min}"),
            });
        }
        if let Some(max) = self.max_items.filter(|&m| count > m) {
            out.push(Violation {
                path: path.to_owned(),
                rule: "max_items",
                message: format!("has {count} items, more than max_items {max}"),
            });
        }
        for (i, item) in items.iter().enumerate() {
            if old_items.and_then(|o| o.get(i)) == Some(item) {
                continue;
            }
            let item_path = child(path, &i.to_string());
            match (self.kind, item) {
                (AttributeType::ListOfStrings, Value::String(s)) => {
                    self.check_string(s, &item_path, out);
                }
                (AttributeType::ListOfStrings, other) => {
                    out.push(wrong_type(&item_path, "a string", other));
                }
                (AttributeType::ListOfIntegers, Value::Number(n)) if as_integer(n).is_some() => {
                    self.check_number(n, &item_path, out);
                }
                (AttributeType::ListOfIntegers, other) => {
                    out.push(wrong_type(&item_path, "an integer", other));
                }
                _ => {}
            }
        }
    }

    fn check_string(&self, s: &str, path: &str, out: &mut Vec<Violation>) {
        if self.min_length.is_some() || self.max_length.is_some() {
            let chars = u64::try_from(s.chars().count()).unwrap_or(u64::MAX);
            if let Some(min) = self.min_length.filter(|&m| chars < m) {
                out.push(Violation {
                    path: path.to_owned(),
                    rule: "min_length",
                    message: format!("is {chars} characters long, shorter than min_length {min}"),
                });
            }
            if let Some(max) = self.max_length.filter(|&m| chars > m) {
                out.push(Violation {
                    path: path.to_owned(),
                    rule: "max_length",
                    message: format!("is {chars} characters long, longer than max_length {max}"),
                });
            }
        }
        if let Some(pattern) = &self.pattern {
            if !pattern.is_match(s) {
                out.push(Violation {
                    path: path.to_owned(),
                    rule: "pattern",
                    message: format!(
                        "{} does not match the pattern {}",
                        quote(s),
                        quote(pattern.as_str())
                    ),
                });
            }
        }
    }

    fn check_number(&self, n: &Number, path: &str, out: &mut Vec<Violation>) {
        use std::cmp::Ordering::{Greater, Less};
        if let Some(min) = self.min.as_ref().filter(|m| compare(n, m) == Some(Less)) {
            out.push(Violation {
                path: path.to_owned(),
                rule: "min",
                message: format!("{n} is less than the minimum {min}"),
            });
        }
        if let Some(max) = self.max.as_ref().filter(|m| compare(n, m) == Some(Greater)) {
            out.push(Violation {
                path: path.to_owned(),
                rule: "max",
                message: format!("{n} is greater than the maximum {max}"),
            });
        }
    }
}

fn wrong_type(path: &str, expected: &str, found: &Value) -> Violation {
    let found = match found {
        Value::Number(n) if as_integer(n).is_none() => format!("the float {n}"),
        Value::Array(_) | Value::Object(_) | Value::Null => value_kind(found).to_owned(),
        other => format!("{} {}", value_kind(other), describe(other)),
    };
    Violation {
        path: path.to_owned(),
        rule: "type",
        message: format!("expected {expected}, found {found}"),
    }
}
