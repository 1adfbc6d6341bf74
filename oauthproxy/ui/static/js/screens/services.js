/* Services: Docker services (state, ports, start/stop/restart, logs with follow,
 * stats, ports, a proxy, cleanup; #/services/NAME for one) and external services
 * (named URLs that routes target by name). */

import * as api from "../api.js";
import { h, fill, code, text, when, badge, list, DASH } from "../dom.js";
import { form } from "../forms.js";
import { heading, notice, section, disclosure, confirm, recordTable, action, loadInto, attempt, explain } from "../ui.js";

const EXTERNAL = "/services/external/";
const DOCKER = "/services/";
const LOG_LINES = 200;
const FOLLOW_KEEP = 2000;

const DOCKER_FIELDS = [
  { name: "name", label: "Name", required: true, placeholder: "my-app", hint: "A DNS label: lower-case letters, digits and '-'." },
  { name: "image", label: "Image", required: true, placeholder: "nginx:alpine" },
  { name: "internal_port", label: "Container port", kind: "number", min: 1, max: 65535, placeholder: "8080", hint: "Where proxies and routes reach it." },
  { name: "host_port", label: "Host port", kind: "number", min: 0, max: 65535, hint: "Publish the container port here; 0 = pick a free one; empty = not published." },
  { name: "bind", label: "Bind address", placeholder: "127.0.0.1", hint: "Empty: 127.0.0.1 (this host only)." },
  { name: "network_mode", label: "Network", kind: "select", options: [["bridge", "bridge (default)"], ["host", "host (if the configuration allows it)"], ["none", "none"]] },
  { name: "command", label: "Command", kind: "list", placeholder: "httpd -f -p 8080", hint: "Empty: the image's own. Words are split at spaces (no shell)." },
  { name: "environment", label: "Environment", kind: "env", hint: "One per line: NAME=value" },
  { name: "memory_limit", label: "Memory limit", placeholder: "512m" },
  { name: "auto_proxy", label: "Also create the proxy NAME.BASE_DOMAIN", kind: "checkbox" },
];

const UPDATE_FIELDS = [
  { name: "image", label: "Image", required: true },
  { name: "internal_port", label: "Container port", kind: "number", min: 1, max: 65535, nullable: true },
  { name: "environment", label: "Environment", kind: "env", hint: "One per line: NAME=value" },
  { name: "memory_limit", label: "Memory limit", placeholder: "512m" },
  { name: "cpu_limit", label: "CPU limit (cores)", kind: "number", min: 0.01, step: "any" },
  { name: "restart_policy", label: "Restart policy", kind: "select", options: ["unless-stopped", "always", "on-failure", "no"] },
];

const PORT_FIELDS = [
  { name: "name", label: "Port name", required: true, placeholder: "http" },
  { name: "container", label: "Container port", kind: "number", required: true, min: 1, max: 65535 },
  { name: "host", label: "Host port", kind: "number", min: 0, max: 65535, hint: "0 or empty: pick a free one." },
  { name: "bind", label: "Bind address", placeholder: "127.0.0.1" },
  { name: "allowed_networks", label: "Allowed client networks", kind: "list", placeholder: "10.0.0.0/8", hint: "Empty: anyone who reaches the bind address." },
  { name: "source_token", label: "Access token", kind: "password", hint: "Clients must send it (HTTP ports); at least 16 characters." },
];

function stateBadge(s) {
  const kind = { running: "ready", exited: "failed", dead: "failed", missing: "failed", restarting: "pending", created: "pending", paused: "pending" }[s.state] || "pending";
  return [badge(s.state, kind), s.health ? [" ", badge(s.health, s.health === "healthy" ? "ready" : s.health === "unhealthy" ? "failed" : "pending")] : null,
    s.phase !== "ready" ? [" ", h("span", { class: "muted" }, s.phase + "\u2026")] : null];
}

function portsCell(s) {
  if (!s.ports.length) return DASH;
  return s.ports.map((p) => p.bind + ":" + p.host + " \u2192 " + p.container + "/" + p.protocol + (p.token || p.allowed_networks.length ? " (guarded)" : "")).join(", ");
}

function lifecycle(s, note, after) {
  const path = DOCKER + api.seg(s.name);
  const run = (verb, done) => action(verb[0].toUpperCase() + verb.slice(1), "service " + s.name, () => attempt(note, () => api.post(path + "/" + verb), done, after));
  return [
    s.desired_state === "running" ? run("stop", "Stopped " + s.name + ".") : run("start", "Started " + s.name + "."),
    run("restart", "Restarted " + s.name + "."),
  ];
}

async function deleteService(s, note, after) {
  const ok = await confirm({
    title: "Delete service " + s.name + "?",
    message: "Its container is stopped and removed, and its host ports are released." + (s.proxies.length ? " Its proxies:" : ""),
    details: s.proxies.map((p) => "proxy " + p + " stays unless deleted too"),
    options: s.proxies.length ? [{ name: "delete_proxies", label: "Also delete its proxies", checked: true }] : [],
    confirmLabel: "Delete " + s.name, danger: true,
  });
  if (!ok) return;
  // force: the confirmation is the operator's consent to stop a running container
  const params = { force: "true", delete_proxy: ok.delete_proxies ? "true" : "" };
  await attempt(note, () => api.del(DOCKER + api.seg(s.name), params), "Deleted service " + s.name + ".", after);
}

function dockerServices(note) {
  const box = h("div", { id: "docker-services" });
  const table = recordTable({
    caption: "Docker services",
    empty: "No Docker services yet.",
    rowLabel: (s) => s.name,
    columns: [
      ["Name", (s) => h("a", { href: "#/services/" + encodeURIComponent(s.name) }, s.name)],
      ["Image", (s) => code(s.image || (s.build ? "(built)" : DASH))],
      ["State", stateBadge],
      ["Ports", portsCell],
      ["Proxies", (s) => list(s.proxies)],
      ["Owner", (s) => s.owner],
    ],
    actions: (s) => [...lifecycle(s, note, load), action("Delete", "service " + s.name, () => deleteService(s, note, load), "danger")],
  });
  const unavailable = h("p", { class: "notice" });
  async function load() {
    try {
      table.render(await api.all(DOCKER));
      fill(box, table, createBox);
    } catch (e) {
      if (e.status === 401) return;
      // no Docker support in this daemon (404), or Docker unreachable (503): say so
      unavailable.className = "notice" + (e.status === 503 ? " notice-error" : "");
      unavailable.textContent = e.status === 404 ? "This daemon does not manage Docker services." : explain(e);
      fill(box, unavailable);
    }
  }
  const create = form({
    id: "docker-create", fields: DOCKER_FIELDS, submitLabel: "Create and start",
    onSubmit: async (body) => {
      const sent = { name: body.name, image: body.image, auto_proxy: body.auto_proxy };
      for (const key of ["internal_port", "network_mode", "command", "environment", "memory_limit"]) if (body[key] !== undefined) sent[key] = body[key];
      if (body.host_port !== undefined) {
        if (body.internal_port === undefined) throw Object.assign(new Error("Container port is needed to publish a host port"), { field: "/internal_port" });
        sent.ports = [{ name: "main", container: body.internal_port, host: body.host_port, ...(body.bind ? { bind: body.bind } : {}) }];
      }
      const made = await api.post(DOCKER, sent);
      create.node.reset();
      note.show("Created service " + made.name + " (" + made.state + ").", "ok");
      await load();
    },
  });
  const createBox = disclosure("Add a Docker service", create.node, false);
  box.load = load;
  return box;
}

async function renderDocker(root, name, ctx) {
  const note = notice();
  const path = DOCKER + api.seg(name);
  const infoBox = h("div");
  const portsBox = h("div");
  const statsBox = h("div", { "aria-live": "polite" });
  const logsView = h("pre", { class: "logs", id: "service-logs", tabindex: "0", "aria-label": "Output of " + name });
  let controller = null;
  let service;
  async function load() {
    try {
      service = await api.get(path);
    } catch (e) {
      if (e.status !== 401) note.show(explain(e), "error");
      return;
    }
    const rows = [
      ["State", stateBadge(service)], ["Wanted", service.desired_state], ["Image", code(service.image || DASH)],
      ["Address", service.address ? code(service.address) : DASH], ["Container", service.container_id ? code(service.container_id.slice(0, 12)) : DASH],
      ["Started", when(service.started_at)], ["Exit code", text(service.exit_code)], ["Proxies", list(service.proxies)],
      ["Memory limit", text(service.memory_limit)], ["CPU limit", text(service.cpu_limit)], ["Owner", service.owner], ["Updated", when(service.updated_at)],
    ];
    fill(infoBox, h("dl", { class: "kv" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])));
    fill(controls, lifecycle(service, note, load),
      action("Delete", "service " + name, () => deleteService(service, note, () => ctx.go("#/services")), "danger"));
    const ports = recordTable({
      caption: "Ports of " + name,
      empty: "No published ports.",
      columns: [
        ["Port", (p) => p.name], ["Host", (p) => p.bind + ":" + p.host], ["Container", (p) => p.container + "/" + p.protocol],
        ["Served by", (p) => p.served_by], ["Access", (p) => [p.allowed_networks.length ? "from " + p.allowed_networks.join(", ") : "anyone", p.token ? ", token" : ""]],
      ],
      actions: (p) => action("Remove", "port " + p.name, () => attempt(note, () => api.del(path + "/ports/" + api.seg(p.name)), "Removed port " + p.name + ".", load), "danger"),
    });
    ports.render(service.ports);
    fill(portsBox, ports);
  }
  const update = form({
    id: "docker-update", fields: UPDATE_FIELDS, sendEmpty: true, submitLabel: "Save and recreate",
    onSubmit: async (body) => { service = await api.patch(path, body); note.show("Saved: the container was recreated.", "ok"); await load(); update.set(service); },
  });
  const addPort = form({
    id: "docker-port", fields: PORT_FIELDS, submitLabel: "Add port",
    onSubmit: async (body) => { const added = await api.post(path + "/ports", body); addPort.node.reset(); note.show("Added port " + added.name + " on " + added.bind + ":" + added.host + ".", "ok"); await load(); },
  });
  async function tail() {
    try {
      const answer = await api.get(path + "/logs", { lines: LOG_LINES, timestamps: "true" });
      logsView.textContent = answer.lines.join("\n");
    } catch (e) {
      if (e.status !== 401) logsView.textContent = explain(e);
    }
  }
  const followButton = h("button", { type: "button", id: "service-follow", "aria-pressed": "false" }, "Follow");
  followButton.addEventListener("click", async () => {
    if (controller) { controller.abort(); return; }
    controller = new AbortController();
    followButton.setAttribute("aria-pressed", "true");
    followButton.textContent = "Stop following";
    logsView.textContent = "";
    try {
      await api.stream(path + "/logs/follow?lines=50&timestamps=true", (chunk) => {
        const text = (logsView.textContent + chunk);
        logsView.textContent = text.length > FOLLOW_KEEP * 120 ? text.slice(-FOLLOW_KEEP * 120) : text;
        logsView.scrollTop = logsView.scrollHeight;
      }, controller.signal);
    } catch (e) {
      if (e.name !== "AbortError" && e.status !== 401) note.show(explain(e), "error");
    } finally {
      controller = null;
      followButton.setAttribute("aria-pressed", "false");
      followButton.textContent = "Follow";
    }
  });
  async function stats() {
    try {
      const s = await api.get(path + "/stats");
      const rows = Object.entries(s).filter(([k]) => k !== "name").map(([k, v]) => [k.replace(/_/g, " "), typeof v === "object" ? JSON.stringify(v) : String(v)]);
      fill(statsBox, h("dl", { class: "kv" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])));
    } catch (e) {
      if (e.status !== 401) fill(statsBox, h("p", { class: "muted" }, explain(e)));
    }
  }
  const proxyButton = h("button", { type: "button", onclick: () => attempt(note, async () => {
    const made = await api.post(path + "/proxy", {});
    note.show("Created proxy " + made.hostname + ".", "ok");
  }, null, load) }, "Create its proxy");
  const controls = h("span", { class: "head-actions" });
  const head = heading("Service " + name, h("a", { class: "button", href: "#/services" }, "All services"), controls);
  // the settings form gets the stored values before it is drawn (and again after a
  // save), never from a later refresh: that would overwrite what the operator typed
  await load();
  if (service) update.set(service);
  fill(root, head, note,
    section("Container", infoBox, h("div", { class: "inline" }, proxyButton)),
    section("Ports", portsBox, disclosure("Add a port", addPort.node, false)),
    section("Output", h("div", { class: "inline" }, h("button", { type: "button", onclick: tail }, "Last lines"), followButton), logsView),
    section("Resource use", h("button", { type: "button", onclick: stats }, "Measure now"), statsBox),
    section("Settings", update.node));
  await tail();
  return () => { if (controller) controller.abort(); };
}

const FIELDS = [
  { name: "name", label: "Name", required: true, placeholder: "backend-api" },
  { name: "target_url", label: "Target URL", required: true, placeholder: "http://127.0.0.1:8080" },
  { name: "description", label: "Description", wide: true },
];

function externalServices(note) {
  const box = h("div");
  let editing = null;
  const table = recordTable({
    caption: "External services",
    empty: "No external services yet.",
    rowLabel: (s) => s.name,
    columns: [
      ["Name", (s) => s.name],
      ["Target", (s) => code(s.target_url)],
      ["Description", (s) => text(s.description)],
      ["Owner", (s) => s.owner],
      ["Updated", (s) => when(s.updated_at)],
    ],
    actions: (s) => [
      action("Edit", "service " + s.name, () => edit(s)),
      action("Delete", "service " + s.name, async () => {
        const ok = await confirm({
          title: "Delete service " + s.name + "?",
          message: "Routes that target it must go first (the API refuses otherwise).",
          confirmLabel: "Delete " + s.name, danger: true,
        });
        if (ok) await attempt(note, () => api.del(EXTERNAL + api.seg(s.name)), "Deleted service " + s.name + ".", load);
      }, "danger"),
    ],
  });
  const editBox = h("div");
  function edit(s) {
    editing = s.name;
    const f = form({
      id: "service-edit", fields: FIELDS.map((x) => (x.name === "name" ? { ...x, readOnly: true } : x)),
      values: s, sendEmpty: true, submitLabel: "Save " + s.name,
      extraButtons: h("button", { type: "button", onclick: () => fill(editBox) }, "Cancel"),
      onSubmit: async (body) => {
        await api.patch(EXTERNAL + api.seg(editing), body);
        note.show("Saved service " + editing + ".", "ok");
        fill(editBox);
        await load();
      },
    });
    f.controls.name.input.readOnly = true;
    fill(editBox, section("Edit service " + s.name, f.node));
    f.controls.target_url.input.focus();
  }
  const load = () => loadInto(table, note, () => api.all(EXTERNAL));
  const create = form({
    id: "service-create", fields: FIELDS, submitLabel: "Add service",
    onSubmit: async (body) => {
      const created = await api.post(EXTERNAL, body);
      create.node.reset();
      note.show("Added service " + created.name + ": route to it with target type service.", "ok");
      await load();
    },
  });
  fill(box, table, editBox, disclosure("Add an external service", create.node, false));
  box.load = load;
  return box;
}

export default {
  title: "Services",
  async render(root, param, ctx) {
    if (param) return renderDocker(root, param, ctx);
    const note = notice();
    const docker = dockerServices(note);
    const external = externalServices(note);
    const cleanupBox = h("div", { "aria-live": "polite" });
    const cleanup = async (fix) => {
      try {
        const answer = fix ? await api.post(DOCKER + "cleanup") : await api.get(DOCKER + "cleanup");
        fill(cleanupBox, h("pre", { class: "logs" }, JSON.stringify(answer, null, 2)));
        if (fix) await docker.load();
      } catch (e) {
        if (e.status !== 401) note.show(explain(e), "error");
      }
    };
    const refresh = () => Promise.all([docker.load(), external.load()]);
    fill(root,
      heading("Services", h("button", { type: "button", onclick: refresh }, "Refresh")),
      note,
      section("Docker services", h("p", { class: "lead" }, "Containers the daemon runs, with their ports; a route with target type service reaches them by name."),
        docker, ctx.me.is_admin ? h("div", { class: "inline" },
          h("button", { type: "button", onclick: () => cleanup(false) }, "Find orphans"),
          h("button", { type: "button", onclick: () => cleanup(true) }, "Clean up")) : null, cleanupBox),
      section("External services", h("p", { class: "lead" }, "Named URLs: a route with target type service sends requests to them."), external));
    await refresh();
    return null;
  },
};
