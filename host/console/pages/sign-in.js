// Sign-in: paste a tally token (operator or tenant), or, when the host
// trusts an identity provider with a console client, sign in there (one
// button per provider: a plain navigation to the host, which sends the
// browser on to the provider and takes it back at its callback).

import { api } from "../api.js";
import { h, alert, field, replace } from "../dom.js";
import { signIn } from "../session.js";

/**
 * Renders the sign-in page. `done(session)` runs after a token sign-in;
 * `notice` says why the person is here; `error` is the host's refusal of a
 * single sign-on (from the hash's query); `wanted` is the hash route to
 * return to after signing in with a provider.
 */
export function render(view, { done, notice, error, wanted }) {
  const token = h("input", {
    type: "password",
    name: "token",
    required: true,
    autocomplete: "off",
    spellcheck: "false",
    placeholder: "tly_…",
  });
  const messages = h(
    "div",
    { class: "messages" },
    error ? alert(error) : null,
    notice ? h("p", { role: "status", class: "notice" }, notice) : null,
  );
  const button = h("button", { type: "submit", class: "button primary wide" }, "Sign in");
  const form = h(
    "form",
    {
      class: "stack",
      onsubmit: async (event) => {
        event.preventDefault();
        const value = token.value.trim();
        if (!value) {
          replace(messages, alert("Paste a token to sign in."));
          token.focus();
          return;
        }
        button.disabled = true;
        replace(messages, h("p", { role: "status", class: "status" }, "Signing in…"));
        try {
          const signedIn = await signIn(value);
          token.value = "";
          done(signedIn);
        } catch (error) {
          replace(messages, alert(error));
          token.select();
        } finally {
          button.disabled = false;
        }
      },
    },
    field("Token", token, "An operator or tenant token, as `tally token create` printed it."),
    button,
  );
  // Filled in once the host says which providers it offers; hidden if none.
  const organisation = h("div", { class: "sso stack", id: "sso", hidden: true });
  replace(
    view,
    h(
      "section",
      { class: "sign-in card" },
      h("h1", { tabindex: -1 }, "Sign in to tally"),
      h("p", { class: "lead" }, "Usage metering and billing exports. Your session lasts 8 hours."),
      messages,
      form,
      organisation,
    ),
  );
  token.focus();
  showProviders(organisation, wanted);
}

/** Asks the host for its identity providers and shows a button for each. */
async function showProviders(slot, wanted) {
  let providers;
  try {
    providers = await api("/v1/session/providers", { expect401: true });
  } catch {
    // A host without single sign-on: the token form is the way in.
    return;
  }
  const links = (Array.isArray(providers) ? providers : [])
    .map((provider) => providerLink(provider, wanted))
    .filter(Boolean);
  if (links.length === 0) return;
  replace(slot, h("p", { class: "divider" }, h("span", {}, "or")), links);
  slot.hidden = false;
}

/**
 * A link that starts signing in with `provider` on the host, asking to come
 * back to `wanted`; null unless its sign-in URL is on this host (the host
 * is the one to send the browser to the provider).
 */
function providerLink({ name, signInUrl }, wanted) {
  if (typeof name !== "string" || typeof signInUrl !== "string") return null;
  const url = new URL(signInUrl, location.origin);
  if (url.origin !== location.origin) return null;
  if (wanted) url.searchParams.set("return", wanted);
  return h("a", { class: "button wide", href: `${url.pathname}${url.search}` }, `Sign in with ${name}`);
}
