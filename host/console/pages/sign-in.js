// Sign-in: paste a tally token (operator or tenant). A place for single
// sign-on ("Sign in with your organisation") is kept, hidden until the host
// offers it.

import { h, alert, field, replace } from "../dom.js";
import { signIn } from "../session.js";

/** Renders the sign-in form; `done(session)` runs after a successful sign-in. */
export function render(view, { done, notice }) {
  const token = h("input", {
    type: "password",
    name: "token",
    required: true,
    autocomplete: "off",
    spellcheck: "false",
    placeholder: "tly_…",
  });
  const messages = h("div", { class: "messages" }, notice ? h("p", { role: "status", class: "notice" }, notice) : null);
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
  // Kept for single sign-on: shown when the host offers an identity provider.
  const organisation = h(
    "div",
    { class: "sso", id: "sso", hidden: true },
    h("p", { class: "divider" }, h("span", {}, "or")),
    h("button", { type: "button", class: "button wide", disabled: true }, "Sign in with your organisation"),
  );
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
}
