/* Proxies: the list, creating one, deleting one with what goes along, and the
 * edit page (#/proxies/HOSTNAME) with every setting: target and transport,
 * headers and timeouts, certificate, auth, OAuth resource / server / GitHub app,
 * and which routes apply. */

import * as api from "../api.js";
import { h, fill, code, text, yesno, when, badge, expiry, covers } from "../dom.js";
import { form } from "../forms.js";
import { heading, notice, section, disclosure, confirm, recordTable, pager, action, explain, loadInto, attempt } from "../ui.js";

const PATH = "/proxy/targets/";
const PAGE = 25;

const CREATE_FIELDS = [
  { name: "hostname", label: "Hostname", required: true, placeholder: "app.example.com" },
  { name: "target_url", label: "Target URL", required: true, placeholder: "http://127.0.0.1:8080" },
  { name: "enable_https", label: "Serve HTTPS (orders a certificate)", kind: "checkbox", value: true },
  { name: "enable_http", label: "Serve plain HTTP", kind: "checkbox", value: true },
  { name: "staging", label: "Use the ACME staging directory", kind: "checkbox", value: false },
];

const SETTINGS_FIELDS = [
  { legend: "Target" },
  { name: "target_url", label: "Target URL", required: true, wide: true },
  { name: "enable_https", label: "Serve HTTPS", kind: "checkbox" },
  { name: "enable_http", label: "Serve plain HTTP (redirects when HTTPS is on)", kind: "checkbox" },
  { name: "preserve_host_header", label: "Send the client's Host upstream", kind: "checkbox" },
  { name: "verify_upstream_tls", label: "Verify the upstream's certificate", kind: "checkbox" },
  { name: "staging", label: "Order certificates from the ACME staging directory", kind: "checkbox" },
  { legend: "Timeouts" },
  { name: "connect_timeout", label: "Connect timeout (seconds)", kind: "number", min: 0.1, max: 300, step: "any" },
  { name: "read_timeout", label: "Read timeout (seconds)", kind: "number", min: 0.1, max: 3600, step: "any" },
  { legend: "Headers" },
  { name: "custom_request_headers", label: "Request headers added upstream", kind: "headers", hint: "One per line: Name: value" },
  { name: "custom_response_headers", label: "Response headers added for clients", kind: "headers", hint: "One per line: Name: value" },
  { legend: "Upstream TLS" },
  { name: "upstream_ca_pem", label: "CA certificates trusted for the upstream (PEM)", kind: "textarea", rows: 4, nullable: true, hint: "Empty: the system's CAs." },
  { legend: "Routes" },
  { name: "route_mode", label: "Which routes apply", kind: "select", options: [["all", "all (except those disabled below)"], ["selective", "selective (only those enabled below)"], ["none", "none (always the target URL)"]] },
  { name: "enabled_routes", label: "Enabled routes (selective mode)", kind: "list", placeholder: "route ids" },
  { name: "disabled_routes", label: "Disabled routes (all mode)", kind: "list", placeholder: "route ids" },
];

const AUTH_FIELDS = [
  { name: "auth_type", label: "Who may pass", kind: "select", options: [["oauth", "oauth: an OAuth access token (GitHub login)"], ["bearer", "bearer: any API token"], ["admin", "admin: the admin token"], ["none", "none"]] },
  { name: "auth_mode", label: "Without a token", kind: "select", options: [["forward", "forward: 401 with discovery (APIs, MCP)"], ["redirect", "redirect: to the login (browsers)"], ["passthrough", "passthrough: let it through, user header if any"]] },
  { name: "auth_proxy", label: "Auth host", placeholder: "auth.example.com", nullable: true, hint: "The proxy serving the authorization server." },
  { name: "required_users", label: "Allowed users", kind: "list", placeholder: "alice, org:acme, team:acme/ops, *" },
  { name: "required_scopes", label: "Required scopes", kind: "list" },
  { name: "allowed_audiences", label: "Accepted audiences", kind: "list", hint: "Empty: this proxy's resource URL." },
  { name: "excluded_paths", label: "Paths without auth", kind: "list", placeholder: "/health, /public/*" },
];

const RESOURCE_FIELDS = [
  { name: "resource", label: "Resource URI", nullable: true, hint: "Empty: https://HOSTNAME.", wide: true },
  { name: "authorization_servers", label: "Authorization servers", kind: "list", wide: true },
  { name: "scopes_supported", label: "Scopes supported", kind: "list" },
  { name: "resource_name", label: "Resource name", nullable: true },
  { name: "resource_documentation", label: "Documentation URL", nullable: true },
  { name: "custom_metadata", label: "Extra fields (JSON object)", kind: "json" },
];

const SERVER_FIELDS = [
  { name: "issuer", label: "Issuer", nullable: true, hint: "Empty: the daemon's issuer.", wide: true },
  { name: "scopes_supported", label: "Scopes supported", kind: "list" },
  { name: "grant_types_supported", label: "Grant types", kind: "list", placeholder: "authorization_code, refresh_token" },
  { name: "response_types_supported", label: "Response types", kind: "list", placeholder: "code" },
  { name: "token_endpoint_auth_methods_supported", label: "Client auth methods", kind: "list", placeholder: "none, client_secret_basic, client_secret_post" },
  { name: "claims_supported", label: "Claims", kind: "list" },
  { name: "override_defaults", label: "These lists replace the server's (else scopes and claims add)", kind: "checkbox" },
  { name: "custom_metadata", label: "Extra fields (JSON object)", kind: "json" },
];

const GITHUB_FIELDS = [
  { name: "client_id", label: "GitHub client ID", required: true },
  { name: "client_secret", label: "GitHub client secret", kind: "password", hint: "Write-only. Empty: keep the stored one." },
];

/** Delete a proxy after saying what goes along; resolves true when deleted. */
export async function deleteProxy(hostname, say) {
  let found;
  try {
    found = await api.get(PATH + api.seg(hostname) + "/dependents");
  } catch (e) {
    if (e.status !== 401) say(explain(e), "error");
    return false;
  }
  const routes = found.routes.map((r) => (r.action === "delete"
    ? "route " + r.route_id + " (scoped to this proxy only) is deleted"
    : "route " + r.route_id + " stays for its other proxies"));
  const certs = found.certificates.map((c) => (c.action === "delete"
    ? "certificate " + c.cert_name + " (" + c.reason + ") is deleted"
    : "certificate " + c.cert_name + " stays: " + c.reason));
  const options = [];
  if (found.routes.some((r) => r.action === "delete" || r.action === "unscope")) {
    options.push({ name: "delete_routes", label: "Also delete or unscope its routes", checked: true });
  }
  if (found.certificates.some((c) => c.action === "delete")) {
    options.push({ name: "delete_certificates", label: "Also delete its certificate", checked: true });
  }
  const answer = await confirm({
    title: "Delete proxy " + hostname + "?",
    message: hostname + " answers 404 from the next request on." +
      (routes.length || certs.length ? " With it:" : " Nothing else goes with it."),
    details: [...routes, ...certs], options, confirmLabel: "Delete " + hostname, danger: true,
  });
  if (!answer) return false;
  try {
    await api.del(PATH + api.seg(hostname), {
      delete_routes: answer.delete_routes ? "true" : "", delete_certificates: answer.delete_certificates ? "true" : "",
    });
  } catch (e) {
    if (e.status !== 401) say(explain(e), "error");
    return false;
  }
  say("Deleted proxy " + hostname + ".", "ok");
  return true;
}

async function renderList(root, ctx) {
  const note = notice();
  let offset = 0;
  let certs = {};
  const table = recordTable({
    caption: "Proxies",
    empty: "No proxies yet: add one below.",
    rowLabel: (p) => p.hostname,
    columns: [
      ["Hostname", (p) => h("a", { href: "#/proxies/" + encodeURIComponent(p.hostname) }, p.hostname)],
      ["Target", (p) => code(p.target_url)],
      ["Serves", (p) => [p.enable_https ? "HTTPS" : null, p.enable_http ? "HTTP" : null].filter(Boolean).join(" + ")],
      ["Certificate", (p) => certCell(p, certs)],
      ["Auth", (p) => (p.auth ? p.auth.auth_type + " / " + p.auth.auth_mode : "open")],
      ["Owner", (p) => p.owner],
      ["Updated", (p) => when(p.updated_at)],
    ],
    actions: (p) => [
      h("a", { class: "button", href: "#/proxies/" + encodeURIComponent(p.hostname), "aria-label": "Edit proxy " + p.hostname }, "Edit"),
      action("Delete", "proxy " + p.hostname, async () => {
        if (await deleteProxy(p.hostname, note.show)) load();
      }, "danger"),
    ],
  });
  const pages = pager((at) => { offset = at; load(); });
  const load = () => loadInto(table, note, async () => {
    const [page, certificates] = await Promise.all([
      api.get(PATH, { limit: PAGE, offset }), api.all("/certificates/").catch(() => []),
    ]);
    certs = Object.fromEntries(certificates.map((c) => [c.cert_name, c]));
    certs.__list = certificates;
    return page;
  }, pages, PAGE);
  const create = form({
    id: "proxy-create",
    fields: CREATE_FIELDS,
    submitLabel: "Add proxy",
    onSubmit: async (body) => {
      const created = await api.post(PATH, body);
      create.node.reset();
      create.set({});
      let message = "Added proxy " + created.hostname + ".";
      if (created.enable_https) {
        message += " Its certificate is being ordered; until it is ready the daemon serves a self-signed" +
          " fallback certificate (browsers warn). For a local trial without a public name, turn HTTPS off.";
      }
      note.show(message, "ok");
      await load();
    },
  });
  fill(root,
    heading("Proxies", h("button", { type: "button", onclick: load }, "Refresh")),
    h("p", { class: "lead" }, "A proxy sends the requests for its hostname to its target URL (unless a route takes them)."),
    note, table, pages,
    disclosure("Add a proxy", create.node, false));
  await load();
}

function certCell(p, certs) {
  if (!p.enable_https) return h("span", { class: "muted" }, "HTTP only");
  const list = certs.__list || [];
  const cert = p.cert_name ? certs[p.cert_name] : list.find((c) => covers(c.domains, p.hostname));
  if (!cert) return p.cert_name ? text(p.cert_name) : h("span", { class: "muted" }, "fallback (none yet)");
  return h("a", { href: "#/certificates/" + encodeURIComponent(cert.cert_name) },
    cert.status === "ready" ? expiry(cert.not_after) : badge(cert.status));
}

async function renderEdit(root, hostname, ctx) {
  const note = notice();
  const path = PATH + api.seg(hostname);
  // everything the forms show is loaded before they are drawn: an answer arriving
  // later would overwrite what the operator has typed meanwhile
  const optional = (sub) => api.get(path + "/" + sub).catch((e) => { if (e.status === 401) throw e; return {}; });
  let proxy;
  let loaded;
  try {
    [proxy, ...loaded] = await Promise.all([api.get(path), optional("resource"), optional("oauth-server"), optional("github-oauth")]);
  } catch (e) {
    if (e.status === 401) return;
    fill(root, heading("Proxy " + hostname), h("p", { class: "notice notice-error" }, explain(e)),
      h("p", {}, h("a", { href: "#/proxies" }, "Back to the proxies")));
    return;
  }
  const saved = (what) => note.show(what + " saved.", "ok");
  const settings = form({
    id: "proxy-settings", fields: SETTINGS_FIELDS, values: proxy, sendEmpty: true, submitLabel: "Save settings",
    onSubmit: async (body) => { proxy = await api.patch(path, body); settings.set(proxy); saved("Settings"); },
  });

  // certificate: attach one covering the hostname, or detach
  const certBox = h("div");
  async function renderCert() {
    const covering = await api.all("/certificates/", { covers: hostname }).catch(() => []);
    const select = h("select", { id: "proxy-cert-select", "aria-label": "Certificate to attach" },
      covering.map((c) => h("option", { value: c.cert_name }, c.cert_name + " (" + c.status + ")")));
    const current = proxy.cert_name ? covering.find((c) => c.cert_name === proxy.cert_name) : null;
    fill(certBox,
      h("p", {}, proxy.cert_name
        ? ["Attached: ", h("a", { href: "#/certificates/" + encodeURIComponent(proxy.cert_name) }, proxy.cert_name), " ", current ? expiry(current.not_after) : null]
        : "No certificate attached: any ready certificate covering " + hostname + " is served (the automatic one, named proxy-…)."),
      covering.length ? h("div", { class: "inline" }, h("label", { for: "proxy-cert-select" }, "Certificate"), select,
        h("button", { type: "button", onclick: () => attempt(note, async () => { proxy = await api.post(path + "/cert", { cert_name: select.value }); }, "Attached " + select.value + ".", renderCert) }, "Attach"))
        : h("p", { class: "muted" }, "No certificate covers this hostname yet."),
      proxy.cert_name
        ? h("button", { type: "button", onclick: () => attempt(note, async () => { proxy = await api.del(path + "/cert"); }, "Detached the certificate.", renderCert) }, "Detach")
        : null);
  }

  const authForm = form({
    id: "proxy-auth", fields: AUTH_FIELDS, sendEmpty: true, submitLabel: "Save auth",
    values: proxy.auth || { auth_type: "oauth", auth_mode: "forward" },
    extraButtons: h("button", { type: "button", onclick: () => attempt(note, () => api.del(path + "/auth"), "Auth removed: the proxy is open.", () => authForm.set({ auth_type: "oauth", auth_mode: "forward" })) }, "Remove auth"),
    onSubmit: async (body) => { const answer = await api.post(path + "/auth", body); authForm.set(answer.auth); saved("Auth"); },
  });

  const [resource, server, github] = loaded;
  const oauthPart = (sub, fields, values, label, key) => {
    const part = form({
      id: "proxy-" + sub, fields, values, sendEmpty: true, submitLabel: "Save " + label,
      extraButtons: h("button", { type: "button", onclick: () => attempt(note, () => api.del(path + "/" + sub), label + " back to the defaults.", () => { part.node.reset(); part.set({}); }) }, "Use the defaults"),
      onSubmit: async (body) => { const answer = await api.post(path + "/" + sub, body); part.set(answer[key] || {}); saved(label); },
    });
    return part;
  };
  const resourceForm = oauthPart("resource", RESOURCE_FIELDS, resource.resource || {}, "Protected resource metadata", "resource");
  const serverForm = oauthPart("oauth-server", SERVER_FIELDS, server.oauth_server || {}, "Authorization server metadata", "oauth_server");
  const githubState = h("p", { class: "muted" }, github.client_id
    ? "Client " + github.client_id + (github.has_secret ? ", secret stored." : ".")
    : "The global GitHub app is used.");
  const githubForm = form({
    id: "proxy-github", fields: GITHUB_FIELDS, values: { client_id: github.client_id || "" }, submitLabel: "Save GitHub app",
    extraButtons: h("button", { type: "button", onclick: () => attempt(note, () => api.del(path + "/github-oauth"), null, () => { githubForm.node.reset(); githubState.textContent = "The global GitHub app is used."; }) }, "Use the global app"),
    onSubmit: async (body) => {
      const answer = await api.post(path + "/github-oauth", body);
      githubState.textContent = "Client " + answer.client_id + (answer.has_secret ? ", secret stored." : ".");
      saved("GitHub app");
    },
  });

  const routesBox = h("div");
  async function renderRoutes() {
    let answer;
    let all;
    try {
      [answer, all] = await Promise.all([api.get(path + "/routes"), api.all("/routes/")]);
    } catch (e) { return; }
    const applied = new Set(answer.applied_routes);
    const rows = all
      .filter((r) => r.scope === "global" || r.proxy_hostnames.includes(hostname))
      .map((r) => ({ ...r, applies: applied.has(r.route_id) }));
    const table = recordTable({
      caption: "Routes applying to " + hostname,
      empty: "No route applies: every request goes to the target URL.",
      columns: [
        ["Route", (r) => r.route_id],
        ["Path", (r) => code(r.path_pattern)],
        ["Target", (r) => r.target_type + " " + r.target_value],
        ["Priority", (r) => r.priority],
        ["Applies", (r) => yesno(r.applies)],
      ],
      actions: (r) => [
        action(r.applies ? "Disable" : "Enable", "route " + r.route_id + " for " + hostname, () => attempt(note, async () => {
          await api.post(path + "/routes/" + api.seg(r.route_id) + (r.applies ? "/disable" : "/enable"));
          proxy = await api.get(path);
          settings.set(proxy);
        }, null, renderRoutes)),
      ],
    });
    table.render(rows);
    fill(routesBox, h("p", { class: "muted" }, "Route mode: " + answer.route_mode + ". ",
      h("a", { href: "#/routes/test?host=" + encodeURIComponent(hostname) }, "Which route wins for a request?")), table);
  }

  fill(root,
    heading("Proxy " + proxy.hostname,
      h("a", { class: "button", href: "#/proxies" }, "All proxies"),
      action("Delete", "proxy " + proxy.hostname, async () => {
        if (await deleteProxy(proxy.hostname, note.show)) ctx.go("#/proxies");
      }, "danger")),
    h("p", { class: "muted" }, "Owner ", proxy.owner, ", created ", when(proxy.created_at), ", updated ", when(proxy.updated_at), "."),
    note,
    section("Settings", settings.node),
    section("Certificate", certBox),
    section("Authentication", h("p", { class: "lead" }, proxy.auth ? "Requests need: " + proxy.auth.auth_type + "." : "Open: no authentication."), authForm.node),
    section("OAuth protected resource (RFC 9728)", resourceForm.node),
    section("OAuth authorization server metadata (RFC 8414)", serverForm.node),
    section("GitHub OAuth app for this proxy", githubState, githubForm.node),
    section("Routes", routesBox));
  await Promise.all([renderCert(), renderRoutes()]);
}

export default {
  title: "Proxies",
  render(root, param, ctx) {
    return param ? renderEdit(root, param, ctx) : renderList(root, ctx);
  },
};
