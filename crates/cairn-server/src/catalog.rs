//! The workflow catalog: every `*.yaml` / `*.yml` file of one directory,
//! parsed and validated, by workflow name — the valid ones ready to run, the
//! broken ones with their diagnostics — and kept up to date as files change.
//!
//! [`Catalog`] is a cheap handle to share (the API reads it; the engine's
//! trigger and cron scheduler can hold the same one). Readers take a
//! [`Snapshot`] and never wait on a reload; [`Catalog::reload`] re-reads only
//! files whose modification time or size changed and publishes a new
//! snapshot at once. [`Catalog::watch`] calls it every second.
//!
//! Architecture invariant: a broken file never takes the others down. It is
//! listed (under its file's stem) with its diagnostics, and the others load.
//! A file that becomes broken is shown broken — its last good version is not
//! kept — so what the catalog holds is always what the files say now.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use cairn_core::spec::{self, Diagnostic, Workflow};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// One workflow file as last read.
#[derive(Debug)]
pub struct Entry {
    /// The workflow's name (`name:`, else the file's stem); for a file too
    /// broken to tell, its stem.
    pub name: String,
    pub path: PathBuf,
    /// The file's text as read.
    pub source: String,
    /// The workflow, or every problem found in the file.
    pub spec: Result<Arc<Workflow>, Vec<Diagnostic>>,
    stamp: Stamp,
    /// Refused because an earlier file has its name: judged again at every
    /// reload, since the other file may go.
    duplicate: bool,
}

impl Entry {
    pub fn workflow(&self) -> Option<&Arc<Workflow>> {
        self.spec.as_ref().ok()
    }

    pub fn is_valid(&self) -> bool {
        self.spec.is_ok()
    }

    /// Errors of a broken file; empty for a valid one.
    pub fn errors(&self) -> &[Diagnostic] {
        match &self.spec {
            Ok(_) => &[],
            Err(d) => d,
        }
    }

    /// Warnings of a valid workflow.
    pub fn warnings(&self) -> &[Diagnostic] {
        match &self.spec {
            Ok(w) => &w.warnings,
            Err(_) => &[],
        }
    }
}

/// What a file looked like when read: a change to either means read again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

/// The catalog at one moment.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// By workflow name.
    entries: BTreeMap<String, Arc<Entry>>,
    /// Set when the directory itself could not be read.
    pub problem: Option<String>,
}

impl Snapshot {
    pub fn get(&self, name: &str) -> Option<&Arc<Entry>> {
        self.entries.get(name)
    }

    /// Every entry, by name.
    pub fn entries(&self) -> impl Iterator<Item = &Arc<Entry>> {
        self.entries.values()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn broken(&self) -> usize {
        self.entries.values().filter(|e| !e.is_valid()).count()
    }
}

/// A shared handle on the workflows of one directory.
#[derive(Clone)]
pub struct Catalog {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    current: RwLock<Arc<Snapshot>>,
    /// One reload at a time; readers never take it.
    reloading: Mutex<()>,
    /// Bumped after every reload that changed something.
    generation: watch::Sender<u64>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog").field("dir", &self.inner.dir).finish_non_exhaustive()
    }
}

impl Catalog {
    /// Loads the workflows of `dir` (blocking file reads: call it before the
    /// runtime is busy, or from a blocking thread). A missing or unreadable
    /// directory gives an empty catalog with [`Snapshot::problem`] set.
    pub fn load(dir: impl Into<PathBuf>) -> Catalog {
        let catalog = Catalog {
            inner: Arc::new(Inner {
                dir: dir.into(),
                current: RwLock::new(Arc::new(Snapshot::default())),
                reloading: Mutex::new(()),
                generation: watch::Sender::new(0),
            }),
        };
        catalog.reload();
        catalog
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The catalog as of the last reload.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The entry named `name`, valid or not.
    pub fn get(&self, name: &str) -> Option<Arc<Entry>> {
        self.snapshot().get(name).cloned()
    }

    /// Changes: the value is bumped after each reload that changed the catalog.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.generation.subscribe()
    }

    /// Re-reads the directory: files added, changed (modification time or
    /// size) or removed since the last reload; unchanged files keep their
    /// parsed workflow. Returns whether anything changed. Blocking.
    pub fn reload(&self) -> bool {
        let _one_at_a_time = self.inner.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let old = self.snapshot();
        let by_path: BTreeMap<&Path, &Arc<Entry>> =
            old.entries.values().map(|e| (e.path.as_path(), e)).collect();

        let (files, problem) = match yaml_files(&self.inner.dir) {
            Ok(files) => (files, None),
            Err(e) => {
                let problem = format!("cannot read the workflow directory {}: {e}", self.inner.dir.display());
                if old.problem.as_deref() != Some(problem.as_str()) {
                    tracing::warn!(dir = %self.inner.dir.display(), error = %e, "cannot read the workflow directory");
                }
                (Vec::new(), Some(problem))
            }
        };

        let mut changed = problem != old.problem;
        let mut read = Vec::with_capacity(files.len());
        for (path, stamp) in files {
            match by_path.get(path.as_path()) {
                Some(entry) if entry.stamp == stamp && !entry.duplicate => read.push((**entry).clone()),
                _ => {
                    changed = true;
                    read.push(Arc::new(read_entry(&path, stamp)));
                }
            }
        }
        changed |= read.len() != old.entries.len();
        if !changed {
            return false;
        }

        // Files in path order; the first to claim a name keeps it.
        let mut entries: BTreeMap<String, Arc<Entry>> = BTreeMap::new();
        for entry in read {
            match entries.get(&entry.name) {
                None => {
                    entries.insert(entry.name.clone(), entry);
                }
                Some(first) => {
                    let clash = duplicate(&entry, &first.path);
                    tracing::warn!(file = %entry.path.display(), name = %entry.name, "workflow name used twice");
                    entries.insert(clash.name.clone(), Arc::new(clash));
                }
            }
        }
        for entry in entries.values() {
            let unchanged = by_path.get(entry.path.as_path()).is_some_and(|e| Arc::ptr_eq(e, entry));
            if !unchanged {
                match &entry.spec {
                    Ok(w) => {
                        tracing::info!(file = %entry.path.display(), workflow = %w.name, "workflow loaded")
                    }
                    Err(d) => tracing::warn!(
                        file = %entry.path.display(),
                        errors = d.len(),
                        first = %d.first().map(ToString::to_string).unwrap_or_default(),
                        "workflow file has errors"
                    ),
                }
            }
        }
        let snapshot = Arc::new(Snapshot { entries, problem });
        *self.inner.current.write().unwrap_or_else(|e| e.into_inner()) = snapshot;
        self.inner.generation.send_modify(|g| *g += 1);
        true
    }

    /// Reloads every `every` on a blocking thread until the handle is aborted
    /// (polling modification times: portable, and a second is soon enough
    /// for people editing files).
    pub fn watch(&self, every: Duration) -> JoinHandle<()> {
        let catalog = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await; // the first tick is immediate; load() already read
            loop {
                tick.tick().await;
                let c = catalog.clone();
                if let Err(e) = tokio::task::spawn_blocking(move || c.reload()).await {
                    tracing::error!(error = %e, "workflow reload failed");
                }
            }
        })
    }
}

/// The workflow files of `dir`, sorted by path: `*.yaml` and `*.yml`, not
/// hidden, not directories.
fn yaml_files(dir: &Path) -> std::io::Result<Vec<(PathBuf, Stamp)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let yaml = path.extension().is_some_and(|e| e == "yaml" || e == "yml");
        if !yaml || name.starts_with('.') {
            continue;
        }
        // A file removed between listing and stat is simply gone.
        let Ok(meta) = std::fs::metadata(&path) else { continue };
        if meta.is_file() {
            files.push((path, Stamp { modified: meta.modified().ok(), len: meta.len() }));
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(files)
}

fn stem(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

fn read_entry(path: &Path, stamp: Stamp) -> Entry {
    let source = match std::fs::read_to_string(path) {
        Ok(source) => source,
        Err(e) => {
            let d = Diagnostic {
                file: Some(path.display().to_string()),
                pos: None,
                path: String::new(),
                message: format!("cannot read the workflow file: {e}"),
                hint: None,
            };
            return Entry {
                name: stem(path),
                path: path.to_owned(),
                source: String::new(),
                spec: Err(vec![d]),
                stamp,
                duplicate: false,
            };
        }
    };
    // Parsed from the text just read (rather than `spec::load`, which would
    // read the file again), so the source shown and the workflow agree.
    match spec::parse(&source, Some(path)) {
        Ok(w) => Entry {
            name: w.name.clone(),
            path: path.to_owned(),
            source,
            spec: Ok(Arc::new(w)),
            stamp,
            duplicate: false,
        },
        Err(e) => Entry {
            name: stem(path),
            path: path.to_owned(),
            source,
            spec: Err(e.diagnostics),
            stamp,
            duplicate: false,
        },
    }
}

/// A file whose workflow name an earlier file already has: listed broken,
/// under its file name, so both are visible.
fn duplicate(entry: &Entry, first: &Path) -> Entry {
    let d = Diagnostic {
        file: Some(entry.path.display().to_string()),
        pos: None,
        path: "name".to_owned(),
        message: format!("workflow name \"{}\" is already used by {}", entry.name, first.display()),
        hint: Some("give each workflow file its own name".to_owned()),
    };
    let mut name = entry.path.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    if name == entry.name {
        name.push_str(" (duplicate)");
    }
    Entry {
        name,
        path: entry.path.clone(),
        source: entry.source.clone(),
        spec: Err(vec![d]),
        stamp: entry.stamp,
        duplicate: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "name: hello\nsteps:\n  - name: a\n    command: echo hi\n";

    #[test]
    fn reload_reads_only_what_changed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hello.yaml"), GOOD).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a workflow").unwrap();
        let catalog = Catalog::load(dir.path());
        let changes = catalog.subscribe();
        let before = catalog.get("hello").unwrap();
        assert!(before.is_valid());
        assert!(!catalog.reload(), "nothing changed");
        assert!(Arc::ptr_eq(&before, &catalog.get("hello").unwrap()), "unchanged files are not re-read");

        std::fs::write(dir.path().join("broken.yml"), "steps: [").unwrap();
        assert!(catalog.reload());
        assert!(changes.has_changed().unwrap());
        let snap = catalog.snapshot();
        assert_eq!((snap.len(), snap.broken()), (2, 1));
        assert!(!snap.get("broken").unwrap().errors().is_empty());
        assert!(snap.get("hello").unwrap().is_valid(), "a broken file does not take the others down");

        std::fs::write(dir.path().join("twin.yaml"), GOOD).unwrap();
        assert!(catalog.reload());
        let twin = catalog.get("twin.yaml").expect("listed under its file name");
        assert!(twin.errors()[0].message.contains("already used"), "{:?}", twin.errors());

        std::fs::remove_file(dir.path().join("broken.yml")).unwrap();
        std::fs::remove_file(dir.path().join("hello.yaml")).unwrap();
        assert!(catalog.reload());
        assert!(catalog.get("broken").is_none());
        assert!(catalog.get("hello").unwrap().is_valid(), "the twin takes the name once it is free");
    }

    #[test]
    fn a_missing_directory_is_an_empty_catalog_with_a_problem() {
        let catalog = Catalog::load("/nonexistent/cairn/workflows");
        let snap = catalog.snapshot();
        assert!(snap.is_empty());
        assert!(snap.problem.as_deref().unwrap().contains("cannot read"));
    }
}
