// The runs explorer: every run, newest first, a page at a time, filtered
// by status, workflow and submission window. The address holds every
// filter and the page (`/runs?status=FAILED,CANCELED&workflow=etl&after=…
// &before=…&cursor=…&prev=…`), so a link is shareable and the back button
// restores what was shown. The first page follows the live events: a run
// that changes status changes in place, a new one reloads the page; later
// pages only say that there are new runs, so rows never move under the
// reader's eyes.

import {api, liveEvents} from "../lib/api.js";
import {badge} from "../lib/charts.js";
import {fill, h} from "../lib/dom.js";
import {RUN_STATUSES, ago, duration, when} from "../lib/format.js";
import {navigate} from "../app.js";
import {debounce} from "../lib/later.js";

const FINISHED = ["COMPLETED", "PARTIALLY_SUCCEEDED", "FAILED", "CANCELED"];

// Which control had the focus when a filter changed, so the page drawn for
// the new address gives it back (the shell draws every address afresh).
let refocus = null;
// The height of the last table, kept while the next page loads so the
// controls below do not jump.
let lastHeight = 0;

export function render(root, _params, query) {
  const state = readQuery(query);
  let stopped = false;
  let shown = new Map(); // run_id → the run as shown (its row updates in place)
  const later = debounce();

  // --- Filters -------------------------------------------------------------

  const go = (change, focus) => {
    refocus = focus || null;
    // A cursor belongs to its filters: any change of filter starts at the first page.
    const next = {...state, cursor: "", prev: [], ...change};
    navigate(toUrl(next));
  };

  const statusFilter = h("div", {class: "run-status-filter", role: "group", "aria-labelledby": "runs-status-label",
    dataset: {testid: "status-filter"}},
  h("span", {id: "runs-status-label", class: "filter-label"}, "Status"),
  RUN_STATUSES.map((st) => {
    const on = state.status.includes(st);
    return h("button", {
      type: "button", class: "status-toggle", "aria-pressed": String(on), dataset: {status: st, focus: `status:${st}`},
      title: on ? `Showing ${label(st)} runs: press to leave them out of the filter` : `Add ${label(st)} runs to the filter`,
      style: {"--c": `var(--s-${st.toLowerCase()})`},
      onclick: () => {
        const known = state.status.filter((x) => RUN_STATUSES.includes(x));
        go({status: on ? known.filter((x) => x !== st) : [...known, st]}, `status:${st}`);
      },
    }, badge(st));
  }));

  const workflowSelect = h("select", {id: "runs-workflow", dataset: {testid: "workflow-filter", focus: "workflow"},
    onchange: (e) => go({workflow: e.target.value}, "workflow")},
  h("option", {value: ""}, "All workflows"),
  state.workflow ? h("option", {value: state.workflow, selected: true}, state.workflow) : null);

  const dateInput = (key, testid, text) => {
    const input = h("input", {
      type: "datetime-local", id: `runs-${key}`, step: 60, value: toLocalInput(state[key]),
      dataset: {testid, focus: key},
    });
    // Typing a date changes it segment by segment: apply it once the
    // typing pauses, or at once on Enter or on leaving the field.
    const apply = (focus = key) => {
      later.cancel(key);
      const value = input.value ? toIso(input.value) : "";
      if (value !== (state[key] || "")) go({[key]: value}, focus);
    };
    input.addEventListener("change", () => later(key, async () => apply(document.activeElement === input ? key : null), 700));
    input.addEventListener("blur", (e) => { if (later.pending(key)) apply(e.relatedTarget?.dataset?.focus || null); });
    input.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); apply(); } });
    return h("label", {class: "date-filter", for: `runs-${key}`}, h("span", {class: "filter-label"}, text), input);
  };

  const filtered = state.status.length || state.workflow || state.after || state.before;
  const clear = filtered ? h("button", {type: "button", class: "link", dataset: {testid: "clear-filters", focus: "clear"},
    onclick: () => go({status: [], workflow: "", after: "", before: ""}, "status-first")}, "Clear filters") : null;

  // --- The table and the pager ----------------------------------------------

  const notice = h("div", {class: "runs-notice", role: "status", "aria-live": "polite"});
  const body = h("div", {class: "scroll runs-body", "aria-busy": "true", style: lastHeight ? {minHeight: `${lastHeight}px`} : {}},
    h("p", {class: "muted"}, "Loading runs…"));
  const page = state.prev.length + (state.cursor ? 2 : 1);
  const pager = h("nav", {class: "pager", "aria-label": "Pages of runs"});

  fill(root,
    h("h1", {}, "Runs"),
    h("form", {class: "runs-filters", role: "search", "aria-label": "Filter runs", onsubmit: (e) => e.preventDefault()},
      statusFilter,
      h("div", {class: "row"},
        h("label", {class: "workflow-filter", for: "runs-workflow"}, h("span", {class: "filter-label"}, "Workflow"), workflowSelect),
        dateInput("after", "submitted-after", "Submitted after"),
        dateInput("before", "submitted-before", "Submitted before"),
        clear)),
    notice,
    body,
    pager);

  const focusKey = refocus;
  refocus = null;
  if (focusKey) {
    const target = focusKey === "status-first" ? statusFilter.querySelector("button")
      : root.querySelector(`[data-focus="${CSS.escape(focusKey)}"]`);
    target?.focus({preventScroll: true});
  }

  // The workflows for the select (the one in the address stays, known or not).
  api("/api/v1/workflows").then((list) => {
    if (stopped) return;
    const names = (list.workflows || []).map((w) => w.name);
    if (state.workflow && !names.includes(state.workflow)) names.push(state.workflow);
    names.sort();
    const hadFocus = document.activeElement === workflowSelect;
    fill(workflowSelect, h("option", {value: ""}, "All workflows"),
      names.map((n) => h("option", {value: n, selected: n === state.workflow}, n)));
    workflowSelect.value = state.workflow;
    if (hadFocus) workflowSelect.focus();
  }).catch(() => {});

  // --- Loading ----------------------------------------------------------------

  let loading = null;
  const load = async () => {
    const mine = loading = {};
    let answer;
    try {
      answer = await api("/api/v1/runs", {query: {
        status: state.status, workflow: state.workflow,
        submitted_after: state.after, submitted_before: state.before,
        limit: state.limit, cursor: state.cursor,
      }});
    } catch (e) {
      if (stopped || mine !== loading) return;
      body.removeAttribute("aria-busy");
      body.style.minHeight = "";
      const badCursor = e.field === "cursor";
      fill(body, h("div", {class: "runs-error", role: "alert", dataset: {testid: "runs-error"}},
        h("strong", {}, "The runs could not be read: "), e.message || String(e),
        badCursor || state.cursor ? [" ", h("a", {href: toUrl({...state, cursor: "", prev: []}), "data-nav": true}, "Back to the first page")] : null));
      fill(pager);
      return;
    }
    if (stopped || mine !== loading) return;
    shown = new Map(answer.runs.map((r) => [r.run_id, {...r}]));
    body.removeAttribute("aria-busy");
    body.style.minHeight = "";
    if (!answer.runs.length) {
      fill(body, h("div", {class: "runs-empty"},
        h("span", {class: "empty", dataset: {testid: "runs-empty"}},
          page > 1 ? "No more runs match these filters." : "No runs match these filters."),
        filtered ? h("a", {href: "/runs", "data-nav": true}, "Show every run") : null));
    } else {
      // A reload keeps the focus on the link it was on (by run and column).
      const focused = body.contains(document.activeElement) ? document.activeElement.closest("td") : null;
      const where = focused ? [focused.parentElement.dataset.run, focused.cellIndex] : null;
      fill(body, table(answer.runs));
      lastHeight = body.offsetHeight;
      if (where) {
        body.querySelector(`tr[data-run="${CSS.escape(where[0])}"]`)?.cells[where[1]]?.querySelector("a")?.focus({preventScroll: true});
      }
    }
    pager.hidden = page === 1 && !answer.next_cursor && !answer.runs.length;
    drawPager(answer.next_cursor, answer.runs.length);
  };

  const drawPager = (nextCursor, count) => {
    const first = page > 1;
    fill(pager,
      h("button", {type: "button", dataset: {testid: "first-page", focus: "first"}, disabled: !first,
        onclick: () => go({cursor: "", prev: []}, "first")}, "« Newest"),
      h("button", {type: "button", dataset: {testid: "newer-page", focus: "newer"}, disabled: !first,
        onclick: () => {
          const prev = state.prev.slice(0, -1);
          go({cursor: state.prev.at(-1) || "", prev}, page > 2 ? "newer" : "first");
        }}, "‹ Newer"),
      h("span", {class: "muted page-no", dataset: {testid: "page-number"}},
        `Page ${page}`, count ? ` · ${count} run${count === 1 ? "" : "s"}` : ""),
      h("button", {type: "button", dataset: {testid: "next-page", focus: "next"}, disabled: !nextCursor,
        onclick: () => go({cursor: nextCursor, prev: state.cursor ? [...state.prev, state.cursor] : []}, "next")},
      "Older ›"));
    // A button that the focus was given back to may have been disabled since.
    if (refocusPager && !pager.contains(document.activeElement)) {
      const target = pager.querySelector(`[data-focus="${refocusPager}"]:not(:disabled)`) || pager.querySelector("button:not(:disabled)");
      target?.focus({preventScroll: true});
    }
    refocusPager = null;
  };
  let refocusPager = ["first", "newer", "next"].includes(focusKey) ? focusKey : null;

  load();

  // --- Live -------------------------------------------------------------------

  const live = page === 1;
  const stopEvents = liveEvents({workflow: state.workflow}, (e) => {
    if (e.kind !== "run" || stopped) return;
    const run = shown.get(e.run_id);
    if (run) {
      updateRow(body, run, e);
      return;
    }
    if (!matches(state, e)) return;
    if (live) later("reload", load, 400);
    else showNotice();
  }, () => {
    if (!stopped) later("reload", load, 100);
  });

  const showNotice = () => {
    if (notice.firstChild) return;
    fill(notice, h("p", {class: "runs-new", dataset: {testid: "new-runs"}},
      h("span", {}, "New runs"), " — ",
      h("a", {href: toUrl({...state, cursor: "", prev: []}), "data-nav": true}, "show")));
  };

  const ticking = setInterval(() => refreshTimes(body, shown), 1000);
  return () => { stopped = true; stopEvents(); clearInterval(ticking); later.cancelAll(); };
}

// --- The address --------------------------------------------------------------

function readQuery(query) {
  const list = (k) => (query.get(k) || "").split(",").map((x) => x.trim()).filter(Boolean);
  const status = [...new Set(list("status").map((x) => x.toUpperCase()))];
  const time = (k) => {
    const v = query.get(k) || "";
    if (!v) return "";
    const d = new Date(v);
    return Number.isNaN(d.getTime()) ? v : toIsoDate(d);
  };
  return {
    status,
    workflow: query.get("workflow") || "",
    after: time("after"),
    before: time("before"),
    limit: query.get("limit") || "",
    cursor: query.get("cursor") || "",
    prev: list("prev"),
  };
}

function toUrl(state) {
  const q = new URLSearchParams();
  if (state.status.length) {
    const known = RUN_STATUSES.filter((st) => state.status.includes(st));
    q.set("status", [...known, ...state.status.filter((st) => !RUN_STATUSES.includes(st))].join(","));
  }
  if (state.workflow) q.set("workflow", state.workflow);
  if (state.after) q.set("after", state.after);
  if (state.before) q.set("before", state.before);
  if (state.limit) q.set("limit", state.limit);
  if (state.cursor) {
    q.set("cursor", state.cursor);
    if (state.prev.length) q.set("prev", state.prev.join(","));
  }
  const s = q.toString().replaceAll("%2C", ",").replaceAll("%3A", ":");
  return `/runs${s ? `?${s}` : ""}`;
}

// "2026-11-21T08:00" (the viewer's zone, as the input holds it) → RFC 3339 UTC.
function toIso(local) {
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? "" : toIsoDate(d);
}

function toIsoDate(d) {
  return d.toISOString().replace(/\.000Z$/, "Z");
}

// RFC 3339 → what a datetime-local input shows, in the viewer's zone.
function toLocalInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const p = (n) => String(n).padStart(2, "0");
  const base = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
  return d.getSeconds() ? `${base}:${p(d.getSeconds())}` : base;
}

// Whether a run that changed status (and is not shown) may belong on this
// page. The event has no submission time: a new run cannot be in a window
// that ended before it; an older run that now matches the status filter
// may, so the page is read again (the API has the last word).
function matches(state, e) {
  if (state.status.length && !state.status.includes(e.to)) return false;
  if (state.workflow && e.workflow !== state.workflow) return false;
  if (state.before && new Date(state.before) <= new Date(e.at) && e.from === "QUEUED") return false;
  return true;
}

// --- The table ------------------------------------------------------------------

function table(runs) {
  return h("table", {class: "runs-table", dataset: {testid: "runs-table"}},
    h("caption", {class: "visually-hidden"}, "Runs, newest first"),
    h("thead", {}, h("tr", {},
      h("th", {scope: "col"}, "Run"),
      h("th", {scope: "col"}, "Workflow"),
      h("th", {scope: "col"}, "Status"),
      h("th", {scope: "col", class: "hide-narrow"}, "Trigger"),
      h("th", {scope: "col"}, "Submitted"),
      h("th", {scope: "col", class: "num"}, "Duration"),
      h("th", {scope: "col", class: "hide-narrow"}, "Outcome"))),
    h("tbody", {}, runs.map(row)));
}

function row(r) {
  const submitted = r.submitted_at;
  return h("tr", {dataset: {run: r.run_id, status: r.status}},
    h("td", {class: "mono run-id"},
      h("a", {href: `/runs/${r.run_id}`, "data-nav": true, title: r.run_id, "aria-label": `Run ${r.run_id}`}, shortId(r.run_id))),
    h("td", {class: "workflow"}, h("a", {href: `/workflows/${encodeURIComponent(r.workflow)}`, "data-nav": true}, r.workflow)),
    h("td", {class: "status-cell"}, badge(r.status)),
    h("td", {class: "hide-narrow trigger", title: r.scheduled_for ? `Scheduled for ${when(r.scheduled_for)}` : null},
      r.trigger, r.scheduled_for ? h("span", {class: "muted"}, " ⏲") : null),
    h("td", {class: "submitted"}, h("time", {datetime: submitted, title: when(submitted), dataset: {ago: submitted}}, ago(submitted))),
    h("td", {class: "num duration"}, durationText(r)),
    h("td", {class: "hide-narrow outcome"}, outcome(r)));
}

// The random end of the ULID: its start is the time, the same for runs
// submitted together.
function shortId(id) {
  return `…${id.slice(-8)}`;
}

function label(status) {
  return status.toLowerCase().replace("_", " ");
}

// Finished − started; while running, how long so far; while queued, how long waiting.
function durationText(r) {
  if (r.started_at && r.finished_at) return duration((new Date(r.finished_at) - new Date(r.started_at)) / 1000);
  if (r.finished_at) return h("span", {class: "muted", title: "Never started"}, "—");
  if (r.started_at) {
    return h("span", {class: "running-for", title: `Running since ${when(r.started_at)}`},
      duration(Math.max(0, Date.now() - new Date(r.started_at)) / 1000));
  }
  return h("span", {class: "muted", title: `Waiting since ${when(r.submitted_at)}`},
    `waiting ${duration(Math.max(0, Date.now() - new Date(r.submitted_at)) / 1000)}`);
}

// Task counts when the summary has them, else the run's error.
function outcome(r) {
  const counts = r.tasks || r.task_counts;
  const parts = [];
  if (counts && typeof counts === "object") {
    const entries = Object.entries(counts).filter(([, n]) => typeof n === "number" && n > 0);
    if (entries.length) {
      parts.push(h("span", {class: "task-counts"}, entries.map(([st, n]) =>
        h("span", {class: "count", style: {"--c": `var(--s-${st.toLowerCase()})`}, title: `${n} ${label(st)}`}, String(n)))));
    }
  }
  if (r.error) parts.push(h("span", {class: "run-error", title: r.error}, r.error));
  if (!parts.length) parts.push(h("span", {class: "muted", "aria-label": "none"}, "—"));
  return parts;
}

function updateRow(container, run, e) {
  const tr = container.querySelector(`tr[data-run="${CSS.escape(e.run_id)}"]`);
  if (!tr) return;
  run.status = e.to;
  if (e.to === "RUNNING" && !run.started_at) run.started_at = e.at;
  if (FINISHED.includes(e.to)) {
    run.finished_at = run.finished_at || e.at;
    if (e.to !== "COMPLETED" && e.reason && !run.error) run.error = e.reason;
  }
  tr.dataset.status = e.to;
  fill(tr.querySelector(".status-cell"), badge(e.to));
  fill(tr.querySelector(".duration"), durationText(run));
  fill(tr.querySelector(".outcome"), outcome(run));
  tr.classList.remove("changed");
  void tr.offsetWidth; // restart the highlight
  tr.classList.add("changed");
}

function refreshTimes(container, shown) {
  for (const tr of container.querySelectorAll("tr[data-run]")) {
    const run = shown.get(tr.dataset.run);
    if (run && !run.finished_at) fill(tr.querySelector(".duration"), durationText(run));
  }
  const now = Date.now();
  if (now - (refreshTimes.last || 0) < 15000) return;
  refreshTimes.last = now;
  for (const t of container.querySelectorAll("time[data-ago]")) t.textContent = ago(t.dataset.ago, now);
}
