/* Certificates: expiry at a glance, creating one (several names), renewing,
 * converting staging <-> production, deleting, attaching to proxies, and an
 * order's live progress (pending ones are polled) and last error. */

import * as api from "../api.js";
import { h, fill, list, when, badge, expiry, relative, splitList, covers, DASH } from "../dom.js";
import { form } from "../forms.js";
import { heading, notice, section, disclosure, confirm, recordTable, action, explain, attempt } from "../ui.js";

const PATH = "/certificates/";
const POLL = 2000;

const CREATE_FIELDS = [
  { name: "cert_name", label: "Name", required: true, placeholder: "shared-cert" },
  { name: "domains", label: "Names it covers", required: true, placeholder: "api.example.com, app.example.com", hint: "One or more, comma- or space-separated." },
  { name: "email", label: "ACME contact e-mail", placeholder: "ops@example.com", hint: "Empty: the daemon's ADMIN_EMAIL." },
  { name: "staging", label: "Order from the ACME staging directory", kind: "checkbox" },
];

function statusCell(c) {
  if (c.status === "pending") return [badge("ordering", "pending"), " ", h("span", { class: "muted" }, c.failures ? "attempt " + (c.failures + 1) : "in progress")];
  if (c.status === "failed") return [badge("failed"), c.retry_at ? [" ", h("span", { class: "muted" }, "retry " + relative(c.retry_at))] : null];
  return [badge("ready"), c.error ? [" ", badge("renewal failed", "failed")] : null];
}

function progress(c) {
  if (c.status === "ready" && !c.error) return null;
  const parts = [];
  if (c.status === "pending") parts.push("The ACME order is in progress: the daemon proves control of each name over HTTP-01 on its HTTP listener.");
  if (c.error) parts.push("Last error: " + c.error);
  if (c.retry_at) parts.push("Next attempt " + relative(c.retry_at) + ".");
  if (c.error) parts.push("Check that each name resolves to this daemon and that port 80 reaches its HTTP listener; a name no public CA certifies (localhost, an IP, .internal) cannot be ordered: use HTTP only for a local trial.");
  return parts.join(" ");
}

function actions(c, note, after, gone) {
  return [
    action("Renew", "certificate " + c.cert_name, () => attempt(note, () => api.post(PATH + api.seg(c.cert_name) + "/renew"), "Renewal of " + c.cert_name + " started.", after)),
    action(c.staging ? "To production" : "To staging", "certificate " + c.cert_name, async () => {
      const target = c.staging ? "production" : "staging";
      const ok = await confirm({
        title: "Order " + c.cert_name + " from " + target + "?",
        message: "The certificate is ordered again from the " + target + " directory; the current one is served until the new one is ready.",
        confirmLabel: "Convert to " + target,
      });
      if (ok) await attempt(note, () => api.post(PATH + api.seg(c.cert_name) + "/convert", { staging: !c.staging }), c.cert_name + " is being ordered from " + target + ".", after);
    }),
    action("Delete", "certificate " + c.cert_name, async () => {
      const ok = await confirm({
        title: "Delete certificate " + c.cert_name + "?",
        message: "Its names (" + c.domains.join(", ") + ") are served by another certificate covering them, or the self-signed fallback.",
        confirmLabel: "Delete " + c.cert_name, danger: true,
      });
      if (ok) await attempt(note, () => api.del(PATH + api.seg(c.cert_name)), "Deleted certificate " + c.cert_name + ".", gone || after);
    }, "danger"),
  ];
}

async function renderList(root) {
  const note = notice();
  let timer = null;
  let stopped = false;
  const table = recordTable({
    caption: "Certificates",
    empty: "No certificates yet: HTTPS proxies get one automatically, or add one below.",
    rowLabel: (c) => c.cert_name,
    columns: [
      ["Name", (c) => h("a", { href: "#/certificates/" + encodeURIComponent(c.cert_name) }, c.cert_name)],
      ["Names", (c) => list(c.domains)],
      ["Status", statusCell],
      ["Expiry", (c) => expiry(c.not_after)],
      ["Directory", (c) => (c.staging ? "staging" : "production")],
      ["Last error", (c) => (c.error ? h("span", { class: "error-text" }, c.error) : DASH)],
    ],
    actions: (c) => actions(c, note, load),
  });
  async function load() {
    clearTimeout(timer);
    table.busy(true);
    try {
      const items = await api.all(PATH);
      items.sort((a, b) => (a.not_after || Infinity) - (b.not_after || Infinity));
      table.render(items);
      // an order in flight: follow it until it has an outcome
      if (!stopped && items.some((c) => c.status === "pending")) timer = setTimeout(load, POLL);
    } catch (e) {
      if (e.status !== 401) note.show(explain(e), "error");
    } finally {
      table.busy(false);
    }
  }
  const create = form({
    id: "cert-create", fields: CREATE_FIELDS, submitLabel: "Order certificate",
    onSubmit: async (body) => {
      const names = splitList(body.domains);
      const sent = { ...body };
      delete sent.domains;
      if (names.length === 1) sent.domain = names[0];
      else sent.domains = names;
      const created = await api.post(PATH, sent);
      create.node.reset();
      note.show("Ordering " + created.cert_name + " for " + created.domains.join(", ") + "; progress shows below.", "ok");
      await load();
    },
  });
  fill(root,
    heading("Certificates", h("button", { type: "button", onclick: load }, "Refresh")),
    h("p", { class: "lead" }, "Sorted by expiry, soonest first. Renewal is automatic before RENEWAL_THRESHOLD_DAYS."),
    note, table,
    disclosure("Add a certificate (one or more names)", create.node, false));
  await load();
  return () => { stopped = true; clearTimeout(timer); };
}

async function renderDetail(root, name, ctx) {
  const note = notice();
  const path = PATH + api.seg(name);
  let timer = null;
  let stopped = false;
  const body = h("div");
  async function load() {
    clearTimeout(timer);
    let c;
    let proxies;
    try {
      [c, proxies] = await Promise.all([api.get(path), api.all("/proxy/targets/").catch(() => [])]);
    } catch (e) {
      if (e.status !== 401) note.show(explain(e), "error");
      return;
    }
    const covered = proxies.filter((p) => covers(c.domains, p.hostname));
    const attach = recordTable({
      caption: "Proxies this certificate covers",
      empty: "No proxy has one of its names.",
      columns: [
        ["Proxy", (p) => h("a", { href: "#/proxies/" + encodeURIComponent(p.hostname) }, p.hostname)],
        ["Attached", (p) => (p.cert_name === c.cert_name ? "yes" : p.cert_name ? "no (" + p.cert_name + ")" : "no (any covering certificate)")],
      ],
      actions: (p) => (p.cert_name === c.cert_name
        ? action("Detach", "certificate from " + p.hostname, () => attempt(note, () => api.del("/proxy/targets/" + api.seg(p.hostname) + "/cert"), "Detached from " + p.hostname + ".", load))
        : action("Attach", "certificate to " + p.hostname, () => attempt(note, () => api.post("/proxy/targets/" + api.seg(p.hostname) + "/cert", { cert_name: c.cert_name }), "Attached to " + p.hostname + ".", load))),
    });
    attach.render(covered);
    const rows = [
      ["Status", statusCell(c)], ["Names", list(c.domains)], ["Expiry", expiry(c.not_after)],
      ["Valid from", when(c.not_before)], ["Valid until", when(c.not_after)], ["Issuer", c.issuer || DASH],
      ["Directory", (c.staging ? "staging" : "production") + " (" + c.acme_directory_url + ")"],
      ["Contact", c.email || DASH], ["SHA-256", c.fingerprint_sha256 ? h("code", {}, c.fingerprint_sha256) : DASH],
      ["Failures in a row", String(c.failures)], ["Owner", c.owner], ["Updated", when(c.updated_at)],
      ["Chain", c.fullchain_pem ? (c.fullchain_pem.match(/BEGIN CERTIFICATE/g) || []).length + " PEM certificates" : DASH],
    ];
    const words = progress(c);
    fill(body,
      words ? h("p", { class: "notice " + (c.error ? "notice-error" : ""), id: "cert-progress" }, words) : null,
      section("Certificate", h("dl", { class: "kv" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]))),
      section("Proxies", attach));
    if (!stopped && c.status === "pending") timer = setTimeout(load, POLL);
  }
  let current;
  try {
    current = await api.get(path);
  } catch (e) {
    if (e.status === 401) return null;
    fill(root, heading("Certificate " + name), h("p", { class: "notice notice-error" }, explain(e)),
      h("p", {}, h("a", { href: "#/certificates" }, "Back to the certificates")));
    return null;
  }
  fill(root,
    heading("Certificate " + name, h("a", { class: "button", href: "#/certificates" }, "All certificates"),
      actions(current, note, load, () => ctx.go("#/certificates"))),
    note, body);
  await load();
  return () => { stopped = true; clearTimeout(timer); };
}

export default {
  title: "Certificates",
  render(root, param, ctx) {
    return param ? renderDetail(root, param, ctx) : renderList(root);
  },
};
