// The signed-in person: who (role, subscriptions) and the CSRF token, from
// the session cookie tally set at sign-in. Nothing is kept in storage.

import { api, setCsrfToken } from "./api.js";

let current = null;

/** The session, or null when signed out. */
export function session() {
  return current;
}

/** Whether the signed-in person is an operator. */
export function isOperator() {
  return current?.role === "operator";
}

/** Reads the session from the cookie; null when there is none. */
export async function loadSession() {
  try {
    remember(await api("/v1/session", { expect401: true }));
  } catch (error) {
    if (error.status !== 401) throw error;
    forget();
  }
  return current;
}

/** Signs in with a pasted token; throws the API's refusal in words. */
export async function signIn(token) {
  remember(await api("/v1/session", { method: "POST", json: { token }, expect401: true }));
  return current;
}

/**
 * Ends the session on the host (best effort) and here. Answers where to
 * end it at its identity provider too (a single sign-on session whose
 * provider signs out), else null.
 */
export async function signOut() {
  try {
    const ended = await api("/v1/session", { method: "DELETE", expect401: true });
    return providerLogout(ended?.logoutUrl);
  } finally {
    forget();
  }
}

/** `url` if it is an http(s) address to navigate to, else null. */
function providerLogout(url) {
  if (typeof url !== "string") return null;
  try {
    const { protocol } = new URL(url);
    return protocol === "https:" || protocol === "http:" ? url : null;
  } catch {
    return null;
  }
}

/** Forgets the session here (it ended on the host). */
export function forget() {
  current = null;
  setCsrfToken(null);
}

function remember(body) {
  current = body;
  setCsrfToken(body.csrfToken);
}
