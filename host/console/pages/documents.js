// Documents: an adapter's documents joined over a date range, with download
// links and the absolute URL to paste into Power BI (or any BI tool).

import { api, query, seg } from "../api.js";
import { h, alert, field, loading, replace, select, status } from "../dom.js";
import { dateRange } from "../range.js";

/** Renders the chooser; its state lives in the hash's query. */
export async function render(view, { query: hashQuery, setQuery }) {
  const installations = await api("/v1/adapters");
  const adapter = select(
    { name: "adapter", required: true },
    installations.map((one) => one.name),
    hashQuery.get("adapter") ?? installations[0]?.name,
  );
  const range = dateRange({ from: hashQuery.get("from"), to: hashQuery.get("to"), legend: "Windows starting (UTC days, both included)" });
  const results = h("section", { class: "card", "aria-label": "Documents" });
  replace(
    view,
    h("div", { class: "page-head" }, h("h1", { tabindex: -1 }, "Documents"), h("p", { class: "subtle" }, "Each document joined over the succeeded runs whose windows start in the range.")),
    installations.length
      ? h(
          "form",
          { class: "toolbar card", onsubmit: (event) => (event.preventDefault(), show()) },
          h("div", { class: "row" }, field("Adapter", adapter), range.element, h("div", { class: "field actions" }, h("button", { type: "submit", class: "button primary" }, "Show"))),
        )
      : null,
    results,
  );
  if (!installations.length) {
    replace(results, status("No adapter is installed, so there are no documents."));
    return;
  }

  async function show() {
    let chosen;
    try {
      chosen = range.value();
    } catch (error) {
      replace(results, alert(error));
      return;
    }
    const name = adapter.value;
    setQuery({ adapter: name, from: chosen.from, to: chosen.to });
    replace(results, loading());
    const bounds = query({ from: chosen.fromTime, to: chosen.toTime });
    try {
      const names = await api(`/v1/adapters/${seg(name)}/documents${bounds}`);
      if (!names.length) {
        replace(results, status(`${name} has published no document yet.`));
        return;
      }
      replace(
        results,
        h("h2", {}, `Documents of ${name}`),
        h("p", { class: "hint" }, "In Power BI: Get data › Web, paste the URL, and send the header Authorization: Bearer <an operator token>."),
        h(
          "ul",
          { class: "doc-list" },
          names.map((document) => {
            const path = `/v1/adapters/${seg(name)}/documents/${seg(document)}${bounds}`;
            return h(
              "li",
              {},
              h("a", { href: path, download: document }, document),
              h("p", { class: "label" }, "Power BI URL:"),
              h("code", { class: "url", "aria-label": `Power BI URL for ${document}` }, `${location.origin}${path}`),
            );
          }),
        ),
      );
    } catch (error) {
      replace(results, alert(error));
    }
  }
  await show();
}
