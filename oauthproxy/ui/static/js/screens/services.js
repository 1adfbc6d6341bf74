/* Services: external services (named URLs that routes target by name). */

import * as api from "../api.js";
import { h, fill, code, text, when } from "../dom.js";
import { form } from "../forms.js";
import { heading, notice, section, disclosure, confirm, recordTable, action, loadInto, attempt } from "../ui.js";

const EXTERNAL = "/services/external/";

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
  async render(root) {
    const note = notice();
    const external = externalServices(note);
    fill(root,
      heading("Services", h("button", { type: "button", onclick: () => external.load() }, "Refresh")),
      note,
      section("External services", h("p", { class: "lead" }, "Named URLs: a route with target type service sends requests to them."), external));
    await external.load();
  },
};
