// A run's tasks as a graph: layers by the longest path from the roots,
// left to right; inside a layer, ordered by the barycenter of the parents
// (then of the children), a few sweeps. Hand-written: runs have 1 to a few
// hundred steps, and the picture scrolls inside its panel.

import {s} from "./dom.js";
import {color} from "./format.js";

const W = 172, H = 46, GAP_X = 58, GAP_Y = 14, PAD = 12, LABEL = 22;
const SWEEPS = 4;

// tasks: [{name, depends: [names], …}] → {x, y} per task (same order), and
// the edges as [parent index, child index].
export function layout(tasks) {
  const n = tasks.length;
  const byName = new Map(tasks.map((t, i) => [t.name, i]));
  const parents = tasks.map((t) => [...new Set((t.depends || []).map((d) => byName.get(d)))]
    .filter((i) => i !== undefined));
  const children = tasks.map(() => []);
  parents.forEach((ps, i) => ps.forEach((p) => children[p].push(i)));

  // Longest path from a root; a cycle (a broken spec) is cut where found.
  const layer = new Array(n).fill(-1);
  const visiting = new Set();
  const depth = (i) => {
    if (layer[i] >= 0) return layer[i];
    if (visiting.has(i)) return 0;
    visiting.add(i);
    let d = 0;
    for (const p of parents[i]) d = Math.max(d, depth(p) + 1);
    visiting.delete(i);
    layer[i] = d;
    return d;
  };
  for (let i = 0; i < n; i++) depth(i);

  const layers = [];
  for (let i = 0; i < n; i++) (layers[layer[i]] ||= []).push(i);
  const tallest = Math.max(1, ...layers.map((l) => l.length));
  const slot = new Array(n).fill(0);
  const place = () => layers.forEach((l) => {
    const offset = (tallest - l.length) / 2;
    l.forEach((i, k) => { slot[i] = k + offset; });
  });
  place();
  const mean = (list, own) => (list.length ? list.reduce((sum, j) => sum + slot[j], 0) / list.length : own);
  for (let sweep = 0; sweep < SWEEPS; sweep++) {
    for (let l = 1; l < layers.length; l++) {
      const key = new Map(layers[l].map((i) => [i, mean(parents[i], slot[i])]));
      layers[l].sort((a, b) => key.get(a) - key.get(b));
      place();
    }
    for (let l = layers.length - 2; l >= 0; l--) {
      const key = new Map(layers[l].map((i) => [i, mean(children[i], slot[i])]));
      layers[l].sort((a, b) => key.get(a) - key.get(b));
      place();
    }
  }
  const points = tasks.map((_, i) => ({x: PAD + layer[i] * (W + GAP_X), y: PAD + slot[i] * (H + GAP_Y)}));
  const edges = parents.flatMap((ps, i) => ps.map((p) => [p, i]));
  return {
    points, edges,
    width: PAD * 2 + Math.max(1, layers.length) * (W + GAP_X) - GAP_X,
    height: PAD * 2 + tallest * (H + GAP_Y) - GAP_Y,
  };
}

// "a_very_long_step_na…"
export function truncate(text, max = LABEL) {
  const chars = [...String(text)];
  return chars.length > max ? `${chars.slice(0, max - 1).join("")}…` : String(text);
}

function caption(t) {
  const parts = [t.status.toLowerCase()];
  if (t.attempts > 1 || (t.max_attempts > 1 && t.attempts > 0)) parts.push(`try ${t.attempts}/${t.max_attempts}`);
  if (t.status === "RUNNING" && t.progress) parts.push(`${Math.round(t.progress.percent)}%`);
  return parts.join(" · ");
}

// The graph as an SVG, with `update(task)` to recolour a node in place and
// `select(taskId)` to mark the one shown below. Nodes are buttons: a click,
// Enter or Space calls `onSelect(taskId)`.
export function dag(tasks, {onSelect = () => {}, selected = null} = {}) {
  const {points, edges, width, height} = layout(tasks);
  const svg = s("svg", {
    class: "dag", width, height, viewBox: `0 0 ${width} ${height}`, role: "group",
    "aria-label": `Graph of ${tasks.length} steps`, dataset: {testid: "dag-graph"},
  });
  svg.append(s("defs", {}, s("marker", {
    id: "dag-arrow", viewBox: "0 0 8 8", refX: 7, refY: 4, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse",
  }, s("path", {d: "M0 0 L8 4 L0 8 z", class: "arrow"}))));
  const lines = s("g", {class: "edges"});
  for (const [p, c] of edges) {
    const a = points[p], b = points[c];
    const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x - 2, y2 = b.y + H / 2;
    const bend = Math.max(20, (x2 - x1) / 2);
    lines.append(s("path", {
      d: `M${x1} ${y1} C${x1 + bend} ${y1}, ${x2 - bend} ${y2}, ${x2} ${y2}`,
      "marker-end": "url(#dag-arrow)", dataset: {from: tasks[p].id, to: tasks[c].id},
    }));
  }
  svg.append(lines);

  const nodes = new Map();
  const group = s("g", {class: "nodes"});
  tasks.forEach((t, i) => {
    const {x, y} = points[i];
    const title = s("title", {});
    const sub = s("text", {x: 14, y: 34, class: "sub"});
    const fillBar = s("rect", {x: 6, y: H - 4, height: 3, width: 0, class: "pbar"});
    const node = s("g", {
      class: "node", transform: `translate(${x} ${y})`, tabindex: 0, role: "button",
      dataset: {task: t.id, step: t.name, status: t.status},
      onclick: () => onSelect(t.id),
      onkeydown: (e) => {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); onSelect(t.id); }
      },
    },
    title,
    s("rect", {class: "box", width: W, height: H, rx: 7}),
    s("rect", {class: "stripe", width: 6, height: H, rx: 3}),
    s("text", {x: 14, y: 18, class: "name"}, truncate(t.name)),
    sub, fillBar);
    nodes.set(t.id, {node, title, sub, fillBar});
    group.append(node);
  });
  svg.append(group);

  const update = (t) => {
    const n = nodes.get(t.id);
    if (!n) return;
    n.node.dataset.status = t.status;
    n.node.style.setProperty("--c", color(t.status));
    n.sub.textContent = caption(t);
    n.title.textContent = `${t.name} — ${caption(t)}${t.depends?.length ? `\nafter ${t.depends.join(", ")}` : ""}`;
    n.node.setAttribute("aria-label", `${t.name}: ${caption(t)}`);
    const running = t.status === "RUNNING" && t.progress;
    n.fillBar.setAttribute("width", running ? Math.max(0, Math.min(100, t.progress.percent)) / 100 * (W - 12) : 0);
  };
  const select = (id) => {
    for (const [key, n] of nodes) {
      n.node.classList.toggle("selected", key === id);
      n.node.setAttribute("aria-pressed", String(key === id));
    }
  };
  tasks.forEach(update);
  select(selected);
  return {svg, update, select, node: (id) => nodes.get(id)?.node};
}
