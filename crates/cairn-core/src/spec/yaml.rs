//! The YAML layer: the file parsed by serde-saphyr into a tree of nodes that
//! keep their line and column, and the readers that turn nodes into typed
//! values while collecting every diagnostic instead of stopping at the first.
//!
//! Dagu's keys accept several shapes (a string or a list, a list of maps or a
//! map, ...), so the file is read into this generic tree first and each key is
//! interpreted by hand; a serde struct per key could not say "line 12: expected
//! a list of step names" for each shape.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{SnippetMode, Spanned, UserMessageFormatter};

use super::error::{Diagnostic, Pos, did_you_mean};
use super::keys::{Key, Schema, Support};

/// A YAML value with the place it was written.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    pub(crate) value: Value,
    pub(crate) pos: Option<Pos>,
}

#[derive(Clone, Debug)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s: Spanned<Value> = Spanned::deserialize(d)?;
        let (line, column) = (s.referenced.line(), s.referenced.column());
        let pos = (line > 0).then(|| Pos {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            column: u32::try_from(column).unwrap_or(u32::MAX),
        });
        Ok(Node { value: s.value, pos })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(i64::try_from(v).map_or(Value::Float(v as f64), Value::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(n) = a.next_element::<Node>()? {
            items.push(n);
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, v)) = a.next_entry::<Node, Node>()? {
            entries.push((k, v));
        }
        Ok(Value::Map(entries))
    }
}

/// Parses YAML text; a syntax error (or a duplicate key) is one diagnostic.
pub(crate) fn parse(source: &str, file: Option<&str>) -> Result<Node, Diagnostic> {
    let options = serde_saphyr::options! { strict_booleans: true };
    serde_saphyr::from_str_with_options::<Node>(source, options).map_err(|e| {
        let rendered = e.render_with_options(serde_saphyr::render_options! {
            formatter: &UserMessageFormatter,
            snippets: SnippetMode::Off,
        });
        // The position is reported separately, in our own format.
        let message = match rendered.rfind(" at line ") {
            Some(i) => rendered[..i].to_owned(),
            None => rendered,
        };
        let pos = e.location().filter(|l| l.line() > 0).map(|l| Pos {
            line: u32::try_from(l.line()).unwrap_or(u32::MAX),
            column: u32::try_from(l.column()).unwrap_or(u32::MAX),
        });
        let (message, hint) = if message.starts_with("duplicate mapping key") {
            let key = message
                .trim_start_matches("duplicate mapping key")
                .trim_start_matches(':')
                .trim()
                .trim_end_matches(" not allowed here");
            (format!("duplicate key \"{key}\""), Some("each key may appear once in a map".to_owned()))
        } else if message.contains("multiple found") {
            let hint =
                "Cairn reads one workflow per file; Dagu's sub-workflows in one file are not supported";
            ("the file holds several YAML documents".to_owned(), Some(hint.to_owned()))
        } else {
            (format!("invalid YAML: {message}"), None)
        };
        Diagnostic { file: file.map(str::to_owned), pos, path: String::new(), message, hint }
    })
}

impl Node {
    /// The shape of the value, for "expected X, found Y" messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "nothing",
            Value::Bool(_) => "true/false",
            Value::Int(_) | Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a map",
        }
    }

    pub(crate) fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Scalars as text, the way Dagu stringifies them (`30` -> "30").
    pub(crate) fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Null | Value::Seq(_) | Value::Map(_) => None,
        }
    }
}

/// `path.key`, or `key` at the top.
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

/// `path[i]`.
pub(crate) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// Collects the errors and warnings of one file.
#[derive(Debug, Default)]
pub(crate) struct Diags {
    pub(crate) file: Option<String>,
    pub(crate) errors: Vec<Diagnostic>,
    pub(crate) warnings: Vec<Diagnostic>,
}

impl Diags {
    pub(crate) fn new(file: Option<String>) -> Self {
        Diags { file, ..Diags::default() }
    }

    fn diagnostic(&self, pos: Option<Pos>, path: &str, message: String, hint: Option<String>) -> Diagnostic {
        Diagnostic { file: self.file.clone(), pos, path: path.to_owned(), message, hint }
    }

    pub(crate) fn error(&mut self, pos: Option<Pos>, path: &str, message: impl Into<String>) {
        self.error_hint(pos, path, message, None);
    }

    pub(crate) fn error_hint(
        &mut self,
        pos: Option<Pos>,
        path: &str,
        message: impl Into<String>,
        hint: impl Into<Option<String>>,
    ) {
        let d = self.diagnostic(pos, path, message.into(), hint.into());
        self.errors.push(d);
    }

    pub(crate) fn warn(&mut self, pos: Option<Pos>, path: &str, message: impl Into<String>) {
        let d = self.diagnostic(pos, path, message.into(), None);
        self.warnings.push(d);
    }

    /// Reports `node` as the wrong shape.
    pub(crate) fn expected(&mut self, node: &Node, path: &str, what: &str) {
        self.error(node.pos, path, format!("expected {what}, found {}", node.kind()));
    }

    /// Text of a scalar; numbers and booleans are accepted as their text.
    pub(crate) fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        match node.scalar_text() {
            Some(s) => Some(s),
            None if node.is_null() => None,
            None => {
                self.expected(node, path, "a string");
                None
            }
        }
    }

    /// A string, or a list of strings; a single string is one item.
    pub(crate) fn string_list(&mut self, node: &Node, path: &str) -> Option<Vec<String>> {
        match &node.value {
            Value::Null => Some(Vec::new()),
            Value::Seq(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    match item.scalar_text() {
                        Some(s) => out.push(s),
                        None => self.expected(item, &index(path, i), "a string"),
                    }
                }
                Some(out)
            }
            _ => match node.scalar_text() {
                Some(s) => Some(vec![s]),
                None => {
                    self.expected(node, path, "a string or a list of strings");
                    None
                }
            },
        }
    }

    pub(crate) fn bool(&mut self, node: &Node, path: &str) -> Option<bool> {
        match &node.value {
            Value::Bool(b) => Some(*b),
            Value::Str(s) if s.eq_ignore_ascii_case("true") => Some(true),
            Value::Str(s) if s.eq_ignore_ascii_case("false") => Some(false),
            _ => {
                self.expected(node, path, "true or false");
                None
            }
        }
    }

    /// A whole number; numeric strings are accepted (Dagu allows `"3"`).
    pub(crate) fn int(&mut self, node: &Node, path: &str) -> Option<i64> {
        match &node.value {
            Value::Int(i) => Some(*i),
            Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
            Value::Str(s) if s.trim().parse::<i64>().is_ok() => s.trim().parse().ok(),
            Value::Str(s) if s.contains('$') => {
                self.error_hint(
                    node.pos,
                    path,
                    format!("expected a whole number, found {s:?}"),
                    "Cairn does not expand variables in this field; write the number".to_owned(),
                );
                None
            }
            _ => {
                self.expected(node, path, "a whole number");
                None
            }
        }
    }

    /// A whole number that must not be negative.
    pub(crate) fn uint(&mut self, node: &Node, path: &str) -> Option<u64> {
        let i = self.int(node, path)?;
        match u64::try_from(i) {
            Ok(u) => Some(u),
            Err(_) => {
                self.error(node.pos, path, format!("must be 0 or more, found {i}"));
                None
            }
        }
    }

    pub(crate) fn float(&mut self, node: &Node, path: &str) -> Option<f64> {
        match &node.value {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Str(s) if s.trim().parse::<f64>().is_ok() => s.trim().parse().ok(),
            _ => {
                self.expected(node, path, "a number");
                None
            }
        }
    }

    /// Reads a map against `schema`: unknown keys are errors that name the
    /// nearest valid key, camelCase aliases map to their snake_case key,
    /// keys Cairn ignores are warnings and keys it cannot honour are errors.
    pub(crate) fn fields<'a>(&mut self, node: &'a Node, path: &str, schema: &Schema) -> Option<Fields<'a>> {
        let Value::Map(entries) = &node.value else {
            if !node.is_null() {
                self.expected(node, path, &format!("a map of {}", schema.what));
            }
            return if node.is_null() { Some(Fields::default()) } else { None };
        };
        let mut fields = Fields::default();
        for (k, v) in entries {
            let Some(name) = k.scalar_text() else {
                self.expected(k, path, "a key name");
                continue;
            };
            let Some(key) = schema.find(&name) else {
                let hint = did_you_mean(&name, schema.names())
                    .or_else(|| Some(format!("valid keys: {}", schema.supported_names().join(", "))));
                self.error_hint(
                    k.pos,
                    &join(path, &name),
                    format!("unknown key \"{name}\" in {}", schema.what),
                    hint,
                );
                continue;
            };
            let key_path = join(path, key.name);
            match key.support {
                Support::Yes => {}
                Support::Ignored(why) => {
                    self.warn(k.pos, &key_path, format!("ignored: {why}"));
                    continue;
                }
                Support::No(why) => {
                    self.error(k.pos, &key_path, format!("not supported by Cairn: {why}"));
                    continue;
                }
            }
            if let Some(prev) = fields.entries.iter().find(|e| e.key.name == key.name) {
                let first = prev.written.clone();
                self.error_hint(
                    k.pos,
                    &key_path,
                    format!("\"{name}\" repeats \"{first}\""),
                    "keep one of them".to_owned(),
                );
                continue;
            }
            fields.entries.push(Field { key, written: name, key_node: k, value: v });
        }
        Some(fields)
    }
}

/// The recognised keys of one map, by their canonical names.
#[derive(Debug, Default)]
pub(crate) struct Fields<'a> {
    entries: Vec<Field<'a>>,
}

#[derive(Debug)]
struct Field<'a> {
    key: &'static Key,
    /// As written, which may be an alias.
    written: String,
    key_node: &'a Node,
    value: &'a Node,
}

impl<'a> Fields<'a> {
    /// The value of `name` (canonical), unless absent or written as null.
    pub(crate) fn get(&self, name: &str) -> Option<&'a Node> {
        self.entry(name).map(|f| f.value).filter(|v| !v.is_null())
    }

    /// Whether `name` was written at all, even as null.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.entry(name).is_some()
    }

    /// Where the key `name` was written.
    pub(crate) fn key_pos(&self, name: &str) -> Option<Pos> {
        self.entry(name).and_then(|f| f.key_node.pos)
    }

    fn entry(&self, name: &str) -> Option<&Field<'a>> {
        self.entries.iter().find(|f| f.key.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_keep_positions_and_types() {
        let n = parse("a: 1\nb:\n  - x\n  - \"true\"\n  - true\n", None).unwrap();
        let Value::Map(entries) = &n.value else { panic!() };
        assert_eq!(entries[0].1.pos, Some(Pos { line: 1, column: 4 }));
        let Value::Seq(items) = &entries[1].1.value else { panic!() };
        assert_eq!(items[0].pos, Some(Pos { line: 3, column: 5 }));
        assert!(matches!(items[1].value, Value::Str(ref s) if s == "true"));
        assert!(matches!(items[2].value, Value::Bool(true)));
    }

    #[test]
    fn yes_stays_a_string() {
        let n = parse("a: yes\n", None).unwrap();
        let Value::Map(entries) = &n.value else { panic!() };
        assert_eq!(entries[0].1.as_str(), Some("yes"));
    }

    #[test]
    fn syntax_errors_and_duplicate_keys_have_positions() {
        let e = parse("a: [1, 2\n", Some("f.yaml")).unwrap_err();
        assert_eq!(e.to_string(), "f.yaml:1:4: invalid YAML: unclosed bracket '['");
        let e = parse("a: 1\na: 2\n", Some("f.yaml")).unwrap_err();
        assert_eq!(e.to_string(), "f.yaml:2:1: duplicate key \"a\" (each key may appear once in a map)");
    }
}
