// Runs a keyed function once, `ms` after the last call for its key: a burst
// of live events becomes one reload. `cancel(key)` drops one, `cancelAll()`
// every pending call (a page's cleanup); `pending(key)` tells whether one
// waits.

export function debounce() {
  const timers = new Map();
  const later = (key, f, ms) => {
    clearTimeout(timers.get(key));
    timers.set(key, setTimeout(() => { timers.delete(key); Promise.resolve(f()).catch(() => {}); }, ms));
  };
  later.pending = (key) => timers.has(key);
  later.cancel = (key) => { clearTimeout(timers.get(key)); timers.delete(key); };
  later.cancelAll = () => { for (const t of timers.values()) clearTimeout(t); timers.clear(); };
  return later;
}
