//! The web UI in a real browser: headless Chromium driven over WebDriver
//! (chromedriver) against a real `cairn serve` with real runs. Covers the
//! dashboard's status donut, the runs list filtered by two statuses (and
//! the back button), a run's graph, timeline and transition log, live
//! progress without a reload, cancelling from a run's page, web sign-in
//! (the page sends the CSRF header; a viewer's cancel is refused), and
//! screenshots of every page, light and dark, under
//! `<CARGO_TARGET_TMPDIR>/screenshots/`.
//!
//! Chromium and chromedriver must be installed (`apt-get install chromium
//! chromium-driver`); without them these tests fail, they never skip.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cairn_client::{Client, RunId};
use fantoccini::Locator;
use fantoccini::elements::Element;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_cairn");
/// How long a condition may take to show on the page (or in the API).
const PATIENCE: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(100);

/// Polls `probe` every 100 ms until it answers `Ok`, for up to [`PATIENCE`];
/// on timeout the panic shows what the last probe saw.
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(seen) if Instant::now() >= deadline => {
                panic!("waited {PATIENCE:?} for {what}; last saw: {seen}")
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// A program on the `PATH`, or a failure that says how to install it.
fn installed(program: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{program} is not installed; the browser tests need it: apt-get install chromium chromium-driver")
        })
}

/// A child process in a process group of its own; the whole group (a
/// browser and its helpers, a server and its steps) is killed when dropped.
struct Group(Child);

impl Group {
    fn spawn(command: &mut Command) -> Group {
        Group(command.process_group(0).spawn().unwrap_or_else(|e| panic!("cannot start {command:?}: {e}")))
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

/// A `cairn serve` on a free loopback port with a data directory and
/// workflows of its own.
struct Server {
    _process: Group,
    url: String,
    _dir: tempfile::TempDir,
}

impl Server {
    /// `tokens`: (name, role) of API tokens made before the server starts;
    /// their secrets are returned in the same order.
    fn start(workflows: &[(&str, &str)], tokens: &[(&str, &str)]) -> (Server, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let (data, wf) = (dir.path().join("data"), dir.path().join("wf"));
        std::fs::create_dir_all(&wf).unwrap();
        for (name, yaml) in workflows {
            std::fs::write(wf.join(format!("{name}.yaml")), yaml).unwrap();
        }
        let secrets = tokens
            .iter()
            .map(|(name, role)| {
                let out = Command::new(BIN)
                    .args(["token", "create", name, "--role", role, "--data-dir"])
                    .arg(&data)
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{out:?}");
                String::from_utf8(out.stdout).unwrap().trim().to_owned()
            })
            .collect();
        let mut process = Group::spawn(
            Command::new(BIN)
                .args(["serve", "--listen", "127.0.0.1:0", "--grace", "0", "--data-dir"])
                .arg(&data)
                .arg("--workflows")
                .arg(&wf)
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
        );
        let mut lines = BufReader::new(process.0.stderr.take().unwrap()).lines();
        let url = loop {
            let line = lines.next().expect("the server exited before listening").unwrap();
            if let Some(rest) = line.strip_prefix("cairn serving ") {
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        (Server { _process: process, url, _dir: dir }, secrets)
    }

    fn client(&self, token: Option<&str>) -> Client {
        let builder = Client::builder(self.url.clone());
        match token {
            Some(t) => builder.bearer_token(t).build().unwrap(),
            None => builder.build().unwrap(),
        }
    }
}

async fn trigger(client: &Client, workflow: &str) -> RunId {
    client.trigger_run(workflow, &BTreeMap::new()).await.unwrap()
}

/// Waits until the API says the run's status is one of `statuses`.
async fn run_status(client: &Client, run: RunId, statuses: &[&str]) -> Value {
    eventually(&format!("run {run} to be {statuses:?}"), || async {
        let r = client.get_run(run).await.map_err(|e| e.to_string())?;
        if statuses.contains(&r["status"].as_str().unwrap_or_default()) { Ok(r) } else { Err(r.to_string()) }
    })
    .await
}

const FINISHED: &[&str] = &["COMPLETED", "PARTIALLY_SUCCEEDED", "FAILED", "CANCELED"];

/// Headless Chromium under a chromedriver of its own, on a fresh profile.
struct Browser {
    client: fantoccini::Client,
    base: String,
    _driver: Group,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn open(server: &Server) -> Browser {
        let chromium = installed("chromium");
        let chromedriver = installed("chromedriver");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut driver = Group::spawn(
            Command::new(chromedriver)
                .arg(format!("--port={port}"))
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
        );
        let mut lines = BufReader::new(driver.0.stdout.take().unwrap()).lines();
        loop {
            let line = lines.next().expect("chromedriver exited before it was ready").unwrap();
            if line.contains("started successfully") {
                break;
            }
        }
        std::thread::spawn(move || for _ in lines {});

        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=1280,900",
        ]
        .map(String::from)
        .into_iter()
        .chain([format!("--user-data-dir={}", profile.path().display())])
        .collect::<Vec<_>>();
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
            // A `confirm()` stays open until the test answers it.
            "unhandledPromptBehavior": "ignore",
        });
        let Value::Object(capabilities) = capabilities else { unreachable!() };
        let client = fantoccini::ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("chromedriver did not start a Chromium session");
        Browser { client, base: server.url.clone(), _driver: driver, _profile: profile }
    }

    /// Ends the session (the browser quits); chromedriver goes when dropped.
    async fn close(self) {
        let _ = self.client.clone().close().await;
    }

    async fn goto(&self, path: &str) {
        self.client.goto(&format!("{}{path}", self.base)).await.unwrap();
    }

    /// The address shown, as a path and query.
    async fn location(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    async fn js(&self, script: &str, args: Vec<Value>) -> Result<Value, String> {
        self.client.execute(script, args).await.map_err(|e| e.to_string())
    }

    /// Runs `script` until it returns something other than `null`/`false`.
    async fn wait_js(&self, what: &str, script: &str) -> Value {
        eventually(what, || async {
            match self.js(script, vec![]).await? {
                Value::Null | Value::Bool(false) => Err(self.summary().await),
                v => Ok(v),
            }
        })
        .await
    }

    /// What the page shows, in short, for a failure's message.
    async fn summary(&self) -> String {
        let text = self.js(
            "return location.pathname + ': ' + document.querySelector('#view').innerText.slice(0, 400)",
            vec![],
        );
        text.await.map_or_else(|e| e, |v| v.as_str().unwrap_or_default().replace('\n', " | "))
    }

    async fn wait_for(&self, css: &str) -> Element {
        eventually(&format!("`{css}` on the page"), || async {
            self.client.find(Locator::Css(css)).await.map_err(|e| e.to_string())
        })
        .await
    }

    /// The attribute of the first element matching `css`, once there is one.
    async fn attr(&self, css: &str, name: &str) -> Option<String> {
        self.wait_for(css).await.attr(name).await.unwrap()
    }

    /// Clicks the element, finding it again if the page redraws meanwhile.
    async fn click(&self, css: &str) {
        eventually(&format!("a click on `{css}`"), || async {
            let element = self.client.find(Locator::Css(css)).await.map_err(|e| e.to_string())?;
            element.click().await.map_err(|e| e.to_string())
        })
        .await
    }

    async fn screenshot(&self, name: &str) {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let png = self.client.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a screenshot is a PNG");
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// Waits until the page shows `ready` (and not an error), then saves
    /// `<page>-light.png` and `<page>-dark.png`.
    async fn shoot(&self, page: &str, ready: &str) {
        for theme in ["light", "dark"] {
            self.js("localStorage.setItem('cairn.theme', arguments[0])", vec![json!(theme)]).await.unwrap();
            self.client.refresh().await.unwrap();
            self.wait_rendered(ready, Some(theme)).await;
            self.screenshot(&format!("{page}-{theme}")).await;
        }
    }

    /// Waits until the view has its heading, no error or "Loading…", and
    /// an element matching `ready` (and the theme, when given).
    async fn wait_rendered(&self, ready: &str, theme: Option<&str>) {
        let script = format!(
            "const h = document.querySelector('#view h1');
             const broken = !h || ['Something went wrong', 'Not found'].includes(h.textContent);
             const loading = [...document.querySelectorAll('#view p.muted')].some((p) => p.textContent.startsWith('Loading'));
             const themed = {theme} === null || document.documentElement.dataset.theme === {theme};
             return !broken && !loading && themed && document.querySelector({ready}) !== null;",
            theme = theme.map_or("null".into(), |t| json!(t).to_string()),
            ready = json!(ready),
        );
        self.wait_js(&format!("the page to show `{ready}`"), &script).await;
    }

    /// Answers whatever the page asks before a change: a `confirm()`, or
    /// its own confirm button (`[data-testid^=confirm]`).
    async fn confirm(&self) {
        eventually("the page's confirmation", || async {
            if self.client.accept_alert().await.is_ok() {
                return Ok(());
            }
            let button =
                self.client.find(Locator::Css("[data-testid^=confirm]")).await.map_err(|e| e.to_string())?;
            button.click().await.map_err(|e| e.to_string())
        })
        .await
    }
}

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
    ];
    for (page, path, ready) in &pages {
        browser.goto(path).await;
        browser.shoot(page, ready).await;
    }
    // A phone's width: the dashboard and the runs list.
    browser.js("localStorage.setItem('cairn.theme', 'light')", vec![]).await.unwrap();
    browser.client.set_window_size(390, 844).await.unwrap();
    for (page, path, ready) in &pages[..2] {
        browser.goto(path).await;
        browser.wait_rendered(ready, None).await;
        browser.screenshot(&format!("{page}-phone")).await;
    }
    browser.close().await;
}
