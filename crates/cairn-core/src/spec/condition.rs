//! Preconditions: reading them from the file, and deciding them. A value
//! condition (`condition` + `expected`) is decided here; a command condition
//! is turned into the process to run, which the engine runs (exit 0 = holds).

use regex::Regex;

use super::cmdline::split_words;
use super::error::regex_message;
use super::keys;
use super::model::{Expected, Precondition};
use super::yaml::{Diags, Node, Value, index, join};
use crate::vars::{self, CommandRunner, ExpandError, Scope, Syntax};

/// The outcome of checking one precondition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConditionCheck {
    /// The condition holds.
    Met,
    /// The condition does not hold.
    NotMet {
        /// Why, e.g. `expected "PROD", got "STG"`.
        reason: String,
    },
    /// Run this command; [`CommandCheck::judge`] turns its exit into the outcome.
    Run(CommandCheck),
}

/// A command precondition, ready to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandCheck {
    /// Program and arguments (the shell with `-c` and the command, or the
    /// command's own words under `shell: direct`).
    pub argv: Vec<String>,
    /// The command after expansion, for messages.
    pub command: String,
    /// Holds when the command fails instead.
    pub negate: bool,
}

impl CommandCheck {
    /// The outcome once the command has run: it holds when it exited 0
    /// (the reverse with `negate`).
    pub fn judge(&self, exited_zero: bool) -> ConditionCheck {
        if exited_zero != self.negate {
            ConditionCheck::Met
        } else if self.negate {
            ConditionCheck::NotMet { reason: format!("`{}` succeeded but negate is true", self.command) }
        } else {
            ConditionCheck::NotMet { reason: format!("`{}` failed", self.command) }
        }
    }
}

impl Expected {
    /// Whether a line of `value` equals (or matches) the expectation; an empty
    /// value is one empty line.
    pub fn matches(&self, value: &str) -> bool {
        let test = |line: &str| match self {
            Expected::Exact(s) => line == s,
            Expected::Regex(r) => r.is_match(line),
        };
        if value.is_empty() {
            return test("");
        }
        value.lines().any(test)
    }
}

impl std::fmt::Display for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expected::Exact(s) => write!(f, "{s:?}"),
            Expected::Regex(r) => write!(f, "\"re:{}\"", r.as_str()),
        }
    }
}

impl Precondition {
    /// Decides a value condition, or prepares a command condition to run.
    /// `shell` is the shell program and arguments to run commands with, empty
    /// for `shell: direct`. Backticks in a value condition run through `runner`.
    pub fn check(
        &self,
        shell: &[String],
        scope: &Scope,
        runner: &mut dyn CommandRunner,
    ) -> Result<ConditionCheck, ExpandError> {
        match self {
            Precondition::Match { value, expected, negate } => {
                let actual = vars::expand_with_commands(value, scope, runner)?;
                let matched = expected.matches(&actual);
                Ok(if matched != *negate {
                    ConditionCheck::Met
                } else if *negate {
                    ConditionCheck::NotMet {
                        reason: format!("{actual:?} matches {expected} but negate is true"),
                    }
                } else {
                    ConditionCheck::NotMet { reason: format!("expected {expected}, got {actual:?}") }
                })
            }
            Precondition::Command { command, negate } => {
                let argv = if shell.is_empty() {
                    // Validated when the file was read, so the words split.
                    let words = split_words(command).unwrap_or_else(|_| vec![command.clone()]);
                    words.iter().map(|w| vars::expand(w, scope)).collect()
                } else {
                    let mut argv = shell.to_vec();
                    let flag = super::invocation::command_flag(&shell[0]);
                    if !argv.iter().any(|a| a == flag) {
                        argv.push(flag.to_owned());
                    }
                    argv.push(vars::expand_as(command, scope, Syntax::ShellCommand));
                    argv
                };
                let command = argv.last().cloned().unwrap_or_default();
                Ok(ConditionCheck::Run(CommandCheck { argv, command, negate: *negate }))
            }
        }
    }
}

/// Reads `preconditions`: a string (a command), a map, or a list of either.
pub(crate) fn parse_list(node: &Node, path: &str, d: &mut Diags) -> Vec<Precondition> {
    match &node.value {
        Value::Null => Vec::new(),
        Value::Seq(items) => {
            items.iter().enumerate().filter_map(|(i, item)| parse_one(item, &index(path, i), d)).collect()
        }
        _ => parse_one(node, path, d).into_iter().collect(),
    }
}

fn parse_one(node: &Node, path: &str, d: &mut Diags) -> Option<Precondition> {
    if let Some(text) = node.scalar_text() {
        if text.trim().is_empty() {
            d.error(node.pos, path, "the precondition is empty");
            return None;
        }
        return Some(Precondition::Command { command: text, negate: false });
    }
    if !matches!(node.value, Value::Map(_)) {
        d.expected(node, path, "a command or a map with `condition`");
        return None;
    }
    let f = d.fields(node, path, &keys::PRECONDITION)?;
    let negate = f.get("negate").and_then(|n| d.bool(n, &join(path, "negate"))).unwrap_or(false);
    let Some(condition) = f.get("condition").and_then(|n| d.string(n, &join(path, "condition"))) else {
        d.error_hint(
            node.pos,
            path,
            "the precondition has no `condition`",
            "write `condition: <command or value>`".to_owned(),
        );
        return None;
    };
    if condition.trim().is_empty() {
        d.error(f.key_pos("condition"), &join(path, "condition"), "the condition is empty");
        return None;
    }
    let expected = f.get("expected").and_then(|n| d.string(n, &join(path, "expected"))).unwrap_or_default();
    if expected.is_empty() {
        return Some(Precondition::Command { command: condition, negate });
    }
    let expected = parse_expected(&expected, f.get("expected"), &join(path, "expected"), d)?;
    Some(Precondition::Match { value: condition, expected, negate })
}

/// `re:<regex>` or an exact value.
pub(crate) fn parse_expected(text: &str, node: Option<&Node>, path: &str, d: &mut Diags) -> Option<Expected> {
    match text.strip_prefix("re:") {
        Some(re) => match Regex::new(re) {
            Ok(r) => Some(Expected::Regex(r)),
            Err(e) => {
                d.error(
                    node.and_then(|n| n.pos),
                    path,
                    format!("invalid regular expression {re:?}: {}", regex_message(&e)),
                );
                None
            }
        },
        None => Some(Expected::Exact(text.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        let mut s = Scope::new();
        s.set("ENV", "STG");
        s.set("OUT", "abc run def");
        s
    }

    fn check(p: &Precondition) -> ConditionCheck {
        p.check(&["/bin/sh".to_owned()], &scope(), &mut vars::NoCommands).unwrap()
    }

    #[test]
    fn value_conditions_compare_exactly_or_by_regex() {
        let exact = |e: &str, negate| Precondition::Match {
            value: "${ENV}".into(),
            expected: Expected::Exact(e.into()),
            negate,
        };
        assert_eq!(check(&exact("STG", false)), ConditionCheck::Met);
        assert_eq!(
            check(&exact("PROD", false)),
            ConditionCheck::NotMet { reason: "expected \"PROD\", got \"STG\"".into() }
        );
        assert!(matches!(check(&exact("STG", true)), ConditionCheck::NotMet { .. }));
        let re = Precondition::Match {
            value: "$OUT".into(),
            expected: Expected::Regex(Regex::new("^abc.*def$").unwrap()),
            negate: false,
        };
        assert_eq!(check(&re), ConditionCheck::Met);
    }

    #[test]
    fn backticks_in_values_use_the_runner() {
        let p = Precondition::Match {
            value: "`printf 1`".into(),
            expected: Expected::Exact("0".into()),
            negate: false,
        };
        let mut runner = |_: &str, _: &Scope| Ok("1\n".to_owned());
        let got = p.check(&[], &scope(), &mut runner).unwrap();
        assert_eq!(got, ConditionCheck::NotMet { reason: "expected \"0\", got \"1\"".into() });
    }

    #[test]
    fn commands_are_prepared_for_the_engine() {
        let p = Precondition::Command { command: "test $ENV = $HOME".into(), negate: true };
        let ConditionCheck::Run(run) = check(&p) else { panic!() };
        assert_eq!(run.argv, ["/bin/sh", "-c", "test STG = $HOME"]);
        assert_eq!(run.judge(false), ConditionCheck::Met);
        assert!(matches!(run.judge(true), ConditionCheck::NotMet { .. }));
    }
}
