// Subscriptions: every subscription seen (a tenant: theirs), each with its
// usage per meter over a chosen range (the summary grouped by subscription).

import { api } from "../api.js";
import { h, alert, loading, replace } from "../dom.js";
import * as fmt from "../format.js";
import { dateRange } from "../range.js";
import { table } from "../table.js";
import { summaryUrl } from "../summary.js";

/** Renders the list; the range lives in the hash's query. */
export async function render(view, { query, setQuery }) {
  const range = dateRange({ from: query.get("from"), to: query.get("to") });
  const results = h("section", { class: "card", "aria-label": "Subscriptions and their usage" });
  const form = h(
    "form",
    { class: "toolbar card", onsubmit: (event) => (event.preventDefault(), show()) },
    h("div", { class: "row" }, range.element, h("div", { class: "field actions" }, h("button", { type: "submit", class: "button primary" }, "Show"))),
  );
  replace(
    view,
    h("div", { class: "page-head" }, h("h1", { tabindex: -1 }, "Subscriptions"), h("p", { class: "subtle" }, "Every subscription that has reported usage; totals by reported time (UTC).")),
    form,
    results,
  );

  async function show() {
    let chosen;
    try {
      chosen = range.value();
    } catch (error) {
      replace(results, alert(error));
      return;
    }
    setQuery({ from: chosen.from, to: chosen.to });
    replace(results, loading());
    try {
      const [seen, summary] = await Promise.all([
        api("/v1/subscriptions"),
        api(summaryUrl({ range: chosen, granularity: "Daily", groupBy: "subscription" })),
      ]);
      replace(results, listView(seen, summary, chosen));
    } catch (error) {
      replace(results, alert(error));
    }
  }
  await show();
}

function listView(seen, summary, chosen) {
  const usageBySubscription = new Map();
  for (const row of summary.rows) {
    if (!usageBySubscription.has(row.group)) usageBySubscription.set(row.group, []);
    usageBySubscription.get(row.group).push(row);
  }
  const ids = [...new Set([...seen.map((one) => one.subscriptionId), ...usageBySubscription.keys()])].sort();
  const explore = (id) =>
    `#/usage?${new URLSearchParams({ from: chosen.from, to: chosen.to, granularity: "Daily", groupBy: "meter", subscription: id })}`;
  return table({
    caption: `Usage per subscription, ${chosen.from} – ${chosen.to} (UTC days, both included)`,
    columns: [
      { label: "Subscription", cell: (id) => h("span", { class: "mono" }, id), header: true },
      { label: "Meters", cell: (id) => fmt.count(usageBySubscription.get(id)?.length ?? 0), numeric: true },
      {
        label: "Usage in range",
        cell: (id) => {
          const rows = usageBySubscription.get(id);
          if (!rows) return h("span", { class: "subtle" }, "No usage in this range");
          return h("ul", { class: "plain" }, rows.map((row) => h("li", {}, h("strong", {}, fmt.quantity(row.quantity, row.unit)), ` ${row.meterName}`)));
        },
      },
      { label: "Explore", cell: (id) => h("a", { href: explore(id), "aria-label": `Explore usage of ${id}` }, "Explore usage") },
    ],
    rows: ids,
    empty: "No subscription has reported usage yet.",
  });
}
