//! Params: reading their declaration in every form Dagu accepts, and
//! resolving the values of one run from the defaults and the command line.
//!
//! Forms: `params: "a b KEY=v"` (positional and named), a list of such
//! strings, a map `{KEY: v}`, a list of one-key maps, and typed definitions
//! `- name: KEY` with `type`, `default`, `required`, `enum`, `minimum`,
//! `maximum`, `min_length`, `max_length`, `pattern`.

use std::sync::LazyLock;

use regex::Regex;

use super::error::{SpecError, did_you_mean, regex_message};
use super::keys;
use super::model::{Param, ParamType, Workflow};
use super::yaml::{Diags, Node, Value, index, join};

/// Dagu's param token: `NAME=value` or `value`, the value bare, "quoted" or `backticked`.
static PARAM_TOKEN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"(?:([^\s=]+)=)?("(?:\\"|[^"])*"|`[^`]*`|[^"\s]+)"#).expect("valid regex"));

fn untyped(name: Option<String>, default: String) -> Param {
    Param {
        name,
        default: Some(default),
        ty: ParamType::String,
        description: None,
        required: false,
        choices: Vec::new(),
        minimum: None,
        maximum: None,
        min_length: None,
        max_length: None,
        pattern: None,
    }
}

/// Reads the `params` key.
pub(crate) fn parse(node: &Node, path: &str, d: &mut Diags) -> Vec<Param> {
    let mut params = Vec::new();
    match &node.value {
        Value::Null => {}
        Value::Str(s) => params.extend(parse_string(s)),
        Value::Map(entries) => {
            if entries.iter().any(|(k, _)| matches!(k.as_str(), Some("schema" | "properties"))) {
                d.error(node.pos, path, "not supported by Cairn: params given as a JSON schema");
                return params;
            }
            parse_pairs(entries, path, d, &mut params);
        }
        Value::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                let p = index(path, i);
                match &item.value {
                    Value::Map(entries) if entries.iter().any(|(k, _)| k.as_str() == Some("name")) => {
                        if let Some(param) = parse_typed(item, &p, d) {
                            params.push(param);
                        }
                    }
                    Value::Map(entries) => parse_pairs(entries, &p, d, &mut params),
                    _ => match item.scalar_text() {
                        Some(s) => params.extend(parse_string(&s)),
                        None => d.expected(item, &p, "a param (`NAME=value`, `NAME: value` or `name: NAME`)"),
                    },
                }
            }
        }
        _ => match node.scalar_text() {
            Some(s) => params.extend(parse_string(&s)),
            None => d.expected(node, path, "params as a string, a list or a map"),
        },
    }
    let mut seen: Vec<&str> = Vec::new();
    for p in &params {
        if let Some(name) = p.name.as_deref() {
            if seen.contains(&name) {
                d.error(node.pos, path, format!("param \"{name}\" is declared twice"));
            }
            seen.push(name);
        }
    }
    params
}

fn parse_pairs(entries: &[(Node, Node)], path: &str, d: &mut Diags, out: &mut Vec<Param>) {
    for (k, v) in entries {
        let Some(name) = k.scalar_text() else {
            d.expected(k, path, "a param name");
            continue;
        };
        let p = join(path, &name);
        if matches!(v.value, Value::Map(_)) {
            d.error_hint(
                k.pos,
                &p,
                "a param definition must be written with `name:`",
                format!("rewrite `- {name}: {{...}}` as `- name: {name}` with the other fields beside it"),
            );
            continue;
        }
        match v.scalar_text() {
            Some(value) => out.push(untyped(Some(name), value)),
            None if v.is_null() => out.push(untyped(Some(name), String::new())),
            None => d.expected(v, &p, "a value"),
        }
    }
}

/// Splits Dagu's string form: `a "b c" KEY=v`, or a JSON object or array.
fn parse_string(s: &str) -> Vec<Param> {
    if let Some(pairs) = json_pairs(s.trim()) {
        return pairs.into_iter().map(|(name, value)| untyped(name, value)).collect();
    }
    PARAM_TOKEN
        .captures_iter(s.trim())
        .map(|c| {
            let name = c.get(1).map(|m| m.as_str().to_owned());
            let raw = &c[2];
            let value = if raw.starts_with('"') { unquote(raw) } else { raw.to_owned() };
            untyped(name, value)
        })
        .collect()
}

fn unquote(raw: &str) -> String {
    match serde_json::from_str::<String>(raw) {
        Ok(s) => s,
        Err(_) => raw.trim_matches('"').replace("\\\"", "\""),
    }
}

/// A JSON object (named values) or array (positional values), as Dagu accepts.
fn json_pairs(s: &str) -> Option<Vec<(Option<String>, String)>> {
    let looks_json = (s.starts_with('{') && s.ends_with('}')) || (s.starts_with('[') && s.ends_with(']'));
    if !looks_json {
        return None;
    }
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match serde_json::from_str::<serde_json::Value>(s).ok()? {
        serde_json::Value::Object(m) => Some(m.iter().map(|(k, v)| (Some(k.clone()), text(v))).collect()),
        serde_json::Value::Array(items) => {
            let mut out = Vec::new();
            for item in items {
                match item {
                    serde_json::Value::Object(m) => {
                        out.extend(m.iter().map(|(k, v)| (Some(k.clone()), text(v))))
                    }
                    other => out.push((None, text(&other))),
                }
            }
            Some(out)
        }
        _ => None,
    }
}

fn parse_typed(node: &Node, path: &str, d: &mut Diags) -> Option<Param> {
    let f = d.fields(node, path, &keys::PARAM)?;
    let name = f.get("name").and_then(|n| d.string(n, &join(path, "name"))).map(|s| s.trim().to_owned());
    let Some(name) = name.filter(|n| !n.is_empty()) else {
        d.error(node.pos, &join(path, "name"), "the param needs a name");
        return None;
    };
    let path = join(path, &name);
    let ty = match f.get("type").and_then(|n| d.string(n, &join(&path, "type"))).as_deref().map(str::trim) {
        None | Some("" | "string") => ParamType::String,
        Some("integer") => ParamType::Integer,
        Some("number") => ParamType::Number,
        Some("boolean") => ParamType::Boolean,
        Some(other) => {
            d.error_hint(
                f.key_pos("type"),
                &join(&path, "type"),
                format!("unknown param type \"{other}\""),
                did_you_mean(other, ["string", "integer", "number", "boolean"])
                    .or_else(|| Some("use string, integer, number or boolean".to_owned())),
            );
            return None;
        }
    };
    let mut param = untyped(Some(name.clone()), String::new());
    param.default = None;
    param.ty = ty;
    param.description = f.get("description").and_then(|n| d.string(n, &join(&path, "description")));
    param.required = f.get("required").and_then(|n| d.bool(n, &join(&path, "required"))).unwrap_or(false);
    param.minimum = f.get("minimum").and_then(|n| d.float(n, &join(&path, "minimum")));
    param.maximum = f.get("maximum").and_then(|n| d.float(n, &join(&path, "maximum")));
    let len = |key: &str, d: &mut Diags| {
        f.get(key)
            .and_then(|n| d.uint(n, &join(&path, key)))
            .map(|u| usize::try_from(u).unwrap_or(usize::MAX))
    };
    param.min_length = len("min_length", d);
    param.max_length = len("max_length", d);
    if let Some(n) = f.get("pattern")
        && let Some(p) = d.string(n, &join(&path, "pattern"))
    {
        match Regex::new(&p) {
            Ok(r) => param.pattern = Some(r),
            Err(e) => d.error(
                n.pos,
                &join(&path, "pattern"),
                format!("invalid regular expression: {}", regex_message(&e)),
            ),
        }
    }
    let numeric = matches!(ty, ParamType::Integer | ParamType::Number);
    if !numeric && (param.minimum.is_some() || param.maximum.is_some()) {
        d.error(node.pos, &path, "minimum and maximum need type integer or number");
    }
    if ty != ParamType::String
        && (param.min_length.is_some() || param.max_length.is_some() || param.pattern.is_some())
    {
        d.error(node.pos, &path, "min_length, max_length and pattern need type string");
    }
    if let (Some(lo), Some(hi)) = (param.minimum, param.maximum)
        && lo > hi
    {
        d.error(node.pos, &path, "minimum is greater than maximum");
    }
    if let Some(n) = f.get("enum") {
        let Value::Seq(items) = &n.value else {
            d.expected(n, &join(&path, "enum"), "a list of allowed values");
            return None;
        };
        for (i, item) in items.iter().enumerate() {
            match item.scalar_text().map(|t| canonical(&t, ty)) {
                Some(Ok(v)) => param.choices.push(v),
                Some(Err(e)) => d.error(item.pos, &index(&join(&path, "enum"), i), e),
                None => d.expected(item, &index(&join(&path, "enum"), i), "a value"),
            }
        }
    }
    if let Some(n) = f.get("default") {
        match n.scalar_text().map(|t| canonical(&t, ty)) {
            Some(Ok(v)) => match check_value(&param, &v) {
                Ok(()) => param.default = Some(v),
                Err(e) => d.error(n.pos, &join(&path, "default"), format!("the default {e}")),
            },
            Some(Err(e)) => d.error(n.pos, &join(&path, "default"), e),
            None => d.expected(n, &join(&path, "default"), "a value"),
        }
    }
    Some(param)
}

/// The value in its canonical text for `ty` (`03` -> `3`, `TRUE` -> `true`).
fn canonical(text: &str, ty: ParamType) -> Result<String, String> {
    let t = text.trim();
    match ty {
        ParamType::String => Ok(text.to_owned()),
        ParamType::Integer => match t.parse::<i64>() {
            Ok(i) => Ok(i.to_string()),
            Err(_) => match t.parse::<f64>() {
                Ok(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok((f as i64).to_string()),
                _ => Err(format!("{text:?} is not an integer")),
            },
        },
        ParamType::Number => {
            t.parse::<f64>().map(|f| f.to_string()).map_err(|_| format!("{text:?} is not a number"))
        }
        ParamType::Boolean => {
            if t.eq_ignore_ascii_case("true") {
                Ok("true".to_owned())
            } else if t.eq_ignore_ascii_case("false") {
                Ok("false".to_owned())
            } else {
                Err(format!("{text:?} is not true or false"))
            }
        }
    }
}

/// Checks a canonical value against the param's rules; the error completes
/// a sentence ("the default ...", "param X ...").
fn check_value(p: &Param, v: &str) -> Result<(), String> {
    if !p.choices.is_empty() && !p.choices.iter().any(|c| c == v) {
        return Err(format!("{v:?} is not one of {}", p.choices.join(", ")));
    }
    if let Ok(n) = v.parse::<f64>()
        && matches!(p.ty, ParamType::Integer | ParamType::Number)
    {
        if let Some(lo) = p.minimum
            && n < lo
        {
            return Err(format!("{v} is below the minimum {lo}"));
        }
        if let Some(hi) = p.maximum
            && n > hi
        {
            return Err(format!("{v} is above the maximum {hi}"));
        }
    }
    let len = v.chars().count();
    if let Some(min) = p.min_length
        && len < min
    {
        return Err(format!("{v:?} is shorter than {min} characters"));
    }
    if let Some(max) = p.max_length
        && len > max
    {
        return Err(format!("{v:?} is longer than {max} characters"));
    }
    if let Some(re) = &p.pattern
        && !re.is_match(v)
    {
        return Err(format!("{v:?} does not match the pattern {}", re.as_str()));
    }
    Ok(())
}

/// A value given on the command line.
enum Given {
    Positional(String),
    Named(String, String),
}

fn parse_cli(cli: &[String]) -> Vec<Given> {
    let mut out = Vec::new();
    for arg in cli {
        if let Some(pairs) = json_pairs(arg.trim()) {
            out.extend(pairs.into_iter().map(|(name, value)| match name {
                Some(n) => Given::Named(n, value),
                None => Given::Positional(value),
            }));
            continue;
        }
        match arg.split_once('=') {
            Some((k, v)) if !k.is_empty() && !k.contains(char::is_whitespace) => {
                out.push(Given::Named(k.to_owned(), v.to_owned()));
            }
            _ => out.push(Given::Positional(arg.clone())),
        }
    }
    out
}

impl Workflow {
    /// The params of one run: the declared defaults overridden by `cli`, where
    /// each item is one `-p` value — `KEY=value` sets a named param, a bare
    /// value the next positional one (`$1`, `$2`, ...), a JSON object several
    /// named ones. Positional values get their 1-based position as name.
    ///
    /// Refused, naming the param: an unknown name (when the workflow declares
    /// named params), more positional values than declared, a required param
    /// without a value, a value of the wrong type or outside its rules.
    pub fn resolve_params(&self, cli: &[String]) -> Result<Vec<(String, String)>, SpecError> {
        let mut errors = Vec::new();
        let given = parse_cli(cli);
        let declared_names: Vec<&str> = self.params.iter().filter_map(|p| p.name.as_deref()).collect();
        let mut entries: Vec<(Option<String>, Option<String>)> =
            self.params.iter().map(|p| (p.name.clone(), p.default.clone())).collect();

        let positional = given.iter().filter(|g| matches!(g, Given::Positional(_))).count();
        if !self.params.is_empty() && positional > self.params.len() {
            errors.push(SpecError::plain(
                "params",
                format!(
                    "too many positional params: expected at most {}, got {positional}",
                    self.params.len()
                ),
                Some("pass named values as KEY=value".to_owned()),
            ));
        }
        let mut next_positional = 0;
        for g in given {
            match g {
                Given::Positional(v) => {
                    if next_positional < entries.len() {
                        entries[next_positional].1 = Some(v);
                    } else if self.params.is_empty() {
                        entries.push((None, Some(v)));
                    }
                    next_positional += 1;
                }
                Given::Named(k, v) => {
                    if let Some(e) = entries.iter_mut().find(|e| e.0.as_deref() == Some(k.as_str())) {
                        e.1 = Some(v);
                    } else if declared_names.is_empty() {
                        entries.push((Some(k), Some(v)));
                    } else {
                        let hint = did_you_mean(&k, declared_names.iter().copied())
                            .unwrap_or_else(|| format!("accepted params: {}", declared_names.join(", ")));
                        errors.push(SpecError::plain("params", format!("unknown param \"{k}\""), Some(hint)));
                    }
                }
            }
        }

        for (i, p) in self.params.iter().enumerate() {
            let label = p.name.clone().unwrap_or_else(|| format!("${}", i + 1));
            match entries[i].1.clone() {
                None if p.required => errors.push(SpecError::plain(
                    "params",
                    format!("param \"{label}\" is required"),
                    Some(format!("pass it with -p {label}=<value>")),
                )),
                None => {}
                Some(v) => match canonical(&v, p.ty).and_then(|c| check_value(p, &c).map(|()| c)) {
                    Ok(c) => entries[i].1 = Some(if p.ty == ParamType::String { v } else { c }),
                    Err(e) => {
                        errors.push(SpecError::plain("params", format!("param \"{label}\": {e}"), None))
                    }
                },
            }
        }
        if !errors.is_empty() {
            return Err(SpecError { diagnostics: errors.into_iter().flat_map(|e| e.diagnostics).collect() });
        }
        Ok(entries
            .into_iter()
            .filter_map(|(name, value)| Some((name, value?)))
            .enumerate()
            .map(|(i, (name, value))| (name.unwrap_or_else(|| (i + 1).to_string()), value))
            .collect())
    }
}

/// `DAGU_PARAMS_JSON` (also `DAG_PARAMS_JSON`): the run's params as a JSON
/// object of strings, or the JSON given on the command line as is; `None`
/// when there are no params.
pub fn params_json(cli: &[String], resolved: &[(String, String)]) -> Option<String> {
    if let [only] = cli
        && json_pairs(only.trim()).is_some()
    {
        return Some(only.trim().to_owned());
    }
    if resolved.is_empty() {
        return None;
    }
    let map: serde_json::Map<String, serde_json::Value> =
        resolved.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
    Some(serde_json::Value::Object(map).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_form_has_positional_named_and_quoted_values() {
        let ps = parse_string(r#"foo KEY=v "a b" N="x \"y\"""#);
        let got: Vec<_> = ps.iter().map(|p| (p.name.clone(), p.default.clone().unwrap())).collect();
        assert_eq!(
            got,
            vec![
                (None, "foo".to_owned()),
                (Some("KEY".to_owned()), "v".to_owned()),
                (None, "a b".to_owned()),
                (Some("N".to_owned()), "x \"y\"".to_owned()),
            ]
        );
    }

    #[test]
    fn json_string_form() {
        let ps = parse_string(r#"{"a": 1, "b": "x"}"#);
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].default.as_deref(), Some("1"));
    }

    #[test]
    fn canonical_values() {
        assert_eq!(canonical("03", ParamType::Integer), Ok("3".to_owned()));
        assert_eq!(canonical("TRUE", ParamType::Boolean), Ok("true".to_owned()));
        assert!(canonical("x", ParamType::Number).is_err());
    }

    #[test]
    fn json_of_params_is_an_object_of_strings() {
        let r = vec![("region".to_owned(), "us".to_owned()), ("count".to_owned(), "3".to_owned())];
        let json: serde_json::Value = serde_json::from_str(&params_json(&[], &r).unwrap()).unwrap();
        assert_eq!(json, serde_json::json!({"region": "us", "count": "3"}));
        assert_eq!(params_json(&[r#"{"a":1}"#.to_owned()], &r).unwrap(), r#"{"a":1}"#);
        assert_eq!(params_json(&[], &[]), None);
    }
}
