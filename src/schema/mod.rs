//! Live schemas: the `_schema/<collection>` document format, its checks,
//! validation of bodies with ratcheting, defaults, and the validator cache.
//!
//! This module is pure: it reads no store. The engine reads the schema
//! document, gets the compiled validator for that (collection, schema
//! revision) from a [`SchemaCache`], validates the body, and commits guarded
//! on the schema revision.
//!
//! # The schema document
//!
//! A collection's schema is the body of the document `_schema/<collection>`.
//! In YAML:
//!
//! ```yaml
//! description: Custom attributes of assets   # optional
//! undeclared: reject        # or allow; default reject
//! attributes:
//!   - name: owner
//!     type: string
//!     description: Who owns it
//!     min_length: 1          # in characters
//!     max_length: 64
//!     pattern: "^[a-z]+$"    # unanchored unless anchored, like JSON Schema
//!     required: true         # default false
//!   - name: size
//!     type: integer
//!     min: 0
//!     max: 100
//!     default: 1
//!   - name: status
//!     type: enum
//!     values: [draft, active, retired]
//!     default: draft
//!   - name: ratio            # integers are accepted as floats
//!     type: float
//!   - {name: active, type: boolean}
//!   - {name: created, type: datetime}     # RFC 3339 string
//!   - {name: tags, type: list_of_strings, min_items: 0, max_items: 10}
//!   - {name: ids, type: list_of_integers}
//!   - {name: extra, type: list_of_any}
//!   - {name: meta, type: dict}
//! ```
//!
//! Top-level fields: `description` (string), `undeclared` (`reject` or
//! `allow`), `attributes` (required, may be empty). Attribute fields:
//!
//! | field | applies to | meaning |
//! | --- | --- | --- |
//! | `name` | all, required | key-like (the document-name rules), unique |
//! | `type` | all, required | see [`AttributeType`] |
//! | `description` | all | text for people |
//! | `required` | all | a create must hold it; an update may not remove it |
//! | `default` | all | filled in on create by [`CompiledSchema::apply_defaults`]; must satisfy the attribute's own rules |
//! | `min`, `max` | `integer`, `float`, each item of `list_of_integers` | inclusive bounds (integers for integer types) |
//! | `min_length`, `max_length` | `string`, each item of `list_of_strings` | inclusive, in characters (Unicode scalar values) |
//! | `pattern` | `string`, each item of `list_of_strings` | a regular expression (Rust `regex` syntax, at most [`MAX_PATTERN_LEN`] bytes, bounded compiled size; matching is linear-time) |
//! | `min_items`, `max_items` | `list_of_*` | inclusive item counts |
//! | `values` | `enum`, required | the allowed strings, non-empty, no duplicates |
//!
//! Any other field, a rule on a type it does not apply to, `min` above
//! `max`, and the like are refused by [`Schema::parse`], which reports
//! **every** problem with a JSON Pointer into the document.
//!
//! Types: `datetime` is an RFC 3339 `date-time` (`2024-02-29T12:00:00Z`,
//! `…T12:00:00.5+02:00`): real calendar dates, hours 00–23 (`24:00` is
//! refused), lowercase `t`/`z` accepted as RFC 3339 allows, a space instead
//! of `T` refused. A leap second `:60` is accepted only at 23:59 UTC (after
//! applying the offset), the only minute one can end. `integer` refuses
//! numbers written as floats (`1.0`); `float` accepts integers. `null`
//! matches no type.
//!
//! # Validation and ratcheting
//!
//! [`CompiledSchema::validate`] lists every [`Violation`] with the JSON
//! Pointer of the value and the rule broken. An undeclared attribute is
//! refused by name (policy `reject`), never silently dropped. On an update
//! only what the write changes is checked, so a document that no longer
//! conforms after a schema was tightened stays readable and patchable; see
//! the method for the exact rules.
//!
//! ```
//! use revstore::schema::CompiledSchema;
//! use serde_json::json;
//!
//! let doc = json!({
//!     "attributes": [
//!         {"name": "size", "type": "integer", "min": 0, "default": 1},
//!         {"name": "status", "type": "enum", "values": ["draft", "active"]},
//!     ]
//! });
//! let schema = CompiledSchema::compile(doc.as_object().unwrap()).unwrap();
//!
//! let mut body = json!({"status": "draft"}).as_object().unwrap().clone();
//! schema.apply_defaults(&mut body);
//! assert_eq!(body["size"], 1);
//! assert!(schema.validate(&body, None).is_ok());
//!
//! let bad = json!({"size": -1, "colour": "red"}).as_object().unwrap().clone();
//! let violations = schema.validate(&bad, None).unwrap_err();
//! assert_eq!(violations[0].path, "/size");
//! assert_eq!(violations[0].rule, "min");
//! assert_eq!(violations[1].path, "/colour");
//! assert_eq!(violations[1].rule, "undeclared");
//! ```

mod cache;
mod datetime;
mod document;
mod number;
mod pointer;
mod validate;

pub use cache::{CachedSchema, SchemaCache};
pub use document::{
    Attribute, AttributeType, Schema, SchemaError, SchemaProblem, UndeclaredPolicy, MAX_PATTERN_LEN,
};
pub use validate::{describe_violations, CompiledSchema, Violation};

#[cfg(test)]
mod tests;
