// Times in the viewer's time zone with relative times, durations for
// people, and the colour of each status.

const absolute = new Intl.DateTimeFormat(undefined, {dateStyle: "medium", timeStyle: "medium"});
const relative = new Intl.RelativeTimeFormat(undefined, {numeric: "auto"});

// "Nov 21, 2026, 08:12:03" (the viewer's zone).
export function when(iso) {
  return iso ? absolute.format(new Date(iso)) : "—";
}

// "3 minutes ago", "in 2 hours".
export function ago(iso, now = Date.now()) {
  if (!iso) return "";
  const seconds = (new Date(iso).getTime() - now) / 1000;
  const steps = [[60, "second"], [60, "minute"], [24, "hour"], [7, "day"], [4.35, "week"], [12, "month"], [Infinity, "year"]];
  let value = seconds;
  for (const [size, unit] of steps) {
    if (Math.abs(value) < size) return relative.format(Math.round(value), unit);
    value /= size;
  }
  return "";
}

// An element-friendly pair: the relative time, with the absolute one as its title.
export function time(iso) {
  return {text: ago(iso), title: when(iso)};
}

// Seconds as "850ms", "12.3s", "4m 05s", "2h 03m", "3d 4h".
export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
  if (seconds < 1) return `${Math.round(seconds * 1000)}ms`;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)}s`;
  const m = Math.floor(seconds / 60), s = Math.floor(seconds % 60);
  if (m < 60) return `${m}m ${String(s).padStart(2, "0")}s`;
  const hr = Math.floor(m / 60), mm = m % 60;
  if (hr < 24) return `${hr}h ${String(mm).padStart(2, "0")}m`;
  return `${Math.floor(hr / 24)}d ${hr % 24}h`;
}

// The CSS variable of a status's colour.
export function color(status) {
  return `var(--s-${String(status).toLowerCase()})`;
}

export const RUN_STATUSES = ["QUEUED", "RUNNING", "COMPLETED", "PARTIALLY_SUCCEEDED", "FAILED", "CANCELED"];
export const TASK_STATUSES = ["SUBMITTED", "BLOCKED", "PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELED", "SKIPPED", "ABANDONED"];
