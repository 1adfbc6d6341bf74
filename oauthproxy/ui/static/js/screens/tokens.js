/* Tokens: API tokens, created with their value shown once, rotated, deleted. */

import * as api from "../api.js";
import { h, fill, yesno, when, text } from "../dom.js";
import { form } from "../forms.js";
import { heading, notice, disclosure, confirm, recordTable, action, explain, showSecret, loadInto, attempt } from "../ui.js";

const PATH = "/tokens/";

export default {
  title: "Tokens",
  async render(root, param, ctx) {
    const note = notice();
    const table = recordTable({
      caption: "API tokens",
      rowLabel: (t) => t.name,
      columns: [
        ["Name", (t) => t.name],
        ["Owner", (t) => t.owner_email],
        ["Admin", (t) => yesno(t.is_admin)],
        ["Created", (t) => when(t.created_at)],
        ["Created by", (t) => text(t.created_by)],
        ["Last used", (t) => when(t.last_used_at)],
      ],
      actions: (t) => [
        t.is_admin && !ctx.me.is_admin ? null : action("Rotate", "token " + t.name, async () => {
          const ok = await confirm({
            title: "Rotate token " + t.name + "?",
            message: "A new value is issued and shown once; the current value stops working at once" +
              (t.name === ctx.me.name ? " (this console signs in with the new one)." : "."),
            confirmLabel: "Rotate " + t.name,
          });
          if (!ok) return;
          try {
            const issued = await api.post(PATH + api.seg(t.name) + "/rotate");
            if (t.name === ctx.me.name) api.token.set(issued.token);
            await showSecret("New value of " + t.name, "Token", issued.token);
            note.show("Rotated token " + t.name + ".", "ok");
            await load();
          } catch (e) { if (e.status !== 401) note.show(explain(e), "error"); }
        }),
        t.is_admin ? null : action("Delete", "token " + t.name, async () => {
          const ok = await confirm({
            title: "Delete token " + t.name + "?",
            message: "Whoever uses it gets 401 from the next request on. Records it created stay.",
            confirmLabel: "Delete " + t.name, danger: true,
          });
          if (ok) await attempt(note, () => api.del(PATH + api.seg(t.name)), "Deleted token " + t.name + ".", load);
        }, "danger"),
      ],
    });
    const load = () => loadInto(table, note, () => api.all(PATH));
    const create = form({
      id: "token-create",
      fields: [
        { name: "name", label: "Name", required: true, placeholder: "ci-deploy" },
        { name: "owner_email", label: "Owner e-mail", required: true, kind: "email", placeholder: "ops@example.com" },
      ],
      submitLabel: "Create token",
      onSubmit: async (body) => {
        const issued = await api.post(PATH, body);
        create.node.reset();
        await showSecret("Token " + issued.name + " created", "Token", issued.token,
          "Only its SHA-256 is stored: this is the only time the value is shown. Use it as OAUTHPROXY_TOKEN or paste it here to sign in.");
        note.show("Created token " + issued.name + ".", "ok");
        await load();
      },
    });
    fill(root,
      heading("Tokens", h("button", { type: "button", onclick: load }, "Refresh")),
      h("p", { class: "lead" }, ctx.me.is_admin
        ? "Each token sees and changes only the records it created; the admin token sees everything."
        : "This token sees and changes only its own records."),
      note, table,
      ctx.me.is_admin ? disclosure("Create a token", create.node, false) : null);
    await load();
  },
};
