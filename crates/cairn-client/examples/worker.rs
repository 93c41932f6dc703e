//! An example Cairn worker written with the Rust SDK. It serves two task
//! types, `resize` and `count`, reports progress, honours cancellation and
//! checkpoints its work so a retried attempt resumes where the last one
//! stopped.
//!
//! # Running it against `cairn serve`
//!
//! Put a workflow whose steps name a queue and a task type in the server's
//! workflows directory, e.g. `flows/thumbnails.yaml`:
//!
//! ```yaml
//! name: thumbnails
//! params:
//!   - IMAGE: cat.png
//!   - WIDTH: "640"
//! steps:
//!   - name: resize
//!     queue: images          # leased to workers polling the "images" queue
//!     task_type: resize      # dispatched to this worker's `resize` handler
//!     heartbeat_timeout_sec: 15
//!     retry_policy: {limit: 2, interval_sec: 1}
//!   - name: count            # after resize: steps of a chain run in order
//!     queue: images
//!     task_type: count
//! ```
//!
//! A `task_type` step has no `command`: the worker's handler for its type
//! runs it, with the run's params and the step's env in `ctx.input()`
//! (`cairn validate flows/thumbnails.yaml` checks the file).
//!
//! Then, in three terminals:
//!
//! ```sh
//! cairn serve --listen 127.0.0.1:8080 --workflows flows/
//! cargo run -p cairn-client --example worker            # CAIRN_SERVER, CAIRN_QUEUE to change
//! curl -sS -X POST http://127.0.0.1:8080/api/v1/workflows/thumbnails/runs \
//!      -H 'content-type: application/json' -d '{"params": {"IMAGE": "dog.png"}}'
//! ```
//!
//! The curl prints the run's id. `curl -sS http://127.0.0.1:8080/api/v1/runs/RUN_ID`
//! shows the steps' progress while they run. Then try:
//! - `curl -sS -X POST http://127.0.0.1:8080/api/v1/runs/RUN_ID/cancel` while
//!   `resize` runs: the handler sees `ctx.cancelled()` fire after the next
//!   heartbeat, and the attempt ends CANCELED;
//! - `kill -9` the worker while `resize` runs, and start it again: after the
//!   heartbeat timeout the attempt is failed with "heartbeat lost", retried,
//!   and the new attempt resumes from the last checkpoint (where the
//!   workflow keeps details);
//! - Ctrl-C the worker: it stops leasing, lets running tasks finish for up
//!   to 30 s, then cancels them.

use std::time::Duration;

use cairn_client::{CancellationToken, Client, Outputs, TaskContext, TaskResult, Worker};
use serde::{Deserialize, Serialize};

/// What `resize` saves after each chunk, to resume from on a retry.
#[derive(Debug, Default, Serialize, Deserialize)]
struct ResizeCheckpoint {
    chunks_done: u32,
}

const CHUNKS: u32 = 20;

/// Pretends to resize an image in 20 chunks of 250 ms.
async fn resize(ctx: TaskContext) -> TaskResult {
    let image = ctx.param("IMAGE").unwrap_or("image.png").to_owned();
    let width: u32 = ctx.param("WIDTH").unwrap_or("640").parse()?;
    // A previous attempt's checkpoint, if it got that far.
    let start = ctx.details_as::<ResizeCheckpoint>()?.unwrap_or_default().chunks_done;
    if start > 0 {
        tracing::info!(attempt = ctx.attempt(), start, "resuming from a checkpoint");
    }
    for chunk in start..CHUNKS {
        tokio::select! {
            // Stop promptly when asked: the run was canceled, the lease was
            // lost, the step timed out or the worker is shutting down.
            () = ctx.cancelled().cancelled() => return Err(format!("stopped at chunk {chunk}").into()),
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        let done = chunk + 1;
        // Cheap to call often: rate-limited, and carried by the heartbeat.
        ctx.progress(100.0 * done as f32 / CHUNKS as f32, format!("{image}: chunk {done} of {CHUNKS}"))?;
        ctx.checkpoint(ResizeCheckpoint { chunks_done: done })?;
    }
    let out = format!("{}-{width}w.png", image.trim_end_matches(".png"));
    Ok(Outputs::from([("RESIZED".to_owned(), out)]))
}

/// Counts to `N` (default 10), a tenth of a second per step.
async fn count(ctx: TaskContext) -> TaskResult {
    let n: u32 = ctx.param("N").unwrap_or("10").parse()?;
    for i in 1..=n {
        if ctx.is_cancelled() {
            return Err(format!("stopped at {i}").into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        ctx.progress(100.0 * i as f32 / n.max(1) as f32, format!("{i} of {n}"))?;
    }
    Ok(Outputs::from([("COUNT".to_owned(), n.to_string())]))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,cairn_client=debug".into()),
        )
        .init();
    let server = std::env::var("CAIRN_SERVER").unwrap_or_else(|_| "http://127.0.0.1:8080".to_owned());
    let queue = std::env::var("CAIRN_QUEUE").unwrap_or_else(|_| "images".to_owned());

    let worker = Worker::builder(Client::new(&server)?)
        .queue(queue)
        .concurrency(4)
        .handler("resize", resize)
        .handler("count", count)
        .build()?;

    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("ctrl-c: shutting down");
        on_signal.cancel();
    });

    let stats = worker.run(shutdown).await?;
    println!("{}", serde_json::to_string_pretty(&stats)?);
    Ok(())
}
