//! Planning the history searches of [`crate::history`] for both backends:
//! checking a search (its page size, its cursor), choosing the index that
//! drives it, and writing the SQL of each ordered index walk — a *branch* —
//! with its parameters, in either dialect.
//!
//! A plan is a list of branches. Each selects `(no, id, finished_at)` of
//! the rows it reaches, in page order, at most a page and one row: an
//! equality on the driving index's leading columns, the id window and the
//! keyset bound as the index range, and every other filter checked on the
//! rows the walk reaches. A set of values (statuses, workflows, …) is one
//! branch per value, so every branch is a single ordered range; the backend
//! merges them (SQLite steps every branch lazily and merges rows as they
//! come, PostgreSQL sends one `UNION ALL` whose branches each stop after a
//! page) and reads the whole records of the page's rows by primary key.
//!
//! Only a *bounded* drive sorts: a filter that a probe (an index-only count
//! that stops at [`FEW`]) found to match few rows may drive a search whose
//! index does not give the page order — the tasks of a few workers or of a
//! few runs, the finished runs of a rare label or of a long id prefix — and
//! then its matches, no more than [`FEW`] rows (or the tasks of
//! [`FEW_RUNS`] runs), are sorted.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use cairn_core::{RunId, RunStatus, TaskStatus, Timestamp};

use crate::error::StoreError;
use crate::history::{Cursor, Order, RunFilter, RunSearch, RunSort, TaskFilter, TaskSearch, TimeRange};
use crate::query::{DEFAULT_PAGE, id_prefix_range};

/// The largest page a search may ask for.
pub(crate) const MAX_LIMIT: usize = 1000;

/// At most this many ordered walks are merged for one page; a filter with
/// more values is checked on the rows of another walk instead.
pub(crate) const MAX_BRANCHES: usize = 64;

/// A filter matching at most this many rows may drive a search whose index
/// does not give the page's order; its matches are then sorted.
pub(crate) const FEW: usize = 1000;

/// A run id prefix matching at most this many runs drives a task search:
/// their tasks are read by run and sorted.
pub(crate) const FEW_RUNS: usize = 64;

/// How a backend serves a search (for tests and diagnosis): which index
/// drives it, and each statement it runs with the database's plan of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryPlan {
    /// The drive, e.g. `runs by workflow and status`.
    pub shape: String,
    /// The probes, the branches, then the read of one row by primary key.
    pub statements: Vec<PlannedStatement>,
}

/// One statement of a [`QueryPlan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedStatement {
    pub sql: String,
    /// SQLite: `EXPLAIN QUERY PLAN`, one line per step, indented under its
    /// parent. PostgreSQL: `EXPLAIN (FORMAT JSON)`.
    pub plan: String,
}

/// The SQL dialect a plan is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// A parameter of a search's SQL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Value {
    /// A time in microseconds (`INTEGER`, `bigint`).
    Int(i64),
    /// A status code (`INTEGER`, `smallint`).
    Status(u8),
    Text(String),
    /// A run or task id (`BLOB`, `uuid`).
    Id([u8; 16]),
}

/// SQL text being written, with its parameters.
#[derive(Clone, Debug)]
pub(crate) struct Sql {
    pub(crate) dialect: Dialect,
    pub(crate) text: String,
    pub(crate) params: Vec<Value>,
}

impl Sql {
    pub(crate) fn new(dialect: Dialect) -> Sql {
        Sql { dialect, text: String::new(), params: Vec::new() }
    }

    pub(crate) fn push(&mut self, text: &str) -> &mut Sql {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder for `value`.
    pub(crate) fn bind(&mut self, value: Value) -> &mut Sql {
        self.params.push(value);
        let n = self.params.len();
        match self.dialect {
            Dialect::Sqlite => self.text.push_str(&format!("?{n}")),
            Dialect::Postgres => self.text.push_str(&format!("${n}")),
        }
        self
    }

    /// `(p1, p2, …)`.
    fn list(&mut self, values: impl IntoIterator<Item = Value>) -> &mut Sql {
        self.push("(");
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.bind(value);
        }
        self.push(")")
    }

    /// SQLite's `INDEXED BY`: the walk uses exactly this index, or the
    /// statement fails to prepare (so a test notices). PostgreSQL has no
    /// such clause; its planner is checked by the plan tests.
    fn indexed_by(&mut self, index: &str) -> &mut Sql {
        if self.dialect == Dialect::Sqlite {
            self.push(" INDEXED BY ").push(index);
        }
        self
    }

    /// SQLite's `NOT INDEXED`: only the rowid (the primary key) may be used.
    fn not_indexed(&mut self) -> &mut Sql {
        if self.dialect == Dialect::Sqlite {
            self.push(" NOT INDEXED");
        }
        self
    }

    /// ` AS l` joined to the run of each label row by primary key, the
    /// label walk staying the outer loop: SQLite's `CROSS JOIN`, and on
    /// PostgreSQL a `LATERAL` subquery kept whole by `OFFSET 0`, so the
    /// planner neither hashes the runs nor sorts what the walk reads.
    fn runs_of_labels(&mut self) -> &mut Sql {
        match self.dialect {
            Dialect::Sqlite => self.push(" AS l CROSS JOIN runs AS r ON r.run_no = l.run_no"),
            Dialect::Postgres => self.push(
                " AS l CROSS JOIN LATERAL (SELECT * FROM runs AS r WHERE r.run_no = l.run_no OFFSET 0) AS r",
            ),
        }
    }

    /// Ends a correlated subquery that checks a filter on the row reached:
    /// on PostgreSQL `OFFSET 0` keeps it a check per row (a subplan) rather
    /// than a join the planner may turn into a scan of the other table.
    fn per_row(&mut self) -> &mut Sql {
        if self.dialect == Dialect::Postgres {
            self.push(" OFFSET 0");
        }
        self.push(")")
    }

    /// `LIMIT n`, written out: a page size is a known small number, and a
    /// planner that sees it plans for it.
    pub(crate) fn limit(&mut self, n: usize) -> &mut Sql {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        self.push(&format!(" LIMIT {n}"))
    }
}

/// Appends a search's conditions: ` WHERE a`, then ` AND b`, …
struct Where {
    first: bool,
}

impl Where {
    fn new() -> Where {
        Where { first: true }
    }

    fn and<'s>(&mut self, sql: &'s mut Sql) -> &'s mut Sql {
        sql.push(if self.first { " WHERE " } else { " AND " });
        self.first = false;
        sql
    }
}

// ---------------------------------------------------------------------------
// Keys, windows and pages

/// A row's place in a page's order: its finish time (for
/// [`RunSort::Finished`]; 0 otherwise) and its id, which breaks ties.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Key {
    pub(crate) finished: i64,
    pub(crate) id: [u8; 16],
}

/// An inclusive range of 128-bit ids; empty when `lo > hi`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    pub(crate) lo: u128,
    pub(crate) hi: u128,
}

impl Window {
    const ALL: Window = Window { lo: 0, hi: u128::MAX };
    const EMPTY: Window = Window { lo: 1, hi: 0 };

    fn is_empty(self) -> bool {
        self.lo > self.hi
    }

    fn and(self, other: Window) -> Window {
        Window { lo: self.lo.max(other.lo), hi: self.hi.min(other.hi) }
    }

    /// The ids made in `range`, in whole milliseconds (`from` rounded down,
    /// `to` rounded up): a ULID's leading 48 bits are its milliseconds.
    fn submitted(range: &TimeRange) -> Window {
        const MAX_MS: i64 = (1 << 48) - 1;
        let lo = match range.from {
            None => 0,
            Some(from) => {
                let ms = from.as_micros().div_euclid(1000);
                if ms > MAX_MS {
                    return Window::EMPTY;
                }
                (ms.max(0) as u128) << 80
            }
        };
        let hi = match range.to {
            None => u128::MAX,
            Some(to) => {
                let ms = to.as_micros().div_euclid(1000) + i64::from(to.as_micros().rem_euclid(1000) != 0);
                if ms <= 0 {
                    return Window::EMPTY;
                }
                if ms > MAX_MS { u128::MAX } else { ((ms as u128) << 80) - 1 }
            }
        };
        Window { lo, hi }
    }

    /// The ids whose text starts with `prefix`; empty when none can.
    fn prefix(prefix: Option<&str>) -> Window {
        match prefix {
            None => Window::ALL,
            Some(prefix) => match id_prefix_range(prefix) {
                Some((lo, hi)) => Window { lo: u128::from_be_bytes(lo), hi: u128::from_be_bytes(hi) },
                None => Window::EMPTY,
            },
        }
    }

    /// The ids after `id` in page order.
    fn after(id: [u8; 16], order: Order) -> Window {
        let id = u128::from_be_bytes(id);
        match order {
            Order::NewestFirst => match id.checked_sub(1) {
                Some(hi) => Window { lo: 0, hi },
                None => Window::EMPTY,
            },
            Order::OldestFirst => match id.checked_add(1) {
                Some(lo) => Window { lo, hi: u128::MAX },
                None => Window::EMPTY,
            },
        }
    }
}

/// What kind of rows a search pages through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Runs,
    Tasks,
}

impl Kind {
    fn tag(self) -> u8 {
        match self {
            Kind::Runs => b'r',
            Kind::Tasks => b't',
        }
    }
}

/// The page a search asks for, once checked.
#[derive(Clone, Debug)]
pub(crate) struct Page {
    kind: Kind,
    pub(crate) sort: RunSort,
    pub(crate) order: Order,
    /// Rows on the page (one more is read, to know whether more follow).
    pub(crate) limit: usize,
    /// The last row of the previous page.
    after: Option<Key>,
    /// Of the search's filter, sort and order: what a cursor is bound to.
    fingerprint: u64,
}

impl Page {
    fn new(
        kind: Kind,
        sort: RunSort,
        order: Order,
        limit: usize,
        cursor: Option<&Cursor>,
        fingerprint: u64,
    ) -> Result<Page, StoreError> {
        let limit = match limit {
            0 => DEFAULT_PAGE,
            n if n > MAX_LIMIT => {
                return Err(StoreError::InvalidQuery(format!(
                    "a page of {n} rows is more than the {MAX_LIMIT} a search returns at once; ask for at most \
                     {MAX_LIMIT} and follow `next`"
                )));
            }
            n => n,
        };
        let after = cursor.map(|c| decode_cursor(c, kind, fingerprint, sort)).transpose()?;
        Ok(Page { kind, sort, order, limit, after, fingerprint })
    }

    /// Rows to read: the page and one more.
    pub(crate) fn fetch(&self) -> usize {
        self.limit.saturating_add(1)
    }

    /// A row's key, from the `id` and `finished_at` a branch returned.
    pub(crate) fn key(&self, id: [u8; 16], finished_at: Option<i64>) -> Key {
        match self.sort {
            RunSort::Submitted => Key { finished: 0, id },
            RunSort::Finished => Key { finished: finished_at.unwrap_or(i64::MIN), id },
        }
    }

    /// `a` before `b` in page order is `Less`.
    pub(crate) fn cmp(&self, a: &Key, b: &Key) -> Ordering {
        match self.order {
            Order::OldestFirst => a.cmp(b),
            Order::NewestFirst => b.cmp(a),
        }
    }

    /// Splits the rows read (in page order, up to [`Page::fetch`]) into the
    /// page and the cursor of the next one, if a row was left over.
    pub(crate) fn split<T>(&self, mut rows: Vec<(Key, T)>) -> (Vec<T>, Option<Cursor>) {
        let next = if rows.len() > self.limit {
            rows.truncate(self.limit);
            rows.last().map(|(key, _)| self.cursor(*key))
        } else {
            None
        };
        (rows.into_iter().map(|(_, row)| row).collect(), next)
    }

    fn cursor(&self, key: Key) -> Cursor {
        let mut bytes = Vec::with_capacity(CURSOR_LEN);
        bytes.push(CURSOR_VERSION);
        bytes.push(self.kind.tag());
        bytes.extend_from_slice(&self.fingerprint.to_be_bytes());
        bytes.push(sort_tag(self.sort));
        bytes.extend_from_slice(&key.finished.to_be_bytes());
        bytes.extend_from_slice(&key.id);
        Cursor(base64url::encode(&bytes))
    }

    /// `ORDER BY` of a branch whose key columns are `finished` and `id`.
    pub(crate) fn order_by(&self, sql: &mut Sql, finished: &str, id: &str) {
        let dir = match self.order {
            Order::NewestFirst => " DESC",
            Order::OldestFirst => " ASC",
        };
        sql.push(" ORDER BY ");
        if self.sort == RunSort::Finished {
            sql.push(finished).push(dir).push(", ");
        }
        sql.push(id).push(dir);
    }

    /// The conditions every branch of a finished sort has: finished, in
    /// the range, after the cursor.
    fn finished_conditions(&self, sql: &mut Sql, w: &mut Where, range: &TimeRange, finished: &str, id: &str) {
        if self.sort == RunSort::Finished {
            w.and(sql).push(finished).push(" IS NOT NULL");
        }
        if let Some(from) = range.from {
            w.and(sql).push(finished).push(" >= ").bind(Value::Int(from.as_micros()));
        }
        if let Some(to) = range.to {
            w.and(sql).push(finished).push(" < ").bind(Value::Int(to.as_micros()));
        }
        if let (RunSort::Finished, Some(after)) = (self.sort, self.after) {
            let op = match self.order {
                Order::NewestFirst => " < ",
                Order::OldestFirst => " > ",
            };
            w.and(sql).push(&format!("({finished}, {id})")).push(op).push("(");
            sql.bind(Value::Int(after.finished)).push(", ").bind(Value::Id(after.id)).push(")");
        }
    }

    /// The ids a submission sort still has to walk after the cursor.
    fn id_window(&self) -> Window {
        match (self.sort, self.after) {
            (RunSort::Submitted, Some(after)) => Window::after(after.id, self.order),
            _ => Window::ALL,
        }
    }
}

fn sort_tag(sort: RunSort) -> u8 {
    match sort {
        RunSort::Submitted => 0,
        RunSort::Finished => 1,
    }
}

fn order_tag(order: Order) -> u8 {
    match order {
        Order::NewestFirst => 0,
        Order::OldestFirst => 1,
    }
}

fn page_size(limit: usize) -> usize {
    if limit == 0 { DEFAULT_PAGE } else { limit }
}

// ---------------------------------------------------------------------------
// Cursors

const CURSOR_VERSION: u8 = 1;
/// version, kind, fingerprint (8), sort, finish time (8), id (16).
const CURSOR_LEN: usize = 1 + 1 + 8 + 1 + 8 + 16;

fn decode_cursor(cursor: &Cursor, kind: Kind, fingerprint: u64, sort: RunSort) -> Result<Key, StoreError> {
    let malformed = |why: &str| {
        StoreError::InvalidQuery(format!(
            "malformed cursor ({why}); pass the `next` of the previous page as it was, or start again without one"
        ))
    };
    let bytes = base64url::decode(&cursor.0).ok_or_else(|| malformed("not URL-safe base64"))?;
    if bytes.len() != CURSOR_LEN {
        return Err(malformed(&format!("{} bytes, not {CURSOR_LEN}", bytes.len())));
    }
    if bytes[0] != CURSOR_VERSION {
        return Err(malformed(&format!("unknown version {}", bytes[0])));
    }
    let fp = u64::from_be_bytes(bytes[2..10].try_into().unwrap_or_default());
    if bytes[1] != kind.tag() || fp != fingerprint || bytes[10] != sort_tag(sort) {
        return Err(StoreError::InvalidQuery(
            "this cursor belongs to another search (other filters, sort or order); start again without it"
                .to_owned(),
        ));
    }
    let finished = i64::from_be_bytes(bytes[11..19].try_into().unwrap_or_default());
    let id: [u8; 16] = bytes[19..35].try_into().map_err(|_| malformed("short id"))?;
    Ok(Key { finished, id })
}

/// FNV-1a (64-bit) over a canonical encoding of a search: the same on every
/// server and every build, unlike std's hasher, so a cursor outlives a restart.
struct Fingerprint(u64);

impl Fingerprint {
    fn new(kind: Kind, sort: RunSort, order: Order) -> Fingerprint {
        let mut fp = Fingerprint(0xcbf2_9ce4_8422_2325);
        fp.bytes(&[kind.tag(), sort_tag(sort), order_tag(order)]);
        fp
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn text(&mut self, text: &str) {
        self.bytes(&(text.len() as u64).to_be_bytes());
        self.bytes(text.as_bytes());
    }

    fn texts(&mut self, texts: &[String]) {
        self.bytes(&(texts.len() as u64).to_be_bytes());
        for text in texts {
            self.text(text);
        }
    }

    fn codes(&mut self, codes: impl IntoIterator<Item = u8>) {
        let codes: Vec<u8> = codes.into_iter().collect();
        self.bytes(&(codes.len() as u64).to_be_bytes());
        self.bytes(&codes);
    }

    fn time(&mut self, t: Option<Timestamp>) {
        match t {
            None => self.bytes(&[0]),
            Some(t) => {
                self.bytes(&[1]);
                self.bytes(&t.as_micros().to_be_bytes());
            }
        }
    }

    fn range(&mut self, range: &TimeRange) {
        self.time(range.from);
        self.time(range.to);
    }

    fn opt_text(&mut self, text: Option<&str>) {
        match text {
            None => self.bytes(&[0]),
            Some(text) => {
                self.bytes(&[1]);
                self.text(text);
            }
        }
    }
}

/// Sorted, without repeats: a filter's set, as the fingerprint sees it.
fn set<T: Ord + Clone>(values: &[T]) -> Vec<T> {
    values.iter().cloned().collect::<BTreeSet<_>>().into_iter().collect()
}

/// URL-safe base64 without padding (RFC 4648 §5), for cursors.
mod base64url {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    pub(super) fn encode(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            }
        }
        out
    }

    pub(super) fn decode(text: &str) -> Option<Vec<u8>> {
        let digits = text
            .bytes()
            .map(|c| ALPHABET.iter().position(|a| *a == c).map(|v| v as u32))
            .collect::<Option<Vec<u32>>>()?;
        if digits.len() % 4 == 1 {
            return None;
        }
        let mut out = Vec::with_capacity(digits.len() * 3 / 4);
        for chunk in digits.chunks(4) {
            let n = chunk.iter().enumerate().fold(0u32, |n, (i, d)| n | (d << (18 - 6 * i)));
            for i in 0..chunk.len() - 1 {
                out.push((n >> (16 - 8 * i)) as u8);
            }
            // The bits past the last byte must be zero: one text per cursor.
            let used = 8 * (chunk.len() - 1);
            if chunk.len() < 4 && n & ((1 << (24 - used)) - 1) != 0 {
                return None;
            }
        }
        Some(out)
    }
}

// ---------------------------------------------------------------------------
// Labels

/// The terms a run's labels are stored under in `run_labels`: each label
/// itself (`key` or `key=value`) and, for `key=value`, its `key` — so a
/// filter `key` matches any value of the key, and `key=value` that value.
pub(crate) fn label_terms(labels: &[String]) -> Vec<String> {
    let mut terms = BTreeSet::new();
    for label in labels {
        terms.insert(label.clone());
        if let Some((key, _)) = label.split_once('=') {
            terms.insert(key.to_owned());
        }
    }
    terms.into_iter().collect()
}

// ---------------------------------------------------------------------------
// Probes

/// A filter a probe found to match few rows ([`FEW`], [`FEW_RUNS`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Probe {
    /// The workers' attempts.
    Workers,
    /// Runs: the runs of the id window (an id prefix, a submission
    /// window). Tasks: the runs of the run id prefix.
    Prefix,
    /// The runs of label `n` (of the filter's, sorted).
    Label(u8),
}

/// Labels probed at most, to drive by the rarest.
const MAX_LABEL_PROBES: usize = 8;

/// An index-only count of what one filter (or one value of it) matches,
/// stopping past `cap`; a probe of several values sums its statements.
pub(crate) struct ProbeSql {
    pub(crate) probe: Probe,
    pub(crate) cap: usize,
    pub(crate) sql: Sql,
}

impl ProbeSql {
    /// `SELECT count(*) FROM (SELECT 1 FROM <from> WHERE … ORDER BY <order>
    /// LIMIT cap+1) AS x`: one range of one index, read in its order (so
    /// no planner prefers a scan that would stop early just as well).
    fn new(
        dialect: Dialect,
        probe: Probe,
        cap: usize,
        order: &str,
        write: impl FnOnce(&mut Sql, &mut Where),
    ) -> ProbeSql {
        let mut sql = Sql::new(dialect);
        sql.push("SELECT count(*) FROM (SELECT 1 FROM ");
        let mut w = Where::new();
        write(&mut sql, &mut w);
        sql.push(" ORDER BY ").push(order).limit(cap + 1).push(") AS x");
        ProbeSql { probe, cap, sql }
    }
}

/// What the probes counted: each probe's count (summed over its
/// statements, each stopping past the cap) and its cap.
#[derive(Clone, Debug, Default)]
pub(crate) struct Few(std::collections::BTreeMap<Probe, (usize, usize)>);

impl Few {
    pub(crate) fn new(counts: impl IntoIterator<Item = (Probe, usize, usize)>) -> Few {
        let mut sums = std::collections::BTreeMap::<Probe, (usize, usize)>::new();
        for (probe, cap, count) in counts {
            let sum = sums.entry(probe).or_insert((0, cap));
            sum.0 = sum.0.saturating_add(count);
        }
        Few(sums)
    }

    /// Whether `probe` ran and found no more than its cap.
    pub(crate) fn is_few(&self, probe: Probe) -> bool {
        self.0.get(&probe).is_some_and(|(count, cap)| count <= cap)
    }

    fn count(&self, probe: Probe) -> Option<usize> {
        self.0.get(&probe).map(|(count, _)| *count)
    }
}

/// The SQL of a search, branch by branch: what the backends run and merge.
pub(crate) trait Plan {
    /// Which index drives the search, for tests and [`crate::QueryPlan`].
    fn shape(&self) -> &'static str;
    fn branches(&self) -> usize;
    /// Appends branch `i` to `sql`.
    fn write(&self, i: usize, sql: &mut Sql);
    fn page(&self) -> &Page;
}

// ---------------------------------------------------------------------------
// Runs

/// A run search, checked: its filter in canonical form and its page.
#[derive(Clone, Debug)]
pub(crate) struct Runs {
    statuses: Vec<RunStatus>,
    workflows: Vec<String>,
    triggers: Vec<String>,
    labels: Vec<String>,
    finished: TimeRange,
    /// Submission window ∩ id prefix.
    ids: Window,
    page: Page,
}

impl Runs {
    pub(crate) fn new(q: &RunSearch) -> Result<Runs, StoreError> {
        let f = &q.filter;
        let statuses = set(&f.statuses);
        let (workflows, triggers, labels) = (set(&f.workflows), set(&f.triggers), set(&f.labels));
        let prefix = f.id_prefix.as_deref().map(|p| p.trim().to_ascii_uppercase());
        let mut fp = Fingerprint::new(Kind::Runs, q.sort, q.order);
        fp.codes(statuses.iter().map(|s| s.code()));
        fp.texts(&workflows);
        fp.texts(&triggers);
        fp.texts(&labels);
        fp.range(&f.submitted);
        fp.range(&f.finished);
        fp.opt_text(prefix.as_deref());
        let page = Page::new(Kind::Runs, q.sort, q.order, q.limit, q.cursor.as_ref(), fp.0)?;
        let ids = Window::submitted(&f.submitted).and(Window::prefix(prefix.as_deref()));
        Ok(Runs { statuses, workflows, triggers, labels, finished: f.finished, ids, page })
    }

    /// [`crate::Store::list_runs`]: newest first, any page size, the cursor an id.
    pub(crate) fn listing(
        statuses: &[RunStatus],
        workflow: Option<&str>,
        limit: usize,
        before: Option<RunId>,
    ) -> Runs {
        let filter = RunFilter {
            statuses: statuses.to_vec(),
            workflows: workflow.map(str::to_owned).into_iter().collect(),
            ..RunFilter::default()
        };
        let page = Page {
            kind: Kind::Runs,
            sort: RunSort::Submitted,
            order: Order::NewestFirst,
            limit: page_size(limit),
            after: before.map(|id| Key { finished: 0, id: id.to_bytes() }),
            fingerprint: 0,
        };
        Runs {
            statuses: set(&filter.statuses),
            workflows: set(&filter.workflows),
            triggers: Vec::new(),
            labels: Vec::new(),
            finished: TimeRange::default(),
            ids: Window::ALL,
            page,
        }
    }

    pub(crate) fn page(&self) -> &Page {
        &self.page
    }

    /// The terminal statuses a finished sort walks.
    fn finished_statuses(&self) -> Vec<RunStatus> {
        RunStatus::ALL
            .into_iter()
            .filter(|s| s.is_terminal() && (self.statuses.is_empty() || self.statuses.contains(s)))
            .collect()
    }

    fn window(&self) -> Window {
        self.ids.and(self.page.id_window())
    }

    /// The counts the plan depends on.
    pub(crate) fn probes(&self, dialect: Dialect) -> Vec<ProbeSql> {
        let mut probes = Vec::new();
        if self.page.sort != RunSort::Finished || self.ids.is_empty() {
            return probes;
        }
        if self.ids != Window::ALL {
            let ids = self.ids;
            probes.push(ProbeSql::new(dialect, Probe::Prefix, FEW, "r.id", |sql, w| {
                sql.push("runs AS r").indexed_by("runs_id");
                id_range(sql, w, "r.id", ids);
            }));
        }
        // Which label is rarest, to walk it (or, when it is rare enough, to
        // sort its finished runs).
        if self.labels.len() > 1 || self.page.sort == RunSort::Finished {
            for (n, term) in self.labels.iter().enumerate().take(MAX_LABEL_PROBES) {
                probes.push(ProbeSql::new(dialect, Probe::Label(n as u8), FEW, "l.run_id", |sql, w| {
                    sql.push("run_labels AS l");
                    w.and(sql).push("l.term = ").bind(Value::Text(term.clone()));
                }));
            }
        }
        probes
    }

    /// The label matching the fewest runs, as far as the probes tell.
    fn rarest_label(&self, few: &Few) -> Option<usize> {
        (0..self.labels.len()).min_by_key(|n| few.count(Probe::Label(*n as u8)).unwrap_or(usize::MAX))
    }

    /// Chooses the driving index; `few` holds what [`Runs::probes`] found.
    pub(crate) fn plan(&self, few: &Few) -> RunPlan<'_> {
        let empty = |shape| RunPlan { runs: self, shape, branches: Vec::new() };
        if self.window().is_empty() || empty_range(&self.finished) {
            return empty("nothing can match");
        }
        let by = |index: &'static str, eqs: Vec<(&'static str, Value)>, covers: Covers| RunBranch {
            from: RunFrom::Index(index),
            eqs,
            covers,
        };
        let (shape, branches) = match self.page.sort {
            RunSort::Submitted => {
                let (w, s) = (&self.workflows, &self.statuses);
                if self.ids != Window::ALL && self.ids.hi - self.ids.lo < PREFIX_SPAN {
                    ("runs by id range", vec![by("runs_id", vec![], Covers::default())])
                } else if let Some(n) = self.rarest_label(few) {
                    let covers = Covers { label: Some(n), ..Covers::default() };
                    let term = self.labels[n].clone();
                    ("runs by label", vec![RunBranch { from: RunFrom::Label(term), eqs: vec![], covers }])
                } else if !w.is_empty() && !s.is_empty() && w.len() * s.len() <= MAX_BRANCHES {
                    let covers = Covers { statuses: true, workflows: true, ..Covers::default() };
                    let branches = w
                        .iter()
                        .flat_map(|w| s.iter().map(move |s| (w, s)))
                        .map(|(w, s)| {
                            by(
                                "runs_workflow_status",
                                vec![
                                    ("r.workflow", Value::Text(w.clone())),
                                    ("r.status", Value::Status(s.code())),
                                ],
                                covers,
                            )
                        })
                        .collect();
                    ("runs by workflow and status", branches)
                } else if !w.is_empty() && w.len() <= MAX_BRANCHES {
                    let covers = Covers { workflows: true, ..Covers::default() };
                    let branches = w
                        .iter()
                        .map(|w| by("runs_workflow", vec![("r.workflow", Value::Text(w.clone()))], covers))
                        .collect();
                    ("runs by workflow", branches)
                } else if !s.is_empty() {
                    let covers = Covers { statuses: true, ..Covers::default() };
                    let branches = s
                        .iter()
                        .map(|s| by("runs_status", vec![("r.status", Value::Status(s.code()))], covers))
                        .collect();
                    ("runs by status", branches)
                } else if !self.triggers.is_empty() && self.triggers.len() <= MAX_BRANCHES {
                    let covers = Covers { triggers: true, ..Covers::default() };
                    let branches = self
                        .triggers
                        .iter()
                        .map(|t| by("runs_trigger", vec![("r.trigger_kind", Value::Text(t.clone()))], covers))
                        .collect();
                    ("runs by trigger", branches)
                } else {
                    ("runs by id", vec![by("runs_id", vec![], Covers::default())])
                }
            }
            RunSort::Finished => {
                let statuses = self.finished_statuses();
                if statuses.is_empty() {
                    return empty("nothing can match");
                }
                let w = &self.workflows;
                let label = self.rarest_label(few).filter(|n| few.is_few(Probe::Label(*n as u8)));
                if few.is_few(Probe::Prefix) {
                    ("finished runs of an id range, sorted", vec![by("runs_id", vec![], Covers::default())])
                } else if let Some(n) = label {
                    let covers = Covers { label: Some(n), ..Covers::default() };
                    let branch =
                        RunBranch { from: RunFrom::Label(self.labels[n].clone()), eqs: vec![], covers };
                    ("finished runs of a label, sorted", vec![branch])
                } else if !w.is_empty() && w.len() * statuses.len() <= MAX_BRANCHES {
                    let covers = Covers { statuses: true, workflows: true, ..Covers::default() };
                    let branches = w
                        .iter()
                        .flat_map(|w| statuses.iter().map(move |s| (w, s)))
                        .map(|(w, s)| {
                            by(
                                "runs_workflow_finished",
                                vec![
                                    ("r.workflow", Value::Text(w.clone())),
                                    ("r.status", Value::Status(s.code())),
                                ],
                                covers,
                            )
                        })
                        .collect();
                    ("finished runs by workflow", branches)
                } else {
                    let covers = Covers { statuses: true, ..Covers::default() };
                    let branches = statuses
                        .iter()
                        .map(|s| by("runs_finished", vec![("r.status", Value::Status(s.code()))], covers))
                        .collect();
                    ("finished runs by status", branches)
                }
            }
        };
        RunPlan { runs: self, shape, branches }
    }
}

/// An id window narrower than this is an id prefix (or a submission
/// window) narrow enough to drive a submission-ordered walk by itself:
/// about a minute of ids.
const PREFIX_SPAN: u128 = 60_000 << 80;

fn empty_range(range: &TimeRange) -> bool {
    matches!((range.from, range.to), (Some(from), Some(to)) if from >= to)
}

/// `col >= lo AND col <= hi`, leaving out an open end.
fn id_range(sql: &mut Sql, w: &mut Where, col: &str, ids: Window) {
    if ids.lo > 0 {
        w.and(sql).push(col).push(" >= ").bind(Value::Id(ids.lo.to_be_bytes()));
    }
    if ids.hi < u128::MAX {
        w.and(sql).push(col).push(" <= ").bind(Value::Id(ids.hi.to_be_bytes()));
    }
}

/// Which filters a branch's drive already applies, so they are not checked again.
#[derive(Clone, Copy, Debug, Default)]
struct Covers {
    statuses: bool,
    workflows: bool,
    triggers: bool,
    queues: bool,
    /// The label (its place in the filter's) the drive walks.
    label: Option<usize>,
    workers: bool,
    runs: bool,
}

#[derive(Clone, Debug)]
enum RunFrom {
    Index(&'static str),
    /// `run_labels` by term, then the run by primary key.
    Label(String),
}

#[derive(Clone, Debug)]
struct RunBranch {
    from: RunFrom,
    eqs: Vec<(&'static str, Value)>,
    covers: Covers,
}

/// A run search's branches.
pub(crate) struct RunPlan<'r> {
    runs: &'r Runs,
    shape: &'static str,
    branches: Vec<RunBranch>,
}

impl Plan for RunPlan<'_> {
    fn shape(&self) -> &'static str {
        self.shape
    }

    fn branches(&self) -> usize {
        self.branches.len()
    }

    fn page(&self) -> &Page {
        &self.runs.page
    }

    fn write(&self, i: usize, sql: &mut Sql) {
        let (q, b) = (self.runs, &self.branches[i]);
        let id = match b.from {
            RunFrom::Label(_) if q.page.sort == RunSort::Submitted => "l.run_id",
            _ => "r.id",
        };
        sql.push("SELECT r.run_no AS no, r.id AS id, r.finished_at AS finished_at FROM ");
        let mut w = Where::new();
        match &b.from {
            RunFrom::Index(index) => {
                sql.push("runs AS r").indexed_by(index);
            }
            RunFrom::Label(term) => {
                sql.push("run_labels").runs_of_labels();
                w.and(sql).push("l.term = ").bind(Value::Text(term.clone()));
            }
        }
        for (col, value) in &b.eqs {
            w.and(sql).push(col).push(" = ").bind(value.clone());
        }
        let ids = if q.page.sort == RunSort::Submitted { q.window() } else { q.ids };
        id_range(sql, &mut w, id, ids);
        q.page.finished_conditions(sql, &mut w, &q.finished, "r.finished_at", "r.id");
        if !b.covers.statuses && !q.statuses.is_empty() {
            w.and(sql).push("r.status IN ").list(q.statuses.iter().map(|s| Value::Status(s.code())));
        }
        if !b.covers.workflows && !q.workflows.is_empty() {
            w.and(sql).push("r.workflow IN ").list(q.workflows.iter().cloned().map(Value::Text));
        }
        if !b.covers.triggers && !q.triggers.is_empty() {
            w.and(sql).push("r.trigger_kind IN ").list(q.triggers.iter().cloned().map(Value::Text));
        }
        for (n, term) in q.labels.iter().enumerate().filter(|(n, _)| b.covers.label != Some(*n)) {
            w.and(sql).push(&format!("EXISTS (SELECT 1 FROM run_labels AS l{n} WHERE l{n}.term = "));
            sql.bind(Value::Text(term.clone())).push(&format!(" AND l{n}.run_id = r.id")).per_row();
        }
        q.page.order_by(sql, "r.finished_at", id);
        sql.limit(q.page.fetch());
    }
}

// ---------------------------------------------------------------------------
// Tasks

/// A task search, checked: its filter in canonical form and its page.
#[derive(Clone, Debug)]
pub(crate) struct Tasks {
    statuses: Vec<TaskStatus>,
    workflows: Vec<String>,
    steps: Vec<String>,
    queues: Vec<String>,
    workers: Vec<String>,
    finished: TimeRange,
    /// The submission window of the tasks.
    ids: Window,
    /// The runs' id prefix, if any.
    runs: Option<Window>,
    page: Page,
}

impl Tasks {
    pub(crate) fn new(q: &TaskSearch) -> Result<Tasks, StoreError> {
        let f: &TaskFilter = &q.filter;
        let statuses = set(&f.statuses);
        let (workflows, steps, queues, workers) =
            (set(&f.workflows), set(&f.steps), set(&f.queues), set(&f.workers));
        let prefix = f.run_id_prefix.as_deref().map(|p| p.trim().to_ascii_uppercase());
        let mut fp = Fingerprint::new(Kind::Tasks, q.sort, q.order);
        fp.codes(statuses.iter().map(|s| s.code()));
        fp.texts(&workflows);
        fp.texts(&steps);
        fp.texts(&queues);
        fp.texts(&workers);
        fp.range(&f.submitted);
        fp.range(&f.finished);
        fp.opt_text(prefix.as_deref());
        let page = Page::new(Kind::Tasks, q.sort, q.order, q.limit, q.cursor.as_ref(), fp.0)?;
        Ok(Tasks {
            statuses,
            workflows,
            steps,
            queues,
            workers,
            finished: f.finished,
            ids: Window::submitted(&f.submitted),
            runs: prefix.as_deref().map(|p| Window::prefix(Some(p))),
            page,
        })
    }

    pub(crate) fn page(&self) -> &Page {
        &self.page
    }

    fn window(&self) -> Window {
        self.ids.and(self.page.id_window())
    }

    /// The statuses a walk over finished tasks covers, and those a walk
    /// over live ones does.
    fn split_statuses(&self) -> (Vec<TaskStatus>, Vec<TaskStatus>) {
        let wanted = |s: &TaskStatus| self.statuses.is_empty() || self.statuses.contains(s);
        let done = TaskStatus::ALL.into_iter().filter(|s| s.is_terminal() && wanted(s)).collect();
        // A finish-time range or sort only ever matches finished tasks.
        let live = if self.page.sort == RunSort::Finished || self.finished != TimeRange::default() {
            Vec::new()
        } else {
            TaskStatus::ALL.into_iter().filter(|s| !s.is_terminal() && wanted(s)).collect()
        };
        (done, live)
    }

    pub(crate) fn probes(&self, dialect: Dialect) -> Vec<ProbeSql> {
        let mut probes = Vec::new();
        for worker in &self.workers {
            probes.push(ProbeSql::new(dialect, Probe::Workers, FEW, "a.task_no", |sql, w| {
                sql.push("attempts AS a").indexed_by("attempts_worker");
                w.and(sql).push("a.worker = ").bind(Value::Text(worker.clone()));
            }));
        }
        if let Some(runs) = self.runs.filter(|r| !r.is_empty()) {
            probes.push(ProbeSql::new(dialect, Probe::Prefix, FEW_RUNS, "r.id", |sql, w| {
                sql.push("runs AS r").indexed_by("runs_id");
                id_range(sql, w, "r.id", runs);
            }));
        }
        probes
    }

    pub(crate) fn plan(&self, few: &Few) -> TaskPlan<'_> {
        let empty = |shape| TaskPlan { tasks: self, shape, branches: Vec::new() };
        let (done, live) = self.split_statuses();
        if self.window().is_empty()
            || empty_range(&self.finished)
            || self.runs.is_some_and(Window::is_empty)
            || (done.is_empty() && live.is_empty())
        {
            return empty("nothing can match");
        }
        let by = |index: &'static str, eqs: Vec<(&'static str, Value)>, done: bool, covers: Covers| {
            TaskBranch { from: TaskFrom::Index(index), eqs, done, covers }
        };
        let status_walks = |statuses: &[TaskStatus], covers: Covers| -> Vec<TaskBranch> {
            statuses
                .iter()
                .map(|s| by("tasks_status", vec![("t.status", Value::Status(s.code()))], false, covers))
                .collect()
        };
        if few.is_few(Probe::Workers) {
            let branch = TaskBranch {
                from: TaskFrom::Workers,
                eqs: vec![],
                done: false,
                covers: Covers { workers: true, ..Covers::default() },
            };
            return TaskPlan { tasks: self, shape: "tasks of a few workers, sorted", branches: vec![branch] };
        }
        if few.is_few(Probe::Prefix) {
            let branch = TaskBranch {
                from: TaskFrom::Runs,
                eqs: vec![],
                done: false,
                covers: Covers { runs: true, ..Covers::default() },
            };
            return TaskPlan { tasks: self, shape: "tasks of a few runs, sorted", branches: vec![branch] };
        }
        let (shape, branches) = if self.page.sort == RunSort::Finished {
            let covers = Covers { statuses: true, ..Covers::default() };
            let branches = done
                .iter()
                .map(|s| by("tasks_finished", vec![("t.status", Value::Status(s.code()))], true, covers))
                .collect();
            ("finished tasks by status", branches)
        } else if !self.workflows.is_empty() && self.workflows.len() * done.len() + live.len() <= MAX_BRANCHES
        {
            // Finished tasks by (workflow, status, id); the few live ones by
            // status, their workflow checked.
            let covers = Covers { statuses: true, workflows: true, ..Covers::default() };
            let mut branches: Vec<TaskBranch> = self
                .workflows
                .iter()
                .flat_map(|w| done.iter().map(move |s| (w, s)))
                .map(|(w, s)| {
                    by(
                        "tasks_done_workflow",
                        vec![("t.workflow", Value::Text(w.clone())), ("t.status", Value::Status(s.code()))],
                        true,
                        covers,
                    )
                })
                .collect();
            branches.extend(status_walks(&live, Covers { statuses: true, ..Covers::default() }));
            ("tasks by workflow", branches)
        } else if !self.queues.is_empty() && self.queues.len() + live.len() <= MAX_BRANCHES {
            let mut branches: Vec<TaskBranch> = if done.is_empty() {
                Vec::new()
            } else {
                let covers = Covers {
                    queues: true,
                    // Every finished status wanted: no need to check it.
                    statuses: self.statuses.is_empty(),
                    ..Covers::default()
                };
                self.queues
                    .iter()
                    .map(|q| by("tasks_done_queue", vec![("t.queue", Value::Text(q.clone()))], true, covers))
                    .collect()
            };
            branches.extend(status_walks(&live, Covers { statuses: true, ..Covers::default() }));
            ("tasks by queue", branches)
        } else if !self.statuses.is_empty() {
            let all: Vec<TaskStatus> = done.iter().chain(&live).copied().collect();
            ("tasks by status", status_walks(&all, Covers { statuses: true, ..Covers::default() }))
        } else {
            ("tasks by id", vec![by("tasks_id", vec![], false, Covers::default())])
        };
        TaskPlan { tasks: self, shape, branches }
    }
}

#[derive(Clone, Debug)]
enum TaskFrom {
    Index(&'static str),
    /// The tasks of the workers' attempts, by primary key.
    Workers,
    /// The tasks of the runs of the id prefix, by `tasks_run`.
    Runs,
}

#[derive(Clone, Debug)]
struct TaskBranch {
    from: TaskFrom,
    eqs: Vec<(&'static str, Value)>,
    /// Walks an index of finished tasks only (`WHERE finished_at IS NOT NULL`).
    done: bool,
    covers: Covers,
}

/// A task search's branches.
pub(crate) struct TaskPlan<'t> {
    tasks: &'t Tasks,
    shape: &'static str,
    branches: Vec<TaskBranch>,
}

impl Plan for TaskPlan<'_> {
    fn shape(&self) -> &'static str {
        self.shape
    }

    fn branches(&self) -> usize {
        self.branches.len()
    }

    fn page(&self) -> &Page {
        &self.tasks.page
    }

    fn write(&self, i: usize, sql: &mut Sql) {
        let (q, b) = (self.tasks, &self.branches[i]);
        sql.push("SELECT t.task_no AS no, t.id AS id, t.finished_at AS finished_at FROM tasks AS t");
        let mut w = Where::new();
        match &b.from {
            TaskFrom::Index(index) => {
                sql.indexed_by(index);
            }
            TaskFrom::Workers => {
                sql.not_indexed();
                w.and(sql)
                    .push("t.task_no IN (SELECT a.task_no FROM attempts AS a")
                    .indexed_by("attempts_worker");
                sql.push(" WHERE a.worker IN ").list(q.workers.iter().cloned().map(Value::Text)).push(")");
            }
            TaskFrom::Runs => {
                sql.indexed_by("tasks_run");
                w.and(sql).push("t.run_no IN (SELECT r.run_no FROM runs AS r").indexed_by("runs_id");
                let mut inner = Where::new();
                id_range(sql, &mut inner, "r.id", q.runs.unwrap_or(Window::ALL));
                sql.push(")");
            }
        }
        for (col, value) in &b.eqs {
            w.and(sql).push(col).push(" = ").bind(value.clone());
        }
        if b.done && q.page.sort != RunSort::Finished {
            w.and(sql).push("t.finished_at IS NOT NULL");
        }
        let ids = if q.page.sort == RunSort::Submitted { q.window() } else { q.ids };
        id_range(sql, &mut w, "t.id", ids);
        q.page.finished_conditions(sql, &mut w, &q.finished, "t.finished_at", "t.id");
        if !b.covers.statuses && !q.statuses.is_empty() {
            w.and(sql).push("t.status IN ").list(q.statuses.iter().map(|s| Value::Status(s.code())));
        }
        if !b.covers.workflows && !q.workflows.is_empty() {
            w.and(sql).push("t.workflow IN ").list(q.workflows.iter().cloned().map(Value::Text));
        }
        if !q.steps.is_empty() {
            w.and(sql).push("t.name IN ").list(q.steps.iter().cloned().map(Value::Text));
        }
        if !b.covers.queues && !q.queues.is_empty() {
            w.and(sql).push("t.queue IN ").list(q.queues.iter().cloned().map(Value::Text));
        }
        if !b.covers.workers && !q.workers.is_empty() {
            w.and(sql)
                .push("EXISTS (SELECT 1 FROM attempts AS a WHERE a.task_no = t.task_no AND a.worker IN ");
            sql.list(q.workers.iter().cloned().map(Value::Text)).per_row();
        }
        if let (false, Some(runs)) = (b.covers.runs, q.runs) {
            w.and(sql).push("EXISTS (SELECT 1 FROM runs AS r WHERE r.run_no = t.run_no");
            let mut inner = Where { first: false };
            id_range(sql, &mut inner, "r.id", runs);
            sql.per_row();
        }
        q.page.order_by(sql, "t.finished_at", "t.id");
        sql.limit(q.page.fetch());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_round_trips_and_refuses_what_it_never_writes() {
        for len in 0..40 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let text = base64url::encode(&bytes);
            assert!(text.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'), "{text}");
            assert_eq!(base64url::decode(&text), Some(bytes), "{text}");
        }
        assert_eq!(base64url::encode(b"\xfb\xff"), "-_8");
        assert_eq!(base64url::decode("-_8"), Some(b"\xfb\xff".to_vec()));
        assert_eq!(base64url::decode("-_9"), None, "stray bits after the last byte");
        assert_eq!(base64url::decode("abcde"), None, "a lone sixth of a byte");
        assert_eq!(base64url::decode("ab+/"), None, "the standard alphabet");
        assert_eq!(base64url::decode("ab=="), None, "padding");
    }

    #[test]
    fn submission_windows_are_whole_milliseconds_of_ids() {
        let range = |from: Option<i64>, to: Option<i64>| TimeRange {
            from: from.map(Timestamp::from_micros),
            to: to.map(Timestamp::from_micros),
        };
        let ms = |ms: u128| ms << 80;
        assert_eq!(Window::submitted(&range(None, None)), Window::ALL);
        assert_eq!(Window::submitted(&range(Some(2_000), Some(5_000))), Window { lo: ms(2), hi: ms(5) - 1 });
        // `from` rounds down, `to` rounds up.
        assert_eq!(Window::submitted(&range(Some(2_999), Some(4_001))), Window { lo: ms(2), hi: ms(5) - 1 });
        assert!(Window::submitted(&range(None, Some(0))).is_empty());
        assert_eq!(Window::submitted(&range(Some(-5), None)), Window::ALL);
        let id = RunId::new(Timestamp::from_micros(3_500_123));
        let w = Window::submitted(&range(Some(3_500_000), Some(3_501_000)));
        assert!((w.lo..=w.hi).contains(&u128::from_be_bytes(id.to_bytes())));
    }

    #[test]
    fn labels_are_stored_under_themselves_and_their_key() {
        let labels = ["team=data".to_owned(), "tier".to_owned(), "team=ops".to_owned(), "a=b=c".to_owned()];
        assert_eq!(label_terms(&labels), ["a", "a=b=c", "team", "team=data", "team=ops", "tier"]);
    }

    #[test]
    fn cursors_are_bound_to_their_search() {
        let search = RunSearch {
            filter: RunFilter { workflows: vec!["etl".into()], ..Default::default() },
            ..Default::default()
        };
        let runs = Runs::new(&search).unwrap();
        let cursor = runs.page.cursor(Key { finished: 7, id: [9; 16] });
        let again = RunSearch { cursor: Some(cursor.clone()), limit: 5, ..search.clone() };
        assert_eq!(Runs::new(&again).unwrap().page.after, Some(Key { finished: 7, id: [9; 16] }));
        // The same filter written otherwise is the same search.
        let reordered = RunSearch {
            filter: RunFilter { workflows: vec!["etl".into(), "etl".into()], ..Default::default() },
            cursor: Some(cursor.clone()),
            ..Default::default()
        };
        assert!(Runs::new(&reordered).is_ok());
        for other in [
            RunSearch { order: Order::OldestFirst, ..again.clone() },
            RunSearch { sort: RunSort::Finished, ..again.clone() },
            RunSearch { filter: RunFilter::default(), ..again.clone() },
        ] {
            let err = Runs::new(&other).unwrap_err().to_string();
            assert!(err.contains("belongs to another search"), "{err}");
        }
        let tasks = TaskSearch { cursor: Some(cursor), ..Default::default() };
        assert!(Tasks::new(&tasks).unwrap_err().to_string().contains("another search"));
        for bad in ["", "abc", "!!!!", &"A".repeat(47)] {
            let q = RunSearch { cursor: Some(Cursor(bad.to_owned())), ..search.clone() };
            let err = Runs::new(&q).unwrap_err().to_string();
            assert!(err.contains("malformed cursor"), "{bad}: {err}");
        }
    }

    fn run_shape(filter: RunFilter, sort: RunSort, few: &[Probe]) -> &'static str {
        let runs = Runs::new(&RunSearch { filter, sort, ..Default::default() }).unwrap();
        runs.plan(&Few::new(few.iter().map(|p| (*p, 1, 0)))).shape()
    }

    fn task_shape(filter: TaskFilter, sort: RunSort, few: &[Probe]) -> (&'static str, usize) {
        let tasks = Tasks::new(&TaskSearch { filter, sort, ..Default::default() }).unwrap();
        let plan = tasks.plan(&Few::new(few.iter().map(|p| (*p, 1, 0))));
        (plan.shape(), plan.branches())
    }

    #[test]
    fn the_drive_is_the_most_selective_filter_with_an_index() {
        use RunSort::{Finished, Submitted};
        let names = |n: usize| (0..n).map(|i| format!("w{i}")).collect::<Vec<_>>();
        let statuses = vec![RunStatus::Failed, RunStatus::Running];
        let f = |statuses: Vec<RunStatus>, workflows: Vec<String>| RunFilter {
            statuses,
            workflows,
            ..Default::default()
        };
        assert_eq!(run_shape(f(statuses.clone(), names(2)), Submitted, &[]), "runs by workflow and status");
        // Too many pairs: the workflows drive, the statuses are checked.
        assert_eq!(run_shape(f(statuses.clone(), names(40)), Submitted, &[]), "runs by workflow");
        assert_eq!(run_shape(f(statuses.clone(), names(65)), Submitted, &[]), "runs by status");
        assert_eq!(run_shape(f(vec![], names(65)), Submitted, &[]), "runs by id");
        let labelled = RunFilter { labels: vec!["team".into()], ..f(statuses.clone(), names(2)) };
        assert_eq!(run_shape(labelled.clone(), Submitted, &[]), "runs by label");
        assert_eq!(run_shape(labelled.clone(), Finished, &[]), "finished runs by workflow");
        assert_eq!(run_shape(labelled, Finished, &[Probe::Label(0)]), "finished runs of a label, sorted");
        // The rarest label drives.
        let filter = RunFilter { labels: vec!["a".into(), "b".into()], ..Default::default() };
        let runs = Runs::new(&RunSearch { filter, ..Default::default() }).unwrap();
        let few = Few::new([(Probe::Label(0), FEW, 900), (Probe::Label(1), FEW, 20)]);
        let mut sql = Sql::new(Dialect::Sqlite);
        runs.plan(&few).write(0, &mut sql);
        assert_eq!(sql.params[0], Value::Text("b".into()));
        // A finished sort walks terminal statuses only.
        assert_eq!(run_shape(f(vec![RunStatus::Running], vec![]), Finished, &[]), "nothing can match");
        let prefix = RunFilter { id_prefix: Some("01J".into()), ..Default::default() };
        assert_eq!(run_shape(prefix.clone(), Submitted, &[]), "runs by id", "a short prefix is no narrower");
        let prefix = RunFilter { id_prefix: Some("01JABCDEFG".into()), ..prefix };
        assert_eq!(run_shape(prefix, Submitted, &[]), "runs by id range");

        let tf = |statuses: Vec<TaskStatus>, workflows: Vec<String>| TaskFilter {
            statuses,
            workflows,
            ..Default::default()
        };
        // Finished tasks by (workflow, status), live ones by status.
        assert_eq!(task_shape(tf(vec![], names(1)), Submitted, &[]), ("tasks by workflow", 5 + 4));
        assert_eq!(
            task_shape(tf(vec![TaskStatus::Failed], names(3)), Submitted, &[]),
            ("tasks by workflow", 3)
        );
        assert_eq!(
            task_shape(tf(vec![TaskStatus::Pending], names(3)), Submitted, &[]),
            ("tasks by workflow", 1)
        );
        assert_eq!(task_shape(tf(vec![], names(20)), Submitted, &[]).0, "tasks by id");
        let finished = TaskFilter {
            finished: TimeRange { from: Some(Timestamp::from_micros(0)), to: None },
            ..tf(vec![], names(1))
        };
        assert_eq!(
            task_shape(finished, Submitted, &[]),
            ("tasks by workflow", 5),
            "no live task has finished"
        );
        let workers = TaskFilter { workers: vec!["w".into()], ..tf(vec![TaskStatus::Failed], vec![]) };
        assert_eq!(task_shape(workers.clone(), Submitted, &[]).0, "tasks by status");
        assert_eq!(task_shape(workers, Finished, &[Probe::Workers]).0, "tasks of a few workers, sorted");
        assert_eq!(task_shape(tf(vec![TaskStatus::Blocked], vec![]), Finished, &[]).0, "nothing can match");
    }

    #[test]
    fn branches_are_written_for_each_dialect() {
        let q = RunSearch {
            filter: RunFilter { labels: vec!["team".into(), "tier=1".into()], ..Default::default() },
            ..Default::default()
        };
        let runs = Runs::new(&q).unwrap();
        let plan = runs.plan(&Few::default());
        let mut sqlite = Sql::new(Dialect::Sqlite);
        plan.write(0, &mut sqlite);
        assert_eq!(
            sqlite.text,
            "SELECT r.run_no AS no, r.id AS id, r.finished_at AS finished_at FROM run_labels AS l CROSS JOIN runs \
             AS r ON r.run_no = l.run_no WHERE l.term = ?1 AND EXISTS (SELECT 1 FROM run_labels AS l1 WHERE \
             l1.term = ?2 AND l1.run_id = r.id) ORDER BY l.run_id DESC LIMIT 101"
        );
        assert_eq!(sqlite.params, [Value::Text("team".into()), Value::Text("tier=1".into())]);
        let mut pg = Sql::new(Dialect::Postgres);
        plan.write(0, &mut pg);
        assert_eq!(
            pg.text,
            "SELECT r.run_no AS no, r.id AS id, r.finished_at AS finished_at FROM run_labels AS l CROSS JOIN \
             LATERAL (SELECT * FROM runs AS r WHERE r.run_no = l.run_no OFFSET 0) AS r WHERE l.term = $1 AND \
             EXISTS (SELECT 1 FROM run_labels AS l1 WHERE l1.term = $2 AND l1.run_id = r.id OFFSET 0) ORDER BY \
             l.run_id DESC LIMIT 101"
        );
    }

    #[test]
    fn page_sizes_are_bounded() {
        let size = |limit| Runs::new(&RunSearch { limit, ..Default::default() }).map(|r| r.page.limit);
        assert_eq!(size(0).unwrap(), DEFAULT_PAGE);
        assert_eq!(size(1).unwrap(), 1);
        assert_eq!(size(MAX_LIMIT).unwrap(), MAX_LIMIT);
        assert!(matches!(size(MAX_LIMIT + 1), Err(StoreError::InvalidQuery(_))));
    }
}
