//! `cairn worker`: runs the shell steps of a queue on this machine — leases
//! them from a server, runs their processes, passes on `::progress` lines and
//! logs, heartbeats, and kills a step when its cancellation is requested.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use cairn_client::protocol::{AttemptEnd, RemoteCommand, RemoteProcess};
use cairn_client::{LogStream, Outputs, TaskContext, TaskError, Worker};
use cairn_engine::ProgressSink;
use cairn_engine::process::{KILL_GRACE, MAX_CAPTURE_BYTES, ProcessEnd, ProcessSpec, run_process};
use nix::sys::signal::Signal;
use tokio_util::sync::CancellationToken;

use crate::Exit;

#[derive(clap::Args)]
pub struct Args {
    /// The server to take tasks from
    #[arg(long, env = "CAIRN_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// The queue whose steps this worker runs
    #[arg(long)]
    queue: String,
    /// Steps run at once
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// This worker's name in leases and transition logs [default: HOST:PID]
    #[arg(long)]
    worker_id: Option<String>,
    /// Where steps run when they name no directory, and their scripts and logs
    #[arg(long, value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// A worker API token of the queue (`cairn token create NAME --role worker --queue Q`),
    /// for a server that asks for tokens
    #[arg(long, env = "CAIRN_TOKEN", hide_env_values = true, value_name = "cairn_…")]
    token: Option<String>,
    /// Trust this PEM CA certificate too, for an https:// server whose certificate is
    /// self-signed or from a private CA
    #[arg(long, env = "CAIRN_CA_CERT", value_name = "FILE")]
    ca_cert: Option<PathBuf>,
}

pub async fn worker(args: Args) -> Result<Exit> {
    let client = crate::server_client(&args.server, args.token.as_deref(), args.ca_cert.as_deref())?;
    let work = match args.work_dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("cairn-worker-{}", std::process::id())),
    };
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let mut builder = Worker::builder(client)
        .queue(args.queue.clone())
        .concurrency(args.concurrency)
        // A step stopped because this worker shuts down may run again elsewhere.
        .shutdown_outcome(AttemptEnd::Failed)
        .fallback_handler(move |ctx| run_step(ctx, work.clone()));
    if let Some(id) = args.worker_id {
        builder = builder.worker_id(id);
    }
    let worker = builder.build().context("configuring the worker")?;
    eprintln!("worker {} serving queue {:?} of {}", worker.worker_id(), args.queue, args.server);
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("stopping: no new tasks; running steps get a grace period");
        stop.cancel();
    });
    let stats = worker.run(shutdown).await.context("the worker stopped")?;
    eprintln!("worker stopped: {stats:?}");
    Ok(Exit::Success)
}

/// Runs one leased shell step.
async fn run_step(ctx: TaskContext, work: PathBuf) -> Result<Outputs, TaskError> {
    let Some(command) = ctx.command().cloned() else {
        let task_type = ctx.task_type();
        return Err(format!(
            "task type {task_type:?} has no command: `cairn worker` runs shell steps only; \
             use an SDK worker (cairn-client) with a {task_type:?} handler on this queue"
        )
        .into());
    };
    let dir = work.join(ctx.run_id().to_string()).join(format!("{}.{}", sanitize(ctx.step()), ctx.attempt()));
    tokio::fs::create_dir_all(&dir).await?;
    let (stdout, stderr) = (dir.join("stdout.log"), dir.join("stderr.log"));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let sink = ProgressSink::new(0, tx);
    let forward = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            while let Some((_, p)) = rx.recv().await {
                let _ = ctx.progress(p.percent, p.message.unwrap_or_default());
            }
        })
    };
    let done = CancellationToken::new();
    let shipping = tokio::spawn(ship_logs(ctx.clone(), stdout.clone(), stderr.clone(), done.clone()));
    let result = run_processes(&ctx, &command, &dir, &stdout, &stderr, &sink).await;
    drop(sink);
    let _ = forward.await;
    done.cancel();
    let _ = shipping.await;
    result
}

/// Sends what a step writes to the server while it runs (every half
/// second), and the rest once it ended, so `cairn logs` and the API can
/// follow a remote step live.
async fn ship_logs(ctx: TaskContext, stdout: PathBuf, stderr: PathBuf, done: CancellationToken) {
    let mut sent = [0u64; 2];
    loop {
        let last_round = done.is_cancelled();
        for (i, (path, stream)) in
            [(&stdout, LogStream::Stdout), (&stderr, LogStream::Stderr)].into_iter().enumerate()
        {
            let Some(chunk) = read_from(path, sent[i]).await else { continue };
            let len = chunk.len() as u64;
            match ctx.log(stream, chunk).await {
                Ok(()) => sent[i] += len,
                Err(e) => tracing::warn!(error = %e, "could not send a step's log to the server"),
            }
        }
        if last_round {
            return;
        }
        tokio::select! {
            _ = done.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

async fn run_processes(
    ctx: &TaskContext,
    command: &RemoteCommand,
    dir: &Path,
    stdout: &Path,
    stderr: &Path,
    sink: &ProgressSink,
) -> Result<Outputs, TaskError> {
    let working_dir = command.working_dir.as_ref().map_or_else(|| dir.to_owned(), PathBuf::from);
    let capture = command.output.is_some();
    let mut captured = String::new();
    for (i, process) in command.processes.iter().enumerate() {
        let argv = match process {
            RemoteProcess::Exec { argv } => argv.clone(),
            RemoteProcess::Script { argv, body } => {
                use std::os::unix::fs::PermissionsExt;
                let path = dir.join(format!("script{i}"));
                tokio::fs::write(&path, body).await?;
                tokio::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o750)).await?;
                let mut argv = argv.clone();
                argv.push(path.display().to_string());
                argv
            }
        };
        let Some((program, args)) = argv.split_first() else { continue };
        let spec = ProcessSpec {
            program: program.clone(),
            args: args.to_vec(),
            dir: working_dir.clone(),
            env: command.env.clone(),
            stop_signal: Signal::SIGTERM,
            kill_grace: KILL_GRACE.min(Duration::from_secs(5)),
            max_capture: MAX_CAPTURE_BYTES,
        };
        match run_process(&spec, stdout, stderr, capture, sink, ctx.cancelled()).await {
            ProcessEnd::SpawnFailed(e) => return Err(e.into()),
            ProcessEnd::Exited { code, signal, stdout, stderr_tail, killed } => {
                captured.push_str(stdout.as_deref().unwrap_or(""));
                if killed {
                    return Err("stopped: cancellation was requested".into());
                }
                match (code, signal) {
                    (Some(0), _) => {}
                    (Some(c), _) if stderr_tail.is_empty() => return Err(format!("exit code {c}").into()),
                    (Some(c), _) => return Err(format!("exit code {c}: {}", last_line(&stderr_tail)).into()),
                    (None, Some(s)) => return Err(format!("killed by signal {s}").into()),
                    (None, None) => return Err("ended without an exit code".into()),
                }
            }
        }
    }
    let mut outputs = BTreeMap::new();
    if let Some(name) = &command.output {
        outputs.insert(name.clone(), captured.trim().to_owned());
    }
    Ok(outputs)
}

/// The bytes of `path` past `offset`; `None` when there are none (yet).
async fn read_from(path: &Path, offset: u64) -> Option<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut file = tokio::fs::File::open(path).await.ok()?;
    file.seek(std::io::SeekFrom::Start(offset)).await.ok()?;
    let mut chunk = Vec::new();
    file.read_to_end(&mut chunk).await.ok()?;
    (!chunk.is_empty()).then_some(chunk)
}

fn last_line(text: &str) -> &str {
    text.lines().last().unwrap_or("").trim()
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' })
        .collect()
}
