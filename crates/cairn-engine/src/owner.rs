//! Who owns a run's execution, and whether that owner is still alive.
//!
//! A local run is owned by one `cairn` process, named `local:HOST:PID:START`
//! (START is the process start time, so a recycled pid is not mistaken for
//! the owner). Another command on the same host can then tell at once that a
//! run's owner died — no need to wait for its leases to expire.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalOwner {
    pub host: String,
    pub pid: u32,
    /// Clock ticks since boot at which the process started (`/proc/PID/stat` field 22).
    pub start: u64,
}

impl LocalOwner {
    pub fn current() -> LocalOwner {
        let pid = std::process::id();
        LocalOwner { host: hostname(), pid, start: process_start(pid).unwrap_or(0) }
    }

    /// A `cairn run` process: `local:HOST:PID:START`.
    pub fn parse(s: &str) -> Option<LocalOwner> {
        Self::parse_kind(s, "local")
    }

    /// A `cairn serve` process: `server:HOST:PID:START`.
    pub fn parse_server(s: &str) -> Option<LocalOwner> {
        Self::parse_kind(s, "server")
    }

    /// The name this process has as a server.
    pub fn server_name(&self) -> String {
        format!("server:{}:{}:{}", self.host, self.pid, self.start)
    }

    fn parse_kind(s: &str, kind: &str) -> Option<LocalOwner> {
        let rest = s.strip_prefix(kind)?.strip_prefix(':')?;
        let mut parts = rest.rsplitn(3, ':');
        let start = parts.next()?.parse().ok()?;
        let pid = parts.next()?.parse().ok()?;
        let host = parts.next()?.to_owned();
        Some(LocalOwner { host, pid, start })
    }

    /// `Some(false)` when this owner is certainly dead, `Some(true)` when it
    /// is certainly alive, `None` when it lives on another host.
    pub fn is_alive(&self) -> Option<bool> {
        if self.host != hostname() {
            return None;
        }
        Some(process_start(self.pid).is_some_and(|start| start == self.start || self.start == 0))
    }
}

impl fmt::Display for LocalOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "local:{}:{}:{}", self.host, self.pid, self.start)
    }
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The start time of a live, non-zombie process; `None` if there is none.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: split after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") || fields.first() == Some(&"X") {
        return None;
    }
    // Field 22 overall; `rest` starts at field 3.
    fields.get(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_owner_round_trips_and_is_alive() {
        let me = LocalOwner::current();
        assert!(me.start > 0);
        assert_eq!(LocalOwner::parse(&me.to_string()), Some(me.clone()));
        assert_eq!(me.is_alive(), Some(true));
    }

    #[test]
    fn a_dead_or_recycled_pid_is_not_the_owner() {
        let me = LocalOwner::current();
        let recycled = LocalOwner { start: me.start + 1, ..me.clone() };
        assert_eq!(recycled.is_alive(), Some(false));
        let elsewhere = LocalOwner { host: "some-other-host".into(), ..me };
        assert_eq!(elsewhere.is_alive(), None);
        assert_eq!(LocalOwner::parse("worker:abc"), None);
    }
}
