// The status donut (SVG, drawn here: a few arcs need no library) and the
// trend chart (uPlot, vendored).

import {h, s} from "./dom.js";
import {color} from "./format.js";

// A status badge: a dot of the status's colour and its name.
export function badge(status, label = status) {
  return h("span", {class: "status", style: {"--c": color(status)}, dataset: {status}}, label);
}

// counts: {STATUS: n}. The donut with the total in its middle, and a legend.
export function donut(counts, {testid, title = "runs"} = {}) {
  const entries = Object.entries(counts).filter(([, n]) => n > 0);
  const total = entries.reduce((sum, [, n]) => sum + n, 0);
  const r = 70, c = 2 * Math.PI * r;
  const svg = s("svg", {viewBox: "0 0 180 180", role: "img", "aria-label": `${total} ${title} by status`});
  svg.append(s("circle", {cx: 90, cy: 90, r, fill: "none", stroke: "var(--line)", "stroke-width": 22}));
  let offset = 0;
  for (const [status, n] of entries) {
    const length = (n / total) * c;
    svg.append(s("circle", {
      cx: 90, cy: 90, r, fill: "none", stroke: color(status), "stroke-width": 22,
      "stroke-dasharray": `${length} ${c - length}`, "stroke-dashoffset": -offset,
      transform: "rotate(-90 90 90)", "data-status": status, "data-count": n,
    }, s("title", {}, `${status}: ${n}`)));
    offset += length;
  }
  svg.append(s("text", {x: 90, y: 92, "text-anchor": "middle", class: "total", "data-total": total}, total));
  svg.append(s("text", {x: 90, y: 112, "text-anchor": "middle", class: "label"}, title));
  const legend = h("ul", {class: "legend"},
    entries.map(([status, n]) => h("li", {dataset: {status}}, badge(status),
      h("span", {class: "n"}, `${n} · ${total ? Math.round((n / total) * 100) : 0}%`))));
  return h("div", {class: "donut", dataset: {testid}}, svg,
    entries.length ? legend : h("p", {class: "empty"}, `No ${title} in this window.`));
}

// points: [{at, counts: {STATUS: n}}] → a stacked-looking line per status.
export function trend(el, points, statuses) {
  el.replaceChildren();
  if (!window.uPlot) return null;
  const xs = points.map((p) => new Date(p.at).getTime() / 1000);
  const series = statuses.map((st) => points.map((p) => p.counts?.[st] || 0));
  const stroke = (st) => resolved(`--s-${st.toLowerCase()}`);
  const axis = {stroke: resolved("--muted"), grid: {stroke: resolved("--line")}};
  const opts = {
    width: Math.max(280, el.clientWidth || 600),
    height: 220,
    series: [{}, ...statuses.map((st) => ({label: st, stroke: stroke(st), width: 2, points: {show: false}}))],
    axes: [axis, axis],
    scales: {x: {time: true}},
    legend: {live: false},
  };
  return new window.uPlot(opts, [xs, ...series], el);
}

// A colour variable as a canvas needs it: light-dark() resolved for the
// theme in force, which only the style of an element in the page can do.
function resolved(variable) {
  const probe = h("span", {style: {color: `var(${variable}, #888)`}});
  document.body.append(probe);
  const rgb = getComputedStyle(probe).color;
  probe.remove();
  return rgb;
}
