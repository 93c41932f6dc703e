// Alerts: the anomalies of the status mix and the attempts the reaper
// ended ("heartbeat lost"), in one list, newest first. The address holds
// the filters (`/alerts?kind=reaped&workflow=etl`, `open=true` for open
// anomalies only), so the back button restores them. The two sources are
// paged apart, each with its own cursor; "Load more" reads the next page of
// both. The first page follows the live events; once more was loaded, a
// notice offers the newest instead, so items never move under the reader.

import {api, liveEvents} from "../lib/api.js";
import {badge} from "../lib/charts.js";
import {fill, h} from "../lib/dom.js";
import {segmented, workflowSelect} from "../lib/filters.js";
import {ago, duration, when} from "../lib/format.js";
import {navigate} from "../app.js";
import {debounce} from "../lib/later.js";

const KINDS = [["all", "All"], ["anomaly", "Anomalies"], ["reaped", "Heartbeat lost"]];
const PAGE = 50;

// The control that had the focus when a filter changed, given back on the
// page drawn for the new address.
let refocus = null;

export async function render(root, _params, query) {
  const state = {
    kind: KINDS.some(([k]) => k === query.get("kind")) ? query.get("kind") : "all",
    open: query.get("open") === "true",
    workflow: query.get("workflow") || "",
  };
  // A reaped attempt is never open or resolved: "open only" leaves them out,
  // and means nothing when only they are shown.
  const open = state.open && state.kind !== "reaped";
  const sources = [
    state.kind !== "reaped" && anomalies(state.workflow, open),
    state.kind !== "anomaly" && !open && reapedAttempts(state.workflow),
  ].filter(Boolean);

  const go = (change, focus) => {
    refocus = focus || null;
    const next = {...state, ...change};
    const q = new URLSearchParams();
    if (next.kind !== "all") q.set("kind", next.kind);
    if (next.open && next.kind !== "reaped") q.set("open", "true");
    if (next.workflow) q.set("workflow", next.workflow);
    navigate(`/alerts${q.toString() ? `?${q}` : ""}`);
  };

  const kinds = segmented("Kind", KINDS, state.kind,
    (kind) => go({kind}, `[data-testid=kind-filter] [data-key=${kind}]`), "kind-filter");
  const openBox = h("label", {class: "check", title: state.kind === "reaped" ? "Reaped attempts are never open or resolved" : null},
    h("input", {type: "checkbox", checked: open, disabled: state.kind === "reaped", dataset: {testid: "open-filter"},
      onchange: (e) => go({open: e.target.checked}, "[data-testid=open-filter]")}),
    " Open anomalies only");
  const select = workflowSelect(state.workflow, (workflow) => go({workflow}, "[data-testid=workflow-filter]"));

  const notice = h("div", {class: "alerts-notice", role: "status"});
  const list = h("div", {class: "alerts-body", tabindex: "-1"});
  const more = h("button", {type: "button", dataset: {testid: "load-more"}, hidden: true}, "Load more");
  const count = h("span", {class: "muted"});

  fill(root,
    h("h1", {}, "Alerts"),
    h("div", {class: "bar"}, kinds, openBox, h("span", {class: "spacer"}), select),
    open && state.kind === "all" ? h("p", {class: "muted"}, "Showing open anomalies only: reaped attempts are left out.") : null,
    notice,
    h("section", {class: "panel"}, list, h("div", {class: "row more"}, more, count)));
  if (refocus) root.querySelector(refocus)?.focus({preventScroll: true});
  refocus = null;

  // What was read so far; an item shows once no unread item can be newer.
  let feed = fresh(sources);
  const draw = () => {
    const items = visible(feed);
    fill(list, items.length
      ? h("ul", {class: "alert-list", dataset: {testid: "alerts-list"}}, items.map((i) => i.node()))
      : h("p", {class: "empty", dataset: {testid: "alerts-empty"}}, "No alerts in this selection."));
    more.hidden = !feed.some((f) => f.next !== null);
    count.textContent = items.length ? `${items.length} shown` : "";
  };
  const loadFirst = async () => {
    const next = fresh(sources);
    await Promise.all(next.map(readPage));
    feed = next;
    fill(notice);
    draw();
  };
  const failed = (e) => fill(notice, h("p", {class: "error", role: "alert"}, `The alerts could not be read: ${e.message || e}`));
  // Busy rather than disabled, so the button keeps the keyboard's focus.
  more.addEventListener("click", async () => {
    if (more.getAttribute("aria-busy")) return;
    more.setAttribute("aria-busy", "true");
    const hadFocus = document.activeElement === more;
    try {
      await Promise.all(feed.filter((f) => f.next !== null).map(readPage));
      draw();
    } catch (e) {
      failed(e);
    } finally {
      more.removeAttribute("aria-busy");
      if (hadFocus && more.hidden) list.focus();
    }
  });

  await loadFirst();

  const later = debounce();
  const changed = () => {
    if (!feed.some((f) => f.pages > 1)) { later("reload", loadFirst, 300); return; }
    if (notice.firstChild) return;
    fill(notice, h("p", {class: "runs-new"}, "New alerts — ",
      h("button", {type: "button", class: "link", onclick: () => loadFirst().catch(failed)}, "show the newest")));
  };
  const stopEvents = liveEvents({workflow: state.workflow}, (e) => {
    const reaped = e.kind === "transition" && e.actor === "reaper" && e.from === "RUNNING";
    if ((e.kind === "alert" && state.kind !== "reaped") || (reaped && state.kind !== "anomaly" && !open)) changed();
  }, changed);
  const ticking = setInterval(() => refreshTimes(list), 15000);
  return () => { stopEvents(); clearInterval(ticking); later.cancelAll(); };
}

// --- The two sources --------------------------------------------------------

// A source reads a page (`before`: its cursor) and says what each item is.
function anomalies(workflow, open) {
  return {
    read: (before) => api("/api/v1/alerts", {query: {kind: "anomaly", open: open ? "true" : "", workflow, before, limit: PAGE}})
      .then((page) => ({items: page.alerts, next: page.next_before})),
    key: (a) => `anomaly:${a.id}`,
    at: (a) => a.raised_at,
    node: anomalyItem,
  };
}

function reapedAttempts(workflow) {
  return {
    read: (before) => api("/api/v1/reaped", {query: {workflow, before, limit: PAGE}})
      .then((page) => ({items: page.reaped, next: page.next_before})),
    key: (r) => `reaped:${r.task_id}:${r.attempt}`,
    at: (r) => r.at,
    node: reapedItem,
  };
}

function fresh(sources) {
  return sources.map((source) => ({source, items: new Map(), next: undefined, pages: 0}));
}

// Reads the source's next page (its first when nothing was read yet).
async function readPage(f) {
  const page = await f.source.read(f.next ?? undefined);
  for (const item of page.items) f.items.set(f.source.key(item), item);
  f.next = page.next ?? null;
  f.pages += 1;
}

// Everything read, newest first, down to the oldest item read from a
// source that has more: anything older could have a newer one unread
// behind that cursor, so it waits for "Load more".
function visible(feed) {
  const horizon = feed
    .filter((f) => f.next !== null && f.items.size)
    .map((f) => Math.min(...[...f.items.values()].map((i) => Date.parse(f.source.at(i)))))
    .reduce((a, b) => Math.max(a, b), -Infinity);
  return feed.flatMap((f) => [...f.items.values()].map((item) => ({
    at: Date.parse(f.source.at(item)), node: () => f.source.node(item),
  }))).filter((i) => i.at >= horizon).sort((a, b) => b.at - a.at);
}

// --- The items ----------------------------------------------------------------

function anomalyItem(a) {
  const resolved = !!a.resolved_at;
  const lasted = resolved
    ? h("span", {class: "muted"}, `lasted ${duration((Date.parse(a.resolved_at) - Date.parse(a.raised_at)) / 1000)}`)
    : h("span", {class: "open-for", dataset: {openSince: a.raised_at}}, openFor(a.raised_at));
  return h("li", {class: "alert-item", dataset: {testid: "alert", kind: "anomaly", state: resolved ? "resolved" : "open"}},
    h("div", {class: "state"}, badge(resolved ? "COMPLETED" : "FAILED", resolved ? "Resolved" : "Open"),
      h("span", {class: "muted"}, "Anomaly")),
    h("div", {class: "what"},
      h("div", {class: "head"},
        h("a", {href: `/runs?workflow=${encodeURIComponent(a.workflow)}`, "data-nav": true}, a.workflow),
        h("span", {class: "muted"}, ` · share of ${a.status} runs`)),
      h("p", {class: "why"}, a.message)),
    h("div", {class: "when"}, stamp(a.raised_at), lasted));
}

function reapedItem(r) {
  const retried = r.to === "PENDING";
  return h("li", {class: "alert-item", dataset: {testid: "alert", kind: "reaped"}},
    h("div", {class: "state"}, badge(retried ? "PENDING" : "FAILED", retried ? "Retried" : "Failed"),
      h("span", {class: "muted"}, "Heartbeat lost")),
    h("div", {class: "what"},
      h("div", {class: "head"},
        h("a", {href: `/runs/${r.run_id}`, "data-nav": true}, `${r.workflow} › ${r.step}`),
        h("span", {class: "muted"}, ` · attempt ${r.attempt}`)),
      h("p", {class: "why"}, r.reason)),
    h("div", {class: "when"}, stamp(r.at)));
}

function stamp(iso) {
  return h("time", {datetime: iso, title: when(iso), dataset: {ago: iso}}, ago(iso));
}

function openFor(since) {
  return `open for ${duration(Math.max(0, Date.now() - Date.parse(since)) / 1000)}`;
}

function refreshTimes(container) {
  for (const t of container.querySelectorAll("time[data-ago]")) t.textContent = ago(t.dataset.ago);
  for (const s of container.querySelectorAll("[data-open-since]")) s.textContent = openFor(s.dataset.openSince);
}
