//! Diagnostics: each problem found in a workflow file, with where it is, the
//! field it concerns, what is wrong and what to do about it.

use std::fmt;

/// A place in the workflow file; line and column are 1-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in characters.
    pub column: u32,
}

/// One problem in a workflow file.
///
/// Displayed as `flow.yaml:12:5: steps[2].depends: unknown step "biuld" (did you mean "build"?)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file as the user named it, when the workflow came from a file.
    pub file: Option<String>,
    /// Where in the file, when known.
    pub pos: Option<Pos>,
    /// The field concerned, e.g. `steps[2].retry_policy.limit`; empty for the whole file.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// What to do about it, or the name the user probably meant.
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.pos) {
            (Some(file), Some(p)) => write!(f, "{file}:{}:{}: ", p.line, p.column)?,
            (Some(file), None) => write!(f, "{file}: ")?,
            (None, Some(p)) => write!(f, "{}:{}: ", p.line, p.column)?,
            (None, None) => {}
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

/// Why a workflow was refused: every problem found, not just the first,
/// one per line when displayed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct SpecError {
    /// Every problem found, in file order.
    pub diagnostics: Vec<Diagnostic>,
}

impl SpecError {
    /// An error with a single diagnostic.
    pub fn single(diagnostic: Diagnostic) -> Self {
        SpecError { diagnostics: vec![diagnostic] }
    }

    /// A diagnostic without a place in the file (e.g. about CLI params).
    pub(crate) fn plain(path: &str, message: impl Into<String>, hint: Option<String>) -> Self {
        SpecError::single(Diagnostic {
            file: None,
            pos: None,
            path: path.to_owned(),
            message: message.into(),
            hint,
        })
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// `did you mean "x"?` for the candidate closest to `word`, if any is close.
pub(crate) fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    nearest(word, candidates).map(|c| format!("did you mean \"{c}\"?"))
}

/// The candidate closest to `word` (ignoring case) within a small edit
/// distance, or that `word` abbreviates (`int` for `integer`).
pub(crate) fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = word.to_lowercase();
    let limit = (word.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| {
            let cl = c.to_lowercase();
            let d = if lower.chars().count() >= 3 && cl.starts_with(&lower) {
                1
            } else {
                edit_distance(&lower, &cl)
            };
            (d, c)
        })
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Edit distance counting in characters, where swapping two neighbours
/// costs one edit (optimal string alignment), as typos often do.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

/// A regex error on one line (the regex crate draws a multi-line picture).
pub(crate) fn regex_message(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or(&text);
    last.trim().trim_start_matches("error: ").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_file_position_path_and_hint() {
        let d = Diagnostic {
            file: Some("flow.yaml".into()),
            pos: Some(Pos { line: 12, column: 5 }),
            path: "steps[2].depends".into(),
            message: "unknown step \"biuld\"".into(),
            hint: did_you_mean("biuld", ["test", "build"]),
        };
        assert_eq!(
            d.to_string(),
            "flow.yaml:12:5: steps[2].depends: unknown step \"biuld\" (did you mean \"build\"?)"
        );
    }

    #[test]
    fn suggestions_only_when_close() {
        assert_eq!(nearest("comand", ["command", "script"]), Some("command"));
        assert_eq!(nearest("Command", ["command"]), Some("command"));
        assert_eq!(nearest("xyz", ["command", "script"]), None);
        assert_eq!(nearest("int", ["string", "integer"]), Some("integer"));
        assert_eq!(nearest("SIGTREM", ["SIGTRAP", "SIGTERM"]), Some("SIGTERM"));
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn errors_list_one_diagnostic_per_line() {
        let d = |m: &str| Diagnostic {
            file: None,
            pos: None,
            path: String::new(),
            message: m.into(),
            hint: None,
        };
        let e = SpecError { diagnostics: vec![d("a"), d("b")] };
        assert_eq!(e.to_string(), "a\nb");
    }
}
