//! Child processes of shell steps: each in its own process group, stdout and
//! stderr to the attempt's log files, `::progress` lines picked out of stdout,
//! stdout captured for `output:`, and the whole group killed on cancel.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use cairn_core::progress::Progress;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::runner::ProgressSink;

/// Captured stdout is cut at this size unless the workflow says otherwise
/// (`max_output_size`); the log file keeps everything.
pub const MAX_CAPTURE_BYTES: usize = 1024 * 1024;

/// How long a group gets between the stop signal and SIGKILL, unless the
/// workflow says otherwise (`max_clean_up_time_sec`).
pub const KILL_GRACE: Duration = Duration::from_secs(5);

/// One process to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessSpec {
    pub program: String,
    pub args: Vec<String>,
    pub dir: PathBuf,
    /// Added to (and overriding) the inherited environment.
    pub env: Vec<(String, String)>,
    /// The signal sent first on stop (Dagu's `signal_on_stop`); SIGKILL follows after `kill_grace`.
    pub stop_signal: Signal,
    pub kill_grace: Duration,
    /// Most bytes of stdout kept for `output:`.
    pub max_capture: usize,
}

/// How a process ended.
#[derive(Debug)]
pub enum ProcessEnd {
    Exited {
        /// `None` when killed by a signal.
        code: Option<i32>,
        signal: Option<i32>,
        /// Stdout without `::progress` lines, when capture was asked for.
        stdout: Option<String>,
        /// The last lines of stderr, for error messages.
        stderr_tail: String,
        /// Whether the cancellation token fired (the process was killed by us).
        killed: bool,
    },
    /// The process could not be started.
    SpawnFailed(String),
}

/// Runs `spec` to its end, appending stdout and stderr to the given files.
pub async fn run_process(
    spec: &ProcessSpec,
    stdout_path: &Path,
    stderr_path: &Path,
    capture: bool,
    progress: &ProgressSink,
    cancel: &CancellationToken,
) -> ProcessEnd {
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .current_dir(&spec.dir)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return ProcessEnd::SpawnFailed(spawn_error(spec, &e)),
    };
    let pgid = child.id().map(|id| Pid::from_raw(id as i32));
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let limit = capture.then_some(spec.max_capture);
    let out_task = tokio::spawn(copy_stdout(stdout, stdout_path.to_owned(), limit, progress.clone()));
    let err_task = tokio::spawn(copy_stderr(stderr, stderr_path.to_owned()));

    let (status, killed) = wait_or_kill(&mut child, pgid, spec, cancel).await;

    // A step that left children holding its stdout must not hang the run:
    // give the pipes a moment to drain, then end the group.
    let drained = tokio::time::timeout(Duration::from_secs(2), async {
        let out = out_task.await;
        let err = err_task.await;
        (out, err)
    })
    .await;
    let (stdout, stderr_tail) = match drained {
        Ok((out, err)) => (out.ok().flatten(), err.unwrap_or_default()),
        Err(_) => {
            if let Some(pgid) = pgid {
                let _ = killpg(pgid, Signal::SIGKILL);
            }
            (None, String::new())
        }
    };
    match status {
        Ok(status) => ProcessEnd::Exited {
            code: status.code(),
            signal: signal_of(&status),
            stdout,
            stderr_tail,
            killed,
        },
        Err(e) => ProcessEnd::SpawnFailed(format!("lost track of process {}: {e}", spec.program)),
    }
}

fn signal_of(status: &ExitStatus) -> Option<i32> {
    status.signal()
}

fn spawn_error(spec: &ProcessSpec, e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound if !spec.dir.is_dir() => {
            format!(
                "could not start {:?}: working directory {} does not exist",
                spec.program,
                spec.dir.display()
            )
        }
        io::ErrorKind::NotFound => format!("could not start {:?}: command not found", spec.program),
        io::ErrorKind::PermissionDenied => format!("could not start {:?}: permission denied", spec.program),
        _ => format!("could not start {:?}: {e}", spec.program),
    }
}

async fn wait_or_kill(
    child: &mut Child,
    pgid: Option<Pid>,
    spec: &ProcessSpec,
    cancel: &CancellationToken,
) -> (io::Result<ExitStatus>, bool) {
    tokio::select! {
        status = child.wait() => (status, false),
        _ = cancel.cancelled() => {
            if let Some(pgid) = pgid {
                let _ = killpg(pgid, spec.stop_signal);
            }
            match tokio::time::timeout(spec.kill_grace, child.wait()).await {
                Ok(status) => {
                    // The leader is gone; make sure the rest of its group is too.
                    if let Some(pgid) = pgid {
                        let _ = killpg(pgid, Signal::SIGKILL);
                    }
                    (status, true)
                }
                Err(_) => {
                    if let Some(pgid) = pgid {
                        let _ = killpg(pgid, Signal::SIGKILL);
                    }
                    (child.wait().await, true)
                }
            }
        }
    }
}

async fn open_log(path: &Path) -> Option<tokio::fs::File> {
    tokio::fs::OpenOptions::new().create(true).append(true).open(path).await.ok()
}

/// Copies stdout to its file, reports progress lines, and keeps up to
/// `capture` bytes of the rest when asked to.
async fn copy_stdout(
    stream: impl AsyncRead + Unpin,
    path: PathBuf,
    capture: Option<usize>,
    progress: ProgressSink,
) -> Option<String> {
    let mut file = open_log(&path).await;
    let mut reader = BufReader::new(stream);
    let max = capture.unwrap_or(0);
    let mut captured = capture.map(|_| Vec::new());
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if let Some(f) = file.as_mut() {
            let _ = f.write_all(&line).await;
        }
        let text = String::from_utf8_lossy(&line);
        match Progress::parse_line(&text) {
            Some(Ok(p)) => progress.report(p),
            // A malformed progress line stays ordinary output.
            Some(Err(_)) | None => {
                if let Some(buf) = captured.as_mut()
                    && buf.len() < max
                {
                    let room = max - buf.len();
                    buf.extend_from_slice(&line[..line.len().min(room)]);
                }
            }
        }
    }
    if let Some(f) = file.as_mut() {
        let _ = f.flush().await;
    }
    captured.map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Copies stderr to its file and keeps the last lines for error messages.
async fn copy_stderr(stream: impl AsyncRead + Unpin, path: PathBuf) -> String {
    const TAIL: usize = 2048;
    let mut file = open_log(&path).await;
    let mut reader = BufReader::new(stream);
    let mut tail: Vec<u8> = Vec::new();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if let Some(f) = file.as_mut() {
            let _ = f.write_all(&buf).await;
        }
        tail.extend_from_slice(&buf);
        if tail.len() > TAIL * 2 {
            tail.drain(..tail.len() - TAIL);
        }
    }
    if let Some(f) = file.as_mut() {
        let _ = f.flush().await;
    }
    let start = tail.len().saturating_sub(TAIL);
    String::from_utf8_lossy(&tail[start..]).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    fn sh(script: &str, dir: &Path) -> ProcessSpec {
        ProcessSpec {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            dir: dir.to_owned(),
            env: vec![("GREETING".into(), "hello".into())],
            stop_signal: Signal::SIGTERM,
            kill_grace: KILL_GRACE,
            max_capture: MAX_CAPTURE_BYTES,
        }
    }

    #[tokio::test]
    async fn captures_output_logs_and_progress() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let sink = ProgressSink::new(7, tx);
        let spec = sh("echo $GREETING; echo '::progress 50 half'; echo oops >&2; exit 3", dir.path());
        let (out, err) = (dir.path().join("a.out"), dir.path().join("a.err"));
        let end = run_process(&spec, &out, &err, true, &sink, &CancellationToken::new()).await;
        match end {
            ProcessEnd::Exited { code, stdout, stderr_tail, killed, .. } => {
                assert_eq!(code, Some(3));
                assert_eq!(stdout.as_deref(), Some("hello\n"));
                assert_eq!(stderr_tail, "oops");
                assert!(!killed);
            }
            other => panic!("{other:?}"),
        }
        let (index, p) = rx.recv().await.unwrap();
        assert_eq!((index, p.percent, p.message.as_deref()), (7, 50.0, Some("half")));
        let log = std::fs::read_to_string(&out).unwrap();
        assert!(log.contains("::progress 50 half"), "the log keeps everything");
    }

    #[tokio::test]
    async fn cancel_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, _rx) = mpsc::unbounded_channel();
        let sink = ProgressSink::new(0, tx);
        let marker = dir.path().join("child.pid");
        // The child sleeps in the background; killing only the shell would leave it.
        // Written then renamed, so the marker never exists without the pid in it.
        let spec = sh(
            &format!("sleep 300 & echo $! > {m}.tmp; mv {m}.tmp {m}; wait", m = marker.display()),
            dir.path(),
        );
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        let m = marker.clone();
        tokio::spawn(async move {
            while !m.exists() {
                tokio::task::yield_now().await;
            }
            c.cancel();
        });
        let end =
            run_process(&spec, &dir.path().join("o"), &dir.path().join("e"), false, &sink, &cancel).await;
        assert!(matches!(end, ProcessEnd::Exited { killed: true, .. }), "{end:?}");
        let pid: i32 = std::fs::read_to_string(&marker).unwrap().trim().parse().unwrap();
        // Reaped or gone: signal 0 fails once the process no longer exists.
        let mut gone = false;
        for _ in 0..200 {
            let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|st| st.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')));
            if zombie || nix::sys::signal::kill(Pid::from_raw(pid), None).is_err() {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(gone, "background child {pid} survived the kill");
    }

    #[tokio::test]
    async fn missing_command_is_a_spawn_failure() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, _rx) = mpsc::unbounded_channel();
        let spec = ProcessSpec { program: "/no/such/cmd".into(), args: vec![], ..sh("", dir.path()) };
        let end = run_process(
            &spec,
            &dir.path().join("o"),
            &dir.path().join("e"),
            false,
            &ProgressSink::new(0, tx),
            &CancellationToken::new(),
        )
        .await;
        match end {
            ProcessEnd::SpawnFailed(msg) => assert!(msg.contains("command not found"), "{msg}"),
            other => panic!("{other:?}"),
        }
    }
}
