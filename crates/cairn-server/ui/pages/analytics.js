// Where time goes: for the tasks that finished in a window, how long each
// step's tasks waited on upstream (blocked), for a slot (pending) and ran,
// the slowest tasks, and the step that fails most in each workflow — one
// read of the API's phase statistics.

import {api} from "../lib/api.js";
import {badge} from "../lib/charts.js";
import {fill, h} from "../lib/dom.js";
import {segmented, workflowSelect} from "../lib/filters.js";
import {ago, duration, when} from "../lib/format.js";
import {navigate} from "../app.js";

const WINDOWS = {"1h": 3600, "24h": 86400, "7d": 7 * 86400};
const PHASES = [["blocked", "Blocked", "blocked"], ["pending", "Pending", "pending"], ["execution", "Running", "running"]];

let refocus = null;

// The most finished tasks read per step. Percentiles of the newest
// thousand are as telling as of all, and a week of a million-run history
// then shows in about half a second instead of four.
const SAMPLE = 1000;

export async function render(root, _params, query) {
  const state = {
    window: query.get("window") in WINDOWS ? query.get("window") : "24h",
    workflow: query.get("workflow") || "",
  };
  const go = (change, focus) => {
    refocus = focus;
    const next = {...state, ...change};
    const q = new URLSearchParams();
    if (next.window !== "24h") q.set("window", next.window);
    if (next.workflow) q.set("workflow", next.workflow);
    navigate(`/analytics${q.toString() ? `?${q}` : ""}`);
  };

  const from = new Date(Date.now() - WINDOWS[state.window] * 1000).toISOString();
  const stats = await api("/api/v1/stats/phases",
    {query: {from, workflow: state.workflow, slowest: 10, sample_cap: SAMPLE}});
  const sampled = stats.steps.some((s) => s.sampled_from);

  fill(root,
    h("h1", {}, "Analytics"),
    h("div", {class: "bar"},
      segmented("Window", [["1h", "Last hour"], ["24h", "Last day"], ["7d", "Last week"]], state.window,
        (w) => go({window: w}, `[data-testid=window-filter] [data-key="${w}"]`), "window-filter"),
      h("span", {class: "spacer"}),
      workflowSelect(state.workflow, (workflow) => go({workflow}, "[data-testid=workflow-filter]"))),
    h("div", {class: "analytics"},
      h("section", {class: "panel"},
        h("div", {class: "row panel-head"}, h("h2", {}, "Time by step"), legend()),
        h("p", {class: "muted note"}, "Tasks that finished in the window; p50 and p95 of each phase, the bar the median task's split.",
          sampled ? ` A step with more than ${SAMPLE.toLocaleString()} such tasks is read from its newest ${SAMPLE.toLocaleString()}, for all three panels.` : ""),
        stats.steps.length ? h("div", {class: "scroll"}, phaseTable(stats.steps, stats.sample_cap))
          : h("p", {class: "empty", dataset: {testid: "phase-empty"}}, "No task finished in this window.")),
      h("section", {class: "panel"}, h("h2", {}, "Slowest tasks"), slowest(stats.slowest)),
      h("section", {class: "panel"}, h("h2", {}, "Most failing step per workflow"), mostFailing(stats.most_failing))));
  if (refocus) root.querySelector(refocus)?.focus({preventScroll: true});
  refocus = null;
}

function legend() {
  return h("ul", {class: "phase-legend", "aria-label": "Phases"},
    PHASES.map(([, label, colour]) => h("li", {}, h("span", {class: "swatch", style: {"--c": `var(--s-${colour})`}}), label)));
}

function phaseTable(steps, cap) {
  const spread = (s) => [h("td", {class: "num"}, duration(s?.p50)), h("td", {class: "num p95"}, duration(s?.p95))];
  return h("table", {class: "phase-table", dataset: {testid: "phase-table"}},
    h("caption", {class: "visually-hidden"}, "Time spent blocked, pending and running, by step"),
    h("thead", {},
      h("tr", {},
        h("th", {scope: "col", rowspan: 2}, "Workflow"), h("th", {scope: "col", rowspan: 2}, "Step"),
        h("th", {scope: "col", rowspan: 2, class: "num"}, "Tasks"), h("th", {scope: "col", rowspan: 2, class: "num"}, "Failed"),
        PHASES.map(([, label]) => h("th", {scope: "colgroup", colspan: 2, class: "group"}, label)),
        h("th", {scope: "col", rowspan: 2}, "Median split")),
      h("tr", {}, PHASES.map(() => [h("th", {scope: "col", class: "num"}, "p50"), h("th", {scope: "col", class: "num"}, "p95")]))),
    h("tbody", {}, steps.map((s) => h("tr", {dataset: {workflow: s.workflow, step: s.step}},
      h("td", {}, h("a", {href: `/runs?workflow=${encodeURIComponent(s.workflow)}`, "data-nav": true}, s.workflow)),
      h("td", {}, s.step, s.sampled_from ? h("div", {class: "muted small", title: when(s.sampled_from)},
        `newest ${cap.toLocaleString()} only, since ${ago(s.sampled_from)}`) : null),
      h("td", {class: "num"}, String(s.tasks)),
      h("td", {class: s.failed ? "num failed" : "num"}, String(s.failed)),
      PHASES.map(([key]) => spread(s[key])),
      h("td", {}, phaseBar(s))))));
}

// The median task's time split in three, as shares of their sum.
function phaseBar(s) {
  const parts = PHASES.map(([key, label, colour]) => ({label, colour, seconds: s[key]?.p50 ?? 0}));
  const total = parts.reduce((sum, p) => sum + p.seconds, 0);
  const text = total
    ? parts.map((p) => `${p.label.toLowerCase()} ${Math.round((p.seconds / total) * 100)}%`).join(", ")
    : "no time recorded";
  return h("div", {class: "phase-bar", role: "img", "aria-label": `${s.step}: ${text}`, title: text, dataset: {testid: "phase-bar"}},
    total ? parts.filter((p) => p.seconds > 0).map((p) => h("span", {
      style: {width: `${(p.seconds / total) * 100}%`, background: `var(--s-${p.colour})`},
      dataset: {phase: p.colour},
    })) : null);
}

function slowest(tasks) {
  if (!tasks.length) return h("p", {class: "empty", dataset: {testid: "slowest-tasks"}}, "No task finished in this window.");
  return h("div", {class: "scroll"}, h("table", {class: "phase-list", dataset: {testid: "slowest-tasks"}},
    h("thead", {}, h("tr", {},
      h("th", {scope: "col"}, "Task"), h("th", {scope: "col"}, "Status"),
      PHASES.map(([, label]) => h("th", {scope: "col", class: "num"}, label)),
      h("th", {scope: "col", class: "hide-narrow"}, "Finished"))),
    h("tbody", {}, tasks.map((t) => h("tr", {dataset: {task: t.task_id}},
      h("td", {}, h("a", {href: `/runs/${t.run_id}`, "data-nav": true}, `${t.workflow} › ${t.step}`)),
      h("td", {}, badge(t.status)),
      h("td", {class: "num"}, duration(t.blocked_duration)),
      h("td", {class: "num"}, duration(t.pending_duration)),
      h("td", {class: "num"}, duration(t.execution_duration)),
      h("td", {class: "hide-narrow muted"}, h("time", {datetime: t.finished_at, title: when(t.finished_at)}, ago(t.finished_at))))))));
}

function mostFailing(rows) {
  if (!rows.length) return h("p", {class: "empty", dataset: {testid: "most-failing"}}, "No task failed in this window.");
  const percent = (x) => `${(x * 100).toFixed(x < 0.1 && x > 0 ? 1 : 0)}%`;
  return h("div", {class: "scroll"}, h("table", {class: "phase-list", dataset: {testid: "most-failing"}},
    h("thead", {}, h("tr", {},
      h("th", {scope: "col"}, "Workflow"), h("th", {scope: "col"}, "Step"), h("th", {scope: "col", class: "num"}, "Failed"),
      h("th", {scope: "col", class: "num", title: "Its part of the workflow's failed tasks"}, "Share"),
      h("th", {scope: "col", class: "num", title: "The part of its own tasks that failed"}, "Rate"))),
    h("tbody", {}, rows.map((r) => h("tr", {dataset: {workflow: r.workflow, step: r.step}},
      h("td", {}, h("a", {href: `/runs?workflow=${encodeURIComponent(r.workflow)}`, "data-nav": true}, r.workflow)),
      h("td", {}, r.step),
      h("td", {class: "num"}, String(r.failed)),
      h("td", {class: "num"}, percent(r.share)),
      h("td", {class: "num"}, percent(r.rate)))))));
}
