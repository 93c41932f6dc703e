// The dashboard: the status mix of a window (donut), runs by status over
// time (trend), the failure rate per workflow, the tasks running now with
// live progress and predicted finish, and recent alerts — all from the
// API's counts and searches, kept current by the live events.

import {api, liveEvents} from "../lib/api.js";
import {badge, donut, trend} from "../lib/charts.js";
import {fill, h} from "../lib/dom.js";
import {segmented, workflowSelect} from "../lib/filters.js";
import {RUN_STATUSES, ago, duration, when} from "../lib/format.js";
import {navigate} from "../app.js";
import {debounce} from "../lib/later.js";

const WINDOWS = {"1h": 3600, "24h": 86400, "7d": 7 * 86400};

export async function render(root, _params, query) {
  const state = {
    window: query.get("window") in WINDOWS || query.get("window") === "custom" ? query.get("window") : "24h",
    from: query.get("from") || "",
    to: query.get("to") || "",
    workflow: query.get("workflow") || "",
  };

  const statusChart = h("div", {dataset: {testid: "status-chart"}});
  const trendChart = h("div", {class: "trend", dataset: {testid: "trend-chart"}});
  const rates = h("div", {dataset: {testid: "failure-rates"}});
  const running = h("div", {class: "scroll", dataset: {testid: "running-tasks"}});
  const alerts = h("div", {dataset: {testid: "recent-alerts"}});

  const go = (change) => {
    const next = {...state, ...change};
    const q = new URLSearchParams();
    if (next.window !== "24h") q.set("window", next.window);
    if (next.window === "custom") { if (next.from) q.set("from", next.from); if (next.to) q.set("to", next.to); }
    if (next.workflow) q.set("workflow", next.workflow);
    navigate(`/${q.toString() ? `?${q}` : ""}`);
  };

  const windowButtons = segmented("Window",
    [["1h", "Last hour"], ["24h", "Last day"], ["7d", "Last week"], ["custom", "Custom"]], state.window,
    (key) => go({window: key}), "window-filter");
  const custom = state.window === "custom" ? h("span", {class: "row"},
    h("label", {}, "From ", h("input", {type: "datetime-local", value: state.from, onchange: (e) => go({from: e.target.value})})),
    h("label", {}, "to ", h("input", {type: "datetime-local", value: state.to, onchange: (e) => go({to: e.target.value})}))) : null;

  fill(root,
    h("h1", {}, "Dashboard"),
    h("div", {class: "bar"}, windowButtons, custom, h("span", {class: "spacer"}),
      workflowSelect(state.workflow, (workflow) => go({workflow}))),
    h("div", {class: "grid"},
      h("section", {class: "panel"}, h("h2", {}, "Runs by status"), statusChart),
      h("section", {class: "panel"}, h("h2", {}, "Failure rate by workflow"), rates),
      h("section", {class: "panel wide"}, h("h2", {}, "Runs over time"), trendChart),
      h("section", {class: "panel wide"}, h("h2", {}, "Running now"), running),
      h("section", {class: "panel wide"}, h("h2", {}, "Recent alerts"), alerts,
        h("p", {class: "more-link"}, h("a", {href: `/alerts${state.workflow ? `?workflow=${encodeURIComponent(state.workflow)}` : ""}`, "data-nav": true, dataset: {testid: "all-alerts"}}, "All alerts →")))));

  const range = () => {
    if (state.window === "custom") {
      const from = state.from ? new Date(state.from) : new Date(Date.now() - 86400e3);
      const to = state.to ? new Date(state.to) : new Date();
      return {from: from.toISOString(), to: to.toISOString(), seconds: (to - from) / 1000};
    }
    const seconds = WINDOWS[state.window];
    return {from: new Date(Date.now() - seconds * 1000).toISOString(), to: undefined, seconds};
  };

  const loadCounts = async () => {
    const {from, to, seconds} = range();
    const bucket = seconds <= 3 * 3600 ? "minute" : seconds <= 14 * 86400 ? "hour" : "day";
    const q = {from, to, workflow: state.workflow};
    const [counts, series] = await Promise.all([
      api("/api/v1/stats/status", {query: q}),
      api("/api/v1/stats/trend", {query: {...q, bucket}}),
    ]);
    fill(statusChart, donut(counts.runs, {testid: "status-donut", title: "runs"}));
    const present = RUN_STATUSES.filter((st) => series.points.some((p) => p.counts[st]));
    if (series.points.length && present.length) trend(trendChart, series.points, present);
    else fill(trendChart, h("p", {class: "empty"}, "No runs in this window."));
    fill(rates, failureRates(series.workflows));
  };

  const loadRunning = async () => {
    const page = await api("/api/v1/tasks", {query: {status: "RUNNING", workflow: state.workflow, limit: 100}});
    fill(running, page.tasks.length ? runningTable(page.tasks) : h("p", {class: "empty"}, "Nothing is running."));
  };

  // Anomalies and attempts the reaper ended, merged newest first.
  const loadAlerts = async () => {
    const q = {query: {limit: 10, workflow: state.workflow}};
    const [list, lost] = await Promise.all([
      api("/api/v1/alerts", q).catch(() => ({alerts: []})),
      api("/api/v1/reaped", q).catch(() => ({reaped: []})),
    ]);
    fill(alerts, alertList(list.alerts || [], lost.reaped || []));
  };

  await Promise.all([loadCounts(), loadRunning(), loadAlerts()]);

  // Live: progress moves the bars in place; a task starting or ending, or a
  // run ending, reloads what it changes (a little later, once per burst).
  const later = debounce();
  const stopEvents = liveEvents({workflow: state.workflow}, (e) => {
    if (e.kind === "progress") updateProgress(running, e);
    if (e.kind === "transition") {
      if (e.to === "RUNNING" || e.from === "RUNNING") later("running", loadRunning, 300);
      if (e.actor === "reaper" && e.from === "RUNNING") later("alerts", loadAlerts, 300);
    }
    if (e.kind === "run") later("counts", loadCounts, 1000);
    if (e.kind === "alert") later("alerts", loadAlerts, 300);
  }, () => { loadCounts(); loadRunning(); loadAlerts(); });
  const ticking = setInterval(() => refreshTimes(root), 15000);
  return () => { stopEvents(); clearInterval(ticking); later.cancelAll(); };
}

function failureRates(workflows) {
  const rows = workflows.map((w) => {
    let failed = 0, finished = 0;
    for (const p of w.points) {
      for (const [st, n] of Object.entries(p.counts)) {
        if (["COMPLETED", "PARTIALLY_SUCCEEDED", "FAILED", "CANCELED"].includes(st)) finished += n;
        if (st === "FAILED") failed += n;
      }
    }
    return {workflow: w.workflow, failed, finished, rate: finished ? failed / finished : null};
  }).filter((r) => r.finished > 0).sort((a, b) => b.rate - a.rate || b.finished - a.finished);
  if (!rows.length) return h("p", {class: "empty"}, "No run finished in this window.");
  return h("div", {class: "rate"}, rows.map((r) => [
    h("a", {href: `/runs?workflow=${encodeURIComponent(r.workflow)}`, "data-nav": true}, r.workflow),
    h("div", {class: "track", title: `${r.failed} of ${r.finished} finished runs failed`},
      h("span", {style: {width: `${Math.round(r.rate * 100)}%`}})),
    h("span", {class: "n", dataset: {workflow: r.workflow, rate: r.rate.toFixed(3)}}, `${(r.rate * 100).toFixed(1)}%`),
  ]));
}

function runningTable(tasks) {
  return h("table", {},
    h("thead", {}, h("tr", {},
      h("th", {}, "Task"), h("th", {}, "Progress"), h("th", {class: "hide-narrow"}, "Message"),
      h("th", {}, "Running for"), h("th", {class: "hide-narrow"}, "Predicted finish"), h("th", {class: "hide-narrow"}, "Worker"))),
    h("tbody", {}, tasks.map((t) => {
      const percent = t.progress_percent ?? 0;
      const predicted = t.predicted_finish_at;
      return h("tr", {class: t.overrun_predicted ? "overrun" : "", dataset: {task: t.id}},
        h("td", {}, h("a", {href: `/runs/${t.run_id}`, "data-nav": true}, `${t.workflow} › ${t.name}`)),
        h("td", {}, h("div", {class: "progress-cell"},
          h("div", {class: "progress", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100,
            "aria-valuenow": percent, "aria-label": `${t.name} progress`, dataset: {testid: "progress-bar"}},
          h("span", {style: {width: `${percent}%`}})),
          h("span", {class: "muted pct"}, t.progress_percent == null ? "" : `${Math.round(percent)}%`))),
        h("td", {class: "hide-narrow msg"}, t.progress_message || ""),
        h("td", {dataset: {since: t.started_at}}, t.started_at ? duration((Date.now() - new Date(t.started_at)) / 1000) : ""),
        h("td", {class: "hide-narrow eta", title: predicted ? when(predicted) : ""}, predicted ? ago(predicted) : "—",
          t.overrun_predicted ? [" ", overrunBadge()] : null),
        h("td", {class: "hide-narrow mono"}, t.worker || ""));
    })));
}

function overrunBadge() {
  return h("span", {class: "badge", title: "Predicted to pass its timeout"}, "overrun");
}

function updateProgress(container, e) {
  const row = container.querySelector(`tr[data-task="${e.task_id}"]`);
  if (!row) return;
  const bar = row.querySelector("[data-testid=progress-bar]");
  bar.setAttribute("aria-valuenow", e.percent);
  bar.firstChild.style.width = `${e.percent}%`;
  row.querySelector(".pct").textContent = `${Math.round(e.percent)}%`;
  row.querySelector(".msg").textContent = e.message || "";
  const eta = row.querySelector(".eta");
  eta.textContent = e.predicted_finish_at ? ago(e.predicted_finish_at) : "—";
  eta.title = e.predicted_finish_at ? when(e.predicted_finish_at) : "";
  row.classList.toggle("overrun", !!e.overrun_predicted);
  if (e.overrun_predicted) eta.append(" ", overrunBadge());
}

function alertList(alerts, reaped) {
  const items = [
    ...alerts.map((a) => ({
      at: a.raised_at, node: h("li", {}, badge(a.resolved_at ? "COMPLETED" : "FAILED", a.resolved_at ? "resolved" : "anomaly"),
        h("strong", {}, a.workflow), h("span", {class: "why"}, a.message),
        h("span", {class: "muted", title: when(a.raised_at)}, ago(a.raised_at))),
    })),
    ...reaped.map((r) => ({
      at: r.at, node: h("li", {dataset: {testid: "reaped-attempt"}}, badge(r.to === "PENDING" ? "PENDING" : "FAILED", "reaped"),
        h("a", {href: `/runs/${r.run_id}`, "data-nav": true}, `${r.workflow} › ${r.step}`),
        h("span", {class: "why"}, `attempt ${r.attempt}: ${r.reason}${r.to === "PENDING" ? ", retried" : ""}`),
        h("span", {class: "muted", title: when(r.at)}, ago(r.at))),
    })),
  ].sort((a, b) => (a.at < b.at ? 1 : -1)).slice(0, 10);
  if (!items.length) return h("p", {class: "empty"}, "No alerts.");
  return h("ul", {class: "alerts"}, items.map((i) => i.node));
}

function refreshTimes(root) {
  for (const td of root.querySelectorAll("td[data-since]")) {
    td.textContent = duration((Date.now() - new Date(td.dataset.since)) / 1000);
  }
}
