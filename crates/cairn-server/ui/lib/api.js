// The JSON API and its live events, as the pages use them. Requests carry
// the session cookie by themselves (same origin); changes add the
// session's anti-CSRF token. Errors keep the API's `{code, message, field}`.

let csrf = null;

export function setCsrf(token) {
  csrf = token || null;
}

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.message || `the server answered ${status}`);
    this.status = status;
    this.code = body?.code || "unknown";
    this.field = body?.field || null;
  }
}

// Called when the server says the session is over (401), to sign in again.
let onSignedOut = () => {};
export function whenSignedOut(f) {
  onSignedOut = f;
}

export async function api(path, {method = "GET", body, query} = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v === undefined || v === null || v === "" || (Array.isArray(v) && v.length === 0)) continue;
    url.searchParams.set(k, Array.isArray(v) ? v.join(",") : String(v));
  }
  const headers = {Accept: "application/json"};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && csrf) headers["X-CSRF-Token"] = csrf;
  const answer = await fetch(url, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (answer.status === 204) return null;
  const data = await answer.json().catch(() => null);
  if (!answer.ok) {
    const error = new ApiError(answer.status, data);
    if (answer.status === 401) onSignedOut(error);
    throw error;
  }
  return data;
}

// Live events matching `filter` ({run, workflow}), each given to `onEvent`;
// the socket reconnects after a drop and says so with `onGap`, so the page
// can reload what it shows. Returns a function that closes it for good.
export function liveEvents(filter, onEvent, onGap = () => {}) {
  let socket = null;
  let closed = false;
  let wait = 500;
  const open = () => {
    const url = new URL("/api/v1/events", location.origin);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    for (const [k, v] of Object.entries(filter || {})) if (v) url.searchParams.set(k, v);
    socket = new WebSocket(url);
    socket.onopen = () => { wait = 500; };
    socket.onmessage = (m) => {
      let event;
      try { event = JSON.parse(m.data); } catch { return; }
      if (event.kind === "lagged") onGap(); else onEvent(event);
    };
    socket.onclose = () => {
      if (closed) return;
      setTimeout(() => { if (!closed) { onGap(); open(); } }, wait);
      wait = Math.min(wait * 2, 10000);
    };
  };
  open();
  return () => { closed = true; socket?.close(); };
}
