//! The harness of the web UI's browser tests and benchmark: a `cairn
//! serve` process on a free port, and headless Chromium under a
//! chromedriver of its own, driven over WebDriver (fantoccini). Every
//! process is killed with its process group when its guard drops.

use std::collections::BTreeMap;
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

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_cairn");
/// How long a condition may take to show on the page (or in the API).
pub(crate) const PATIENCE: Duration = Duration::from_secs(15);
pub(crate) const POLL: Duration = Duration::from_millis(100);

/// Polls `probe` every 100 ms until it answers `Ok`, for up to [`PATIENCE`];
/// on timeout the panic shows what the last probe saw.
pub(crate) async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
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
pub(crate) fn installed(program: &str) -> PathBuf {
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
pub(crate) struct Group(pub(crate) Child);

impl Group {
    pub(crate) fn spawn(command: &mut Command) -> Group {
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
pub(crate) struct Server {
    _process: Group,
    pub(crate) url: String,
    data: PathBuf,
    wf: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    /// `tokens`: (name, role) of API tokens made before the server starts;
    /// their secrets are returned in the same order.
    pub(crate) fn start(workflows: &[(&str, &str)], tokens: &[(&str, &str)]) -> (Server, Vec<String>) {
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
        (Server::spawn(&data, &wf, dir), secrets)
    }

    /// A server on an existing data directory, its history as it is, with
    /// no workflow files.
    pub(crate) fn on(data: &Path) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let wf = dir.path().join("wf");
        std::fs::create_dir_all(&wf).unwrap();
        Server::spawn(data, &wf, dir)
    }

    /// Kills the server and its steps with SIGKILL, as a crash would, and
    /// starts another on the same data and workflows (on a new port).
    pub(crate) fn crash_and_restart(self) -> Server {
        let Server { _process, data, wf, _dir, .. } = self;
        drop(_process);
        Server::spawn(&data, &wf, _dir)
    }

    fn spawn(data: &Path, wf: &Path, dir: tempfile::TempDir) -> Server {
        let mut process = Group::spawn(
            Command::new(BIN)
                .args(["serve", "--listen", "127.0.0.1:0", "--grace", "0", "--data-dir"])
                .arg(data)
                .arg("--workflows")
                .arg(wf)
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
        Server { _process: process, url, data: data.to_owned(), wf: wf.to_owned(), _dir: dir }
    }

    pub(crate) fn client(&self, token: Option<&str>) -> Client {
        let builder = Client::builder(self.url.clone());
        match token {
            Some(t) => builder.bearer_token(t).build().unwrap(),
            None => builder.build().unwrap(),
        }
    }
}

pub(crate) async fn trigger(client: &Client, workflow: &str) -> RunId {
    client.trigger_run(workflow, &BTreeMap::new()).await.unwrap()
}

/// Waits until the API says the run's status is one of `statuses`.
pub(crate) async fn run_status(client: &Client, run: RunId, statuses: &[&str]) -> Value {
    eventually(&format!("run {run} to be {statuses:?}"), || async {
        let r = client.get_run(run).await.map_err(|e| e.to_string())?;
        if statuses.contains(&r["status"].as_str().unwrap_or_default()) { Ok(r) } else { Err(r.to_string()) }
    })
    .await
}

pub(crate) const FINISHED: &[&str] = &["COMPLETED", "PARTIALLY_SUCCEEDED", "FAILED", "CANCELED"];

/// Headless Chromium under a chromedriver of its own, on a fresh profile.
pub(crate) struct Browser {
    pub(crate) client: fantoccini::Client,
    pub(crate) base: String,
    _driver: Group,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub(crate) async fn open(server: &Server) -> Browser {
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
    pub(crate) async fn close(self) {
        let _ = self.client.clone().close().await;
    }

    pub(crate) async fn goto(&self, path: &str) {
        self.client.goto(&format!("{}{path}", self.base)).await.unwrap();
    }

    /// The address shown, as a path and query.
    pub(crate) async fn location(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    pub(crate) async fn js(&self, script: &str, args: Vec<Value>) -> Result<Value, String> {
        self.client.execute(script, args).await.map_err(|e| e.to_string())
    }

    /// Runs `script` until it returns something other than `null`/`false`.
    pub(crate) async fn wait_js(&self, what: &str, script: &str) -> Value {
        eventually(what, || async {
            match self.js(script, vec![]).await? {
                Value::Null | Value::Bool(false) => Err(self.summary().await),
                v => Ok(v),
            }
        })
        .await
    }

    /// What the page shows, in short, for a failure's message.
    pub(crate) async fn summary(&self) -> String {
        let text = self.js(
            "return location.pathname + ': ' + document.querySelector('#view').innerText.slice(0, 400)",
            vec![],
        );
        text.await.map_or_else(|e| e, |v| v.as_str().unwrap_or_default().replace('\n', " | "))
    }

    pub(crate) async fn wait_for(&self, css: &str) -> Element {
        eventually(&format!("`{css}` on the page"), || async {
            self.client.find(Locator::Css(css)).await.map_err(|e| e.to_string())
        })
        .await
    }

    /// The attribute of the first element matching `css`, once there is one.
    pub(crate) async fn attr(&self, css: &str, name: &str) -> Option<String> {
        self.wait_for(css).await.attr(name).await.unwrap()
    }

    /// Clicks the element, finding it again if the page redraws meanwhile.
    pub(crate) async fn click(&self, css: &str) {
        eventually(&format!("a click on `{css}`"), || async {
            let element = self.client.find(Locator::Css(css)).await.map_err(|e| e.to_string())?;
            element.click().await.map_err(|e| e.to_string())
        })
        .await
    }

    pub(crate) async fn screenshot(&self, name: &str) {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let png = self.client.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a screenshot is a PNG");
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    /// Waits until the page shows `ready` (and not an error), then saves
    /// `<page>-light.png` and `<page>-dark.png`.
    pub(crate) async fn shoot(&self, page: &str, ready: &str) {
        for theme in ["light", "dark"] {
            self.js("localStorage.setItem('cairn.theme', arguments[0])", vec![json!(theme)]).await.unwrap();
            self.client.refresh().await.unwrap();
            self.wait_rendered(ready, Some(theme)).await;
            self.screenshot(&format!("{page}-{theme}")).await;
        }
    }

    /// Waits until the view has its heading, no error or "Loading…", and
    /// an element matching `ready` (and the theme, when given).
    pub(crate) async fn wait_rendered(&self, ready: &str, theme: Option<&str>) {
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
    pub(crate) async fn confirm(&self) {
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
