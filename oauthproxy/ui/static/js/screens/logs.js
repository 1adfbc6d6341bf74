/* Request log: filters (host, client IP, status class, user, OAuth client, path,
 * time range), the matching requests, a record's detail, a live tail (follow),
 * and charts over the last hour or day. */

import * as api from "../api.js";
import { h, fill, code, when, ms, badge, text, DASH } from "../dom.js";
import { form } from "../forms.js";
import { heading, notice, section, recordTable, explain } from "../ui.js";
import { timeChart, bars } from "../charts.js";

const FOLLOW_EVERY = 1000;
const SHOWN = 200;
const RANGES = [["0.25", "last 15 minutes"], ["1", "last hour"], ["6", "last 6 hours"], ["24", "last 24 hours"], ["168", "last 7 days"], ["custom", "from/until below"]];

const FILTERS = [
  { name: "host", label: "Host", placeholder: "app.example.com" },
  { name: "ip", label: "Client IP", placeholder: "192.0.2.10" },
  { name: "status_class", label: "Status", kind: "select", options: [["", "any"], ["2xx", "2xx"], ["3xx", "3xx"], ["4xx", "4xx"], ["5xx", "5xx"], ["errors", "errors (5xx and gateway failures)"]] },
  { name: "user", label: "User", placeholder: "alice" },
  { name: "client_id", label: "OAuth client" },
  { name: "path", label: "Path starts with", placeholder: "/api/" },
  { name: "hours", label: "Time range", kind: "select", options: RANGES, value: "1" },
  { name: "since", label: "From (UTC)", kind: "datetime" },
  { name: "until", label: "Until (UTC)", kind: "datetime" },
];

/** Search parameters from the filter form's body. */
function params(body) {
  const p = { ...body, limit: SHOWN };
  if (p.status_class === "errors") { delete p.status_class; p.errors = "true"; }
  if (p.hours === "custom") delete p.hours;
  else { delete p.since; delete p.until; }
  return p;
}

/** Whether a followed record passes the filters (the tail itself is unfiltered). */
function passes(record, body) {
  if (body.host && record.host !== body.host.toLowerCase()) return false;
  if (body.ip && record.client_ip !== body.ip) return false;
  if (body.user && record.user !== body.user) return false;
  if (body.client_id && record.client_id !== body.client_id) return false;
  if (body.path && !record.path.startsWith(body.path)) return false;
  if (body.status_class === "errors") return record.status >= 500 || Boolean(record.error);
  if (body.status_class) return Math.floor(record.status / 100) + "xx" === body.status_class;
  return true;
}

function statusBadge(status) {
  return badge(String(status), Math.floor(status / 100) + "xx");
}

function detail(record) {
  const rows = [
    ["Time", when(record.time)], ["Correlation id", code(record.correlation_id)],
    ["Request", code(record.method + " " + record.path)], ["Host", record.host || DASH],
    ["Scheme", record.scheme], ["Status", statusBadge(record.status)], ["Duration", ms(record.duration)],
    ["Client IP", record.client_ip], ["User", text(record.user)], ["OAuth client", text(record.client_id)],
    ["Upstream", text(record.upstream)], ["Gateway error", text(record.error)],
    ["Bytes in / out", record.bytes_in + " / " + record.bytes_out],
  ];
  return h("div", { class: "block", id: "log-detail", tabindex: "-1" },
    h("h3", {}, "Request " + record.correlation_id),
    h("dl", { class: "kv" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])));
}

function chartsBox(note) {
  const box = h("div", { class: "charts", id: "log-charts" });
  let destroy = [];
  const range = h("select", { id: "chart-range" }, h("option", { value: "1" }, "last hour"), h("option", { value: "24" }, "last day"));
  async function load() {
    const hours = Number(range.value);
    const buckets = hours === 1 ? 60 : 96;
    let timeline;
    let top;
    try {
      [timeline, top] = await Promise.all([api.get("/logs/timeline", { hours, buckets }), api.get("/logs/top", { hours })]);
    } catch (e) {
      if (e.status !== 401) note.show(explain(e), "error");
      return;
    }
    for (const d of destroy) d();
    destroy = [];
    const xs = timeline.buckets.map((b) => b.start);
    const classes = ["2xx", "3xx", "4xx", "5xx"];
    const rate = timeChart({
      title: "Requests per second by status class", unit: "req/s", labels: classes, xs,
      ys: classes.map((c) => timeline.buckets.map((b) => b.by_status[c] / timeline.step)),
      format: (v) => v.toFixed(3), description: top.requests + " requests in the window",
    });
    const latency = timeChart({
      title: "Latency p50 and p99", unit: "ms", labels: ["p50", "p99"], xs,
      ys: [timeline.buckets.map((b) => b.p50_ms), timeline.buckets.map((b) => b.p99_ms)],
      format: (v) => v.toFixed(1) + " ms", description: "response time percentiles per interval (sampled)",
    });
    destroy.push(rate.destroy, latency.destroy);
    fill(box, rate, latency,
      bars({ title: "Top hosts", rows: top.hosts.map((r) => ({ name: r.host, value: r.requests })) }),
      bars({ title: "Top client IPs", rows: top.client_ips.map((r) => ({ name: r.client_ip, value: r.requests })), note: "Among the newest " + top.client_ips_sample + " requests." }),
      bars({ title: "Errors by reason", rows: top.error_reasons.map((r) => ({ name: r.reason, value: r.requests })), empty: "No errors in this window.", note: top.errors + " errors in the window." }));
  }
  range.addEventListener("change", load);
  const node = h("div", {}, h("div", { class: "inline" }, h("label", { for: "chart-range" }, "Charts over the"), range,
    h("button", { type: "button", onclick: load }, "Refresh charts")), box);
  node.load = load;
  node.stop = () => { for (const d of destroy) d(); };
  return node;
}

export default {
  title: "Request log",
  adminOnly: true,
  async render(root) {
    const note = notice();
    const detailBox = h("div");
    let shown = [];
    let current = {};
    let cursor = null;
    let timer = null;
    let following = false;
    const table = recordTable({
      caption: "Requests, newest first",
      empty: "No requests match.",
      rowLabel: (r) => r.correlation_id,
      columns: [
        ["Time", (r) => when(r.time)],
        ["Status", (r) => statusBadge(r.status)],
        ["Request", (r) => [h("span", { class: "muted" }, r.method + " "), r.host, code(r.path)]],
        ["Client IP", (r) => r.client_ip],
        ["User", (r) => text(r.user)],
        ["Duration", (r) => ms(r.duration)],
        ["Error", (r) => (r.error ? h("span", { class: "error-text" }, r.error) : DASH)],
      ],
      actions: (r) => h("button", { type: "button", "aria-label": "Details of request " + r.correlation_id, onclick: () => {
        fill(detailBox, detail(r));
        detailBox.firstChild.focus();
      } }, "Details"),
    });
    const count = h("p", { class: "muted", role: "status", id: "log-count" });
    function render() {
      table.render(shown);
      count.textContent = shown.length + " requests shown" + (following ? " (following: new ones appear at the top)" : "") + ".";
    }
    let searches = 0;
    /** Show what ``body`` finds, unless a newer search was asked meanwhile. */
    async function search(body) {
      const mine = ++searches;
      const answer = await api.get("/logs/search", params(body));
      if (mine !== searches) return;
      current = body;
      shown = answer.items;
      render();
    }
    const filters = form({ id: "log-filter", fields: FILTERS, submitLabel: "Search", onSubmit: search });
    filters.node.classList.add("filters-form");
    const followButton = h("button", { type: "button", id: "log-follow", "aria-pressed": "false" }, "Follow");
    async function tick() {
      try {
        const answer = await api.get("/logs/recent", cursor ? { after: cursor, limit: 500 } : { limit: 1 });
        const fresh = cursor ? answer.items.filter((r) => passes(r, current)) : [];
        cursor = answer.cursor;
        if (fresh.length) {
          shown = [...fresh.reverse(), ...shown].slice(0, SHOWN);
          render();
        }
      } catch (e) {
        if (e.status === 401) { following = false; return; }
        note.show(explain(e), "error");
      }
      if (following) timer = setTimeout(tick, FOLLOW_EVERY);
    }
    followButton.addEventListener("click", () => {
      following = !following;
      followButton.setAttribute("aria-pressed", following ? "true" : "false");
      followButton.textContent = following ? "Stop following" : "Follow";
      clearTimeout(timer);
      if (following) { cursor = null; tick(); }
      render();
    });
    const charts = chartsBox(note);
    fill(root,
      heading("Request log", followButton),
      note,
      section("Filters", filters.node),
      count, table, detailBox,
      section("Charts", charts));
    await Promise.all([
      search(filters.read()).catch((e) => { if (e.status !== 401) note.show(explain(e), "error"); }),
      charts.load(),
    ]);
    return () => { following = false; clearTimeout(timer); charts.stop(); };
  },
};
