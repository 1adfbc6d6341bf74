/* oauthproxy web UI: one page over the admin API, no framework, no build step.
 *
 * The API token lives in sessionStorage (this tab only) and goes out only as an
 * Authorization header to this origin: never in a cookie, never in a URL.  A
 * 401 from any call clears it and shows the sign-in form again.  Every value
 * from the API is inserted as text (textContent), never as HTML.
 */
"use strict";

(function () {
  const TOKEN_KEY = "oauthproxy.token";
  const PAGE_SIZE = 25;
  const TABS = ["proxies", "routes", "certificates", "services", "tokens", "health"];

  /* ---- DOM building: attributes and text only ---- */

  function h(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat(2)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const $ = (id) => document.getElementById(id);
  const dash = "\u2014";
  const text = (v) => (v === null || v === undefined || v === "" ? dash : String(v));
  const yesno = (v) => (v ? "yes" : "no");
  const list = (v) => (v && v.length ? v.join(", ") : dash);
  const code = (v) => h("code", { text: v });
  const badge = (v) => h("span", { class: "badge badge-" + v, text: v });

  function when(seconds) {
    if (seconds === null || seconds === undefined) return dash;
    const iso = new Date(seconds * 1000).toISOString();
    return h("time", { datetime: iso, class: "nowrap" }, iso.slice(0, 16).replace("T", " ") + " UTC");
  }

  function duration(seconds) {
    const s = Math.floor(seconds);
    const parts = [[Math.floor(s / 86400), "d"], [Math.floor((s % 86400) / 3600), "h"],
      [Math.floor((s % 3600) / 60), "min"], [s % 60, "s"]];
    const shown = parts.filter(([n]) => n > 0).slice(0, 2);
    return shown.length ? shown.map(([n, unit]) => n + " " + unit).join(" ") : "0 s";
  }

  /* ---- the token and the API ---- */

  const token = {
    get: () => sessionStorage.getItem(TOKEN_KEY),
    set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
    clear: () => sessionStorage.removeItem(TOKEN_KEY),
  };

  class ApiError extends Error {
    constructor(status, body) {
      super(body.detail || "HTTP " + status);
      this.status = status;
      this.code = body.error || "http_error";
      this.field = body.field || null;
      this.body = body;
    }
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    const value = token.get();
    if (value) headers.Authorization = "Bearer " + value;
    const init = { method, headers, credentials: "omit", cache: "no-store", redirect: "error" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, { error: "network", detail: "The API did not answer (" + e.message + ")." });
    }
    let data = null;
    if (response.status !== 204) {
      try { data = await response.json(); } catch (e) { data = null; }
    }
    if (response.status === 401) {
      signOut((data && data.detail) ? "The token was not accepted: " + data.detail : "The token was not accepted.");
      throw new ApiError(401, data || {});
    }
    if (!response.ok) {
      throw new ApiError(response.status, data || { detail: "HTTP " + response.status + " " + response.statusText });
    }
    return data;
  }

  /* ---- what each tab lists and creates ---- */

  const VIEWS = {
    proxies: {
      title: "Proxies", noun: "proxy", path: "/proxy/targets/", key: "hostname", deletable: true,
      columns: [
        ["Hostname", (p) => p.hostname],
        ["Target", (p) => code(p.target_url)],
        ["HTTPS", (p) => yesno(p.enable_https)],
        ["HTTP", (p) => yesno(p.enable_http)],
        ["Certificate", (p) => text(p.cert_name)],
        ["Routes", (p) => p.route_mode],
        ["Owner", (p) => p.owner],
        ["Updated", (p) => when(p.updated_at)],
      ],
      fields: [
        { name: "hostname", label: "Hostname", required: true, placeholder: "api.example.com" },
        { name: "target_url", label: "Target URL", required: true, placeholder: "http://127.0.0.1:8080" },
        { name: "cert_name", label: "Certificate name", hint: "Empty: any ready certificate for the hostname." },
        { name: "route_mode", label: "Routes", kind: "select", options: ["all", "selective", "none"] },
        { name: "enable_https", label: "Serve HTTPS", kind: "checkbox", checked: true },
        { name: "enable_http", label: "Serve HTTP", kind: "checkbox", checked: true },
        { name: "staging", label: "ACME staging", kind: "checkbox" },
      ],
    },
    routes: {
      title: "Routes", noun: "route", path: "/routes/", key: "route_id", deletable: true,
      columns: [
        ["Route", (r) => r.route_id],
        ["Path", (r) => [code(r.path_pattern), " ", h("span", { class: "muted", text: r.match_type })]],
        ["Methods", (r) => list(r.methods)],
        ["Target", (r) => [h("span", { class: "muted", text: r.target_type + " " }), code(r.target_value)]],
        ["Priority", (r) => r.priority],
        ["Scope", (r) => (r.scope === "proxy" ? list(r.proxy_hostnames) : "global")],
        ["Enabled", (r) => yesno(r.enabled)],
      ],
      fields: [
        { name: "path_pattern", label: "Path", required: true, placeholder: "/api/" },
        { name: "match_type", label: "Match", kind: "select", options: ["prefix", "exact", "regex"] },
        { name: "target_type", label: "Target type", kind: "select", options: ["url", "service", "port", "proxy"] },
        { name: "target_value", label: "Target", required: true, placeholder: "http://127.0.0.1:8081" },
        { name: "route_id", label: "Route id", hint: "Empty: generated." },
        { name: "priority", label: "Priority", kind: "number", min: 0, max: 1000, hint: "Higher is tried first." },
        { name: "methods", label: "Methods", kind: "list", placeholder: "GET, POST", hint: "Empty: every method." },
        { name: "scope", label: "Scope", kind: "select", options: ["global", "proxy"] },
        { name: "proxy_hostnames", label: "Proxy hostnames", kind: "list", hint: "For scope proxy, comma-separated." },
        { name: "description", label: "Description" },
        { name: "enabled", label: "Enabled", kind: "checkbox", checked: true },
      ],
    },
    certificates: {
      title: "Certificates", noun: "certificate", path: "/certificates/", key: "cert_name", renewable: true,
      columns: [
        ["Name", (c) => c.cert_name],
        ["Domains", (c) => list(c.domains)],
        ["Status", (c) => badge(c.status)],
        ["Expires", (c) => when(c.not_after)],
        ["Issuer", (c) => text(c.issuer)],
        ["Staging", (c) => yesno(c.staging)],
        ["Last error", (c) => (c.error ? h("span", { class: "error-text", text: c.error }) : dash)],
      ],
    },
    services: {
      title: "Services", noun: "service", path: "/services/external/", key: "name", deletable: true,
      columns: [
        ["Name", (s) => s.name],
        ["Target", (s) => code(s.target_url)],
        ["Description", (s) => text(s.description)],
        ["Owner", (s) => s.owner],
        ["Updated", (s) => when(s.updated_at)],
      ],
      fields: [
        { name: "name", label: "Name", required: true, placeholder: "backend-api" },
        { name: "target_url", label: "Target URL", required: true, placeholder: "http://127.0.0.1:8080" },
        { name: "description", label: "Description" },
      ],
    },
    tokens: {
      title: "Tokens", noun: "token", path: "/tokens/", key: "name",
      columns: [
        ["Name", (t) => t.name],
        ["Owner", (t) => t.owner_email],
        ["Admin", (t) => yesno(t.is_admin)],
        ["Created", (t) => when(t.created_at)],
        ["Created by", (t) => text(t.created_by)],
        ["Last used", (t) => when(t.last_used_at)],
      ],
    },
  };

  /* ---- list panels ---- */

  function notify(view, message, kind) {
    if (!view.dom) return; // signed out meanwhile
    view.dom.notice.className = "notice" + (kind ? " notice-" + kind : "");
    view.dom.notice.textContent = message || "";
  }

  function buildListPanel(name) {
    const view = VIEWS[name];
    const panel = $("panel-" + name);
    view.offset = 0;
    view.dom = {
      notice: h("p", { class: "notice", role: "status" }),
      table: h("table", { class: "records" }),
      pager: h("div", { class: "pager" }),
    };
    const parts = [
      h("div", { class: "panel-head" },
        h("h2", { text: view.title }),
        h("button", { type: "button", onclick: () => loadList(name) }, "Refresh")),
      view.dom.notice,
      h("div", { class: "table-wrap" }, view.dom.table),
      view.dom.pager,
    ];
    if (view.fields) parts.push(buildForm(name));
    panel.replaceChildren(...parts);
  }

  async function loadList(name) {
    const view = VIEWS[name];
    if (!view.dom) buildListPanel(name);
    const dom = view.dom;
    dom.table.setAttribute("aria-busy", "true");
    try {
      const page = await api("GET", view.path + "?limit=" + PAGE_SIZE + "&offset=" + view.offset);
      if (view.dom !== dom) return; // signed out (or rebuilt) while the call was out
      if (page.items.length === 0 && view.offset > 0) {
        view.offset = Math.max(0, view.offset - PAGE_SIZE);
        return loadList(name);
      }
      renderTable(name, page);
    } catch (e) {
      if (e.status === 401 || view.dom !== dom) return;
      const detail = e.status === 403 ? "This token may not list " + view.title.toLowerCase() + ": " : "";
      notify(view, detail + e.message, "error");
    } finally {
      dom.table.removeAttribute("aria-busy");
    }
  }

  function itemPath(view, item) {
    return view.path + encodeURIComponent(item[view.key]);
  }

  function actionsFor(name, item) {
    const view = VIEWS[name];
    const label = item[view.key];
    const buttons = [];
    if (view.renewable) {
      buttons.push(h("button", {
        type: "button", "aria-label": "Renew certificate " + label,
        onclick: () => act(name, "POST", itemPath(view, item) + "/renew", "Renewal of " + label + " requested."),
      }, "Renew"));
    }
    if (view.deletable) {
      buttons.push(h("button", {
        type: "button", class: "danger", "aria-label": "Delete " + view.noun + " " + label,
        onclick: () => {
          if (window.confirm("Delete " + view.noun + " " + label + "?")) {
            act(name, "DELETE", itemPath(view, item), "Deleted " + view.noun + " " + label + ".");
          }
        },
      }, "Delete"));
    }
    return buttons;
  }

  async function act(name, method, path, done) {
    const view = VIEWS[name];
    try {
      await api(method, path);
      notify(view, done, "ok");
      await loadList(name);
    } catch (e) {
      if (e.status !== 401) notify(view, e.message, "error");
    }
  }

  function renderTable(name, page) {
    const view = VIEWS[name];
    const actions = view.deletable || view.renewable;
    const width = view.columns.length + (actions ? 1 : 0);
    const rows = page.items.map((item) => h("tr", {},
      view.columns.map(([, cell], i) => h(i === 0 ? "th" : "td", i === 0 ? { scope: "row" } : {}, cell(item))),
      actions ? h("td", { class: "actions" }, actionsFor(name, item)) : null));
    if (rows.length === 0) {
      rows.push(h("tr", {}, h("td", { colspan: width, class: "empty" }, "No " + view.title.toLowerCase() + " yet.")));
    }
    view.dom.table.replaceChildren(
      h("caption", { class: "visually-hidden" }, view.title),
      h("thead", {}, h("tr", {},
        view.columns.map(([label]) => h("th", { scope: "col" }, label)),
        actions ? h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")) : null)),
      h("tbody", {}, rows),
    );
    const first = page.total === 0 ? 0 : page.offset + 1;
    const last = page.offset + page.items.length;
    view.dom.pager.replaceChildren(
      h("span", {}, first + "\u2013" + last + " of " + page.total),
      h("button", {
        type: "button", disabled: page.offset === 0,
        onclick: () => { view.offset = Math.max(0, page.offset - PAGE_SIZE); loadList(name); },
      }, "Previous"),
      h("button", {
        type: "button", disabled: page.next_offset === null,
        onclick: () => { view.offset = page.next_offset; loadList(name); },
      }, "Next"),
    );
  }

  /* ---- create forms: API errors next to the field they name ---- */

  function buildForm(name) {
    const view = VIEWS[name];
    const controls = {};
    const formError = h("p", { class: "error", role: "alert" });
    const fields = view.fields.map((f) => {
      const id = "f-" + name + "-" + f.name;
      const error = h("p", { class: "error", id: id + "-error" });
      const hint = f.hint ? h("p", { class: "hint", id: id + "-hint", text: f.hint }) : null;
      const described = [hint ? id + "-hint" : null, id + "-error"].filter(Boolean).join(" ");
      const common = { id, name: f.name, "aria-describedby": described };
      let input;
      if (f.kind === "select") {
        input = h("select", common, f.options.map((o) => h("option", { value: o }, o)));
      } else if (f.kind === "checkbox") {
        input = h("input", { ...common, type: "checkbox", checked: f.checked });
      } else {
        input = h("input", {
          ...common, type: f.kind === "number" ? "number" : "text", required: f.required,
          "aria-required": f.required ? "true" : null, placeholder: f.placeholder,
          min: f.min, max: f.max, autocomplete: "off", spellcheck: "false",
        });
      }
      const label = h("label", { for: id }, f.label, f.required ? h("span", { class: "req", "aria-hidden": "true" }, " *") : null);
      controls[f.name] = { f, input, error };
      return f.kind === "checkbox"
        ? h("div", { class: "field check" }, input, label, error)
        : h("div", { class: "field" }, label, input, hint, error);
    });
    const submit = h("button", { type: "submit", class: "primary" }, "Add " + view.noun);
    const form = h("form", { method: "post", novalidate: true, class: "create" },
      h("div", { class: "grid" }, fields), formError, submit);
    const box = h("details", { class: "create-box" }, h("summary", {}, "Add a " + view.noun), form);

    function clearErrors() {
      formError.textContent = "";
      for (const { input, error } of Object.values(controls)) {
        error.textContent = "";
        input.removeAttribute("aria-invalid");
      }
    }

    function showError(fieldName, message) {
      const control = controls[fieldName];
      if (!control) {
        formError.textContent = (fieldName ? fieldName + ": " : "") + message;
        return;
      }
      control.error.textContent = message;
      control.input.setAttribute("aria-invalid", "true");
      control.input.focus();
    }

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors();
      const body = {};
      for (const { f, input } of Object.values(controls)) {
        const raw = f.kind === "checkbox" ? input.checked : input.value.trim();
        if (f.kind === "checkbox" || f.kind === "select") body[f.name] = raw;
        else if (raw === "" && f.required) return showError(f.name, f.label + " is required.");
        else if (raw === "") continue;
        else if (f.kind === "number") body[f.name] = Number(raw);
        else if (f.kind === "list") body[f.name] = raw.split(/[\s,]+/).filter(Boolean);
        else body[f.name] = raw;
      }
      submit.disabled = true;
      try {
        const created = await api("POST", view.path, body);
        form.reset();
        notify(view, "Added " + view.noun + " " + created[view.key] + ".", "ok");
        await loadList(name);
      } catch (e) {
        if (e.status === 401) return;
        // field is a JSON pointer into the body ("/hostname", "/methods/0") or a name
        showError(e.field ? String(e.field).replace(/^\//, "").split("/")[0] : null, e.message);
      } finally {
        submit.disabled = false;
      }
    });
    return box;
  }

  /* ---- health ---- */

  async function loadHealth() {
    const panel = $("panel-health");
    let health;
    try {
      health = await api("GET", "/health");
    } catch (e) {
      if (e.status === 401) return;
      if (!e.body || !e.body.status) {
        panel.replaceChildren(h("h2", {}, "Health"), h("p", { class: "notice notice-error", text: e.message }));
        return;
      }
      health = e.body;
    }
    const counts = await Promise.all([
      ["Proxies", "/proxy/targets/"], ["Routes", "/routes/"], ["Services", "/services/external/"],
      ["Certificates ready", "/certificates/?status=ready&"], ["Certificates pending", "/certificates/?status=pending&"],
      ["Certificates failed", "/certificates/?status=failed&"],
    ].map(async ([label, path]) => {
      try {
        const page = await api("GET", path + (path.endsWith("&") ? "" : "?") + "limit=1");
        return [label, page.total];
      } catch (e) {
        return [label, dash];
      }
    }));
    if (!token.get()) return; // signed out while the counts were fetched
    const item = (term, value) => [h("dt", {}, term), h("dd", {}, value)];
    const listeners = Object.entries(health.listeners || {});
    panel.replaceChildren(
      h("div", { class: "panel-head" },
        h("h2", {}, "Health"),
        h("button", { type: "button", onclick: loadHealth }, "Refresh")),
      h("div", { class: "cards" },
        h("dl", { class: "card" },
          item("Status", badge(health.status)),
          item("Redis", health.redis),
          item("Event stream", health.events_connected ? "connected" : "disconnected"),
          item("Version", health.version),
          item("Uptime", duration(health.uptime || 0))),
        h("dl", { class: "card" }, counts.map(([label, total]) => item(label, String(total))))),
      h("h3", {}, "Listeners"),
      h("div", { class: "table-wrap" }, h("table", { class: "records" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Listener"), h("th", { scope: "col" }, "Endpoint"))),
        h("tbody", {}, listeners.length
          ? listeners.map(([key, value]) => h("tr", {}, h("th", { scope: "row" }, key), h("td", {}, code(value))))
          : h("tr", {}, h("td", { colspan: 2, class: "empty" }, "None reported."))))),
    );
  }

  /* ---- tabs, sign in and out ---- */

  function tabButtons() {
    return Array.from(document.querySelectorAll("[role=tab]"));
  }

  function selectTab(name, focus) {
    for (const button of tabButtons()) {
      const selected = button.dataset.tab === name;
      button.setAttribute("aria-selected", selected ? "true" : "false");
      button.tabIndex = selected ? 0 : -1;
      $(button.getAttribute("aria-controls")).hidden = !selected;
      if (selected && focus) button.focus();
    }
    history.replaceState(null, "", location.pathname + "#" + name);
    if (name === "health") loadHealth();
    else loadList(name);
  }

  function onTabKey(event) {
    const names = tabButtons().map((b) => b.dataset.tab);
    const at = names.indexOf(event.target.dataset.tab);
    const to = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: names.length - 1 }[event.key];
    if (to === undefined || at < 0) return;
    event.preventDefault();
    selectTab(names[(to + names.length) % names.length], true);
  }

  function signOut(message, quiet) {
    token.clear();
    for (const view of Object.values(VIEWS)) view.dom = null;
    for (const name of TABS) $("panel-" + name).replaceChildren();
    $("console").hidden = true;
    $("sign-out").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    $("login-error").className = quiet ? "hint" : "error";
    $("token-input").value = "";
    $("token-input").focus();
  }

  async function signIn(value) {
    token.set(value);
    $("status").textContent = "Checking the token\u2026";
    try {
      // any authenticated call tells a valid token from an unknown one
      await api("GET", "/proxy/targets/?limit=1");
    } catch (e) {
      $("status").textContent = "";
      if (e.status === 401) return;
    }
    $("status").textContent = "";
    $("login").hidden = true;
    $("login-error").textContent = "";
    $("console").hidden = false;
    $("sign-out").hidden = false;
    const wanted = location.hash.slice(1);
    selectTab(TABS.includes(wanted) ? wanted : "proxies", false);
  }

  function start() {
    $("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("token-input").value.trim();
      $("token-input").value = "";
      if (!value) {
        $("login-error").textContent = "Paste a token first.";
        $("login-error").className = "error";
        return;
      }
      signIn(value);
    });
    $("sign-out").addEventListener("click", () => signOut("Signed out.", true));
    $("tabs").addEventListener("keydown", onTabKey);
    for (const button of tabButtons()) {
      button.addEventListener("click", () => selectTab(button.dataset.tab, false));
    }
    const saved = token.get();
    if (saved) signIn(saved);
    else signOut("", true);
  }

  start();
})();
