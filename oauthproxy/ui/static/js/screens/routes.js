/* Routes: the "which route wins?" tester, the list in the order the gateway tries
 * them, creating, editing (#/routes/ROUTE_ID, with the route's own auth) and
 * deleting. */

import * as api from "../api.js";
import { h, fill, code, list, yesno, badge, DASH } from "../dom.js";
import { form } from "../forms.js";
import { heading, notice, section, disclosure, confirm, recordTable, pager, action, explain, loadInto, attempt } from "../ui.js";

const PATH = "/routes/";
const PAGE = 50;
const METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

const ROUTE_FIELDS = [
  { name: "path_pattern", label: "Path", required: true, placeholder: "/api/" },
  { name: "match_type", label: "Match", kind: "select", options: [["prefix", "prefix: paths starting with it"], ["exact", "exact: this path only"], ["regex", "regex: a regular expression"]] },
  { name: "target_type", label: "Target type", kind: "select", options: [["url", "url: an http(s) URL"], ["service", "service: an external service"], ["port", "port: a local port"], ["proxy", "proxy: another proxy's target"]] },
  { name: "target_value", label: "Target", required: true, placeholder: "http://127.0.0.1:8081", hint: "A URL, a service name, a port number or a proxy hostname." },
  { name: "priority", label: "Priority", kind: "number", min: 0, max: 1000, hint: "0-1000; higher is tried first (default 50)." },
  { name: "methods", label: "Methods", kind: "list", placeholder: "GET, POST", hint: "Empty: every method." },
  { name: "scope", label: "Applies to", kind: "select", options: [["global", "every proxy (admin only)"], ["proxy", "the proxies listed below"]] },
  { name: "proxy_hostnames", label: "Proxies", kind: "list", placeholder: "app.example.com" },
  { name: "description", label: "Description", wide: true },
  { name: "enabled", label: "Enabled", kind: "checkbox", value: true },
];

const AUTH_FIELDS = [
  { name: "auth_type", label: "Who may pass", kind: "select", options: ["none", "bearer", "admin", "oauth"] },
  { name: "override_proxy_auth", label: "Use this instead of the proxy's auth", kind: "checkbox" },
  { name: "oauth_scopes", label: "OAuth scopes required", kind: "list" },
  { name: "oauth_allowed_users", label: "OAuth users allowed", kind: "list", placeholder: "alice, *" },
];

function tester(prefill, proxies) {
  const datalist = h("datalist", { id: "route-test-hosts" }, proxies.map((p) => h("option", { value: p.hostname })));
  const result = h("div", { id: "route-test-result", "aria-live": "polite" });
  const f = form({
    id: "route-test",
    fields: [
      { name: "host", label: "Host", required: true, placeholder: "app.example.com", datalist: "route-test-hosts" },
      { name: "method", label: "Method", kind: "select", options: METHODS },
      { name: "path", label: "Path", required: true, placeholder: "/api/items?page=2", value: "/" },
      { name: "scheme", label: "Scheme", kind: "select", options: ["https", "http"] },
    ],
    values: prefill,
    submitLabel: "Which route wins?",
    onSubmit: async (body) => fill(result, outcome(await api.post(PATH + "test", body))),
  });
  return h("div", {}, datalist, f.node, result);
}

function outcome(answer) {
  const headline = {
    forward: answer.route ? "Forwarded by route " + answer.route.route_id : "Forwarded to the proxy's own target",
    redirect: "Redirected (" + answer.status + ") to HTTPS",
    acme_challenge: "Answered by the ACME challenge responder",
  }[answer.outcome] || "Refused with " + answer.status;
  const rows = [
    ["Outcome", badge(answer.outcome, answer.outcome === "forward" ? "ready" : answer.status >= 400 ? "failed" : "pending")],
    ["Proxy", answer.proxy || DASH],
    ["Canonical path", answer.path ? code(answer.path) : DASH],
    answer.upstream ? ["Sent to", code(answer.upstream)] : null,
    answer.location ? ["Location", code(answer.location)] : null,
    answer.reason ? ["Why", answer.reason] : null,
    answer.outcome === "forward" ? ["Auth", answer.auth ? answer.auth.auth_type + (answer.auth.auth_mode ? " / " + answer.auth.auth_mode : "") : "none (open)"] : null,
  ].filter(Boolean);
  const candidates = recordTable({
    caption: "Routes tried, in order",
    empty: "No route applies to this proxy.",
    columns: [
      ["Route", (c) => c.route_id],
      ["Priority", (c) => c.priority],
      ["Path", (c) => (c.route ? [code(c.route.path_pattern), " ", h("span", { class: "muted" }, c.route.match_type)] : DASH)],
      ["Methods", (c) => (c.route ? list(c.route.methods) : DASH)],
      ["Matches", (c) => (c.matches ? "yes" : "no")],
    ],
  });
  candidates.render(answer.candidates);
  return h("div", { class: "result result-" + answer.outcome },
    h("h4", {}, headline),
    h("dl", { class: "kv" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    answer.candidates.length ? [h("h4", {}, "Routes tried, in order (the first match wins)"), candidates] : null);
}

async function renderList(root, param, ctx) {
  const note = notice();
  let offset = 0;
  const prefill = {};
  if (param && param.startsWith("test")) {
    const query = new URLSearchParams(param.split("?")[1] || "");
    for (const [k, v] of query) prefill[k] = v;
  }
  const table = recordTable({
    caption: "Routes, in the order they are tried",
    empty: "No routes: every request goes to its proxy's target.",
    rowLabel: (r) => r.route_id,
    columns: [
      ["Route", (r) => h("a", { href: "#/routes/" + encodeURIComponent(r.route_id) }, r.route_id)],
      ["Priority", (r) => r.priority],
      ["Path", (r) => [code(r.path_pattern), " ", h("span", { class: "muted" }, r.match_type)]],
      ["Methods", (r) => (r.methods.length ? r.methods.join(", ") : "all")],
      ["Target", (r) => [h("span", { class: "muted" }, r.target_type + " "), code(r.target_value)]],
      ["Applies to", (r) => (r.scope === "proxy" ? list(r.proxy_hostnames) : "every proxy")],
      ["Auth", (r) => (r.auth ? r.auth.auth_type : DASH)],
      ["Enabled", (r) => yesno(r.enabled)],
    ],
    actions: (r) => [
      h("a", { class: "button", href: "#/routes/" + encodeURIComponent(r.route_id), "aria-label": "Edit route " + r.route_id }, "Edit"),
      action("Delete", "route " + r.route_id, () => remove(r.route_id, note, load), "danger"),
    ],
  });
  const pages = pager((at) => { offset = at; load(); });
  const load = () => loadInto(table, note, () => api.get(PATH, { limit: PAGE, offset }), pages, PAGE);
  const create = form({
    id: "route-create", submitLabel: "Add route",
    fields: [{ name: "route_id", label: "Route id", placeholder: "backend-api", hint: "Empty: generated." }, ...ROUTE_FIELDS],
    values: { scope: ctx.me.is_admin ? "global" : "proxy" },
    onSubmit: async (body) => {
      const created = await api.post(PATH, body);
      create.node.reset();
      create.set({ scope: ctx.me.is_admin ? "global" : "proxy" });
      note.show("Added route " + created.route_id + ".", "ok");
      await load();
    },
  });
  const proxies = await api.all("/proxy/targets/").catch(() => []);
  fill(root,
    heading("Routes", h("button", { type: "button", onclick: load }, "Refresh")),
    h("p", { class: "lead" }, "A route sends matching paths of its proxies to another target; higher priority is tried first."),
    section("Which route wins for this request?", tester(prefill, proxies)),
    note, table, pages,
    disclosure("Add a route", create.node, false));
  await load();
  if (prefill.host) root.querySelector("#route-test-path").focus();
}

async function remove(routeId, note, after) {
  const ok = await confirm({
    title: "Delete route " + routeId + "?",
    message: "Requests it takes go to their proxy's target (or the next matching route) from the next request on.",
    confirmLabel: "Delete " + routeId, danger: true,
  });
  if (ok) await attempt(note, () => api.del(PATH + api.seg(routeId)), "Deleted route " + routeId + ".", after);
}

async function renderEdit(root, routeId, ctx) {
  const note = notice();
  const path = PATH + api.seg(routeId);
  let route;
  try {
    route = await api.get(path);
  } catch (e) {
    if (e.status === 401) return;
    fill(root, heading("Route " + routeId), h("p", { class: "notice notice-error" }, explain(e)));
    return;
  }
  const edit = form({
    id: "route-edit", fields: ROUTE_FIELDS, values: route, sendEmpty: true, submitLabel: "Save route",
    onSubmit: async (body) => { route = await api.patch(path, body); edit.set(route); note.show("Route saved.", "ok"); },
  });
  const authForm = form({
    id: "route-auth", fields: AUTH_FIELDS, sendEmpty: true, submitLabel: "Save route auth",
    values: route.auth || { auth_type: "bearer" },
    extraButtons: h("button", { type: "button", onclick: () => attempt(note, () => api.del(path + "/auth"), "Route auth removed: the proxy's auth applies.") }, "Use the proxy's auth"),
    onSubmit: async (body) => { const answer = await api.put(path + "/auth", body); authForm.set(answer.auth); note.show("Route auth saved.", "ok"); },
  });
  fill(root,
    heading("Route " + routeId, h("a", { class: "button", href: "#/routes" }, "All routes"),
      action("Delete", "route " + routeId, () => remove(routeId, note, () => ctx.go("#/routes")), "danger")),
    note,
    section("Route", edit.node),
    section("Auth for this route", authForm.node));
}

export default {
  title: "Routes",
  render(root, param, ctx) {
    return param && !param.startsWith("test") ? renderEdit(root, param, ctx) : renderList(root, param, ctx);
  },
};
