//! Where Cairn keeps its data: `--data-dir`, else `$CAIRN_HOME`, else the
//! platform's data directory (`~/.local/share/cairn` on Linux).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use cairn_engine::{EngineClock, recover};
use cairn_store::SqliteStore;
use cairn_store::sqlite::SqliteOptions;

pub struct Home {
    pub dir: PathBuf,
}

impl Home {
    pub fn resolve(flag: Option<PathBuf>) -> Result<Home> {
        let dir = match flag {
            Some(d) => d,
            None => match std::env::var_os("CAIRN_HOME").filter(|v| !v.is_empty()) {
                Some(d) => PathBuf::from(d),
                None => dirs::data_dir()
                    .map(|d| d.join("cairn"))
                    .context("no data directory: set CAIRN_HOME or pass --data-dir")?,
            },
        };
        Ok(Home { dir })
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.join("cairn.db")
    }

    pub fn log_root(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// Opens the store and recovers runs whose executor died, so that no
    /// command ever shows a task RUNNING that nothing runs.
    pub async fn open(&self, clock: &EngineClock) -> Result<Arc<SqliteStore>> {
        let store = open_store(&self.db_path(), SqliteOptions::default())?;
        let store = Arc::new(store);
        let done = recover(store.as_ref(), clock).await.context("recovering runs of dead executors")?;
        if done.runs_failed > 0 || done.attempts_reaped > 0 {
            tracing::warn!(
                runs = done.runs_failed,
                attempts = done.attempts_reaped,
                "recovered work left behind by an executor that died"
            );
        }
        Ok(store)
    }
}

pub fn open_store(path: &Path, opts: SqliteOptions) -> Result<SqliteStore> {
    SqliteStore::open(path, opts).with_context(|| format!("opening the store {}", path.display()))
}

/// `--database`: the PostgreSQL database a command reads or changes instead
/// of the data directory's SQLite file ([`on_store!`]).
#[derive(clap::Args)]
pub struct Database {
    /// Use this PostgreSQL database instead of the data directory's SQLite file
    #[arg(long = "database", global = true, env = "CAIRN_DATABASE_URL", value_name = "postgres://…")]
    pub url: Option<String>,
}

/// Evaluates `$body` with `$store` bound to a reference to the store a
/// command works on — the PostgreSQL database of `--database` when given,
/// else the data directory's SQLite store — and closes the store after,
/// whatever `$body` gave. A macro, not a function: the body is generic code
/// instantiated for each kind of store.
macro_rules! on_store {
    ($database:expr, $data_dir:expr, |$store:ident| $body:expr) => {
        match $database {
            Some(url) => {
                let opened =
                    cairn_store::PostgresStore::connect(url, cairn_store::PostgresOptions::default())
                        .await
                        .map_err(anyhow::Error::from)
                        .map_err(|e| e.context("connecting to the database given by --database"))?;
                let $store = &opened;
                let answer = $body;
                opened.close().await?;
                answer
            }
            None => {
                let home = $crate::home::Home::resolve($data_dir)?;
                let opened = home.open(&cairn_engine::EngineClock::system()).await?;
                let $store = &*opened;
                let answer = $body;
                opened.close().await?;
                answer
            }
        }
    };
}
pub(crate) use on_store;
