//! Splitting a command line into words the way Dagu does (its `SplitCommand`),
//! for what runs without a shell: `shell: direct` commands, a shell setting
//! such as `bash -e`, a script's interpreter and its `#!` line.
//!
//! Dagu's rule, kept for compatibility: a word is quoted only when it starts
//! and ends with the same quote, and then only the outer quotes go (double
//! quotes also take Go's escapes, `\n`, `\"`, ...). Backslashes before `$` stay,
//! so that `\$` still reads as a literal `$` when the words are expanded later.

/// Splits `line` into words; `|`, `||` and `&&` outside quotes are words of their own.
pub(crate) fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut tokens: Vec<String> = Vec::new();
    let mut cur = String::new();
    let (mut dq, mut sq, mut bt, mut esc) = (false, false, false, false);
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    let flush = |cur: &mut String, tokens: &mut Vec<String>| {
        if !cur.is_empty() {
            tokens.push(std::mem::take(cur));
        }
    };
    while i < chars.len() {
        let c = chars[i];
        let quoted = dq || sq || bt;
        match c {
            _ if esc => {
                cur.push(c);
                esc = false;
            }
            '\\' => {
                cur.push(c);
                esc = true;
            }
            '"' if !bt && !sq => {
                cur.push(c);
                dq = !dq;
            }
            '\'' if !bt && !dq => {
                cur.push(c);
                sq = !sq;
            }
            '`' if !sq => {
                cur.push(c);
                bt = !bt;
            }
            '|' if !quoted => {
                flush(&mut cur, &mut tokens);
                if chars.get(i + 1) == Some(&'|') {
                    tokens.push("||".to_owned());
                    i += 1;
                } else {
                    tokens.push("|".to_owned());
                }
            }
            '&' if !quoted && chars.get(i + 1) == Some(&'&') => {
                flush(&mut cur, &mut tokens);
                tokens.push("&&".to_owned());
                i += 1;
            }
            _ if c.is_whitespace() && !quoted => flush(&mut cur, &mut tokens),
            _ => cur.push(c),
        }
        i += 1;
    }
    if dq || sq || bt {
        return Err("a quote is not closed".to_owned());
    }
    flush(&mut cur, &mut tokens);
    if tokens.is_empty() {
        return Err("the command is empty".to_owned());
    }
    Ok(tokens.into_iter().map(|t| unquote(&t)).collect())
}

fn unquote(token: &str) -> String {
    let b = token.as_bytes();
    if b.len() < 2 {
        return token.to_owned();
    }
    let (first, last) = (b[0], b[b.len() - 1]);
    if first != last || !(first == b'"' || first == b'\'') {
        return token.to_owned();
    }
    let inner = &token[1..token.len() - 1];
    if first == b'"'
        && let Some(s) = go_unquote(inner)
    {
        return s;
    }
    inner.to_owned()
}

/// The body of a Go double-quoted literal; `None` where Go would refuse it
/// (an unknown escape such as `\$`, or an unescaped `"`).
fn go_unquote(inner: &str) -> Option<String> {
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' | '\n' => return None,
            '\\' => {
                let e = chars.next()?;
                match e {
                    'a' => out.push('\u{7}'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'v' => out.push('\u{b}'),
                    '\\' => out.push('\\'),
                    '"' => out.push('"'),
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let hex: String = chars.by_ref().take(n).collect();
                        if hex.len() != n {
                            return None;
                        }
                        out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                    }
                    '0'..='7' => {
                        let rest: String = chars.by_ref().take(2).collect();
                        let code = u32::from_str_radix(&format!("{e}{rest}"), 8).ok()?;
                        out.push(char::from_u32(code)?);
                    }
                    _ => return None,
                }
            }
            _ => out.push(c),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(s: &str) -> Vec<String> {
        split_words(s).unwrap()
    }

    #[test]
    fn words_and_quotes() {
        assert_eq!(split("bash -o errexit  -c"), ["bash", "-o", "errexit", "-c"]);
        assert_eq!(split(r#"/bin/echo '\$HOME'"#), ["/bin/echo", r"\$HOME"]);
        assert_eq!(split(r#"echo "a b" 'c d'"#), ["echo", "a b", "c d"]);
        assert_eq!(split(r#"echo "tab\there""#), ["echo", "tab\there"]);
        assert_eq!(split(r#"echo "\$X""#), ["echo", r"\$X"]);
        assert_eq!(split(r#"--name="x y""#), [r#"--name="x y""#]);
    }

    #[test]
    fn pipes_and_operators_are_words() {
        assert_eq!(split("a|b || c && d & e"), ["a", "|", "b", "||", "c", "&&", "d", "&", "e"]);
        assert_eq!(split("echo 'a|b'"), ["echo", "a|b"]);
    }

    #[test]
    fn unclosed_quotes_and_empty_lines_fail() {
        assert!(split_words("echo 'oops").is_err());
        assert!(split_words("   ").is_err());
    }
}
