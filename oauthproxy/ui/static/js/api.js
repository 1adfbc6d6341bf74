/* The admin API from the console: the token, requests, errors.
 *
 * The API token lives in sessionStorage (this tab only) and goes out only as an
 * Authorization header to this origin: never in a cookie, never in a URL.  A 401
 * from any call signs out (the shell shows the sign-in form with the reason).
 */

const TOKEN_KEY = "oauthproxy.token";

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.detail) || "HTTP " + status);
    this.status = status;
    this.code = (body && body.error) || "http_error";
    this.field = (body && body.field) || null;
    this.body = body || {};
  }
}

let onUnauthorized = () => {};

/** Who to tell when the token stops working (the shell signs out). */
export function whenUnauthorized(callback) {
  onUnauthorized = callback;
}

/** A query string from an object, leaving out empty values. */
export function query(params) {
  const pairs = Object.entries(params || {}).filter(([, v]) => v !== undefined && v !== null && v !== "");
  return pairs.length ? "?" + new URLSearchParams(pairs.map(([k, v]) => [k, String(v)])).toString() : "";
}

/** Quote one URL path segment. */
export const seg = (value) => encodeURIComponent(value);

export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const value = token.get();
  if (value) headers.Authorization = "Bearer " + value;
  const init = { method, headers, credentials: "omit", cache: "no-store", redirect: "error" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, { error: "network", detail: "The API did not answer (" + e.message + ")." });
  }
  let data = null;
  if (response.status !== 204) {
    try { data = await response.json(); } catch (e) { data = null; }
  }
  if (response.status === 401) {
    onUnauthorized((data && data.detail) ? "The token was not accepted: " + data.detail : "The token was not accepted.");
    throw new ApiError(401, data || {});
  }
  if (!response.ok) {
    throw new ApiError(response.status, data || { detail: "HTTP " + response.status + " " + response.statusText });
  }
  return data;
}

export const get = (path, params) => api("GET", path + query(params));
export const post = (path, body) => api("POST", path, body === undefined ? {} : body);
export const put = (path, body) => api("PUT", path, body);
export const patch = (path, body) => api("PATCH", path, body);
export const del = (path, params) => api("DELETE", path + query(params));

/** Every item of a paginated list (bounded: 20 pages of 500). */
export async function all(path, params) {
  const items = [];
  let offset = 0;
  for (let page = 0; page < 20; page += 1) {
    const answer = await get(path, { ...(params || {}), limit: 500, offset });
    items.push(...answer.items);
    if (answer.next_offset === null || answer.next_offset === undefined) break;
    offset = answer.next_offset;
  }
  return items;
}

/**
 * Follow a text stream (``GET path``, e.g. a service's log): ``onText(chunk)`` for each
 * piece until the server ends it or ``signal`` aborts.  Resolves when it ends.
 */
export async function stream(path, onText, signal) {
  const headers = { Accept: "text/plain" };
  const value = token.get();
  if (value) headers.Authorization = "Bearer " + value;
  const response = await fetch(path, { headers, credentials: "omit", cache: "no-store", redirect: "error", signal });
  if (!response.ok) {
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (response.status === 401) onUnauthorized("The token was not accepted.");
    throw new ApiError(response.status, data || { detail: "HTTP " + response.status });
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  for (;;) {
    const { done, value: chunk } = await reader.read();
    if (done) return;
    onText(decoder.decode(chunk, { stream: true }));
  }
}
