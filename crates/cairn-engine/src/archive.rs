//! The archive of the runs retention deletes: compressed JSON Lines, one
//! file per day, in a directory of the leader's data directory
//! (`archive/YYYY-MM-DD.jsonl.gz`, the UTC day each run was submitted).
//!
//! Each line is one [`ArchivedRun`]: the run, its workflow text, labels and
//! log, and every task with its log, attempts and progress samples — every
//! record the store kept of the run. Each write appends one gzip member holding one
//! batch of lines and is fsync'd before it returns, so the runs it holds
//! are safe on disk before the store deletes them. A day file is therefore
//! a series of gzip members: `zcat` reads it whole.
//!
//! A crash can leave the last member of a file cut short, and the runs of
//! that batch were not deleted (the delete follows the fsync), so they are
//! archived again by the next pass, after the damaged member. Readers skip
//! a damaged member (and count its bytes), carry on with the next one, and
//! keep one copy per run id — the last one written.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use cairn_core::progress::Progress;
use cairn_core::record::{Actor, RunTransition, Transition};
use cairn_core::{RunId, RunStatus, TaskId, TaskStatus, Timestamp};
use cairn_store::{AttemptRecord, FinishedRun, ProgressSample, RunDetail, RunRecord, TaskRecord};
use flate2::Compression;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};

use crate::error::EngineError;

/// The version of the line format; a reader refuses lines of a newer one.
pub const FORMAT: u32 = 1;

/// One archived run, as a line of a day file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArchivedRun {
    pub format: u32,
    /// When the archive was written.
    pub archived_at: Timestamp,
    pub id: RunId,
    pub workflow: String,
    pub status: RunStatus,
    pub trigger: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_path: Option<String>,
    pub submitted_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_requested_by: Option<Actor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_tick: Option<Timestamp>,
    /// The workflow text the run was submitted with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec_source: Option<String>,
    /// The workflow's labels as the run was searched by (`key`, `key=value`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
    /// The run's own status changes.
    pub transitions: Vec<RunTransition>,
    /// By index.
    pub tasks: Vec<ArchivedTask>,
}

/// One task of an archived run, with its log and attempts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArchivedTask {
    pub id: TaskId,
    pub index: u32,
    pub name: String,
    pub status: TaskStatus,
    pub attempt: u32,
    pub max_attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    pub submitted_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
    pub transitions: Vec<Transition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<ArchivedAttempt>,
    /// The sparse progress history, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub progress_samples: Vec<ArchivedSample>,
}

/// One point of an archived task's progress history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArchivedSample {
    pub attempt: u32,
    pub at: Timestamp,
    pub percent: f32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl ArchivedSample {
    /// The sample as the store keeps it.
    pub fn to_sample(&self) -> ProgressSample {
        ProgressSample {
            attempt: self.attempt,
            at: self.at,
            percent: self.percent,
            message: self.message.clone(),
        }
    }
}

/// One attempt of an archived task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArchivedAttempt {
    pub attempt: u32,
    pub worker: String,
    pub started_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<TaskStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ArchivedRun {
    /// The line of `detail` with its workflow text, archived at `at`; its
    /// labels come from the workflow text, its progress samples are none
    /// until [`ArchivedRun::with_samples`].
    pub fn new(detail: &RunDetail, spec_source: Option<String>, at: Timestamp) -> ArchivedRun {
        let labels = spec_source.as_deref().map(labels_of).unwrap_or_default();
        let r = &detail.run;
        ArchivedRun {
            format: FORMAT,
            archived_at: at,
            id: r.id,
            workflow: r.workflow.clone(),
            status: r.status,
            trigger: r.trigger.clone(),
            params: r.params.clone(),
            owner: r.owner.clone(),
            spec_path: r.spec_path.clone(),
            submitted_at: r.submitted_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            error: r.error.clone(),
            cancel_requested_by: r.cancel_requested_by.clone(),
            schedule_tick: r.schedule_tick,
            spec_source,
            labels,
            transitions: detail.run_transitions.clone(),
            tasks: detail
                .tasks
                .iter()
                .map(|t| ArchivedTask {
                    id: t.id,
                    index: t.index,
                    name: t.name.clone(),
                    status: t.status,
                    attempt: t.attempt,
                    max_attempts: t.max_attempts,
                    queue: t.queue.clone(),
                    submitted_at: t.submitted_at,
                    started_at: t.started_at,
                    finished_at: t.finished_at,
                    not_before: t.not_before,
                    progress: t.progress.clone(),
                    progress_at: t.progress_at,
                    exit_code: t.exit_code,
                    error: t.error.clone(),
                    outputs: t.outputs.clone(),
                    details: t.details.clone(),
                    transitions: detail.transitions.get(&t.id).cloned().unwrap_or_default(),
                    attempts: detail
                        .attempts
                        .get(&t.id)
                        .map(|all| {
                            all.iter()
                                .map(|a| ArchivedAttempt {
                                    attempt: a.attempt,
                                    worker: a.worker.clone(),
                                    started_at: a.started_at,
                                    ended_at: a.ended_at,
                                    outcome: a.outcome,
                                    exit_code: a.exit_code,
                                    error: a.error.clone(),
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    progress_samples: Vec::new(),
                })
                .collect(),
        }
    }

    /// With each task's progress history (by task id, oldest first).
    pub fn with_samples(mut self, mut samples: BTreeMap<TaskId, Vec<ProgressSample>>) -> ArchivedRun {
        for task in &mut self.tasks {
            task.progress_samples = samples
                .remove(&task.id)
                .unwrap_or_default()
                .into_iter()
                .map(|s| ArchivedSample {
                    attempt: s.attempt,
                    at: s.at,
                    percent: s.percent,
                    message: s.message,
                })
                .collect();
        }
        self
    }

    /// The run as the store showed it before it was deleted (finished
    /// tasks hold no lease), to show it as `cairn status` does.
    pub fn to_detail(&self) -> RunDetail {
        let run = RunRecord {
            id: self.id,
            workflow: self.workflow.clone(),
            status: self.status,
            trigger: self.trigger.clone(),
            params: self.params.clone(),
            owner: self.owner.clone(),
            spec_path: self.spec_path.clone(),
            submitted_at: self.submitted_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            error: self.error.clone(),
            cancel_requested_by: self.cancel_requested_by.clone(),
            schedule_tick: self.schedule_tick,
        };
        let mut transitions = BTreeMap::new();
        let mut attempts = BTreeMap::new();
        let tasks = self
            .tasks
            .iter()
            .map(|t| {
                if !t.transitions.is_empty() {
                    transitions.insert(t.id, t.transitions.clone());
                }
                if !t.attempts.is_empty() {
                    let all = t
                        .attempts
                        .iter()
                        .map(|a| AttemptRecord {
                            task: t.id,
                            attempt: a.attempt,
                            worker: a.worker.clone(),
                            started_at: a.started_at,
                            ended_at: a.ended_at,
                            outcome: a.outcome,
                            exit_code: a.exit_code,
                            error: a.error.clone(),
                        })
                        .collect();
                    attempts.insert(t.id, all);
                }
                TaskRecord {
                    id: t.id,
                    run: self.id,
                    index: t.index,
                    name: t.name.clone(),
                    status: t.status,
                    attempt: t.attempt,
                    max_attempts: t.max_attempts,
                    queue: t.queue.clone(),
                    submitted_at: t.submitted_at,
                    started_at: t.started_at,
                    finished_at: t.finished_at,
                    not_before: t.not_before,
                    lease: None,
                    progress: t.progress.clone(),
                    progress_at: t.progress_at,
                    exit_code: t.exit_code,
                    error: t.error.clone(),
                    outputs: t.outputs.clone(),
                    details: t.details.clone(),
                }
            })
            .collect();
        RunDetail { run, run_transitions: self.transitions.clone(), tasks, transitions, attempts }
    }
}

impl ArchivedRun {
    /// Everything the store needs to take the run back whole
    /// ([`cairn_store::Store::import_runs`]): its records, workflow text,
    /// labels and progress histories.
    pub fn to_finished(&self) -> FinishedRun {
        let progress = self
            .tasks
            .iter()
            .filter(|t| !t.progress_samples.is_empty())
            .map(|t| {
                let samples = t.progress_samples.iter().map(ArchivedSample::to_sample).collect();
                (t.id, samples)
            })
            .collect();
        FinishedRun {
            detail: self.to_detail(),
            spec_source: self.spec_source.clone(),
            labels: self.labels.clone(),
            progress,
        }
    }
}

/// The labels a run of `source` was submitted with (`key`, `key=value`), as
/// the engine gives them to the store; none when the text does not parse.
fn labels_of(source: &str) -> Vec<String> {
    let Ok(workflow) = cairn_core::spec::parse(source, None) else {
        return Vec::new();
    };
    workflow
        .labels
        .iter()
        .map(|l| match &l.value {
            Some(v) => format!("{}={v}", l.key),
            None => l.key.clone(),
        })
        .collect()
}

/// The day (UTC) of `at`, as a day file is named: `YYYY-MM-DD`.
pub fn day_of(at: Timestamp) -> String {
    at.to_jiff().to_zoned(jiff::tz::TimeZone::UTC).date().to_string()
}

/// `text` as a day (`YYYY-MM-DD`), or an error naming the field `what`.
pub fn parse_day(text: &str, what: &str) -> Result<String, EngineError> {
    text.parse::<jiff::civil::Date>()
        .map(|d| d.to_string())
        .map_err(|e| EngineError::Invalid(format!("{what}: {text:?} is not a day like 2026-01-31 ({e})")))
}

/// One day file, as [`Archive::days`] lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DaySummary {
    /// `YYYY-MM-DD`.
    pub day: String,
    pub path: PathBuf,
    /// Its size on disk.
    pub bytes: u64,
    /// Runs in it, each counted once.
    pub runs: usize,
    /// Bytes of damaged members skipped (an interrupted write).
    pub damaged_bytes: u64,
}

/// What a day file holds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Day {
    /// Each run once (the copy written last), in the order first written.
    pub runs: Vec<ArchivedRun>,
    /// Bytes of damaged members skipped.
    pub damaged_bytes: u64,
    /// Lines that are not an archived run of a known format (skipped).
    pub bad_lines: usize,
}

/// A directory of day files.
#[derive(Clone, Debug)]
pub struct Archive {
    dir: PathBuf,
}

impl Archive {
    pub fn new(dir: impl Into<PathBuf>) -> Archive {
        Archive { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of `day` (`YYYY-MM-DD`).
    pub fn path_of(&self, day: &str) -> PathBuf {
        self.dir.join(format!("{day}.jsonl.gz"))
    }

    /// Appends `runs` to the files of their days, one gzip member per file,
    /// each fsync'd (and the directory, for a new file) before this returns:
    /// once it has, the runs survive a crash. Blocking I/O: call it off the
    /// async threads.
    pub fn append(&self, runs: &[ArchivedRun]) -> Result<(), EngineError> {
        let mut by_day: BTreeMap<String, Vec<&ArchivedRun>> = BTreeMap::new();
        for run in runs {
            by_day.entry(day_of(run.submitted_at)).or_default().push(run);
        }
        if by_day.is_empty() {
            return Ok(());
        }
        let created_dir = !self.dir.exists();
        std::fs::create_dir_all(&self.dir).map_err(|e| self.error(&self.dir, &e))?;
        if created_dir && let Some(parent) = self.dir.parent() {
            sync_dir(parent).map_err(|e| self.error(parent, &e))?;
        }
        for (day, runs) in by_day {
            let path = self.path_of(&day);
            self.append_member(&path, &runs).map_err(|e| self.error(&path, &e))?;
        }
        Ok(())
    }

    fn append_member(&self, path: &Path, runs: &[&ArchivedRun]) -> std::io::Result<()> {
        let new = !path.exists();
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let before = file.metadata()?.len();
        let written = (|| {
            let mut gz = GzEncoder::new(&file, Compression::default());
            for run in runs {
                serde_json::to_writer(&mut gz, run)?;
                gz.write_all(b"\n")?;
            }
            gz.finish()?;
            file.sync_all()
        })();
        if let Err(e) = written {
            // A member cut short would hide nothing (readers skip it), but
            // leaving none is tidier.
            let _ = file.set_len(before);
            return Err(e);
        }
        if new {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Every day file, oldest day first.
    pub fn days(&self) -> Result<Vec<DaySummary>, EngineError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.error(&self.dir, &e)),
        };
        let mut days = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| self.error(&self.dir, &e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(day) = name.strip_suffix(".jsonl.gz") else { continue };
            if parse_day(day, "day").is_err() {
                continue;
            }
            let path = entry.path();
            let bytes = entry.metadata().map_err(|e| self.error(&path, &e))?.len();
            let read = self.read(day)?;
            days.push(DaySummary {
                day: day.to_owned(),
                path,
                bytes,
                runs: read.runs.len(),
                damaged_bytes: read.damaged_bytes,
            });
        }
        days.sort_by(|a, b| a.day.cmp(&b.day));
        Ok(days)
    }

    /// The runs archived for `day` (`YYYY-MM-DD`); none when there is no
    /// file for it.
    pub fn read(&self, day: &str) -> Result<Day, EngineError> {
        let path = self.path_of(day);
        match File::open(&path) {
            Ok(file) => read_members(file).map_err(|e| self.error(&path, &e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Day::default()),
            Err(e) => Err(self.error(&path, &e)),
        }
    }

    fn error(&self, path: &Path, e: &dyn std::fmt::Display) -> EngineError {
        EngineError::Archive { path: path.display().to_string(), reason: e.to_string() }
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A reader that knows how many bytes it has handed out.
struct Counted<R> {
    inner: R,
    at: u64,
}

impl<R: BufRead> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.at += n as u64;
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Counted<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        self.at += amt as u64;
        self.inner.consume(amt);
    }
}

/// The gzip magic and deflate method that open every member.
const MEMBER_START: [u8; 3] = [0x1f, 0x8b, 0x08];

/// Reads the members of a day file one by one, skipping damaged ones.
fn read_members(file: File) -> std::io::Result<Day> {
    let mut reader = Counted { inner: BufReader::new(file), at: 0 };
    let mut day = Day::default();
    let mut order: Vec<RunId> = Vec::new();
    let mut latest: HashMap<RunId, ArchivedRun> = HashMap::new();
    loop {
        let start = reader.at;
        if reader.fill_buf()?.is_empty() {
            break;
        }
        // The bufread decoder takes exactly one member and leaves the
        // reader at the next.
        let mut text = Vec::new();
        let ok = flate2::bufread::GzDecoder::new(&mut reader).read_to_end(&mut text).is_ok();
        // What decoded before a failure still counts: whole lines are
        // whole runs, and a line cut short does not parse.
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            match serde_json::from_slice::<ArchivedRun>(line) {
                Ok(run) if run.format <= FORMAT => {
                    if !latest.contains_key(&run.id) {
                        order.push(run.id);
                    }
                    latest.insert(run.id, run);
                }
                _ => day.bad_lines += usize::from(ok),
            }
        }
        if ok {
            continue;
        }
        // Look for the next member after the damaged one's start.
        let file = reader.inner.get_mut();
        file.seek(SeekFrom::Start(start + 1))?;
        let mut rest = Vec::new();
        file.read_to_end(&mut rest)?;
        let next = rest.windows(MEMBER_START.len()).position(|w| w == MEMBER_START);
        let resume = next.map_or(start + 1 + rest.len() as u64, |k| start + 1 + k as u64);
        day.damaged_bytes += resume - start;
        reader = Counted { inner: BufReader::new(reader.inner.into_inner()), at: resume };
        reader.inner.get_mut().seek(SeekFrom::Start(resume))?;
    }
    day.runs = order.into_iter().filter_map(|id| latest.remove(&id)).collect();
    Ok(day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        Timestamp::from_jiff(text.parse().unwrap())
    }

    /// A finished run of two tasks, submitted at `submitted`.
    fn archived(workflow: &str, submitted: Timestamp) -> ArchivedRun {
        let id = RunId::new(submitted);
        let task = |index: u32| ArchivedTask {
            id: TaskId::new(submitted),
            index,
            name: format!("step-{index}"),
            status: TaskStatus::Completed,
            attempt: 1,
            max_attempts: 1,
            queue: None,
            submitted_at: submitted,
            started_at: Some(submitted),
            finished_at: Some(submitted),
            not_before: None,
            progress: None,
            progress_at: None,
            exit_code: Some(0),
            error: None,
            outputs: BTreeMap::from([("out".to_owned(), "x".to_owned())]),
            details: None,
            transitions: vec![Transition {
                attempt: 1,
                from: Some(TaskStatus::Running),
                to: TaskStatus::Completed,
                at: submitted,
                reason: "done".into(),
                actor: Actor::Executor,
            }],
            attempts: vec![ArchivedAttempt {
                attempt: 1,
                worker: "local".into(),
                started_at: submitted,
                ended_at: Some(submitted),
                outcome: Some(TaskStatus::Completed),
                exit_code: Some(0),
                error: None,
            }],
            progress_samples: vec![ArchivedSample {
                attempt: 1,
                at: submitted,
                percent: 50.0,
                message: Some("half".into()),
            }],
        };
        ArchivedRun {
            format: FORMAT,
            archived_at: submitted,
            id,
            workflow: workflow.to_owned(),
            status: RunStatus::Completed,
            trigger: "manual".into(),
            params: BTreeMap::new(),
            owner: None,
            spec_path: None,
            submitted_at: submitted,
            started_at: Some(submitted),
            finished_at: Some(submitted),
            error: None,
            cancel_requested_by: None,
            schedule_tick: None,
            spec_source: Some("labels: [team=data]\nsteps:\n  - command: echo hi\n".into()),
            labels: vec!["team=data".into()],
            transitions: Vec::new(),
            tasks: vec![task(0), task(1)],
        }
    }

    #[test]
    fn runs_go_to_the_file_of_their_submission_day_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::new(dir.path().join("archive"));
        assert_eq!(archive.days().unwrap(), Vec::new(), "no directory yet: no days");
        let late = archived("etl", at("2026-01-01T23:59:59.999999Z"));
        let next = archived("etl", at("2026-01-02T00:00:00Z"));
        let other = archived("backup", at("2026-01-01T08:00:00Z"));
        archive.append(&[late.clone(), next.clone()]).unwrap();
        archive.append(std::slice::from_ref(&other)).unwrap();

        let days = archive.days().unwrap();
        assert_eq!(
            days.iter().map(|d| (d.day.as_str(), d.runs)).collect::<Vec<_>>(),
            [("2026-01-01", 2), ("2026-01-02", 1)]
        );
        assert!(days.iter().all(|d| d.bytes > 0 && d.damaged_bytes == 0));
        let first = archive.read("2026-01-01").unwrap();
        assert_eq!(first.runs, [late.clone(), other]);
        assert_eq!(archive.read("2026-01-02").unwrap().runs, [next]);
        assert_eq!(archive.read("2025-12-31").unwrap(), Day::default());

        // A detail and its samples and back: nothing lost.
        let samples = late
            .tasks
            .iter()
            .map(|t| {
                let all = t.progress_samples.iter().map(ArchivedSample::to_sample).collect();
                (t.id, all)
            })
            .collect();
        let again = ArchivedRun::new(&late.to_detail(), late.spec_source.clone(), late.archived_at);
        assert_eq!(again.with_samples(samples), late);
    }

    #[test]
    fn a_run_archived_twice_reads_once_the_last_copy() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::new(dir.path());
        let run = archived("etl", at("2026-01-01T10:00:00Z"));
        let mut again = run.clone();
        again.archived_at = at("2026-01-03T00:00:00Z");
        archive.append(std::slice::from_ref(&run)).unwrap();
        archive.append(&[again.clone(), archived("etl", at("2026-01-01T11:00:00Z"))]).unwrap();
        let day = archive.read("2026-01-01").unwrap();
        assert_eq!(day.runs.len(), 2);
        assert_eq!(day.runs[0], again, "kept once, in its first place, as written last");
    }

    #[test]
    fn a_member_cut_short_by_a_crash_is_skipped_and_the_batch_after_it_reads() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::new(dir.path());
        let kept = archived("etl", at("2026-01-01T10:00:00Z"));
        let cut = archived("etl", at("2026-01-01T11:00:00Z"));
        archive.append(std::slice::from_ref(&kept)).unwrap();
        let path = archive.path_of("2026-01-01");
        let whole = std::fs::metadata(&path).unwrap().len();
        archive.append(std::slice::from_ref(&cut)).unwrap();
        // The crash: the second member loses its end.
        let len = std::fs::metadata(&path).unwrap().len();
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(whole + (len - whole) / 2).unwrap();
        drop(file);
        let day = archive.read("2026-01-01").unwrap();
        assert_eq!(day.runs, std::slice::from_ref(&kept));
        assert_eq!(day.damaged_bytes, (len - whole) / 2);

        // The next pass archives the batch again, after the damage.
        archive.append(std::slice::from_ref(&cut)).unwrap();
        let day = archive.read("2026-01-01").unwrap();
        assert_eq!(day.runs, [kept, cut]);
        assert_eq!(day.damaged_bytes, (len - whole) / 2);
        let listed = archive.days().unwrap();
        assert_eq!((listed[0].runs, listed[0].damaged_bytes), (2, (len - whole) / 2));
    }

    #[test]
    fn lines_of_a_newer_format_or_not_runs_are_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::new(dir.path());
        let good = archived("etl", at("2026-01-01T10:00:00Z"));
        let mut newer = archived("etl", at("2026-01-01T11:00:00Z"));
        newer.format = FORMAT + 1;
        archive.append(&[good.clone(), newer]).unwrap();
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        gz.write_all(b"{\"not\": \"a run\"}\n").unwrap();
        let mut file = OpenOptions::new().append(true).open(archive.path_of("2026-01-01")).unwrap();
        file.write_all(&gz.finish().unwrap()).unwrap();
        let day = archive.read("2026-01-01").unwrap();
        assert_eq!((day.runs, day.bad_lines, day.damaged_bytes), (vec![good], 2, 0));
    }

    #[test]
    fn days_are_named_in_utc_and_checked() {
        assert_eq!(day_of(at("2026-03-08T23:30:00-05:00")), "2026-03-09");
        assert_eq!(parse_day("2026-02-28", "DAY").unwrap(), "2026-02-28");
        let err = parse_day("2026-02-30", "DAY").unwrap_err().to_string();
        assert!(err.starts_with("DAY: \"2026-02-30\" is not a day like 2026-01-31"), "{err}");
        assert!(parse_day("yesterday", "DAY").is_err());
    }
}
