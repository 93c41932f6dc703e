// Sign-in: a token traded for a session cookie (POST /api/v1/session);
// then back to the page that asked for it.

import {api} from "../lib/api.js";
import {h, fill} from "../lib/dom.js";
import {navigate, refreshSession} from "../app.js";

export async function render(root, _params, query) {
  const next = safeNext(query.get("next"));
  const session = await refreshSession();
  if (session.auth === "open" || session.signed_in) {
    navigate(next, {replace: true});
    return;
  }
  const error = h("p", {class: "error", role: "alert", dataset: {testid: "sign-in-error"}});
  const input = h("input", {
    type: "password", name: "token", id: "token", required: true, autocomplete: "off",
    placeholder: "cairn_…", spellcheck: "false", dataset: {testid: "token-input"},
  });
  const form = h("form", {
    onsubmit: async (e) => {
      e.preventDefault();
      fill(error);
      try {
        await api("/api/v1/session", {method: "POST", body: {token: input.value.trim()}});
        await refreshSession();
        navigate(next, {replace: true});
      } catch (err) {
        fill(error, err.message);
        input.select();
      }
    },
  },
  h("label", {for: "token"}, "API token"),
  input,
  h("button", {type: "submit", class: "primary", dataset: {testid: "sign-in"}}, "Sign in"),
  error);
  fill(root, h("section", {class: "panel signin"},
    h("h1", {}, "Sign in to Cairn"),
    h("p", {class: "muted"}, "This server asks for an API token. Paste one of role viewer, operator or admin; ",
      "it is traded for a session kept in this browser for up to 12 hours."),
    form));
  input.focus();
}

// Only a path of this site, never another address.
function safeNext(next) {
  return next && next.startsWith("/") && !next.startsWith("//") && next !== "/sign-in" ? next : "/";
}
