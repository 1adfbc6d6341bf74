/* The console's shell: sign in and out, the navigation, one screen at a time.
 *
 * Screens are ES modules under screens/, each exporting {title, adminOnly,
 * render(root, params, ctx)}; render may return a function that stops what the
 * screen started (polling, a live tail) when another screen is shown.  The URL
 * hash names the screen and its parameter (#/proxies/app.example.com).
 */

import * as api from "./api.js";
import { $, h, fill } from "./dom.js";
import proxies from "./screens/proxies.js";
import routes from "./screens/routes.js";
import certificates from "./screens/certificates.js";
import services from "./screens/services.js";
import tokens from "./screens/tokens.js";
import auth from "./screens/auth.js";
import oauth from "./screens/oauth.js";
import logs from "./screens/logs.js";
import health from "./screens/health.js";

const SCREENS = { proxies, routes, certificates, services, tokens, auth, oauth, logs, health };
const ctx = { me: null, go };
let stop = null;
let shown = null;

function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function parse() {
  const [, name, ...rest] = location.hash.split("/");
  return { name: SCREENS[name] ? name : "proxies", param: rest.length ? decodeURIComponent(rest.join("/")) : null };
}

async function route() {
  if (!ctx.me) return;
  const { name, param } = parse();
  const screen = SCREENS[name];
  if (stop) { try { stop(); } catch (e) { /* a screen's cleanup must not block the next */ } }
  stop = null;
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.screen === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  // a fresh container per navigation: a screen still loading when the operator moves
  // on draws into a detached element, never over the next screen
  const root = h("div", { class: "screen-" + name });
  fill($("screen"), root);
  const moved = shown !== name + "/" + param;
  shown = name + "/" + param;
  document.title = screen.title + " \u2013 oauthproxy console";
  if (screen.adminOnly && !ctx.me.is_admin) {
    fill(root, h("h2", { tabindex: "-1", class: "screen-title" }, screen.title),
      h("p", { class: "notice notice-error" }, "This screen needs the admin token; you signed in as " + ctx.me.name + "."));
  } else {
    const stopper = (await screen.render(root, param, ctx)) || null;
    if (root.isConnected) stop = stopper;
    else if (stopper) stopper();
  }
  if (moved) {
    const title = root.querySelector(".screen-title");
    if (title) title.focus();
  }
}

function signOut(message, quiet) {
  if (stop) { try { stop(); } catch (e) { /* ignore */ } }
  stop = null;
  shown = null;
  ctx.me = null;
  api.token.clear();
  fill($("screen"));
  for (const dialog of document.querySelectorAll("dialog")) dialog.remove();
  $("screen").hidden = true;
  $("nav").hidden = true;
  $("sign-out").hidden = true;
  $("whoami").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("login-error").className = quiet ? "hint" : "error";
  $("token-input").value = "";
  $("token-input").focus();
}

async function signIn(value) {
  api.token.set(value);
  $("login-error").textContent = "";
  $("status").textContent = "Checking the token\u2026";
  let me;
  try {
    me = await api.get("/whoami");
  } catch (e) {
    $("status").textContent = "";
    if (e.status !== 401) signOut("The API did not accept the token: " + e.message);
    return;
  }
  $("status").textContent = "";
  ctx.me = me;
  $("login").hidden = true;
  $("login-error").textContent = "";
  $("screen").hidden = false;
  $("nav").hidden = false;
  $("sign-out").hidden = false;
  $("whoami").hidden = false;
  $("whoami").textContent = "Signed in as " + me.name + (me.is_admin ? " (admin)" : "");
  for (const link of document.querySelectorAll("#nav a")) {
    const screen = SCREENS[link.dataset.screen];
    link.parentElement.hidden = Boolean(screen.adminOnly && !me.is_admin);
  }
  shown = null;
  await route();
}

function start() {
  api.whenUnauthorized((message) => signOut(message));
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token-input").value.trim();
    $("token-input").value = "";
    if (!value) {
      $("login-error").textContent = "Paste a token first.";
      $("login-error").className = "error";
      return;
    }
    signIn(value);
  });
  $("sign-out").addEventListener("click", () => signOut("Signed out.", true));
  window.addEventListener("hashchange", route);
  const saved = api.token.get();
  if (saved) signIn(saved);
  else signOut("", true);
}

start();
