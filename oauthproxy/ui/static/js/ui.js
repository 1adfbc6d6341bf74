/* Shared pieces of every screen: headings, notices, dialogs, record tables, pagers. */

import { h, fill, newId } from "./dom.js";

/** A screen's heading row: <h2> (focus target on navigation) and buttons. */
export function heading(title, ...buttons) {
  return h("div", { class: "panel-head" }, h("h2", { tabindex: "-1", class: "screen-title" }, title),
    h("div", { class: "head-actions" }, buttons));
}

/** A notice line (role=status): ok, error or plain. */
export function notice() {
  const node = h("p", { class: "notice", role: "status" });
  node.show = (message, kind) => {
    node.className = "notice" + (kind ? " notice-" + kind : "");
    node.textContent = message || "";
  };
  return node;
}

/** A section of a screen with its own <h3>. */
export function section(title, ...children) {
  const id = newId("section");
  return h("section", { class: "block", "aria-labelledby": id }, h("h3", { id }, title), children);
}

/** A collapsible box (the create forms). */
export function disclosure(summary, content, open) {
  return h("details", { class: "create-box", open: open || false }, h("summary", {}, summary), content);
}

function dialogShell(title, body, buttons) {
  const titleId = newId("dialog-title");
  const dialog = h("dialog", { class: "dialog", "aria-labelledby": titleId },
    h("h2", { id: titleId }, title), body, h("div", { class: "dialog-actions" }, buttons));
  document.body.append(dialog);
  return dialog;
}

/**
 * Ask before doing something: a modal dialog with the details and optional
 * checkboxes ([{name, label, checked}]).  Resolves to null (cancelled) or the
 * checkbox values {name: bool}.
 */
export function confirm({ title, message, details, options, confirmLabel, danger }) {
  return new Promise((resolve) => {
    const boxes = (options || []).map((o) => {
      const id = newId("opt");
      const input = h("input", { type: "checkbox", id, checked: o.checked });
      return { o, input, node: h("div", { class: "field check" }, input, h("label", { for: id }, o.label)) };
    });
    const ok = h("button", { type: "button", class: danger ? "danger primary-danger" : "primary" }, confirmLabel || "OK");
    const cancel = h("button", { type: "button" }, "Cancel");
    const dialog = dialogShell(title, [
      h("p", {}, message),
      details && details.length ? h("ul", { class: "details" }, details.map((d) => h("li", {}, d))) : null,
      boxes.map((b) => b.node),
    ], [cancel, ok]);
    const done = (value) => {
      dialog.close();
      dialog.remove();
      resolve(value);
    };
    ok.addEventListener("click", () => done(Object.fromEntries(boxes.map((b) => [b.o.name, b.input.checked]))));
    cancel.addEventListener("click", () => done(null));
    dialog.addEventListener("cancel", (event) => { event.preventDefault(); done(null); });
    dialog.showModal();
    cancel.focus();
  });
}

/** Show a secret once (token value, client secret), with a copy button. */
export function showSecret(title, label, value, note) {
  return new Promise((resolve) => {
    const id = newId("secret");
    const field = h("input", { id, class: "secret", readonly: true, value, spellcheck: "false", "aria-describedby": id + "-note" });
    const copy = h("button", { type: "button" }, "Copy");
    const status = h("span", { class: "muted", role: "status" });
    copy.addEventListener("click", async () => {
      field.select();
      try {
        await navigator.clipboard.writeText(value);
        status.textContent = "Copied.";
      } catch (e) {
        status.textContent = "Select the text and copy it (Ctrl+C).";
      }
    });
    const close = h("button", { type: "button", class: "primary" }, "I have stored it");
    const dialog = dialogShell(title, [
      h("p", { id: id + "-note" }, note || "This is the only time it is shown: store it now."),
      h("div", { class: "field" }, h("label", { for: id }, label), h("div", { class: "inline" }, field, copy), status),
    ], [close]);
    const done = () => { dialog.close(); dialog.remove(); resolve(); };
    close.addEventListener("click", done);
    dialog.addEventListener("cancel", (event) => { event.preventDefault(); done(); });
    dialog.showModal();
    field.focus();
    field.select();
  });
}

/**
 * A table of records: columns [[label, cell(item)]], an optional actions(item)
 * column, caption for screen readers.  Returns the wrapper; call .render(items).
 */
export function recordTable({ caption, columns, actions, empty, rowLabel }) {
  const table = h("table", { class: "records" });
  const wrap = h("div", { class: "table-wrap" }, table);
  wrap.table = table;
  wrap.render = (items) => {
    const width = columns.length + (actions ? 1 : 0);
    const rows = items.map((item) => h("tr", rowLabel ? { dataset: { key: rowLabel(item) } } : {},
      columns.map(([, cell], i) => h(i === 0 ? "th" : "td", i === 0 ? { scope: "row" } : {}, cell(item))),
      actions ? h("td", { class: "actions" }, actions(item)) : null));
    if (!rows.length) rows.push(h("tr", {}, h("td", { colspan: width, class: "empty" }, empty || "Nothing here yet.")));
    fill(table,
      h("caption", { class: "visually-hidden" }, caption),
      h("thead", {}, h("tr", {}, columns.map(([label]) => h("th", { scope: "col" }, label)),
        actions ? h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")) : null)),
      h("tbody", {}, rows));
  };
  wrap.busy = (on) => (on ? table.setAttribute("aria-busy", "true") : table.removeAttribute("aria-busy"));
  return wrap;
}

/** Previous/next paging for a list endpoint's page ({items, total, offset, next_offset}). */
export function pager(onPage) {
  const node = h("div", { class: "pager" });
  node.render = (page, size) => {
    const first = page.total === 0 ? 0 : page.offset + 1;
    const last = page.offset + page.items.length;
    fill(node,
      h("span", {}, first + "\u2013" + last + " of " + page.total),
      h("button", { type: "button", disabled: page.offset === 0, onclick: () => onPage(Math.max(0, page.offset - size)) }, "Previous"),
      h("button", { type: "button", disabled: page.next_offset === null, onclick: () => onPage(page.next_offset) }, "Next"));
  };
  return node;
}

/** A small action button with an accessible name naming its record. */
export function action(label, name, onclick, kind) {
  return h("button", { type: "button", class: kind || null, "aria-label": label + " " + name, onclick }, label);
}

/** A message for an error answer, mentioning the admin token for 403s. */
export function explain(e) {
  if (e.status === 403) return "This token may not do that: " + e.message;
  return e.message;
}

/** Fill ``table`` from ``fetch()`` (a list, or a page rendered by ``pages``); errors go to ``note``. */
export async function loadInto(table, note, fetch, pages, size) {
  table.busy(true);
  try {
    const answer = await fetch();
    if (Array.isArray(answer)) {
      table.render(answer);
    } else {
      table.render(answer.items);
      if (pages) pages.render(answer, size);
    }
    return answer;
  } catch (e) {
    if (e.status !== 401) note.show(explain(e), "error");
    return null;
  } finally {
    table.busy(false);
  }
}

/** Run ``call``; say ``done`` (ok) or the error in ``note``; then ``after()``.  True if it worked. */
export async function attempt(note, call, done, after) {
  try {
    await call();
  } catch (e) {
    if (e.status !== 401) note.show(explain(e), "error");
    return false;
  }
  if (done) note.show(done, "ok");
  if (after) await after();
  return true;
}
