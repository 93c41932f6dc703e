// The workers: each that called this server lately or holds a lease, with
// its queues, leases held, last call and last heartbeat. Refreshed every
// few seconds.

import {api} from "../lib/api.js";
import {fill, h} from "../lib/dom.js";
import {ago, when} from "../lib/format.js";

export async function render(root) {
  const table = h("div", {class: "scroll", dataset: {testid: "workers-table"}});
  fill(root, h("h1", {}, "Workers"),
    h("p", {class: "muted"}, "Workers that called this server in the last ten minutes, and every holder of a lease."),
    h("section", {class: "panel"}, table));
  const load = async () => {
    const list = await api("/api/v1/workers");
    const since = (iso) => (iso ? h("span", {title: when(iso)}, ago(iso)) : h("span", {class: "muted"}, "—"));
    fill(table, list.workers.length ? h("table", {},
      h("thead", {}, h("tr", {}, h("th", {}, "Worker"), h("th", {}, "Queues"), h("th", {}, "Leases held"),
        h("th", {}, "Last call"), h("th", {class: "hide-narrow"}, "Last heartbeat"))),
      h("tbody", {}, list.workers.map((w) => h("tr", {dataset: {worker: w.worker_id}},
        h("td", {class: "mono"}, w.worker_id, w.local ? h("span", {class: "muted"}, " (local executor)") : null),
        h("td", {}, w.queues.join(", ") || "—"),
        h("td", {}, String(w.leases)),
        h("td", {}, since(w.last_seen_at)),
        h("td", {class: "hide-narrow"}, since(w.last_heartbeat_at))))))
      : h("p", {class: "empty"}, "No worker has called lately, and none holds a lease."),
    list.leases_capped ? h("p", {class: "muted"}, "More than 10,000 tasks run: leases counted among the first 10,000.") : null);
  };
  await load();
  const every = setInterval(() => load().catch(() => {}), 5000);
  return () => clearInterval(every);
}
