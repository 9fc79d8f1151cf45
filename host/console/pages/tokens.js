// Tokens: the tokens that may call tally (never their secrets), a form to
// create one (its secret shown once) and revoking one (confirmed).

import { api } from "../api.js";
import { confirmDialog } from "../dialog.js";
import { h, alert, field, replace, select, status } from "../dom.js";
import * as fmt from "../format.js";
import { table } from "../table.js";

/** Renders the list and the form. */
export async function render(view) {
  const listSlot = h("section", { class: "card" });
  const messages = h("div", {});
  const role = select({ name: "role" }, [["tenant", "Tenant"], ["reporter", "Reporter"], ["operator", "Operator"]], "tenant");
  const subscriptions = h("input", { type: "text", name: "subscriptions", autocomplete: "off", class: "wide-input mono", placeholder: "sub-1, sub-2" });
  const subscriptionsField = field("Subscriptions", subscriptions, "A tenant's subscriptions, separated by commas or spaces.");
  const description = h("input", { type: "text", name: "description", autocomplete: "off", class: "wide-input" });
  const showSubscriptions = () => {
    subscriptionsField.hidden = role.value !== "tenant";
  };
  role.addEventListener("change", showSubscriptions);
  showSubscriptions();

  const form = h(
    "form",
    {
      class: "stack",
      onsubmit: async (event) => {
        event.preventDefault();
        const ids = role.value === "tenant" ? subscriptions.value.split(/[\s,]+/).filter(Boolean) : [];
        if (role.value === "tenant" && ids.length === 0) {
          replace(messages, alert("A tenant token needs at least one subscription."));
          subscriptions.focus();
          return;
        }
        try {
          const created = await api("/v1/tokens", { method: "POST", json: { role: role.value, subscriptions: ids, description: description.value } });
          form.reset();
          showSubscriptions();
          replace(messages, secretView(created));
          await load();
        } catch (error) {
          replace(messages, alert(error));
        }
      },
    },
    h("div", { class: "row" }, field("Role", role), subscriptionsField, field("Description", description)),
    h("div", { class: "actions-bar" }, h("button", { type: "submit", class: "button primary" }, "Create token")),
  );
  replace(
    view,
    h("div", { class: "page-head" }, h("h1", { tabindex: -1 }, "Tokens"), h("p", { class: "subtle" }, "Who may call this host. Secrets are stored as digests and never shown again.")),
    h("section", { class: "card", "aria-labelledby": "create-heading" }, h("h2", { id: "create-heading" }, "Create a token"), form, messages),
    listSlot,
  );

  async function load() {
    try {
      const tokens = await api("/v1/tokens");
      replace(
        listSlot,
        table({
          caption: `Tokens (${tokens.length})`,
          columns: [
            { label: "ID", cell: (token) => String(token.id), header: true },
            { label: "Role", cell: (token) => token.role },
            { label: "Subscriptions", cell: (token) => (token.subscriptions?.length ? h("span", { class: "mono" }, token.subscriptions.join(", ")) : "—") },
            { label: "Description", cell: (token) => token.description || "—" },
            { label: "Created", cell: (token) => fmt.dateTime(token.createdAt) },
            { label: "Revoke", cell: (token) => h("button", { type: "button", class: "button danger-outline", onclick: () => revoke(token) }, "Revoke") },
          ],
          rows: tokens,
          empty: "No token exists.",
        }),
      );
    } catch (error) {
      replace(listSlot, alert(error));
    }
  }

  async function revoke(token) {
    const confirmed = await confirmDialog({
      title: `Revoke token ${token.id}?`,
      body: h(
        "p",
        {},
        `The ${token.role} token ${token.id}${token.description ? ` (${token.description})` : ""} stops working at once and its console sessions end. Anything using it must be given a new token.`,
      ),
      confirmLabel: `Revoke token ${token.id}`,
    });
    if (!confirmed) return;
    try {
      await api(`/v1/tokens/${token.id}`, { method: "DELETE" });
      replace(messages, h("p", { role: "status", class: "success" }, `Token ${token.id} is revoked.`));
      await load();
    } catch (error) {
      replace(messages, alert(error));
    }
  }
  await load();
}

/** The new secret, shown once, with a copy button. */
function secretView(created) {
  const copied = h("span", { role: "status", class: "hint" });
  return h(
    "div",
    { class: "notice stack" },
    h("p", {}, h("strong", {}, `Token ${created.id} (${created.role}) is created. `), "Copy its secret now: it is shown only once."),
    h("code", { class: "url secret", "aria-label": "New token secret" }, created.secret),
    h(
      "div",
      { class: "actions-bar" },
      h(
        "button",
        {
          type: "button",
          class: "button",
          onclick: async () => {
            try {
              await navigator.clipboard.writeText(created.secret);
              copied.textContent = "Copied.";
            } catch {
              copied.textContent = "Copying is not allowed here: select the secret and copy it.";
            }
          },
        },
        "Copy secret",
      ),
      copied,
    ),
  );
}
