// The pages' shell: which page an address shows (history API, so links
// are shareable and the back button works), sign-in when the server asks
// for it, the theme, and the header.

import {api, setCsrf, whenSignedOut} from "./lib/api.js";
import {fill, h} from "./lib/dom.js";

// Each page module exports `render(root, params, query)`, which may return
// a function that stops what the page started (sockets, timers).
const ROUTES = [
  [/^\/$/, "dashboard"],
  [/^\/sign-in$/, "signin"],
  [/^\/runs$/, "runs"],
  [/^\/runs\/(?<run_id>[0-9A-Za-z]+)$/, "run"],
  [/^\/workflows$/, "workflows"],
  [/^\/workflows\/(?<name>[^/]+)$/, "workflow"],
  [/^\/workers$/, "workers"],
  [/^\/alerts$/, "alerts"],
  [/^\/analytics$/, "analytics"],
];

const view = document.getElementById("view");
let stop = null;
let session = {auth: "open", signed_in: false};

export function navigate(path, {replace = false} = {}) {
  if (replace) history.replaceState(null, "", path); else history.pushState(null, "", path);
  show();
}

// The session, as the pages see it: whether to show who is signed in.
export function currentSession() {
  return session;
}

async function show() {
  if (stop) { try { stop(); } catch { /* the page is gone anyway */ } stop = null; }
  const path = location.pathname;
  const match = ROUTES.map(([re, page]) => [path.match(re), page]).find(([m]) => m);
  const page = match ? match[1] : null;
  const params = match ? {...match[0].groups} : {};
  if (page !== "signin" && session.auth === "tokens" && !session.signed_in) {
    navigate(`/sign-in?next=${encodeURIComponent(path + location.search)}`, {replace: true});
    return;
  }
  for (const a of document.querySelectorAll("nav a[data-page]")) {
    const current = a.dataset.page === page || (a.dataset.page === "runs" && page === "run")
      || (a.dataset.page === "workflows" && page === "workflow");
    if (current) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  if (!page) {
    fill(view, h("h1", {}, "Not found"), h("p", {}, "No page here. ", h("a", {href: "/", "data-nav": true}, "Go to the dashboard.")));
    return;
  }
  fill(view, h("p", {class: "muted"}, "Loading…"));
  try {
    const module = await import(`./pages/${page}.js`);
    const query = new URLSearchParams(location.search);
    stop = (await module.render(view, params, query)) || null;
    // For measuring how long a page takes to show its data.
    performance.mark(`cairn:rendered:${page}`);
  } catch (e) {
    fill(view, h("h1", {}, "Something went wrong"), h("p", {class: "error"}, e.message || String(e)));
  }
}

// Reads who is signed in, and shows it in the header.
export async function refreshSession() {
  session = await api("/api/v1/session");
  setCsrf(session.csrf_token);
  const who = document.querySelector("[data-testid=signed-in-as]");
  const out = document.querySelector("[data-action=sign-out]");
  who.hidden = out.hidden = !session.signed_in;
  who.textContent = session.signed_in ? `${session.name} (${session.role})` : "";
  return session;
}

// The theme: the system's, unless the user chose one (kept in this browser).
function applyTheme() {
  const chosen = localStorage.getItem("cairn.theme");
  if (chosen) document.documentElement.dataset.theme = chosen;
  else delete document.documentElement.dataset.theme;
}

function toggleTheme() {
  const dark = document.documentElement.dataset.theme
    ? document.documentElement.dataset.theme === "dark"
    : matchMedia("(prefers-color-scheme: dark)").matches;
  localStorage.setItem("cairn.theme", dark ? "light" : "dark");
  applyTheme();
  show();
}

document.addEventListener("click", (e) => {
  const a = e.target.closest("a[data-nav], a[href^='/']");
  if (a && !e.defaultPrevented && e.button === 0 && !e.metaKey && !e.ctrlKey && !e.shiftKey && !a.target
      && !a.getAttribute("href").startsWith("/api/")) {
    e.preventDefault();
    navigate(a.getAttribute("href"));
  }
  const action = e.target.closest("[data-action]")?.dataset.action;
  if (action === "theme") toggleTheme();
  if (action === "sign-out") {
    api("/api/v1/session", {method: "DELETE"}).finally(async () => {
      await refreshSession();
      navigate("/sign-in");
    });
  }
});
window.addEventListener("popstate", show);
whenSignedOut(async () => {
  await refreshSession().catch(() => {});
  if (location.pathname !== "/sign-in") navigate(`/sign-in?next=${encodeURIComponent(location.pathname + location.search)}`, {replace: true});
});

applyTheme();
refreshSession().catch(() => {}).finally(show);
