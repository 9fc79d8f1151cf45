// One installation: what it is, its health, its manifest (secrets already
// hidden by the API), its runs, and the operator's actions: run or correct a
// date range, enable/disable, upgrade (multipart PUT), remove (confirmed).

import { api, seg } from "../api.js";
import { badge, health } from "../health.js";
import { confirmDialog } from "../dialog.js";
import { h, alert, details, field, loading, replace, status } from "../dom.js";
import * as fmt from "../format.js";
import { dateRange } from "../range.js";
import { runHref, runsTable } from "../runs.js";
import { table } from "../table.js";

/** Renders the adapter page for `params.name`. */
export async function render(view, { params }) {
  const name = params.name;
  const path = `/v1/adapters/${seg(name)}`;
  const heading = h("h1", { tabindex: -1 }, name);
  replace(view, h("p", { class: "breadcrumb" }, h("a", { href: "#/adapters" }, "Adapters"), " › ", name), heading, loading());
  const [installation, runs] = await Promise.all([api(path), api(`${path}/runs?limit=1000`)]);
  const messages = h("div", { class: "messages" });
  const say = (node) => replace(messages, node);
  const reload = () => render(view, { params });

  const state = health(installation);
  const held = installation.heldBy;
  const toggle = installation.enabled
    ? h("button", { type: "button", class: "button", onclick: () => act(() => api(`${path}/disable`, { method: "POST" }), `${name} is disabled: no new runs start.`) }, "Disable")
    : h("button", { type: "button", class: "button", onclick: () => act(() => api(`${path}/enable`, { method: "POST" }), `${name} is enabled.`) }, "Enable");
  const remove = h("button", { type: "button", class: "button danger-outline", onclick: () => removeAdapter(name, runs.length) }, "Remove");

  replace(
    view,
    h("p", { class: "breadcrumb" }, h("a", { href: "#/adapters" }, "Adapters"), " › ", name),
    h("div", { class: "title-row" }, heading, badge(state)),
    held
      ? h(
          "div",
          { class: held.status === "failed" ? "alert" : "notice" },
          h("strong", {}, `Held by `, h("a", { href: runHref(name, held.id) }, `Run ${held.id}`)),
          ` (${fmt.windowRange(held.windowStart, held.windowEnd)}): `,
          held.reason ?? held.status,
          held.status === "failed" ? h("p", {}, "Run the window again once the cause is fixed.") : null,
        )
      : null,
    messages,
    h(
      "section",
      { class: "card" },
      h("h2", {}, "Installation"),
      details([
        ["Adapter", `${installation.adapter.name} ${installation.adapter.version}`],
        ["Contract (world)", installation.world],
        ["Produces", installation.adapter.produces.join(", ") || "—"],
        ["Window", `${installation.window}, lag ${installation.lag}`],
        ["Granularity", installation.granularity],
        ["Exported up to", fmt.dateTime(installation.watermark)],
        ["Enabled", installation.enabled ? "Yes" : "No"],
        ["Publishes to tenants", installation.publishToTenants ? "Yes: what it writes for a subscription is on that subscription's Statements" : "No"],
        ["Subscriptions", installation.subscriptions.join(", ")],
        ["Allowed outbound hosts", installation.allowedOutboundHosts.join(", ") || "None"],
        ["Installed", fmt.dateTime(installation.installedAt)],
        ["Updated", fmt.dateTime(installation.updatedAt)],
        ["Component sha256", h("span", { class: "mono" }, installation.sha256)],
      ]),
      h("div", { class: "actions-bar" }, toggle, remove),
    ),
    h("div", { class: "cards" }, runForm(), upgradeForm()),
    h("section", { class: "card" }, runsTable(name, runs)),
    installation.manifest
      ? h("section", { class: "card" }, h("h2", {}, "Manifest"), h("p", { class: "hint" }, "As installed; secrets are shown as ***."), h("pre", { class: "manifest" }, installation.manifest))
      : null,
  );

  /** Runs an action, then draws the page again with its outcome. */
  async function act(action, done) {
    try {
      await action();
      await reload();
      replace(view.querySelector(".messages"), h("p", { role: "status", class: "success" }, done));
    } catch (error) {
      say(alert(error));
    }
  }

  function runForm() {
    const range = dateRange({ from: fmt.addDays(fmt.todayUtc(), -1), to: fmt.addDays(fmt.todayUtc(), -1), legend: "Windows to run (UTC days, both included)", presets: false });
    const correction = h("input", { type: "checkbox", name: "correction", id: "run-correction" });
    const outcome = h("div", {});
    return h(
      "section",
      { class: "card", "aria-labelledby": "run-heading" },
      h("h2", { id: "run-heading" }, "Run or correct"),
      h(
        "form",
        {
          class: "stack",
          onsubmit: async (event) => {
            event.preventDefault();
            try {
              const chosen = range.value();
              const exported = runs.filter((run) => run.status === "succeeded" && run.windowStart < chosen.toTime && run.windowEnd > chosen.fromTime);
              if (exported.length && !correction.checked) {
                throw new Error(`${exported.length} window(s) in this range were already exported. Check "Correction" to export them again as corrections.`);
              }
              replace(outcome, status("Queuing…"));
              const requested = await api(`${path}/runs`, { method: "POST", json: { from: chosen.fromTime, to: chosen.toTime } });
              await reload();
              replace(view.querySelector(".messages"), requestedView(requested));
            } catch (error) {
              replace(outcome, alert(error));
            }
          },
        },
        range.element,
        h("div", { class: "field check" }, correction, h("label", { for: correction.id }, "Correction")),
        h("p", { class: "hint" }, "Windows already exported are exported again as corrections (the adapter is told); failed ones run again."),
        outcome,
        h("div", { class: "actions-bar" }, h("button", { type: "submit", class: "button primary" }, "Run")),
      ),
    );
  }

  function requestedView(requested) {
    const words = { queued: "First export queued", correction: "Correction queued", requeued: "Queued again", alreadyqueued: "Already queued" };
    return h(
      "div",
      { role: "status", class: "success" },
      h("p", {}, `${requested.length} window(s) requested.`),
      table({
        caption: "Requested windows",
        columns: [
          { label: "Window (UTC)", cell: (one) => fmt.windowRange(one.run.windowStart, one.run.windowEnd) },
          { label: "Outcome", cell: (one) => words[one.outcome] ?? one.outcome },
          { label: "Run", cell: (one) => h("a", { href: runHref(name, one.run.id) }, `Run ${one.run.id}`) },
        ],
        rows: requested,
        empty: "No window in this range.",
      }),
    );
  }

  function upgradeForm() {
    const manifest = h("input", { type: "file", name: "manifest", accept: ".toml,text/plain", required: true });
    const component = h("input", { type: "file", name: "component", accept: ".wasm,application/wasm" });
    const outcome = h("div", {});
    return h(
      "section",
      { class: "card", "aria-labelledby": "upgrade-heading" },
      h("h2", { id: "upgrade-heading" }, "Upgrade"),
      h(
        "form",
        {
          class: "stack",
          onsubmit: async (event) => {
            event.preventDefault();
            const form = new FormData();
            if (!manifest.files[0]) {
              replace(outcome, alert("Choose the new manifest (.toml): it pins the component's sha256."));
              return;
            }
            form.append("manifest", manifest.files[0]);
            if (component.files[0]) form.append("component", component.files[0]);
            replace(outcome, status("Uploading and checking the component…"));
            await act(() => api(path, { method: "PUT", form }), `${name} is upgraded; its runs, documents and watermark stay.`).then(() => {
              if (outcome.isConnected) replace(outcome);
            });
          },
        },
        field("Manifest", manifest, "The new manifest (TOML); it pins the component by sha256."),
        field("Component", component, "The WebAssembly component; leave out when the host already has the one the manifest pins."),
        outcome,
        h("div", { class: "actions-bar" }, h("button", { type: "submit", class: "button" }, "Upgrade")),
      ),
    );
  }

  async function removeAdapter(installationName, runCount) {
    const confirmed = await confirmDialog({
      title: `Remove ${installationName}?`,
      body: [
        h("p", {}, `This removes the installation ${installationName} with everything it exported:`),
        h(
          "ul",
          {},
          h("li", {}, `its ${runCount >= 1000 ? "1,000 or more" : fmt.count(runCount)} run(s) and their logs;`),
          h("li", {}, "its documents — links and BI reports that read them stop working;"),
          h("li", {}, "its watermark (a new installation starts over)."),
        ),
        h("p", {}, "Usage data is not touched. This cannot be undone."),
      ],
      confirmLabel: `Remove ${installationName}`,
    });
    if (!confirmed) return;
    try {
      await api(path, { method: "DELETE" });
      location.assign("#/adapters");
    } catch (error) {
      say(alert(error));
    }
  }
}
