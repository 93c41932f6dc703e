// One run: its header (status, times, ETA, params, cancel and retry), its
// steps as a graph and as a timeline, and the selected task in full — its
// transition log, durations, progress, attempts, outputs and live output.
// Live events recolour and extend what is shown; a reload (debounced)
// follows each burst to pick up what events do not carry.

import {api, ApiError, liveEvents} from "../lib/api.js";
import {badge} from "../lib/charts.js";
import {dag} from "../lib/dag.js";
import {fill, h} from "../lib/dom.js";
import {ago, duration, when} from "../lib/format.js";
import {timeline} from "../lib/timeline.js";
import {navigate} from "../app.js";
import {debounce} from "../lib/later.js";

const RUN_DONE = new Set(["COMPLETED", "PARTIALLY_SUCCEEDED", "FAILED", "CANCELED"]);
const TASK_DONE = new Set(["COMPLETED", "FAILED", "CANCELED", "SKIPPED", "ABANDONED"]);
const LOG_LIMIT = 2 * 1024 * 1024;

// To the millisecond in the viewer's zone; the date only when not today.
const clock = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit", minute: "2-digit", second: "2-digit", fractionalSecondDigits: 3,
});
const dated = new Intl.DateTimeFormat(undefined, {
  month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit", fractionalSecondDigits: 3,
});
const exact = (iso) => {
  if (!iso) return "—";
  const d = new Date(iso);
  return (d.toDateString() === new Date().toDateString() ? clock : dated).format(d);
};

// A time as its relative form, the absolute one as its title.
function at(iso) {
  return iso ? h("time", {class: "rel", datetime: iso, title: when(iso)}, ago(iso)) : h("span", {class: "muted"}, "—");
}

export async function render(root, params, query) {
  const runId = params.run_id;
  let run;
  try {
    run = await api(`/api/v1/runs/${runId}`);
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) {
      fill(root, h("h1", {}, "Run not found"), h("p", {}, `No run ${runId}. `,
        h("a", {href: "/runs", "data-nav": true}, "See all runs.")));
      return null;
    }
    throw e;
  }

  const state = {selected: null, confirming: false, busy: false, error: null, notice: null};
  const findTask = (id) => run.tasks.find((t) => t.id === id);
  const wanted = query.get("task");
  const pickDefault = () => (run.tasks.find((t) => t.status === "RUNNING")
    || run.tasks.find((t) => t.status === "FAILED") || run.tasks[0] || null)?.id ?? null;
  state.selected = run.tasks.find((t) => t.name === wanted)?.id ?? pickDefault();

  const header = h("section", {class: "run-head", "aria-live": "off"});
  const alert = h("div", {class: "run-alert", role: "alert"});
  const graphBox = h("div", {class: "svg-scroll dag-box", tabindex: -1});
  const timeBox = h("div", {class: "svg-scroll time-box"});
  const details = h("section", {class: "panel run-details", "aria-labelledby": "task-title"});
  const logPanel = h("section", {class: "panel run-log", "aria-label": "Output"});
  fill(root,
    header, alert,
    // Redrawn every second or so: not for screen readers to read out each time.
    h("div", {class: "run-grid", "aria-live": "off"},
      h("section", {class: "panel wide"}, h("h2", {}, "Graph"), graphBox),
      h("section", {class: "panel wide"}, h("h2", {}, "Timeline"), timeBox),
      details, logPanel));

  // ---- header -------------------------------------------------------------
  const drawHeader = () => keepFocus(header, drawHeaderNow);
  const drawHeaderNow = () => {
    const done = RUN_DONE.has(run.status);
    const end = run.finished_at ? new Date(run.finished_at) : new Date();
    const started = run.started_at ? new Date(run.started_at) : null;
    const actions = h("div", {class: "row run-actions"});
    if (!done) {
      if (state.confirming) {
        actions.append(h("span", {class: "confirm", role: "group", "aria-label": "Confirm cancel"},
          h("span", {}, "Cancel this run?"),
          h("button", {type: "button", class: "danger", dataset: {testid: "confirm-cancel"}, disabled: state.busy,
            onclick: cancel}, "Yes, cancel it"),
          h("button", {type: "button", dataset: {testid: "keep-run"}, disabled: state.busy,
            onclick: () => { state.confirming = false; drawHeader(); header.querySelector("[data-testid=cancel-run]")?.focus(); }},
          "Keep running")));
      } else {
        actions.append(h("button", {
          type: "button", class: "danger", dataset: {testid: "cancel-run"},
          disabled: !!run.cancel_requested_by || state.busy,
          title: run.cancel_requested_by ? `Cancel requested by ${run.cancel_requested_by}` : "",
          onclick: () => {
            state.confirming = true; state.error = null; drawHeader(); drawAlert();
            header.querySelector("[data-testid=confirm-cancel]")?.focus();
          },
        }, run.cancel_requested_by ? "Cancel requested" : "Cancel"));
      }
    }
    if (run.status === "FAILED" || run.status === "CANCELED") {
      actions.append(h("button", {type: "button", class: "primary", dataset: {testid: "retry-run"}, disabled: state.busy,
        onclick: retry}, "Retry"));
    }
    const eta = done ? null : h("div", {},
      h("dt", {}, "ETA"),
      h("dd", {class: run.slower_than_usual ? "slow" : ""}, etaTime(run.eta),
        run.slower_than_usual ? [" ", h("span", {class: "badge", dataset: {testid: "slower-than-usual"}}, "slower than usual")] : null));
    const expected = run.expected ? h("div", {class: "hide-narrow"}, h("dt", {}, "Usually"),
      h("dd", {}, expectedText(run.expected))) : null;
    const paramEntries = Object.entries(run.params || {});
    fill(header,
      h("div", {class: "run-title"},
        h("h1", {}, h("a", {href: `/workflows/${encodeURIComponent(run.workflow)}`, "data-nav": true}, run.workflow),
          h("span", {class: "muted"}, " › "), h("span", {class: "mono run-id"}, run.run_id)),
        actions),
      h("dl", {class: "facts"},
        h("div", {}, h("dt", {}, "Status"), h("dd", {},
          h("span", {dataset: {testid: "run-status", status: run.status}}, badge(run.status)))),
        h("div", {}, h("dt", {}, "Trigger"), h("dd", {}, run.trigger,
          run.scheduled_for ? h("span", {class: "muted", title: when(run.scheduled_for)}, ` for ${ago(run.scheduled_for)}`) : null)),
        h("div", {}, h("dt", {}, "Submitted"), h("dd", {}, at(run.submitted_at))),
        h("div", {}, h("dt", {}, "Started"), h("dd", {}, at(run.started_at))),
        h("div", {}, h("dt", {}, "Finished"), h("dd", {}, at(run.finished_at))),
        h("div", {}, h("dt", {}, "Duration"), h("dd", {},
          h("span", {dataset: {testid: "run-duration", since: !done && started ? run.started_at : undefined}},
            started ? duration((end - started) / 1000) : "—"),
          !done && started ? h("span", {class: "muted"}, " so far") : null)),
        eta, expected),
      paramEntries.length ? h("div", {class: "params"}, h("span", {class: "muted"}, "Params "),
        paramEntries.map(([k, v]) => h("code", {class: "param"}, `${k}=${v}`))) : null,
      run.error ? h("p", {class: "error"}, run.error) : null);
  };

  // The ETA as the server has it: the usual finish, or the latest progress
  // prediction of a running task where that is later.
  const etaTime = (iso) => (iso
    ? h("time", {class: "rel", datetime: iso, title: when(iso), dataset: {testid: "run-eta"}}, ago(iso))
    : h("span", {class: "muted", dataset: {testid: "run-eta"}}, "—"));
  const refreshEta = () => {
    const ms = (iso) => (iso ? new Date(iso).getTime() : -Infinity);
    let best = run.expected?.reliable && run.started_at ? ms(run.started_at) + run.expected.p50 * 1000 : -Infinity;
    for (const t of run.tasks) if (t.status === "RUNNING") best = Math.max(best, ms(t.progress?.predicted_finish_at));
    if (!Number.isFinite(best)) return;
    run.eta = new Date(best).toISOString();
    header.querySelector("[data-testid=run-eta]")?.replaceWith(etaTime(run.eta));
  };

  const drawAlert = () => {
    fill(alert,
      state.error ? h("p", {class: "error"}, state.error) : null,
      state.notice ? h("p", {class: "muted"}, state.notice) : null);
  };

  async function cancel() {
    state.busy = true; drawHeader();
    try {
      await api(`/api/v1/runs/${runId}/cancel`, {method: "POST"});
      state.notice = "Cancel requested: running steps are being stopped.";
      state.error = null;
      state.confirming = false;
      later("reload", load, 300);
    } catch (e) {
      state.error = explain(e, "cancel");
      state.confirming = false;
    }
    state.busy = false;
    drawHeader(); drawAlert();
    header.querySelector("[data-testid=cancel-run]")?.focus();
  }

  async function retry() {
    state.busy = true; state.error = null; drawHeader(); drawAlert();
    try {
      const created = await api(`/api/v1/runs/${runId}/retry`, {method: "POST"});
      navigate(`/runs/${created.run_id}`);
      return;
    } catch (e) {
      state.error = explain(e, "retry");
    }
    state.busy = false;
    drawHeader(); drawAlert();
  }

  // ---- graph and timeline -------------------------------------------------
  let graph = null;
  let graphIds = "";
  const drawGraph = () => {
    const ids = run.tasks.map((t) => `${t.id}:${(t.depends || []).join(",")}`).join(";");
    if (graph && ids === graphIds) {
      run.tasks.forEach(graph.update);
      graph.select(state.selected);
      return;
    }
    graphIds = ids;
    graph = dag(run.tasks, {selected: state.selected, onSelect: select});
    fill(graphBox, run.tasks.length ? graph.svg : h("p", {class: "empty"}, "This run has no steps."));
    // A large graph opens where the selected task is.
    const node = graph.node(state.selected);
    if (node) {
      const box = graphBox.getBoundingClientRect(), r = node.getBoundingClientRect();
      if (r.right > box.right || r.bottom > box.bottom) {
        graphBox.scrollLeft += r.left - box.left - box.width / 2 + r.width / 2;
        graphBox.scrollTop += r.top - box.top - box.height / 2 + r.height / 2;
      }
    }
  };

  const drawTimeline = () => {
    const width = Math.max(320, timeBox.clientWidth || 900);
    const svg = timeline(run, {width, selected: state.selected, onSelect: select});
    fill(timeBox, svg);
    if (!timeBox.dataset.placed) {
      // The first time, a long list opens at the selected task.
      timeBox.dataset.placed = "yes";
      const row = [...svg.querySelectorAll("g.row")].findIndex((g) => g.dataset.task === state.selected);
      if (row > 0) timeBox.scrollTop = Math.max(0, 26 + row * 24 - timeBox.clientHeight / 2);
    }
  };

  // ---- the selected task --------------------------------------------------
  const progressBox = h("div", {class: "task-progress"});
  const drawProgress = (t) => {
    const p = t?.progress;
    if (!p) { fill(progressBox, h("p", {class: "empty"}, "No progress reported.")); return; }
    const pct = Math.max(0, Math.min(100, p.percent));
    fill(progressBox, h("div", {class: `progress-line${p.overrun_predicted ? " overrun" : ""}`},
      h("div", {class: "progress", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": pct,
        "aria-label": `Progress of ${t.name}`, dataset: {testid: "task-progress"}},
      h("span", {style: {width: `${pct}%`}})),
      h("span", {class: "pct"}, `${Math.round(pct)}%`),
      h("span", {class: "msg"}, p.message || ""),
      p.predicted_finish_at && t.status === "RUNNING"
        ? h("span", {class: "muted"}, "finishes ", h("time", {class: "rel", datetime: p.predicted_finish_at, title: when(p.predicted_finish_at)}, ago(p.predicted_finish_at)))
        : null,
      p.overrun_predicted ? h("span", {class: "badge", title: "Predicted to pass its timeout"}, "overrun") : null,
      p.at ? h("span", {class: "muted hide-narrow", title: when(p.at)}, `reported ${ago(p.at)}`) : null));
  };

  // A duration as of the last load, counting on while its phase lasts.
  let fetchedAt = Date.now();
  const growing = (seconds, live) => h("dd", {dataset: live ? {grow: seconds, from: fetchedAt} : {}}, duration(seconds));

  const drawDetails = () => {
    const t = findTask(state.selected);
    if (!t) { fill(details, h("h2", {id: "task-title"}, "Task"), h("p", {class: "empty"}, "No task selected.")); return; }
    drawProgress(t);
    const d = t.durations || {};
    const outputs = Object.entries(t.outputs || {});
    fill(details,
      h("div", {class: "task-head"},
        h("h2", {id: "task-title"}, h("span", {class: "task-name"}, t.name)),
        h("span", {dataset: {testid: "task-status"}}, badge(t.status)),
        h("span", {class: "muted"}, `attempt ${t.attempts} of ${t.max_attempts}`),
        t.queue ? h("span", {class: "muted"}, `queue ${t.queue}`) : null,
        t.depends?.length ? h("span", {class: "muted"}, `after ${t.depends.join(", ")}`) : null,
        t.not_before && t.status === "PENDING" ? h("span", {class: "muted"}, "next try ", at(t.not_before)) : null,
        t.slower_than_usual ? h("span", {class: "badge"}, "slower than usual") : null),
      t.error ? h("p", {class: "error"}, t.error) : null,
      h("dl", {class: "facts durations", dataset: {testid: "task-durations"}},
        h("div", {}, h("dt", {}, "Blocked"), growing(d.blocked_duration, t.status === "BLOCKED")),
        h("div", {}, h("dt", {}, "Pending"), growing(d.pending_duration, t.status === "PENDING")),
        h("div", {}, h("dt", {}, "Execution"), growing(d.execution_duration, t.status === "RUNNING")),
        h("div", {}, h("dt", {}, "Total"), growing(d.total_duration, !TASK_DONE.has(t.status))),
        t.expected ? h("div", {}, h("dt", {}, "Usually"), h("dd", {}, expectedText(t.expected, "task"))) : null,
        t.lease ? h("div", {}, h("dt", {}, "Worker"), h("dd", {class: "mono"}, t.lease.worker)) : null,
        t.lease ? h("div", {class: "hide-narrow"}, h("dt", {}, "Heartbeat"), h("dd", {}, at(t.lease.last_heartbeat_at))) : null),
      h("h3", {}, "Progress"), progressBox,
      h("h3", {}, "Transitions"),
      h("div", {class: "scroll"}, transitionTable(t)),
      h("h3", {}, "Attempts"),
      t.attempt_records?.length ? h("div", {class: "scroll"}, attemptTable(t)) : h("p", {class: "empty"}, "Not started yet."),
      h("h3", {}, "Outputs"),
      outputs.length
        ? h("dl", {class: "outputs", dataset: {testid: "task-outputs"}}, outputs.map(([k, v]) => h("div", {}, h("dt", {class: "mono"}, k), h("dd", {class: "mono"}, v))))
        : h("p", {class: "empty"}, "No outputs."));
  };

  // ---- the log viewer -----------------------------------------------------
  const log = {stream: "stdout", attempt: null, key: "", abort: null, stick: true, size: 0};
  const pre = h("pre", {class: "log", tabindex: 0, "aria-label": "Output of the selected task", dataset: {testid: "log-viewer"}});
  const logStatus = h("span", {class: "muted log-status", "aria-live": "polite"});
  const logControls = h("div", {class: "row log-controls"});
  const jump = h("button", {type: "button", class: "link", hidden: true, onclick: () => {
    log.stick = true; pre.scrollTop = pre.scrollHeight; jump.hidden = true;
  }}, "Jump to the end");
  pre.addEventListener("scroll", () => {
    log.stick = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
    jump.hidden = log.stick;
  });
  fill(logPanel, h("div", {class: "row log-head"}, h("h2", {}, "Output"), logControls, h("span", {class: "spacer"}), logStatus, jump), pre);

  const drawLogControls = () => keepFocus(logControls, drawLogControlsNow);
  const drawLogControlsNow = () => {
    const t = findTask(state.selected);
    const attempts = t ? Math.max(t.attempts, t.attempt_records?.length || 0) : 0;
    fill(logControls,
      h("div", {class: "segmented", role: "group", "aria-label": "Stream"},
        ["stdout", "stderr"].map((st) => h("button", {
          type: "button", "aria-pressed": String(log.stream === st), dataset: {stream: st},
          onclick: () => { log.stream = st; drawLogControls(); openLog(true); },
        }, st))),
      attempts > 1 ? h("label", {}, "Attempt ", h("select", {
        dataset: {testid: "log-attempt"},
        onchange: (e) => { log.attempt = e.target.value ? Number(e.target.value) : null; openLog(true); },
      }, h("option", {value: ""}, `latest (${attempts})`),
      Array.from({length: attempts}, (_, i) => i + 1).map((n) => h("option", {value: n, selected: log.attempt === n}, String(n)))))
        : null);
  };

  const stopLog = () => { if (log.abort) { log.abort.abort(); log.abort = null; } };

  // (Re)reads the selected task's output; `force` even when already showing it.
  async function openLog(force = false) {
    const t = findTask(state.selected);
    if (!t) { stopLog(); pre.textContent = ""; logStatus.textContent = ""; return; }
    const attempt = log.attempt ?? t.attempts;
    const live = t.status === "RUNNING" && attempt === t.attempts;
    const key = `${t.id}/${attempt}/${log.stream}/${live}`;
    if (!force && key === log.key) return;
    // Following the same attempt: let it run on.
    if (!force && log.abort && key.replace(/\/(true|false)$/, "") === log.key.replace(/\/(true|false)$/, "") && !live) return;
    stopLog();
    log.key = key;
    pre.textContent = "";
    log.stick = true; jump.hidden = true;
    if (t.attempts === 0 || !attempt) { logStatus.textContent = "Not started yet."; return; }
    const controller = new AbortController();
    log.abort = controller;
    const url = new URL(`/api/v1/runs/${runId}/logs/${encodeURIComponent(t.name)}`, location.origin);
    url.searchParams.set("attempt", attempt);
    url.searchParams.set("stream", log.stream);
    if (live) url.searchParams.set("follow", "true");
    logStatus.textContent = live ? "Following…" : "Loading…";
    if (live) pre.append(h("span", {class: "muted waiting"}, "Waiting for output…"));
    try {
      const answer = await fetch(url, {credentials: "same-origin", signal: controller.signal});
      if (!answer.ok) {
        const body = await answer.json().catch(() => null);
        logStatus.textContent = "";
        pre.textContent = "";
        pre.append(h("span", {class: "muted"}, answer.status === 404 && body?.code === "log_not_found"
          ? "No output for this attempt yet." : (body?.message || `The server answered ${answer.status}.`)));
        log.abort = null;
        return;
      }
      const reader = answer.body.getReader();
      const decoder = new TextDecoder();
      log.size = 0;
      for (;;) {
        const {done, value} = await reader.read();
        if (done) break;
        appendLog(decoder.decode(value, {stream: true}));
      }
      appendLog(decoder.decode());
      pre.querySelector(".waiting")?.remove();
      if (log.abort === controller) log.abort = null;
      logStatus.textContent = pre.textContent ? (live ? "Attempt ended." : "") : "";
      if (!pre.textContent) pre.append(h("span", {class: "muted"}, `No ${log.stream} output.`));
    } catch (e) {
      if (e.name === "AbortError") return;
      logStatus.textContent = `Output interrupted: ${e.message}`;
      if (log.abort === controller) log.abort = null;
    }
  }

  function appendLog(text) {
    if (!text) return;
    pre.querySelector(".waiting")?.remove();
    pre.append(text);
    log.size += text.length;
    if (log.size > LOG_LIMIT) {
      // Keep the newest part of a huge output.
      const all = pre.textContent;
      pre.textContent = `… (earlier output dropped)\n${all.slice(all.length - LOG_LIMIT / 2)}`;
      log.size = LOG_LIMIT / 2;
    }
    if (log.stick) pre.scrollTop = pre.scrollHeight;
  }

  // ---- selection, loading, live -------------------------------------------
  function select(id) {
    if (!findTask(id)) return;
    const changed = id !== state.selected;
    state.selected = id;
    if (changed) log.attempt = null;
    const t = findTask(id);
    const q = new URLSearchParams(location.search);
    q.set("task", t.name);
    history.replaceState(null, "", `${location.pathname}?${q}`);
    graph?.select(id);
    for (const row of timeBox.querySelectorAll("g.row")) row.classList.toggle("selected", row.dataset.task === id);
    drawDetails();
    drawLogControls();
    if (changed) openLog(true);
  }

  async function load() {
    const wasDone = RUN_DONE.has(run.status);
    run = await api(`/api/v1/runs/${runId}`);
    fetchedAt = Date.now();
    if (RUN_DONE.has(run.status)) state.notice = null;
    if (!findTask(state.selected)) state.selected = pickDefault();
    drawAll();
    openLog();
    if (!wasDone && RUN_DONE.has(run.status)) clearInterval(ticking);
  }

  const drawAll = () => {
    drawHeader(); drawAlert(); drawGraph(); drawTimeline(); drawDetails(); drawLogControls();
  };

  const later = debounce();
  let reloadedAtEnd = RUN_DONE.has(run.status);
  const onEvent = (e) => {
    if (e.run_id && e.run_id !== runId) return;
    if (e.kind === "transition") {
      const t = findTask(e.task_id);
      if (!t) { later("reload", load, 500); return; }
      t.status = e.to;
      t.attempts = Math.max(t.attempts, e.attempt || 0);
      t.transitions = [...(t.transitions || []), {attempt: e.attempt, from: e.from, to: e.to, at: e.at, reason: e.reason, actor: e.actor}];
      graph?.update(t);
      later("timeline", async () => drawTimeline(), 150);
      if (t.id === state.selected) { drawDetails(); drawLogControls(); openLog(); }
      later("reload", load, 1200);
    } else if (e.kind === "progress") {
      const t = findTask(e.task_id);
      if (!t) return;
      t.progress = {
        percent: e.percent, message: e.message, at: e.at,
        predicted_finish_at: e.predicted_finish_at, overrun_predicted: !!e.overrun_predicted,
      };
      graph?.update(t);
      if (t.id === state.selected) drawProgress(t);
      if (!RUN_DONE.has(run.status)) refreshEta();
    } else if (e.kind === "run") {
      run.status = e.to;
      if (e.to === "RUNNING" && !run.started_at) run.started_at = e.at;
      if (RUN_DONE.has(e.to)) {
        run.finished_at = run.finished_at || e.at;
        state.confirming = false;
        if (!reloadedAtEnd) { reloadedAtEnd = true; later("reload", load, 400); }
      }
      drawHeader();
    }
  };
  const stopEvents = liveEvents({run: runId}, onEvent, () => later("reload", load, 200));

  // While the run goes on, its clock and timeline move.
  let tick = 0;
  const ticking = setInterval(() => {
    if (RUN_DONE.has(run.status)) return;
    tick++;
    // In place, not redrawn: a focused button keeps its focus.
    for (const el of root.querySelectorAll("[data-since]")) el.textContent = duration((Date.now() - new Date(el.dataset.since)) / 1000);
    for (const el of root.querySelectorAll("[data-grow]")) el.textContent = duration(Number(el.dataset.grow) + (Date.now() - Number(el.dataset.from)) / 1000);
    if (tick % 5 === 0) for (const el of root.querySelectorAll("time.rel")) el.textContent = ago(el.getAttribute("datetime"));
    if (tick % 2 === 0) drawTimeline();
  }, 1000);

  drawAll();
  openLog(true);
  const onResize = () => later("resize", async () => drawTimeline(), 200);
  window.addEventListener("resize", onResize);

  return () => {
    stopEvents();
    stopLog();
    clearInterval(ticking);
    later.cancelAll();
    window.removeEventListener("resize", onResize);
  };
}

// Redraws `box` with `draw`, focusing again the control (by its test id or
// stream) that had the focus, so a redraw does not lose the keyboard's place.
function keepFocus(box, draw) {
  const a = document.activeElement;
  const key = a && box.contains(a) ? a.dataset.testid || a.dataset.stream : null;
  draw();
  if (key) box.querySelector(`[data-testid="${key}"], [data-stream="${key}"]`)?.focus();
}

function explain(e, what) {
  if (e instanceof ApiError) {
    if (e.status === 403) return `You may not ${what} runs: ${e.message}`;
    return `Could not ${what} the run: ${e.message}`;
  }
  return `Could not ${what} the run: ${e.message || e}`;
}

function expectedText(x, noun = "run") {
  if (!x || x.p50 == null) return "—";
  return `${duration(x.p50)} (p95 ${duration(x.p95)}, ${x.samples} ${noun}${x.samples === 1 ? "" : "s"})`;
}

function transitionTable(t) {
  const rows = [...(t.transitions || [])];
  return h("table", {dataset: {testid: "transition-log"}},
    h("thead", {}, h("tr", {},
      h("th", {}, "At"), h("th", {}, "Change"), h("th", {title: "Attempt"}, "#"), h("th", {}, "Reason"), h("th", {class: "hide-narrow"}, "Actor"))),
    h("tbody", {}, rows.map((x) => h("tr", {dataset: {to: x.to}},
      h("td", {class: "nowrap mono"}, h("time", {datetime: x.at, title: `${ago(x.at)} · ${when(x.at)}`}, exact(x.at))),
      h("td", {class: "nowrap"}, x.from ? [badge(x.from), h("span", {class: "muted arrow"}, " → ")] : null, badge(x.to)),
      h("td", {}, x.attempt ? String(x.attempt) : "—"),
      h("td", {}, x.reason),
      h("td", {class: "hide-narrow mono"}, x.actor)))));
}

function attemptTable(t) {
  return h("table", {dataset: {testid: "attempts"}},
    h("thead", {}, h("tr", {},
      h("th", {}, "#"), h("th", {class: "hide-narrow"}, "Worker"), h("th", {}, "Started"), h("th", {}, "Ended"),
      h("th", {}, "Outcome"), h("th", {}, "Exit"), h("th", {}, "Error"))),
    h("tbody", {}, t.attempt_records.map((a) => h("tr", {dataset: {attempt: a.attempt}},
      h("td", {}, String(a.attempt)),
      h("td", {class: "hide-narrow mono"}, a.worker),
      h("td", {}, at(a.started_at)),
      h("td", {}, a.ended_at ? [at(a.ended_at), h("span", {class: "muted"}, ` (${duration((new Date(a.ended_at) - new Date(a.started_at)) / 1000)})`)] : h("span", {class: "muted"}, "running")),
      h("td", {}, a.outcome ? badge(a.outcome) : "—"),
      h("td", {class: "mono"}, a.exit_code ?? "—"),
      h("td", {class: "error"}, a.error || "")))));
}
