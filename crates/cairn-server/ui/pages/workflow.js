// One workflow: its steps, schedule, params and file; a form to trigger a
// run with params; its recent runs.

import {api} from "../lib/api.js";
import {badge} from "../lib/charts.js";
import {fill, h} from "../lib/dom.js";
import {ago, duration, when} from "../lib/format.js";
import {navigate} from "../app.js";
import {strip} from "./workflows.js";

export async function render(root, params) {
  const name = decodeURIComponent(params.name);
  const [w, runs] = await Promise.all([
    api(`/api/v1/workflows/${encodeURIComponent(name)}`),
    api("/api/v1/runs", {query: {workflow: name, limit: 20}}).then((p) => p.runs).catch(() => []),
  ]);
  const error = h("p", {class: "error", role: "alert"});
  const inputs = w.params.map((p, i) => {
    const id = `param-${i}`;
    const label = p.name || `$${i + 1}`;
    const field = p.choices.length
      ? h("select", {id, name: label}, p.choices.map((c) => h("option", {value: c, selected: c === p.default}, c)))
      : h("input", {id, name: label, value: p.default ?? "", required: p.required,
        type: p.type === "integer" || p.type === "number" ? "number" : "text", step: p.type === "number" ? "any" : null});
    return {p, field, node: h("div", {class: "field"},
      h("label", {for: id}, label, p.required ? " *" : "", p.description ? h("span", {class: "muted"}, ` — ${p.description}`) : null),
      field)};
  });
  const form = h("form", {
    class: "trigger", dataset: {testid: "trigger-form"},
    onsubmit: async (e) => {
      e.preventDefault();
      fill(error);
      const values = inputs.map(({p, field}) => (p.name ? `${p.name}=${field.value}` : field.value));
      try {
        const made = await api(`/api/v1/workflows/${encodeURIComponent(name)}/runs`, {method: "POST", body: {params: values}});
        navigate(`/runs/${made.run_id}`);
      } catch (err) {
        fill(error, err.field ? `${err.field}: ${err.message}` : err.message);
      }
    },
  }, inputs.map((i) => i.node),
  h("button", {type: "submit", class: "primary", disabled: !w.valid, dataset: {testid: "trigger-run"}}, "Run now"), error);

  fill(root,
    h("p", {}, h("a", {href: "/workflows", "data-nav": true}, "‹ Workflows")),
    h("h1", {}, w.name),
    w.description ? h("p", {class: "muted"}, w.description) : null,
    w.errors.length ? h("section", {class: "panel"}, h("h2", {}, "Errors"),
      h("ul", {}, w.errors.map((d) => h("li", {class: "error"}, h("code", {}, `${d.line ?? ""}:${d.column ?? ""} ${d.path}`), ` ${d.message}`, d.hint ? ` (${d.hint})` : "")))) : null,
    h("div", {class: "grid"},
      h("section", {class: "panel"}, h("h2", {}, "Run it"), form),
      h("section", {class: "panel"}, h("h2", {}, "Schedule"),
        w.schedule.length ? h("p", {}, h("code", {}, w.schedule.join(", "))) : h("p", {class: "muted"}, "Runs only when triggered."),
        h("h2", {}, "Recent runs"), runs.length ? strip(runs) : h("p", {class: "empty"}, "Never run."),
        runs.length ? h("ul", {class: "legend"}, runs.slice(0, 5).map((r) => h("li", {},
          badge(r.status), " ", h("a", {href: `/runs/${r.run_id}`, "data-nav": true, title: when(r.submitted_at)}, ago(r.submitted_at)),
          h("span", {class: "n muted"}, duration(r.duration))))) : null),
      h("section", {class: "panel wide"}, h("h2", {}, `Steps (${w.kind || "chain"})`),
        h("div", {class: "scroll"}, h("table", {},
          h("thead", {}, h("tr", {}, h("th", {}, "Step"), h("th", {}, "Waits for"), h("th", {}, "Runs"), h("th", {class: "hide-narrow"}, "Queue"), h("th", {class: "hide-narrow"}, "Retries"))),
          h("tbody", {}, [...w.steps, ...w.handlers].map((st) => h("tr", {},
            h("td", {}, st.name), h("td", {}, st.depends.join(", ") || "—"),
            h("td", {}, h("code", {}, st.command || st.task_type || st.action)),
            h("td", {class: "hide-narrow"}, st.queue || "local"), h("td", {class: "hide-narrow"}, st.retry_limit))))))),
      h("section", {class: "panel wide"}, h("h2", {}, "File"), h("p", {class: "muted mono"}, w.file),
        h("pre", {class: "source", dataset: {testid: "workflow-yaml"}}, w.source))));
}
