/* Building the DOM from values: attributes and text only, never HTML strings.
 *
 * Every value from the API is inserted as text (textContent or a text node), so
 * nothing an upstream, a user or a client id contains can become markup.
 */

export function h(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "value" && "value" in node) node.value = value;
    else if (key === "checked") node.checked = Boolean(value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const child of [children].flat(3)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const $ = (id) => document.getElementById(id);
export const DASH = "\u2014";
export const text = (v) => (v === null || v === undefined || v === "" ? DASH : String(v));
export const yesno = (v) => (v ? "yes" : "no");
export const list = (v) => (v && v.length ? v.join(", ") : DASH);
export const code = (v) => h("code", { text: v });
export const badge = (v, kind) => h("span", { class: "badge badge-" + (kind || v), text: v });

let uid = 0;
/** A fresh id for label/aria wiring. */
export function newId(prefix) {
  uid += 1;
  return (prefix || "id") + "-" + uid;
}

/** A POSIX time as "2025-01-02 10:11 UTC" in a <time> element (title: the full ISO time). */
export function when(seconds) {
  if (seconds === null || seconds === undefined) return DASH;
  const iso = new Date(seconds * 1000).toISOString();
  return h("time", { datetime: iso, title: iso, class: "nowrap" },
    iso.slice(0, 16).replace("T", " ") + " UTC");
}

/** Seconds as "3 d 4 h" (the two largest units). */
export function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const parts = [[Math.floor(s / 86400), "d"], [Math.floor((s % 86400) / 3600), "h"],
    [Math.floor((s % 3600) / 60), "min"], [s % 60, "s"]];
  const shown = parts.filter(([n]) => n > 0).slice(0, 2);
  return shown.length ? shown.map(([n, unit]) => n + "\u00a0" + unit).join(" ") : "0\u00a0s";
}

/** "in 3 d 4 h" / "5 min ago" relative to now. */
export function relative(seconds) {
  const delta = seconds - Date.now() / 1000;
  return delta >= 0 ? "in " + duration(delta) : duration(-delta) + " ago";
}

/** Milliseconds for people: "12.3 ms". */
export function ms(seconds) {
  if (seconds === null || seconds === undefined) return DASH;
  return (seconds * 1000).toFixed(seconds < 0.1 ? 1 : 0) + "\u00a0ms";
}

/** A certificate's expiry at a glance: relative time, coloured by how soon. */
export function expiry(notAfter) {
  if (notAfter === null || notAfter === undefined) return DASH;
  const days = (notAfter - Date.now() / 1000) / 86400;
  const kind = days < 0 ? "failed" : days < 7 ? "failed" : days < 30 ? "pending" : "ready";
  const words = days < 0 ? "expired " + relative(notAfter) : "expires " + relative(notAfter);
  return h("span", { class: "expiry expiry-" + kind, title: new Date(notAfter * 1000).toISOString() },
    badge(days < 0 ? "expired" : Math.floor(days) + " days", kind), " ", h("span", { class: "muted", text: words }));
}

/** Whether a certificate for ``domains`` is valid for ``host`` (a wildcard covers one label). */
export function covers(domains, host) {
  const labels = host.split(".").length;
  return domains.some((d) => d === host || (d.startsWith("*.") && host.endsWith(d.slice(1)) && labels === d.split(".").length));
}

/** Comma- or space-separated text as a list of non-empty items. */
export function splitList(value) {
  return String(value || "").split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
}

/** "Name: value" lines (``sep`` ":"), or "NAME=value" lines (``sep`` "="), as an object (and back). */
export function parseHeaders(value, sep = ":") {
  const out = {};
  for (const line of String(value || "").split("\n")) {
    if (!line.trim()) continue;
    const at = line.indexOf(sep);
    if (at <= 0) throw new Error("each line is Name" + (sep === ":" ? ": " : "=") + "value (\"" + line.trim().slice(0, 40) + "\" has no " + (sep === ":" ? "colon" : "=") + ")");
    out[line.slice(0, at).trim()] = sep === ":" ? line.slice(at + 1).trim() : line.slice(at + 1);
  }
  return out;
}

export function formatHeaders(object, sep = ":") {
  return Object.entries(object || {}).map(([k, v]) => k + (sep === ":" ? ": " : "=") + v).join("\n");
}

/** Remove a node's children and give it new ones. */
export function fill(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}
