//! Opening the file: connection settings (WAL, `synchronous`, caches), the
//! schema version check, and the versioned migrations in
//! `migrations/sqlite/V<n>__<name>.sql`, run by refinery.
//!
//! The version is kept twice: in refinery's history table, which says what was
//! applied when, and in `PRAGMA user_version`, which any SQLite tool can read.

use std::path::Path;

use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::{SqliteOptions, Synchronous};
use crate::error::StoreError;

mod embedded {
    refinery::embed_migrations!("migrations/sqlite");
}

/// The newest schema version among the migrations built in.
pub(super) fn latest_version() -> i64 {
    embedded::migrations::runner().get_migrations().iter().map(|m| i64::from(m.version())).max().unwrap_or(0)
}

/// The write connection, as [`open_writer`] left it.
pub(super) struct Writer {
    pub(super) conn: Connection,
    pub(super) schema_version: i64,
    /// `synchronous` as SQLite reports it back, not as asked.
    pub(super) synchronous: Synchronous,
}

/// Opens the write connection and migrates the file to [`latest_version`].
pub(super) fn open_writer(path: &Path, options: &SqliteOptions) -> Result<Writer, StoreError> {
    let open_err = |reason: String| StoreError::Open { path: path.display().to_string(), reason };
    let mut conn = Connection::open(path).map_err(|e| open_err(e.to_string()))?;
    conn.busy_timeout(options.busy_timeout).map_err(|e| open_err(e.to_string()))?;
    // The first statement reads the header: this is where a file that is not
    // a database shows itself.
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(|e| open_err(explain_open_failure(&e)))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(open_err(format!(
            "SQLite refused WAL mode (journal_mode is {mode}); put the store on a local file system"
        )));
    }
    // Foreign keys stay declared but unenforced: the writer takes every child
    // key from the parent row it just read or wrote in the same transaction,
    // so the checks could never fail, and they cost ~6% of write throughput.
    let settings = format!(
        "PRAGMA synchronous = {sync};
         PRAGMA foreign_keys = OFF;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -{cache};
         PRAGMA journal_size_limit = 67108864;",
        sync = options.synchronous.as_str(),
        cache = options.writer_cache_kib,
    );
    conn.execute_batch(&settings).map_err(|e| open_err(explain_open_failure(&e)))?;
    let synchronous = match conn.pragma_query_value(None, "synchronous", |row| row.get::<_, i64>(0)) {
        Ok(2) => Synchronous::Full,
        Ok(1) => Synchronous::Normal,
        Ok(other) => {
            return Err(open_err(format!(
                "SQLite reports synchronous = {other}, not FULL (2) or NORMAL (1)"
            )));
        }
        Err(e) => return Err(open_err(e.to_string())),
    };
    // Every statement the writer uses stays prepared for the store's lifetime.
    conn.set_prepared_statement_cache_capacity(64);

    let known = latest_version();
    let found = stored_version(&conn).map_err(|e| open_err(explain_open_failure(&e)))?;
    if found > known {
        return Err(StoreError::TooNew { path: path.display().to_string(), found, known });
    }
    if found < known {
        tracing::info!(path = %path.display(), from = found, to = known, "migrating the store's schema");
    }
    embedded::migrations::runner().run(&mut conn).map_err(|e| {
        StoreError::Migration(format!(
            "upgrading {} from schema version {found} to {known}: {e}; the file is unchanged past the last \
             version that applied, restore a backup or report this",
            path.display()
        ))
    })?;
    let version = stored_version(&conn).map_err(|e| open_err(e.to_string()))?;
    // Preparing every write statement now makes a schema mismatch fail at
    // open (and in every test), not at the first write of that kind.
    super::writer::prepare_all(&conn).map_err(|e| open_err(format!("preparing statements: {e}")))?;
    Ok(Writer { conn, schema_version: version, synchronous })
}

/// Opens one query-only connection. The writer has created and migrated the
/// file by now.
pub(super) fn open_reader(path: &Path, options: &SqliteOptions) -> Result<Connection, StoreError> {
    let open_err = |reason: String| StoreError::Open { path: path.display().to_string(), reason };
    // Read-write flags with `query_only` rather than a read-only open: a
    // read-only connection cannot recreate the WAL index if it is missing.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| open_err(e.to_string()))?;
    conn.busy_timeout(options.busy_timeout).map_err(|e| open_err(e.to_string()))?;
    conn.execute_batch(&format!(
        "PRAGMA query_only = ON; PRAGMA temp_store = MEMORY; PRAGMA cache_size = -{};",
        options.reader_cache_kib
    ))
    .map_err(|e| open_err(explain_open_failure(&e)))?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(conn)
}

/// The highest schema version the file claims, from either record of it.
fn stored_version(conn: &Connection) -> rusqlite::Result<i64> {
    let user_version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let has_history: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'refinery_schema_history')",
        [],
        |row| row.get(0),
    )?;
    let applied: i64 = if has_history {
        conn.query_row("SELECT COALESCE(MAX(version), 0) FROM refinery_schema_history", [], |row| row.get(0))?
    } else {
        0
    };
    Ok(user_version.max(applied))
}

fn explain_open_failure(e: &rusqlite::Error) -> String {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => {
            format!("{e}: the file is not a SQLite database; move it aside or choose another path")
        }
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            format!("{e}: another process holds the database locked; stop it or raise busy_timeout")
        }
        Some(ErrorCode::ReadOnly | ErrorCode::CannotOpen | ErrorCode::PermissionDenied) => {
            format!("{e}: check that the file and its directory are writable")
        }
        _ => e.to_string(),
    }
}

/// Brings the file at `path` (created if missing) up to schema `version`
/// only, as an older Cairn left it: for tests of the migrations after it.
#[cfg(any(test, feature = "conformance"))]
pub(crate) fn migrate_to(path: &Path, version: u16) -> Result<(), StoreError> {
    let mut conn = Connection::open(path)
        .map_err(|e| StoreError::Open { path: path.display().to_string(), reason: e.to_string() })?;
    embedded::migrations::runner()
        .set_target(refinery::Target::Version(version.into()))
        .run(&mut conn)
        .map_err(|e| {
            StoreError::Migration(format!("migrating {} to version {version}: {e}", path.display()))
        })?;
    Ok(())
}
