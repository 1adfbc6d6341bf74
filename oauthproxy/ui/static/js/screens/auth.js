/* Auth rules: endpoint rules of the admin API (who may call what), and the
 * "auth test" tool that says which rule decides a path and method. */

import * as api from "../api.js";
import { h, fill, code, list, DASH } from "../dom.js";
import { form } from "../forms.js";
import { heading, notice, section, disclosure, confirm, recordTable, action, loadInto, attempt } from "../ui.js";

const PATH = "/auth/endpoints";
const METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"];

const FIELDS = [
  { name: "path_pattern", label: "Path pattern", required: true, placeholder: "/services/*", hint: "* matches anything; a trailing /* also matches the path without it." },
  { name: "auth_type", label: "Auth", kind: "select", options: [["bearer", "bearer: any API token"], ["admin", "admin: the admin token"], ["oauth", "oauth: an OAuth access token"], ["none", "none: public"]] },
  { name: "methods", label: "Methods", kind: "list", placeholder: "* or GET, POST", value: ["*"] },
  { name: "priority", label: "Priority", kind: "number", min: 0, max: 10000, hint: "Higher wins (default 50)." },
  { name: "oauth_scopes", label: "OAuth scopes required", kind: "list" },
  { name: "oauth_allowed_users", label: "OAuth users allowed", kind: "list", placeholder: "alice, bob or *" },
  { name: "description", label: "Description", wide: true },
];

function testTool() {
  const result = h("div", { id: "auth-test-result", "aria-live": "polite" });
  const f = form({
    id: "auth-test",
    fields: [
      { name: "path", label: "API path", required: true, placeholder: "/tokens/ci", value: "/" },
      { name: "method", label: "Method", kind: "select", options: METHODS },
    ],
    submitLabel: "Who may call it?",
    onSubmit: async (body) => {
      const a = await api.post(PATH + "/test", body);
      const who = { none: "anyone (public)", bearer: "any API token", admin: "the admin token only", oauth: "an OAuth access token (or the admin token)" }[a.auth_type] || "no such endpoint";
      fill(result, h("div", { class: "result result-" + (a.source === "none" ? "not_found" : "forward") },
        h("h4", {}, a.method + " " + a.path + ": " + who),
        h("dl", { class: "kv" },
          h("dt", {}, "Decided by"), h("dd", {}, a.source === "rule" ? "rule " + a.rule.config_id : a.source === "endpoint" ? "the endpoint's default (" + a.endpoint + ")" : "nothing: no endpoint has this path"),
          h("dt", {}, "Scopes required"), h("dd", {}, list(a.oauth_scopes)),
          h("dt", {}, "Users allowed"), h("dd", {}, list(a.oauth_allowed_users)))));
    },
  });
  return h("div", {}, f.node, result);
}

export default {
  title: "Auth rules",
  async render(root, param, ctx) {
    const note = notice();
    const editBox = h("div");
    const table = recordTable({
      caption: "Endpoint auth rules, highest priority first",
      empty: "No rules: every endpoint has its default auth (most need a token, some the admin token).",
      rowLabel: (r) => r.config_id,
      columns: [
        ["Rule", (r) => r.config_id],
        ["Path", (r) => code(r.path_pattern)],
        ["Methods", (r) => list(r.methods)],
        ["Auth", (r) => r.auth_type],
        ["Scopes", (r) => list(r.oauth_scopes)],
        ["Users", (r) => list(r.oauth_allowed_users)],
        ["Priority", (r) => r.priority],
        ["Description", (r) => r.description || DASH],
      ],
      actions: ctx.me.is_admin ? (r) => [
        action("Edit", "rule " + r.config_id, () => edit(r)),
        action("Delete", "rule " + r.config_id, async () => {
          const ok = await confirm({ title: "Delete rule " + r.config_id + "?", message: "Its paths get their default auth again.", confirmLabel: "Delete " + r.config_id, danger: true });
          if (ok) await attempt(note, () => api.del(PATH + "/" + api.seg(r.config_id)), "Deleted rule " + r.config_id + ".", load);
        }, "danger"),
      ] : null,
    });
    function edit(rule) {
      const f = form({
        id: "rule-edit", fields: FIELDS, values: rule, sendEmpty: true, submitLabel: "Save rule " + rule.config_id,
        extraButtons: h("button", { type: "button", onclick: () => fill(editBox) }, "Cancel"),
        onSubmit: async (body) => {
          await api.put(PATH + "/" + api.seg(rule.config_id), body);
          note.show("Saved rule " + rule.config_id + ".", "ok");
          fill(editBox);
          await load();
        },
      });
      fill(editBox, section("Edit rule " + rule.config_id, f.node));
      f.controls.path_pattern.input.focus();
    }
    const load = () => loadInto(table, note, () => api.all(PATH));
    const create = form({
      id: "rule-create", fields: [{ name: "config_id", label: "Rule id", placeholder: "public-health", hint: "Empty: generated." }, ...FIELDS],
      submitLabel: "Add rule",
      onSubmit: async (body) => {
        const created = await api.post(PATH, body);
        create.node.reset();
        create.set({});
        note.show("Added rule " + created.config_id + ".", "ok");
        await load();
      },
    });
    fill(root,
      heading("Auth rules", h("button", { type: "button", onclick: load }, "Refresh")),
      h("p", { class: "lead" }, "Rules change who may call which admin API endpoints; the admin token passes every rule."),
      section("Who may call this endpoint?", testTool()),
      note, table, editBox,
      ctx.me.is_admin ? disclosure("Add a rule", create.node, false) : null);
    await load();
  },
};
