/* Health: Redis, the event stream, listeners, ACME and the OAuth server, each
 * with what to do when something is wrong. */

import * as api from "../api.js";
import { h, fill, code, duration, badge } from "../dom.js";
import { heading, notice, recordTable, explain } from "../ui.js";

function card(title, state, rows, advice) {
  return h("section", { class: "card health-card", "aria-label": title },
    h("h3", {}, title, " ", badge(state.word, state.kind)),
    h("dl", { class: "kv" }, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    advice && advice.length ? h("ul", { class: "advice-list" }, advice.map((a) => h("li", { class: "advice" }, a))) : null);
}

const OK = { word: "ok", kind: "ok" };
const BAD = { word: "problem", kind: "failed" };
const WARN = { word: "attention", kind: "pending" };

function redisCard(health) {
  const up = health.redis === "connected";
  const advice = [];
  if (!up) {
    advice.push("The daemon keeps serving from its last snapshot, but changes cannot be saved and requests are not logged.");
    advice.push(health.embedded_redis
      ? "The embedded redis-server is " + health.embedded_redis + ": the daemon restarts it by itself; look at redis.log in the data directory."
      : "Check that the Redis at REDIS_URL runs and accepts the password (REDIS_PASSWORD); the daemon reconnects by itself.");
  }
  if (!health.events_connected) advice.push("The event stream is not followed: changes made on other daemons do not arrive until Redis is back.");
  const rows = [["Connection", health.redis], ["Event stream", health.events_connected ? "followed" : "not followed"]];
  if (health.embedded_redis) rows.push(["Embedded redis-server", health.embedded_redis]);
  return card("Redis", up && health.events_connected ? OK : BAD, rows, advice);
}

function acmeCard(certs) {
  const failed = certs.filter((c) => c.status === "failed" || c.error);
  const pending = certs.filter((c) => c.status === "pending");
  const soon = certs.filter((c) => c.not_after && c.not_after - Date.now() / 1000 < 7 * 86400);
  const advice = [];
  if (failed.length) {
    advice.push("Failed orders: " + failed.map((c) => c.cert_name).join(", ") + ". Each name must resolve to this daemon and port 80 must reach its HTTP listener (HTTP-01); see the certificate's last error.");
  }
  if (soon.length) advice.push("Expiring within a week: " + soon.map((c) => c.cert_name).join(", ") + ". Renew them from the Certificates screen once the cause of failure is fixed.");
  if (pending.length) advice.push("Orders in progress: " + pending.map((c) => c.cert_name).join(", ") + ".");
  const state = failed.length || soon.length ? BAD : pending.length ? WARN : OK;
  return card("Certificates (ACME)", state, [
    ["Ready", String(certs.filter((c) => c.status === "ready").length)],
    ["Being ordered", String(pending.length)], ["Failed", String(failed.length)],
  ], advice);
}

function oauthCard(health, metrics) {
  const rows = [];
  const advice = [];
  let state = OK;
  const server = health.oauth;
  if (server && typeof server === "object") {
    rows.push(["State", server.state], ["Issuer", server.issuer || "\u2014"], ["GitHub app", server.github_app ? "configured" : "none"]);
    if (server.state === "failed" || (server.state === "ready" && server.problem)) state = BAD;
    else if (server.state !== "ready") state = { word: server.state, kind: "pending" };
    if (server.problem) advice.push(server.problem.charAt(0).toUpperCase() + server.problem.slice(1) + ".");
  }
  if (metrics) {
    rows.push(["Signing keys", String(metrics.signing_keys)], ["Active sessions", String(metrics.sessions_active)], ["Live access tokens", String(metrics.access_tokens_live)]);
  }
  if (!rows.length) rows.push(["State", "not reported by this daemon"]);
  return card("OAuth server", state, rows, advice);
}

export default {
  title: "Health",
  async render(root, param, ctx) {
    const note = notice();
    const body = h("div");
    async function load() {
      let health;
      try {
        health = await api.get("/health");
      } catch (e) {
        if (e.status === 401) return;
        if (!e.body || !e.body.status) { note.show(explain(e), "error"); return; }
        health = e.body;
      }
      const [certs, metrics] = await Promise.all([
        api.all("/certificates/").catch(() => []),
        ctx.me.is_admin ? api.get("/oauth/metrics").catch(() => null) : null,
      ]);
      const listeners = Object.entries(health.listeners || {});
      const table = recordTable({
        caption: "Listeners", empty: "None reported: the daemon is still starting, or every listener is off.",
        columns: [["Listener", ([k]) => k], ["Endpoint", ([, v]) => code(typeof v === "string" ? v : JSON.stringify(v))]],
      });
      table.render(listeners);
      fill(body,
        h("div", { class: "cards" },
          card("Daemon", health.status === "ok" ? OK : BAD, [
            ["Status", badge(health.status, health.status === "ok" ? "ok" : "degraded")],
            ["Version", health.version], ["Uptime", duration(health.uptime || 0)],
          ], health.status === "ok" ? [] : ["Degraded: see the cards below for what is wrong."]),
          redisCard(health), acmeCard(certs), oauthCard(health, metrics)),
        h("h3", {}, "Listeners"), table,
        listeners.length ? null : h("p", { class: "advice" }, "Check the daemon's log: a listener that cannot bind (port in use, no permission for ports below 1024) stops the daemon with one line naming it."));
    }
    fill(root, heading("Health", h("button", { type: "button", onclick: load }, "Refresh")), note, body);
    await load();
    const timer = setInterval(load, 10000);
    return () => clearInterval(timer);
  },
};
