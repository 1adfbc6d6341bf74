/* Forms from field lists: labelled controls, values as API JSON, errors at their field.
 *
 * A field is {name, label, kind, ...}: kind text (default), url, password, number,
 * select (options), checkbox, list (comma/space separated -> array), headers
 * ("Name: value" lines -> object), env ("NAME=value" lines -> object), lines (one
 * item a line -> array), json (an object), textarea.  {legend: "..."}
 * starts a new group (a fieldset).  An API error's field is a JSON pointer into
 * the body ("/hostname", "/methods/0"): its first segment names the control that
 * shows the message; anything else shows above the submit button.
 */

import { h, newId, parseHeaders, splitList, formatHeaders } from "./dom.js";

function control(f, id, described) {
  const common = { id, name: f.name, "aria-describedby": described };
  if (f.kind === "select") {
    return h("select", common, f.options.map((o) => {
      const [value, label] = Array.isArray(o) ? o : [o, o === "" ? "(not set)" : o];
      return h("option", { value }, label);
    }));
  }
  if (f.kind === "checkbox") return h("input", { ...common, type: "checkbox" });
  if (["headers", "env", "json", "textarea", "lines"].includes(f.kind)) {
    return h("textarea", { ...common, rows: f.rows || 3, spellcheck: "false", placeholder: f.placeholder });
  }
  const type = { number: "number", password: "password", url: "url", email: "email", datetime: "datetime-local" }[f.kind] || "text";
  return h("input", {
    ...common, type, required: f.required, "aria-required": f.required ? "true" : null,
    placeholder: f.placeholder, min: f.min, max: f.max, step: f.step,
    autocomplete: f.kind === "password" ? "new-password" : "off", spellcheck: "false", list: f.datalist,
  });
}

/** Put a value into a control, as its kind shows it. */
function setControl(f, input, value) {
  if (f.kind === "checkbox") input.checked = Boolean(value);
  else if (f.kind === "list") input.value = (value || []).join(", ");
  else if (f.kind === "lines") input.value = (value || []).join("\n");
  else if (f.kind === "headers") input.value = formatHeaders(value);
  else if (f.kind === "env") input.value = formatHeaders(value, "=");
  else if (f.kind === "json") input.value = value && Object.keys(value).length ? JSON.stringify(value, null, 2) : "";
  else input.value = value === null || value === undefined ? "" : String(value);
}

/** A control's value as API JSON; undefined = leave the field out. Throws Error for bad text. */
function readControl(f, input, sendEmpty) {
  if (f.kind === "checkbox") return input.checked;
  const raw = input.value.trim();
  if (f.kind === "list") return raw || sendEmpty ? splitList(raw) : undefined;
  if (f.kind === "lines") return raw || sendEmpty ? raw.split("\n").map((s) => s.trim()).filter(Boolean) : undefined;
  if (f.kind === "headers") return raw || sendEmpty ? parseHeaders(raw) : undefined;
  if (f.kind === "env") return raw || sendEmpty ? parseHeaders(raw, "=") : undefined;
  if (f.kind === "json") {
    if (!raw) return sendEmpty ? {} : undefined;
    let parsed;
    try { parsed = JSON.parse(raw); } catch (e) { throw new Error("is not valid JSON (" + e.message + ")"); }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new Error("must be a JSON object");
    return parsed;
  }
  if (raw === "") {
    if (f.required) throw new Error("is required");
    return sendEmpty && f.nullable ? null : undefined;
  }
  if (f.kind === "number") {
    const n = Number(raw);
    if (!Number.isFinite(n)) throw new Error("must be a number");
    return n;
  }
  if (f.kind === "datetime") return new Date(raw + "Z").getTime() / 1000;
  return f.kind === "password" ? input.value : raw;
}

/**
 * A form: {fields, submitLabel, onSubmit(body) -> Promise, sendEmpty, values, id}.
 * Returns {node, set(values), read(), error(err), controls}.
 */
export function form(spec) {
  const prefix = spec.id || newId("form");
  const controls = {};
  const formError = h("p", { class: "error", role: "alert" });
  const groups = [];
  let current = null;
  const startGroup = (legend) => {
    current = h("div", { class: "grid" });
    groups.push(legend ? h("fieldset", {}, h("legend", {}, legend), current) : current);
  };
  for (const f of spec.fields) {
    if (f.legend !== undefined) { startGroup(f.legend); continue; }
    if (!current) startGroup(null);
    const id = prefix + "-" + f.name;
    const error = h("p", { class: "error", id: id + "-error" });
    const hint = f.hint ? h("p", { class: "hint", id: id + "-hint", text: f.hint }) : null;
    const described = [hint ? id + "-hint" : null, id + "-error"].filter(Boolean).join(" ");
    const input = control(f, id, described);
    const label = h("label", { for: id }, f.label, f.required ? h("span", { class: "req", "aria-hidden": "true" }, " *") : null);
    controls[f.name] = { f, input, error };
    const wide = ["headers", "env", "json", "textarea", "lines"].includes(f.kind) || f.wide;
    current.append(f.kind === "checkbox"
      ? h("div", { class: "field check" }, input, label, hint, error)
      : h("div", { class: "field" + (wide ? " wide" : "") }, label, input, hint, error));
  }
  const submit = h("button", { type: "submit", class: "primary" }, spec.submitLabel || "Save");
  const node = h("form", { method: "post", novalidate: true, class: "form", id: prefix },
    groups, formError, h("div", { class: "form-actions" }, submit, spec.extraButtons || null));

  function clear() {
    formError.textContent = "";
    for (const { input, error } of Object.values(controls)) {
      error.textContent = "";
      input.removeAttribute("aria-invalid");
    }
  }

  function showAt(name, message) {
    const c = controls[name];
    if (!c) {
      formError.textContent = message;
      return;
    }
    c.error.textContent = message;
    c.input.setAttribute("aria-invalid", "true");
    c.input.focus();
  }

  /** Show an API error (or Error) next to the field it names. */
  function error(err) {
    const pointer = err.field ? String(err.field) : "";
    const name = pointer.replace(/^\//, "").split("/")[0];
    showAt(name, err.message);
  }

  function read() {
    const body = {};
    for (const { f, input } of Object.values(controls)) {
      if (f.readOnly) continue;
      let value;
      try {
        value = readControl(f, input, spec.sendEmpty);
      } catch (e) {
        const failure = new Error(f.label + " " + e.message);
        failure.field = "/" + f.name;
        throw failure;
      }
      if (value !== undefined) body[f.name] = value;
    }
    return body;
  }

  function set(values) {
    for (const { f, input } of Object.values(controls)) {
      if (values && f.name in values) setControl(f, input, values[f.name]);
      else if (f.value !== undefined) setControl(f, input, f.value);
    }
  }

  set(spec.values || {});
  node.addEventListener("submit", async (event) => {
    event.preventDefault();
    clear();
    let body;
    try {
      body = read();
    } catch (e) {
      error(e);
      return;
    }
    submit.disabled = true;
    try {
      await spec.onSubmit(body);
    } catch (e) {
      if (e.status !== 401) error(e);
    } finally {
      submit.disabled = false;
    }
  });
  return { node, set, read, error, clear, controls };
}
