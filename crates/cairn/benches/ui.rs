//! Time to first render of the web UI: a real `cairn serve` on a given data
//! directory (its history as it is, e.g. one `cairn bench W4 --dir` made),
//! headless Chromium loading the dashboard and the runs page, and for each
//! address the time from navigation start to the page's
//! `cairn:rendered:<page>` mark (set once its data is drawn). One JSON line
//! per address: p50 and max over the loads, the first (cold) load left out.
//!
//! `cargo bench -p cairn --bench ui -- DATA_DIR [LOADS]`; with
//! `CAIRN_DATABASE_URL` set, the server keeps everything in that
//! PostgreSQL database instead (the data directory then holds only logs).

#[allow(dead_code)]
#[path = "../tests/ui_harness/mod.rs"]
mod ui_harness;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
use ui_harness::{Browser, Server};

const PAGES: [(&str, &str); 9] = [
    ("dashboard", "/"),
    ("dashboard", "/?window=7d"),
    ("runs", "/runs"),
    ("runs", "/runs?status=FAILED,CANCELED"),
    ("runs", "/runs?status=COMPLETED&after=2000-01-01T00:00:00Z"),
    ("workflows", "/workflows"),
    ("alerts", "/alerts"),
    ("analytics", "/analytics"),
    ("analytics", "/analytics?window=7d"),
];

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let Some(data) = args.next().map(PathBuf::from) else {
        eprintln!("usage: cargo bench -p cairn --bench ui -- DATA_DIR [LOADS]");
        std::process::exit(2);
    };
    let loads: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(8).max(2);
    let server = Server::on(&data);
    let counts = server.client(None).status_counts(None, None, &[]).await.expect("the status counts");
    let history_runs: u64 =
        counts["runs"].as_object().map_or(0, |m| m.values().filter_map(|n| n.as_u64()).sum());
    let browser = Browser::open(&server).await;
    for (page, path) in PAGES {
        let mut samples = Vec::with_capacity(loads);
        for _ in 0..loads {
            browser.goto(path).await;
            let script = format!(
                "const m = performance.getEntriesByName('cairn:rendered:{page}'); return m.length ? m[0].startTime : null"
            );
            let ms = browser.wait_js(&format!("{path} to render"), &script).await;
            samples.push(ms.as_f64().unwrap_or(f64::NAN));
        }
        // The first load also fetches the files; the rest find them cached.
        let mut warm = samples.split_off(1);
        warm.sort_by(f64::total_cmp);
        let line = json!({
            "workload": "UI",
            "page": path,
            "loads": warm.len(),
            "cold_ms": round(samples[0]),
            "p50_ms": round(warm[warm.len() / 2]),
            "max_ms": round(warm[warm.len() - 1]),
            "history_runs": history_runs,
        });
        println!("{line}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser.close().await;
}

fn round(ms: f64) -> f64 {
    (ms * 10.0).round() / 10.0
}
