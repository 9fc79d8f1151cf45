// The one way the console talks to tally: same-origin fetch with the session
// cookie, the CSRF header on every state-changing request, ARM errors turned
// into ApiError (its message is the API's own words), and a 401 sending the
// person back to sign-in.

/** An answer of the API that was not a success. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

let csrfToken = null;
let onUnauthorized = () => {};

/** Keeps the session's CSRF token (in memory only) for later requests. */
export function setCsrfToken(token) {
  csrfToken = token;
}

/** What to do when a request answers 401 (the session ended). */
export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler;
}

const SAFE_METHODS = new Set(["GET", "HEAD"]);

/**
 * Calls the API. `json` is sent as JSON, `form` (FormData) as multipart.
 * Answers the parsed JSON, or null for 204. `expect401` leaves a 401 to the
 * caller (signing in with a wrong token) instead of ending the session.
 */
export async function api(path, { method = "GET", json, form, expect401 = false } = {}) {
  const headers = { Accept: "application/json" };
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = form; // the browser sets the multipart boundary
  }
  if (!SAFE_METHODS.has(method) && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  let response;
  try {
    response = await fetch(path, { method, headers, body, credentials: "same-origin" });
  } catch {
    throw new ApiError(0, "NetworkError", "The host could not be reached. Check that tally is running, then try again.");
  }
  if (response.status === 401 && !expect401) {
    onUnauthorized();
  }
  if (!response.ok) throw await errorOf(response);
  if (response.status === 204) return null;
  return response.json();
}

/** The ARM error of a failed answer, or a sentence naming its status. */
async function errorOf(response) {
  let code = `Http${response.status}`;
  let message = `The host answered ${response.status} ${response.statusText}.`.replace(" .", ".");
  try {
    const error = (await response.json())?.error;
    if (error?.code) code = error.code;
    if (error?.message) message = error.message;
  } catch {
    // Not JSON (a proxy's page): keep the status sentence.
  }
  return new ApiError(response.status, code, message);
}

/** A query string from an object, leaving out empty values. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(name, value);
  }
  // Colons kept as they are (legal in a query): URLs people read and paste.
  const text = search.toString().replaceAll("%3A", ":");
  return text ? `?${text}` : "";
}

/** A path segment, escaped. */
export const seg = encodeURIComponent;
