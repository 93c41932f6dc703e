// Filter controls the pages share: a group of buttons of which one is
// pressed, and the workflow select (its names read from the API).

import {api} from "./api.js";
import {fill, h} from "./dom.js";

// choices: [[key, label], …]. Each button carries `data-key` for tests.
export function segmented(label, choices, current, pick, testid) {
  return h("div", {class: "segmented", role: "group", "aria-label": label, dataset: testid ? {testid} : {}},
    choices.map(([key, text]) => h("button", {
      type: "button", "aria-pressed": String(current === key), dataset: {key},
      onclick: () => { if (current !== key) pick(key); },
    }, text)));
}

// The select shows the address's workflow at once (known or not) and the
// others once the list arrives, keeping the focus if it had it.
export function workflowSelect(current, pick, testid = "workflow-filter") {
  const select = h("select", {"aria-label": "Workflow", dataset: {testid}, onchange: (e) => pick(e.target.value)},
    h("option", {value: ""}, "All workflows"),
    current ? h("option", {value: current, selected: true}, current) : null);
  api("/api/v1/workflows").then((list) => {
    if (!select.isConnected) return;
    const names = (list.workflows || []).map((w) => w.name);
    if (current && !names.includes(current)) names.push(current);
    names.sort();
    const hadFocus = document.activeElement === select;
    fill(select, h("option", {value: ""}, "All workflows"),
      names.map((n) => h("option", {value: n, selected: n === current}, n)));
    select.value = current;
    if (hadFocus) select.focus();
  }).catch(() => {});
  return select;
}
