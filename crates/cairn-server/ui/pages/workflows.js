// The workflows: each with its schedule and next run, its last status and
// a strip of its recent runs, and whether its file is valid.

import {api} from "../lib/api.js";
import {badge} from "../lib/charts.js";
import {fill, h} from "../lib/dom.js";
import {ago, color, when} from "../lib/format.js";

const RECENT = 20;

export async function render(root) {
  const list = await api("/api/v1/workflows");
  const recent = await Promise.all(list.workflows.map((w) =>
    api("/api/v1/runs", {query: {workflow: w.name, limit: RECENT}}).then((p) => p.runs).catch(() => [])));
  const rows = list.workflows.map((w, i) => h("tr", {dataset: {workflow: w.name}},
    h("td", {}, h("a", {href: `/workflows/${encodeURIComponent(w.name)}`, "data-nav": true}, w.name),
      w.description ? h("div", {class: "muted"}, w.description) : null),
    h("td", {}, w.valid ? `${w.steps} step${w.steps === 1 ? "" : "s"}` : h("span", {class: "error"}, `${w.errors} error${w.errors === 1 ? "" : "s"}`)),
    h("td", {class: "hide-narrow"}, w.schedule.length ? h("code", {}, w.schedule.join(", ")) : h("span", {class: "muted"}, "—")),
    h("td", {}, w.next_run_at ? h("span", {title: when(w.next_run_at)}, ago(w.next_run_at)) : h("span", {class: "muted"}, "—")),
    h("td", {}, recent[i][0] ? badge(recent[i][0].status) : h("span", {class: "muted"}, "never run")),
    h("td", {class: "hide-narrow"}, strip(recent[i]))));
  fill(root,
    h("h1", {}, "Workflows"),
    list.problem ? h("p", {class: "error", role: "alert"}, list.problem) : null,
    h("section", {class: "panel"}, list.workflows.length
      ? h("div", {class: "scroll"}, h("table", {dataset: {testid: "workflows-table"}},
        h("thead", {}, h("tr", {}, h("th", {}, "Workflow"), h("th", {}, "Steps"), h("th", {class: "hide-narrow"}, "Schedule"),
          h("th", {}, "Next run"), h("th", {}, "Last status"), h("th", {class: "hide-narrow"}, `Last ${RECENT} runs`))),
        h("tbody", {}, rows)))
      : h("p", {class: "empty"}, "No workflow files in the server's workflow directory.")));
}

// The recent runs, oldest to newest, as small squares linking to each.
export function strip(runs) {
  return h("span", {class: "strip", dataset: {testid: "status-strip"}},
    [...runs].reverse().map((r) => h("a", {
      href: `/runs/${r.run_id}`, "data-nav": true, title: `${r.status} · ${when(r.submitted_at)}`,
      "aria-label": `${r.status} run of ${when(r.submitted_at)}`, style: {background: color(r.status)},
    })));
}
