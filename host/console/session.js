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

/** Ends the session on the host (best effort) and here. */
export async function signOut() {
  try {
    await api("/v1/session", { method: "DELETE", expect401: true });
  } finally {
    forget();
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
