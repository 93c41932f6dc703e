// A run's Gantt: one row per task, time from the run's submission to its
// end (or now), each row's phases from its transition log — blocked,
// pending, running (one segment per attempt, a failed attempt marked) —
// and its final status at the end.

import {s} from "./dom.js";
import {color, duration, when} from "./format.js";
import {truncate} from "./dag.js";

const ROW = 24, AXIS = 26, PAD = 10;
const FINAL = new Set(["COMPLETED", "FAILED", "CANCELED", "SKIPPED", "ABANDONED"]);
const STEPS = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];

// The phases of a task: [{status, attempt, from, to (ms), failed, reason}]
// and where it ended, if it has.
export function phases(task, end) {
  const log = [...(task.transitions || [])].sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));
  const out = [];
  let final = null;
  log.forEach((t, i) => {
    const at = new Date(t.at).getTime();
    if (FINAL.has(t.to)) { final = {status: t.to, at, reason: t.reason}; return; }
    const next = log[i + 1];
    const until = next ? new Date(next.at).getTime() : end;
    out.push({
      status: t.to, attempt: t.attempt, from: at, to: Math.max(at, until),
      // An attempt that failed: retried (back to PENDING), failed or abandoned.
      failed: t.to === "RUNNING" && !!next && ["PENDING", "FAILED", "ABANDONED"].includes(next.to),
      ended: next ? `${next.to.toLowerCase()}: ${next.reason}` : "",
    });
  });
  return {segments: out, final};
}

// The timeline as an SVG `width` wide; `now` (ms) ends an unfinished run.
export function timeline(run, {now = Date.now(), width = 900, selected = null, onSelect = () => {}} = {}) {
  const LABEL = width < 640 ? 112 : 176;
  const t0 = new Date(run.submitted_at).getTime();
  const t1 = Math.max(t0 + 100, run.finished_at ? new Date(run.finished_at).getTime() : now);
  const plot = Math.max(300, width - LABEL - PAD * 2);
  const total = LABEL + plot + PAD * 2;
  const height = AXIS + run.tasks.length * ROW + PAD;
  const x = (ms) => LABEL + PAD + ((Math.min(Math.max(ms, t0), t1) - t0) / (t1 - t0)) * plot;
  const svg = s("svg", {
    class: "timeline", width: total, height, viewBox: `0 0 ${total} ${height}`, role: "group",
    "aria-label": `Timeline of ${run.tasks.length} steps over ${duration((t1 - t0) / 1000)}`,
    dataset: {testid: "timeline"},
  });

  // The axis: seconds since submission, at a step that fits about 8 ticks.
  const span = (t1 - t0) / 1000;
  const step = STEPS.find((st) => span / st <= 8) || Math.ceil(span / 8 / 86400) * 86400;
  const axis = s("g", {class: "axis"});
  for (let sec = 0; sec <= span + 1e-9; sec += step) {
    const px = x(t0 + sec * 1000);
    axis.append(s("line", {x1: px, x2: px, y1: AXIS - 6, y2: height - PAD}),
      s("text", {x: px, y: AXIS - 10, "text-anchor": sec === 0 ? "start" : "middle"}, sec === 0 ? "0" : `+${duration(sec)}`));
  }
  axis.append(s("title", {}, `${when(new Date(t0).toISOString())} → ${run.finished_at ? when(run.finished_at) : "now"}`));
  svg.append(axis);

  run.tasks.forEach((task, i) => {
    const y = AXIS + i * ROW;
    const row = s("g", {
      class: `row${task.id === selected ? " selected" : ""}`, dataset: {task: task.id, step: task.name, status: task.status},
      onclick: () => onSelect(task.id),
    });
    row.append(s("rect", {class: "hit", x: 0, y, width: total, height: ROW}));
    row.append(s("text", {class: "label", x: 4, y: y + ROW / 2 + 4}, truncate(task.name, LABEL < 150 ? 14 : 24), s("title", {}, task.name)));
    const {segments, final} = phases(task, run.finished_at ? t1 : now);
    for (const p of segments) {
      const tall = p.status === "RUNNING";
      const h = tall ? 14 : 8;
      const left = x(p.from), w = Math.max(1.5, x(p.to) - left);
      const label = p.status === "RUNNING" ? `running (attempt ${p.attempt})` : p.status.toLowerCase();
      row.append(s("rect", {
        class: `seg${p.failed ? " failed" : ""}`, x: left, y: y + (ROW - h) / 2, width: w, height: h, rx: 2,
        fill: color(p.status), dataset: {phase: p.status, attempt: p.attempt},
      }, s("title", {}, `${task.name}: ${label}${p.failed ? " — failed" : ""}\n${duration((p.to - p.from) / 1000)}`
        + `\n${when(new Date(p.from).toISOString())} → ${when(new Date(p.to).toISOString())}${p.ended ? `\n${p.ended}` : ""}`)));
    }
    if (final) {
      const px = x(final.at);
      row.append(s("circle", {
        class: "final", cx: px, cy: y + ROW / 2, r: 5, fill: color(final.status), dataset: {phase: final.status},
      }, s("title", {}, `${task.name}: ${final.status.toLowerCase()} at ${when(new Date(final.at).toISOString())}\n${final.reason}`)));
    }
    svg.append(row);
  });
  return svg;
}
