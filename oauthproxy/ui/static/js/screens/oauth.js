/* OAuth: the authorization server's counters, clients (pre-register, delete),
 * sessions and live access tokens (revoke), and revoking a user or a client. */

import * as api from "../api.js";
import { h, fill, list, when, DASH } from "../dom.js";
import { form } from "../forms.js";
import { heading, notice, section, disclosure, confirm, recordTable, action, explain, showSecret, attempt } from "../ui.js";

async function revokeWith(note, title, message, call, after) {
  const ok = await confirm({ title, message, confirmLabel: "Revoke", danger: true });
  if (ok) await attempt(note, call, "Revoked.", after);
}

export default {
  title: "OAuth",
  adminOnly: true,
  async render(root) {
    const note = notice();
    const counters = h("div", { class: "cards" });
    const clients = recordTable({
      caption: "OAuth clients",
      empty: "No clients: MCP clients register themselves (or pre-register one below).",
      rowLabel: (c) => c.client_id,
      columns: [
        ["Client", (c) => c.client_name || c.client_id],
        ["ID", (c) => h("code", { class: "clip" }, c.client_id)],
        ["Kind", (c) => c.source],
        ["Redirect URIs", (c) => list(c.redirect_uris)],
        ["Auth", (c) => c.token_endpoint_auth_method],
        ["Registered", (c) => when(c.client_id_issued_at)],
        ["Last used", (c) => when(c.last_used_at)],
      ],
      actions: (c) => action("Delete", "client " + (c.client_name || c.client_id), () => revokeWith(note,
        "Delete client " + (c.client_name || c.client_id) + "?",
        "Its sessions and tokens are revoked everywhere within a second.",
        () => api.del("/oauth/clients/" + api.seg(c.client_id)), load), "danger"),
    });
    const sessions = recordTable({
      caption: "OAuth sessions",
      empty: "No sessions: nobody has logged in through a client yet.",
      rowLabel: (s) => s.session_id,
      columns: [
        ["User", (s) => s.username],
        ["Client", (s) => h("code", { class: "clip" }, s.client_id)],
        ["Scopes", (s) => list(s.scopes)],
        ["For", (s) => list(s.audience)],
        ["Started", (s) => when(s.created_at)],
        ["Revoked", (s) => (s.revoked_at ? when(s.revoked_at) : DASH)],
      ],
      actions: (s) => (s.revoked_at ? null : action("Revoke", "session of " + s.username, () => revokeWith(note,
        "Revoke this session of " + s.username + "?", "Its refresh and access tokens stop working everywhere within a second.",
        () => api.del("/oauth/sessions/" + api.seg(s.session_id)), load), "danger")),
    });
    const tokens = recordTable({
      caption: "Live OAuth access tokens",
      empty: "No live access tokens.",
      columns: [
        ["User", (t) => t.username],
        ["Client", (t) => h("code", { class: "clip" }, t.client_id)],
        ["For", (t) => list(t.audience)],
        ["Issued", (t) => when(t.issued_at)],
        ["Expires", (t) => when(t.expires_at)],
        ["Revoked", (t) => (t.revoked ? "yes" : "no")],
      ],
      actions: (t) => (t.revoked ? null : action("Revoke", "token of " + t.username, () => revokeWith(note,
        "Revoke this access token of " + t.username + "?", "It is refused everywhere within a second.",
        () => api.del("/oauth/tokens/" + api.seg(t.jti)), load), "danger")),
    });
    async function load() {
      try {
        const [m, c, s, t] = await Promise.all([
          api.get("/oauth/metrics"), api.all("/oauth/clients"), api.all("/oauth/sessions"), api.all("/oauth/tokens"),
        ]);
        const card = (title, rows) => h("dl", { class: "card" }, h("h3", {}, title), rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))]));
        fill(counters,
          card("Clients", [["Registered (DCR)", m.clients.dcr], ["Metadata documents", m.clients.cimd], ["Pre-registered", m.clients.static]]),
          card("Sessions and tokens", [["Active sessions", m.sessions_active], ["Revoked sessions", m.sessions_revoked], ["Live access tokens", m.access_tokens_live], ["Revocations", m.revocations], ["Signing keys", m.signing_keys]]));
        clients.render(c);
        sessions.render(s);
        tokens.render(t);
      } catch (e) {
        if (e.status !== 401) note.show(explain(e), "error");
      }
    }
    const create = form({
      id: "client-create",
      fields: [
        { name: "client_name", label: "Name", required: true, placeholder: "My MCP client" },
        { name: "redirect_uris", label: "Redirect URIs", kind: "lines", required: true, placeholder: "https://app.example.com/callback", hint: "One per line; exact matches only." },
        { name: "token_endpoint_auth_method", label: "Client authentication", kind: "select", options: [["none", "none: a public client (PKCE only)"], ["client_secret_basic", "client_secret_basic"], ["client_secret_post", "client_secret_post"]] },
        { name: "scope", label: "Scopes", placeholder: "read write" },
      ],
      submitLabel: "Pre-register client",
      onSubmit: async (body) => {
        const made = await api.post("/oauth/clients", body);
        create.node.reset();
        if (made.client_secret) {
          await showSecret("Client " + made.client_name + " registered", "Client secret", made.client_secret, "Client ID: " + made.client_id + ". The secret is shown only now.");
        }
        note.show("Registered client " + made.client_name + " (" + made.client_id + ").", "ok");
        await load();
      },
    });
    const revoke = form({
      id: "oauth-revoke",
      fields: [
        { name: "username", label: "GitHub user", placeholder: "alice" },
        { name: "client_id", label: "Client ID" },
      ],
      submitLabel: "Revoke everything of them",
      onSubmit: async (body) => {
        const ok = await confirm({ title: "Revoke every session and token?", message: "Of " + [body.username, body.client_id].filter(Boolean).join(" with ") + ".", confirmLabel: "Revoke", danger: true });
        if (!ok) return;
        const counts = await api.post("/oauth/revoke", body);
        note.show("Revoked " + counts.sessions + " sessions and " + counts.access_tokens + " access tokens.", "ok");
        revoke.node.reset();
        await load();
      },
    });
    fill(root,
      heading("OAuth", h("button", { type: "button", onclick: load }, "Refresh")),
      note, counters,
      section("Clients", clients, disclosure("Pre-register a client", create.node, false)),
      section("Sessions", sessions),
      section("Live access tokens", tokens),
      section("Revoke a user or a client", revoke.node));
    await load();
  },
};
