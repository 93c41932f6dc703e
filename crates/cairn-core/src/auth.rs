//! Access control: the roles an API token can have, the token's secret
//! (random, with a recognisable prefix, kept only as a SHA-256 hash) and
//! the optional scope of a token to workflows by name pattern; the key of
//! a web session got by signing in with a token, and its anti-CSRF token.
//!
//! Roles are not a ladder all the way up: `viewer` < `operator` < `admin`
//! for the API, while `worker` is a separate credential that only speaks
//! the worker protocol — an admin token does not lease tasks.

use std::fmt;
use std::str::FromStr;

use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read everything.
    Viewer,
    /// Read, and trigger, cancel and retry runs.
    Operator,
    /// Everything an operator may, and manage tokens and settings.
    Admin,
    /// Only the worker protocol, on the queues the token names.
    Worker,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Operator, Role::Admin, Role::Worker];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
            Role::Worker => "worker",
        }
    }

    /// Whether a token of this role may do what needs `needed`.
    pub fn allows(self, needed: Role) -> bool {
        match (self, needed) {
            (Role::Worker, needed) => needed == Role::Worker,
            (_, Role::Worker) => false,
            (Role::Admin, _) => true,
            (Role::Operator, needed) => matches!(needed, Role::Viewer | Role::Operator),
            (Role::Viewer, needed) => needed == Role::Viewer,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A role name that is not one of the four.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a role: expected viewer, operator, admin or worker")]
pub struct BadRole(pub String);

impl FromStr for Role {
    type Err = BadRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL.into_iter().find(|r| r.as_str() == s.trim()).ok_or_else(|| BadRole(s.to_owned()))
    }
}

/// The start of every secret, so leak scanners and people recognise one.
pub const SECRET_PREFIX: &str = "cairn_";

/// How many random base62 characters follow the prefix (about 238 bits).
const SECRET_RANDOM: usize = 40;

/// How many leading characters of a secret a list shows to recognise it.
const SHOWN: usize = 12;

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A token's secret: `cairn_` and 40 random base62 characters. Shown once
/// when made; stored only as its [`hash`](Secret::hash). Its `Debug` does
/// not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A new random secret.
    pub fn generate() -> Secret {
        Secret(random_text(SECRET_PREFIX, SECRET_RANDOM))
    }

    /// `text` as a secret if it has the shape of one (a bearer header's
    /// value, say); `None` otherwise.
    pub fn parse(text: &str) -> Option<Secret> {
        has_shape(text, SECRET_PREFIX, SECRET_RANDOM).then(|| Secret(text.to_owned()))
    }

    /// The first characters, shown in lists to recognise a token.
    pub fn prefix(&self) -> String {
        self.0[..SHOWN].to_owned()
    }

    /// What the store keeps: the SHA-256 of the secret.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }

    /// The secret itself, to show once or send.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({}…)", &self.0[..SECRET_PREFIX.len()])
    }
}

/// The start of a web session's key (the value of its cookie): not a
/// token's prefix, so a key is never mistaken for a token, yet scanners
/// that look for `cairn_` still catch a leaked one.
pub const SESSION_PREFIX: &str = "cairn_session_";

/// The key of a web session, got by signing in with a token: the browser
/// holds it in an `HttpOnly` cookie; the store keeps only its SHA-256.
/// Its `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKey(String);

impl SessionKey {
    pub fn generate() -> SessionKey {
        SessionKey(random_text(SESSION_PREFIX, SECRET_RANDOM))
    }

    /// `text` as a key if it has the shape of one (a cookie's value).
    pub fn parse(text: &str) -> Option<SessionKey> {
        has_shape(text, SESSION_PREFIX, SECRET_RANDOM).then(|| SessionKey(text.to_owned()))
    }

    /// What the store keeps.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }

    /// The key itself, to set in the cookie.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey(…)")
    }
}

/// A new anti-CSRF token for a session: 32 random base62 characters. A
/// page reads it from the API and sends it back in a header with every
/// change, which a page of another site cannot do.
pub fn csrf_token() -> String {
    random_text("", 32)
}

/// Whether a sent anti-CSRF token is the session's, compared in constant
/// time so the answer's timing tells nothing of how much matched.
pub fn csrf_matches(expected: &str, sent: &str) -> bool {
    let (a, b) = (expected.as_bytes(), sent.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn random_text(prefix: &str, random: usize) -> String {
    let mut rng = rand::rng();
    let mut s = String::with_capacity(prefix.len() + random);
    s.push_str(prefix);
    for _ in 0..random {
        s.push(char::from(BASE62[rng.random_range(0..BASE62.len())]));
    }
    s
}

fn has_shape(text: &str, prefix: &str, random: usize) -> bool {
    text.strip_prefix(prefix)
        .is_some_and(|r| r.len() == random && r.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// The workflows a token is limited to: a name pattern in which `*` stands
/// for any run of characters (`etl-*`, `*-nightly`, `*`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WorkflowScope(String);

/// A workflow pattern that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a workflow pattern: expected a name in which * stands for any characters, like etl-*")]
pub struct BadScope(pub String);

impl WorkflowScope {
    pub fn parse(pattern: &str) -> Result<WorkflowScope, BadScope> {
        let p = pattern.trim();
        if p.is_empty() || p.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(BadScope(pattern.to_owned()));
        }
        Ok(WorkflowScope(p.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the workflow named `name` is within the scope.
    pub fn matches(&self, name: &str) -> bool {
        let mut parts = self.0.split('*');
        let first = parts.next().unwrap_or("");
        let Some(mut rest) = name.strip_prefix(first) else { return false };
        let parts: Vec<&str> = parts.collect();
        let Some((last, middle)) = parts.split_last() else {
            return rest.is_empty();
        };
        for part in middle {
            match rest.find(part) {
                Some(i) => rest = &rest[i + part.len()..],
                None => return false,
            }
        }
        rest.len() >= last.len() && rest.ends_with(last)
    }
}

impl fmt::Display for WorkflowScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for WorkflowScope {
    type Err = BadScope;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        WorkflowScope::parse(s)
    }
}

/// Why a new token cannot be made, and which of its fields is wrong
/// (`name` or `queues`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BadToken {
    pub field: &'static str,
    pub message: String,
}

/// The rules of a new token, the same wherever one is made (the API and
/// `cairn token create`): a name without surrounding spaces that does not
/// look like a token id; queues for a worker token, and only for one; no
/// blank queue names.
pub fn check_new_token(name: &str, role: Role, queues: &[String]) -> Result<(), BadToken> {
    let bad = |field, message: String| Err(BadToken { field, message });
    if name.trim().is_empty() || name.trim() != name {
        return bad(
            "name",
            format!("{name:?} is not a token name: expected a name without surrounding spaces"),
        );
    }
    if name.parse::<crate::TokenId>().is_ok() {
        return bad("name", format!("{name:?} looks like a token id: choose another name"));
    }
    match (role, queues.is_empty()) {
        (Role::Worker, true) => return bad("queues", "a worker token needs at least one queue".to_owned()),
        (role, false) if role != Role::Worker => {
            return bad("queues", format!("queues are for worker tokens; a {role} token has no queues"));
        }
        _ => {}
    }
    if let Some(q) = queues.iter().find(|q| q.trim().is_empty()) {
        return bad("queues", format!("{q:?} is not a queue name"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_matrix() {
        use Role::*;
        let allowed = |r: Role| Role::ALL.into_iter().filter(|n| r.allows(*n)).collect::<Vec<_>>();
        assert_eq!(allowed(Viewer), [Viewer]);
        assert_eq!(allowed(Operator), [Viewer, Operator]);
        assert_eq!(allowed(Admin), [Viewer, Operator, Admin]);
        assert_eq!(allowed(Worker), [Worker]);
    }

    #[test]
    fn roles_parse_print_and_serialize_in_lowercase() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
            assert_eq!(r.to_string(), r.as_str());
            assert_eq!(format!("{r:<9}|"), format!("{:<9}|", r.as_str()), "padded in tables");
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{r}\""));
        }
        let err = "root".parse::<Role>().unwrap_err().to_string();
        assert!(err.contains("viewer, operator, admin or worker"), "{err}");
    }

    #[test]
    fn session_keys_are_not_tokens_and_csrf_tokens_compare_whole() {
        let k = SessionKey::generate();
        assert!(k.expose().starts_with(SESSION_PREFIX));
        assert_eq!(SessionKey::parse(k.expose()), Some(k.clone()));
        assert_eq!(Secret::parse(k.expose()), None, "a session key is not a token");
        assert_eq!(SessionKey::parse(Secret::generate().expose()), None, "a token is not a session key");
        assert_eq!(SessionKey::parse(&k.expose()[1..]), None);
        assert!(!format!("{k:?}").contains(&k.expose()[SESSION_PREFIX.len()..]));
        assert_ne!(SessionKey::generate().hash(), k.hash());

        let c = csrf_token();
        assert_eq!(c.len(), 32);
        assert!(csrf_matches(&c, &c.clone()));
        assert!(!csrf_matches(&c, &c[1..]));
        let other_last = if c.ends_with('a') { 'b' } else { 'a' };
        assert!(!csrf_matches(&c, &format!("{}{other_last}", &c[..31])));
        assert!(!csrf_matches(&c, ""));
        assert_ne!(csrf_token(), c);
    }

    #[test]
    fn secrets_have_their_shape_and_hide_in_debug() {
        let s = Secret::generate();
        assert_eq!(s.expose().len(), 46);
        assert!(s.expose().starts_with("cairn_"));
        assert_eq!(Secret::parse(s.expose()), Some(s.clone()));
        assert_eq!(s.prefix(), s.expose()[..12]);
        assert_ne!(Secret::generate(), s);
        assert!(!format!("{s:?}").contains(&s.expose()[6..]));
        assert_eq!(s.hash(), Secret::parse(s.expose()).unwrap().hash());
        assert_ne!(s.hash(), Secret::generate().hash());
        let body = &s.expose()[6..];
        for bad in [
            String::new(),
            body.to_owned(),
            format!("cairn_{}", &body[1..]),
            format!("cairn_{body}x"),
            format!("cairn_{}-", &body[1..]),
            format!("CAIRN_{body}"),
        ] {
            assert_eq!(Secret::parse(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn new_tokens_follow_one_set_of_rules() {
        let q = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(check_new_token("ci", Role::Operator, &[]), Ok(()));
        assert_eq!(check_new_token("gpu-1", Role::Worker, &q(&["gpu"])), Ok(()));
        let field =
            |name: &str, role, queues: &[String]| check_new_token(name, role, queues).unwrap_err().field;
        assert_eq!(field("", Role::Viewer, &[]), "name");
        assert_eq!(field(" ci", Role::Viewer, &[]), "name");
        assert_eq!(
            field(&crate::TokenId::new(crate::Timestamp::from_micros(1)).to_string(), Role::Viewer, &[]),
            "name"
        );
        assert_eq!(field("w", Role::Worker, &[]), "queues");
        assert_eq!(field("v", Role::Viewer, &q(&["gpu"])), "queues");
        assert_eq!(field("w", Role::Worker, &q(&[" "])), "queues");
    }

    #[test]
    fn the_hash_is_sha256() {
        let s = Secret(format!("cairn_{}", "a".repeat(40)));
        let hex: String = s.hash().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex.len(), 64);
        assert_eq!(s.hash(), <[u8; 32]>::from(Sha256::digest(s.expose())));
    }

    #[test]
    fn scopes_match_names_by_wildcards() {
        let cases = [
            ("etl-*", "etl-daily", true),
            ("etl-*", "etl-", true),
            ("etl-*", "report", false),
            ("etl-*", "xetl-daily", false),
            ("*-nightly", "etl-nightly", true),
            ("*-nightly", "etl-nightly-2", false),
            ("*", "anything", true),
            ("etl", "etl", true),
            ("etl", "etl-daily", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "a-b-c", true),
            ("a*b*c", "a-c-b", false),
            ("ab*ba", "aba", false),
            ("ab*ba", "abba", true),
        ];
        for (pattern, name, want) in cases {
            assert_eq!(WorkflowScope::parse(pattern).unwrap().matches(name), want, "{pattern} ~ {name}");
        }
        for bad in ["", "  ", "etl daily"] {
            assert!(WorkflowScope::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(WorkflowScope::parse(" etl-* ").unwrap().as_str(), "etl-*");
    }
}
