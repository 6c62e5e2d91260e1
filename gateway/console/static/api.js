// The gateway's JSON API with the session cookie. The CSRF token lives in memory only (never in
// storage a script injected elsewhere could read later) and goes with every request that changes
// something.

let csrf = null;
let onUnauthorized = () => {};

export class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.detail || body.error)) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

export function setSession(session) { csrf = session ? session.csrf : null; }
export function whenUnauthorized(handler) { onUnauthorized = handler; }

export async function api(method, path, body) {
  const headers = {'Accept': 'application/json'};
  if (method !== 'GET' && method !== 'HEAD') {
    headers['Content-Type'] = 'application/json';
    if (csrf) headers['X-CSRF-Token'] = csrf;
  }
  const resp = await fetch(path, {method, headers, credentials: 'same-origin',
                                  body: body === undefined ? undefined : JSON.stringify(body)});
  let data = null;
  const text = await resp.text();
  try { data = text ? JSON.parse(text) : null; } catch { data = {error: 'invalid', detail: text.slice(0, 200)}; }
  if (!resp.ok) {
    if (resp.status === 401 && path !== '/api/v1/session') onUnauthorized();
    throw new ApiError(resp.status, data);
  }
  return data;
}

export const get = (path) => api('GET', path);
