//! The web UI in a real browser: headless Chromium driven over WebDriver
//! (chromedriver) against a real `cairn serve` with real runs. Covers the
//! dashboard's status donut, the runs list filtered by two statuses (and
//! the back button), a run's graph, timeline and transition log, live
//! progress without a reload, cancelling from a run's page, a step reaped
//! after its server died among the dashboard's alerts and on the alerts
//! page (with its kind filter and the back button), where time goes on the
//! analytics page, web sign-in (the page sends the CSRF header; a viewer's
//! cancel is refused), and screenshots of every page, light and dark, under
//! `<CARGO_TARGET_TMPDIR>/screenshots/`.
//!
//! Chromium and chromedriver must be installed (`apt-get install chromium
//! chromium-driver`); without them these tests fail, they never skip.

use std::collections::{BTreeMap, BTreeSet};

use cairn_client::RunId;
use serde_json::json;

#[allow(dead_code)]
mod ui_harness;
use ui_harness::*;

/// The runs table's rows: run id → status.
async fn runs_shown(browser: &Browser) -> Result<BTreeMap<String, String>, String> {
    let rows = browser
        .js(
            "const t = document.querySelector('[data-testid=runs-table]');
             return t && [...t.querySelectorAll('tr[data-run][data-status]')].map((r) => [r.dataset.run, r.dataset.status]);",
            vec![],
        )
        .await?;
    let rows: Option<Vec<(String, String)>> = serde_json::from_value(rows).map_err(|e| e.to_string())?;
    rows.map(|r| r.into_iter().collect()).ok_or_else(|| "no runs table".into())
}

async fn wait_rows(browser: &Browser, want: &BTreeSet<String>, after: &str) {
    eventually(&format!("exactly the runs {want:?} after {after}"), || async {
        let shown = runs_shown(browser).await?;
        if shown.keys().cloned().collect::<BTreeSet<_>>() == *want {
            Ok(())
        } else {
            Err(format!("{shown:?}"))
        }
    })
    .await
}

const OK: &str = "steps:\n  - name: main\n    command: echo ok\n";
const BAD: &str = "steps:\n  - name: main\n    command: exit 1\n";
const SLEEP: &str = "steps:\n  - name: main\n    command: sleep 60\n";
const GRAPH: &str = r#"
type: graph
steps:
  - name: fetch
    command: echo fetched
  - name: left
    command: echo left
    depends: [fetch]
  - name: right
    command: exit 3
    depends: [fetch]
  - name: join
    command: echo joined
    depends: [left, right]
"#;
const CHAIN: &str = r#"
steps:
  - name: nap
    command: sleep 0.2
  - name: fail
    command: exit 1
"#;
const PROGRESS: &str = r#"
steps:
  - name: crunch
    command: sh -c 'for i in $(seq 1 20); do echo "::progress $((i*5)) step $i"; sleep 0.3; done'
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_donut_counts_the_runs_by_status() {
    let (server, _) = Server::start(&[("ok", OK), ("bad", BAD)], &[]);
    let api = server.client(None);
    let mut runs = Vec::new();
    for workflow in ["ok", "ok", "ok", "bad", "bad"] {
        runs.push(trigger(&api, workflow).await);
    }
    for run in runs {
        run_status(&api, run, FINISHED).await;
    }
    let browser = Browser::open(&server).await;
    browser.goto("/").await;
    let donut = browser
        .wait_js(
            "the donut with 5 runs",
            "const svg = document.querySelector('[data-testid=status-chart] svg');
             const total = svg && svg.querySelector('text[data-total]');
             if (!total || total.textContent !== '5') return null;
             return {total: total.textContent,
                     counts: Object.fromEntries([...svg.querySelectorAll('circle[data-status]')]
                       .map((c) => [c.dataset.status, Number(c.dataset.count)]))};",
        )
        .await;
    assert_eq!(donut["counts"], json!({"COMPLETED": 3, "FAILED": 2}), "{donut}");
    assert_eq!(donut["total"], "5");
    browser.close().await;
}

/// A step whose server died under it is reaped when a server starts on
/// the same data: the dashboard's recent alerts show it, read from the
/// store, not only seen live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_alerts_show_a_step_reaped_after_its_server_died() {
    let (server, run) = reaped_after_a_crash().await;

    let browser = Browser::open(&server).await;
    browser.goto("/").await;
    let shown = browser
        .wait_js(
            "a reaped attempt among the recent alerts",
            "const li = document.querySelector('[data-testid=recent-alerts] [data-testid=reaped-attempt]');
             return li && {text: li.textContent, href: li.querySelector('a').getAttribute('href')};",
        )
        .await;
    assert_eq!(shown["href"], format!("/runs/{run}"), "{shown}");
    let text = shown["text"].as_str().unwrap();
    assert!(text.contains("sleepy › main") && text.contains("heartbeat lost"), "{text}");
    browser
        .js("document.querySelector('[data-testid=recent-alerts]').scrollIntoView()", vec![])
        .await
        .unwrap();
    browser.screenshot("dashboard-alerts").await;
    browser.close().await;
}

/// A server restarted after a crash under a running step of `sleepy`: the
/// new server reaped the step ("heartbeat lost") and failed the run.
async fn reaped_after_a_crash() -> (Server, RunId) {
    let (server, _) = Server::start(&[("sleepy", SLEEP)], &[]);
    let api = server.client(None);
    let run = trigger(&api, "sleepy").await;
    eventually("the step running", || async {
        let r = api.get_run(run).await.map_err(|e| e.to_string())?;
        if r["tasks"][0]["status"] == "RUNNING" { Ok(()) } else { Err(r.to_string()) }
    })
    .await;
    let server = server.crash_and_restart();
    run_status(&server.client(None), run, FINISHED).await;
    (server, run)
}

/// The alerts page's items: (kind, first link, text).
const ALERTS_SHOWN: &str = "const list = document.querySelector('[data-testid=alerts-list]');
    return list && [...list.querySelectorAll('[data-testid=alert]')]
      .map((li) => [li.dataset.kind, li.querySelector('a').getAttribute('href'), li.textContent]);";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_page_lists_reaped_attempts_and_filters_by_kind() {
    let (server, run) = reaped_after_a_crash().await;

    let browser = Browser::open(&server).await;
    browser.goto("/alerts").await;
    let shown = browser.wait_js("the reaped attempt on the alerts page", ALERTS_SHOWN).await;
    let items: Vec<(String, String, String)> = serde_json::from_value(shown.clone()).unwrap();
    assert_eq!(items.len(), 1, "{shown}");
    let (kind, href, text) = &items[0];
    assert_eq!((kind.as_str(), href.clone()), ("reaped", format!("/runs/{run}")), "{shown}");
    assert!(text.contains("sleepy › main") && text.contains("heartbeat lost"), "{text}");
    browser.shoot("alerts-reaped", "[data-testid=alerts-list] [data-testid=alert]").await;

    browser.click("[data-testid=kind-filter] [data-key=anomaly]").await;
    let empty = browser
        .wait_js(
            "the empty state for anomalies",
            "const p = document.querySelector('[data-testid=alerts-empty]'); return p && p.textContent;",
        )
        .await;
    assert_eq!(empty, "No alerts in this selection.");
    assert_eq!(browser.location().await, "/alerts?kind=anomaly");
    let pressed = browser.attr("[data-testid=kind-filter] [data-key=anomaly]", "aria-pressed").await;
    assert_eq!(pressed.as_deref(), Some("true"));

    browser.client.back().await.unwrap();
    let again = browser.wait_js("the reaped attempt after the back button", ALERTS_SHOWN).await;
    let again: Vec<(String, String, String)> = serde_json::from_value(again).unwrap();
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!((&again[0].0, &again[0].1), (kind, href), "{again:?}");
    browser.client.set_window_size(390, 844).await.unwrap();
    browser.screenshot("alerts-reaped-phone").await;
    assert_eq!(browser.location().await, "/alerts");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_page_shows_where_time_goes() {
    let (server, _) = Server::start(&[("chain", CHAIN), ("ok", OK)], &[]);
    let api = server.client(None);
    let mut runs = Vec::new();
    for workflow in ["chain", "chain", "ok", "ok"] {
        runs.push(trigger(&api, workflow).await);
    }
    for run in &runs {
        run_status(&api, *run, FINISHED).await;
    }

    let browser = Browser::open(&server).await;
    browser.goto("/analytics").await;
    let page = browser
        .wait_js(
            "the phase table, the slowest tasks and the most failing step",
            "const rows = [...document.querySelectorAll('[data-testid=phase-table] tbody tr')];
             const slow = [...document.querySelectorAll('[data-testid=slowest-tasks] a')];
             const failing = [...document.querySelectorAll('[data-testid=most-failing] tbody tr')];
             if (rows.length < 3 || !slow.length || !failing.length) return null;
             return {
               steps: rows.map((r) => [r.dataset.workflow, r.dataset.step, !!r.querySelector('[data-testid=phase-bar]')]),
               slowest: slow.map((a) => a.getAttribute('href')),
               failing: failing.map((r) => [r.dataset.workflow, r.dataset.step, r.textContent]),
             };",
        )
        .await;
    let steps: Vec<(String, String, bool)> = serde_json::from_value(page["steps"].clone()).unwrap();
    let want = [("chain", "fail"), ("chain", "nap"), ("ok", "main")];
    assert_eq!(
        steps.iter().map(|(w, s, _)| (w.as_str(), s.as_str())).collect::<BTreeSet<_>>(),
        want.into_iter().collect(),
        "{page}"
    );
    assert!(steps.iter().all(|(.., bar)| *bar), "a phase bar on every row: {page}");
    let runs: BTreeSet<String> = runs.iter().map(|r| format!("/runs/{r}")).collect();
    for href in page["slowest"].as_array().unwrap() {
        assert!(runs.contains(href.as_str().unwrap()), "{page}");
    }
    let failing: Vec<(String, String, String)> = serde_json::from_value(page["failing"].clone()).unwrap();
    assert_eq!(failing.len(), 1, "{page}");
    assert_eq!((failing[0].0.as_str(), failing[0].1.as_str()), ("chain", "fail"), "{page}");
    assert!(
        failing[0].2.contains("100%"),
        "every failed task of chain is fail's, and every fail failed: {page}"
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_filtered_by_two_statuses_and_the_back_button() {
    let (server, _) = Server::start(&[("ok", OK), ("bad", BAD), ("sleepy", SLEEP)], &[]);
    let api = server.client(None);
    let (ok, bad, sleepy) =
        (trigger(&api, "ok").await, trigger(&api, "bad").await, trigger(&api, "sleepy").await);
    run_status(&api, sleepy, &["RUNNING"]).await;
    api.cancel_run(sleepy).await.unwrap();
    assert_eq!(run_status(&api, ok, FINISHED).await["status"], "COMPLETED");
    assert_eq!(run_status(&api, bad, FINISHED).await["status"], "FAILED");
    assert_eq!(run_status(&api, sleepy, FINISHED).await["status"], "CANCELED");
    let ids = |runs: &[RunId]| runs.iter().map(|r| r.to_string()).collect::<BTreeSet<_>>();

    let browser = Browser::open(&server).await;
    browser.goto("/runs?status=FAILED,CANCELED").await;
    wait_rows(&browser, &ids(&[bad, sleepy]), "opening /runs?status=FAILED,CANCELED").await;
    let shown = runs_shown(&browser).await.unwrap();
    assert_eq!(shown[&bad.to_string()], "FAILED");
    assert_eq!(shown[&sleepy.to_string()], "CANCELED");

    browser.goto("/runs").await;
    wait_rows(&browser, &ids(&[ok, bad, sleepy]), "opening /runs").await;
    browser.click("[data-testid=status-filter] [data-status=FAILED]").await;
    wait_rows(&browser, &ids(&[bad]), "the FAILED toggle").await;
    browser.click("[data-testid=status-filter] [data-status=CANCELED]").await;
    wait_rows(&browser, &ids(&[bad, sleepy]), "the CANCELED toggle").await;
    let pressed = browser.attr("[data-testid=status-filter] [data-status=CANCELED]", "aria-pressed").await;
    assert_eq!(pressed.as_deref(), Some("true"));
    let here = browser.location().await;
    assert!(here.starts_with("/runs?") && here.contains("FAILED") && here.contains("CANCELED"), "{here}");

    browser.client.back().await.unwrap();
    wait_rows(&browser, &ids(&[bad]), "the back button").await;
    browser.client.back().await.unwrap();
    wait_rows(&browser, &ids(&[ok, bad, sleepy]), "the back button again").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_page_shows_the_graph_the_timeline_and_the_transitions() {
    let (server, _) = Server::start(&[("graph", GRAPH)], &[]);
    let api = server.client(None);
    let run = trigger(&api, "graph").await;
    let done = run_status(&api, run, FINISHED).await;
    let tasks = done["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 4, "{done}");

    let browser = Browser::open(&server).await;
    browser.goto(&format!("/runs/{run}")).await;
    let page = browser
        .wait_js(
            "the graph and the timeline of 4 tasks",
            "const nodes = [...document.querySelectorAll('[data-testid=dag-graph] [data-task]')];
             const rows = document.querySelectorAll('[data-testid=timeline] [data-task]');
             const log = document.querySelectorAll('[data-testid=transition-log] tbody tr');
             if (nodes.length < 4 || rows.length < 4 || !log.length) return null;
             const fill = (n) => { const s = getComputedStyle(n.matches('rect, circle, path') ? n : (n.querySelector('rect, circle, path') || n));
                                   return s.fill + '|' + s.stroke + '|' + s.backgroundColor + '|' + s.borderColor; };
             return {nodes: nodes.map((n) => [n.dataset.task, n.dataset.status, fill(n)]),
                     timeline: rows.length, log: log.length};",
        )
        .await;
    let nodes: Vec<(String, String, String)> = serde_json::from_value(page["nodes"].clone()).unwrap();
    assert_eq!(nodes.len(), 4, "one node per task: {page}");
    assert_eq!(page["timeline"], 4, "one timeline row per task: {page}");
    assert!(page["log"].as_u64().unwrap() >= 4, "{page}");
    // Each node is the task's status, whether named by task id or step name.
    for t in tasks {
        let node = nodes
            .iter()
            .find(|(key, ..)| {
                *key == t["id"].as_str().unwrap_or_default() || *key == t["name"].as_str().unwrap()
            })
            .unwrap_or_else(|| panic!("no node for task {t}: {page}"));
        assert_eq!(node.1, t["status"].as_str().unwrap(), "{page}");
    }
    let colour = |status: &str| nodes.iter().find(|n| n.1 == status).map(|n| n.2.clone());
    assert_ne!(colour("COMPLETED"), colour("FAILED"), "a status has its own colour: {page}");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_progress_bar_moves_without_a_reload() {
    let (server, _) = Server::start(&[("progress", PROGRESS)], &[]);
    let api = server.client(None);
    let browser = Browser::open(&server).await;
    browser.goto("/").await;
    browser.wait_rendered("[data-testid=running-tasks]", None).await;
    browser.js("window.cairnNoReload = true", vec![]).await.unwrap();

    let run = trigger(&api, "progress").await;
    let bar = "[data-testid=running-tasks] [data-testid=progress-bar]";
    let read = format!(
        "const b = document.querySelector({bar}); return b && window.cairnNoReload === true ? Number(b.getAttribute('aria-valuenow')) : null;",
        bar = json!(bar)
    );
    let first = browser.wait_js("a running task's progress bar", &read).await.as_f64().unwrap();
    let later = eventually("the progress bar to move on", || async {
        let now = browser.js(&read, vec![]).await?;
        match now.as_f64() {
            Some(v) if v > first => Ok(v),
            _ => Err(format!("{now} (first {first})")),
        }
    })
    .await;
    let still = browser.js("return window.cairnNoReload === true", vec![]).await.unwrap();
    assert_eq!(still, json!(true), "the page was reloaded");
    assert!(later > first && later <= 100.0, "{first} → {later}");
    assert_eq!(run_status(&api, run, FINISHED).await["status"], "COMPLETED");
    browser.close().await;
}

/// Clicks the run page's cancel button and answers its confirmation.
async fn cancel_from_page(browser: &Browser, run: RunId) {
    browser.goto(&format!("/runs/{run}")).await;
    browser.wait_rendered("[data-testid=cancel-run]", None).await;
    browser.click("[data-testid=cancel-run]").await;
    browser.confirm().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_from_the_run_page() {
    let (server, _) = Server::start(&[("sleepy", SLEEP)], &[]);
    let api = server.client(None);
    let run = trigger(&api, "sleepy").await;
    run_status(&api, run, &["RUNNING"]).await;
    let browser = Browser::open(&server).await;
    cancel_from_page(&browser, run).await;
    run_status(&api, run, &["CANCELED"]).await;
    browser
        .wait_js(
            "the run's status to say CANCELED",
            "const s = document.querySelector('[data-testid=run-status]'); return s && s.textContent.includes('CANCELED');",
        )
        .await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_with_a_token_then_change_things_from_the_page() {
    let (server, secrets) = Server::start(&[("sleepy", SLEEP)], &[("ops", "operator"), ("eye", "viewer")]);
    let api = server.client(Some(&secrets[0]));
    let browser = Browser::open(&server).await;
    browser.goto("/").await;
    eventually("/ to land on /sign-in", || async {
        let here = browser.location().await;
        if here.starts_with("/sign-in") { Ok(()) } else { Err(here) }
    })
    .await;
    browser.shoot("sign-in", "[data-testid=token-input]").await;

    let sign_in = async |secret: &str| {
        browser.wait_for("[data-testid=token-input]").await.send_keys(secret).await.unwrap();
        browser.click("[data-testid=sign-in]").await;
        browser.wait_rendered("[data-testid=status-chart] svg", None).await;
        assert_eq!(browser.location().await, "/");
    };
    sign_in(&secrets[0]).await;
    let who = browser.wait_for("[data-testid=signed-in-as]").await.text().await.unwrap();
    assert!(who.contains("ops"), "{who}");

    // An operator's cancel from the page: the page sends the CSRF header.
    let run = trigger(&api, "sleepy").await;
    run_status(&api, run, &["RUNNING"]).await;
    cancel_from_page(&browser, run).await;
    run_status(&api, run, &["CANCELED"]).await;

    // A viewer's is refused, and the page says so.
    browser.click("[data-action=sign-out]").await;
    browser.wait_for("[data-testid=token-input]").await;
    sign_in(&secrets[1]).await;
    let run = trigger(&api, "sleepy").await;
    run_status(&api, run, &["RUNNING"]).await;
    cancel_from_page(&browser, run).await;
    let error = browser
        .wait_js(
            "the page to show the refusal",
            "const e = [...document.querySelectorAll('#view .error')].find((e) => e.textContent.trim());
             return e ? e.textContent : null;",
        )
        .await;
    assert!(!error.as_str().unwrap().is_empty(), "{error}");
    assert_eq!(api.get_run(run).await.unwrap()["status"], "RUNNING", "a viewer cannot cancel");
    api.cancel_run(run).await.unwrap();
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screenshots_of_every_page_light_and_dark() {
    let (server, _) =
        Server::start(&[("ok", OK), ("bad", BAD), ("graph", GRAPH), ("progress", PROGRESS)], &[]);
    let api = server.client(None);
    let mut runs = Vec::new();
    for workflow in ["ok", "ok", "bad", "graph"] {
        runs.push(trigger(&api, workflow).await);
    }
    for run in &runs {
        run_status(&api, *run, FINISHED).await;
    }
    let graph = runs[3];
    let browser = Browser::open(&server).await;
    let pages = [
        ("dashboard", "/".to_owned(), "[data-testid=status-chart] svg"),
        ("runs", "/runs".to_owned(), "[data-testid=runs-table] tr[data-run]"),
        ("run", format!("/runs/{graph}"), "[data-testid=dag-graph] [data-task]"),
        ("workflows", "/workflows".to_owned(), "[data-testid=workflows-table] tr"),
        ("workers", "/workers".to_owned(), "[data-testid=workers-table] > *"),
        ("alerts", "/alerts".to_owned(), "[data-testid=alerts-list], [data-testid=alerts-empty]"),
        ("analytics", "/analytics".to_owned(), "[data-testid=phase-table]"),
    ];
    for (page, path, ready) in &pages {
        browser.goto(path).await;
        browser.shoot(page, ready).await;
    }
    // A phone's width: the dashboard, the runs list and the analytics.
    browser.js("localStorage.setItem('cairn.theme', 'light')", vec![]).await.unwrap();
    browser.client.set_window_size(390, 844).await.unwrap();
    for (page, path, ready) in [&pages[0], &pages[1], &pages[6]] {
        browser.goto(path).await;
        browser.wait_rendered(ready, None).await;
        browser.screenshot(&format!("{page}-phone")).await;
    }
    browser.close().await;
}
