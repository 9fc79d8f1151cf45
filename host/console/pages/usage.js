// Usage explorer: a reported-time range, Hourly/Daily, a grouping and an
// optional subscription; a stacked chart by meter, totals by meter, the
// grouped table, its CSV and the equivalent Azure usage API URL.

import { api } from "../api.js";
import { stackedChart } from "../chart.js";
import { h, alert, field, loading, replace, select, status } from "../dom.js";
import * as fmt from "../format.js";
import { dateRange } from "../range.js";
import { table } from "../table.js";
import { GROUPINGS, azureUrl, csvUrl, groupByParam, summaryUrl } from "../summary.js";

/** Renders the explorer; the form's state lives in the hash's query. */
export async function render(view, { query, session, setQuery }) {
  const range = dateRange({ from: query.get("from"), to: query.get("to") });
  const granularity = select({ name: "granularity" }, ["Daily", "Hourly"], query.get("granularity") ?? "Daily");
  const grouping = select(
    { name: "groupBy" },
    GROUPINGS.map(([value, label]) => [value, label]),
    query.get("groupBy") ?? "subscription",
  );
  const tagKey = h("input", { type: "text", name: "tag", value: query.get("tag") ?? "", autocomplete: "off", placeholder: "e.g. cost-center" });
  const tagField = field("Tag key", tagKey);
  const subscription = select({ name: "subscription" }, [["", allLabel(session)]], "");
  const results = h("section", { class: "results", "aria-label": "Results" });
  const showTag = () => {
    tagField.hidden = grouping.value !== "tag";
    tagKey.required = grouping.value === "tag";
  };
  grouping.addEventListener("change", showTag);
  showTag();

  const form = h(
    "form",
    { class: "toolbar card", onsubmit: (event) => (event.preventDefault(), show()) },
    range.element,
    h(
      "div",
      { class: "row" },
      field("Granularity", granularity),
      field("Group by", grouping),
      tagField,
      field("Subscription", subscription),
      h("div", { class: "field actions" }, h("button", { type: "submit", class: "button primary" }, "Show")),
    ),
  );
  replace(
    view,
    h("div", { class: "page-head" }, h("h1", { tabindex: -1 }, "Usage"), h("p", { class: "subtle" }, "By reported time, aggregated on the server. Days and times are UTC.")),
    form,
    results,
  );

  fillSubscriptions(subscription, session, query.get("subscription") ?? "");

  async function show() {
    let chosen;
    try {
      chosen = {
        range: range.value(),
        granularity: granularity.value,
        groupBy: groupByParam(grouping.value, tagKey.value.trim()),
        subscription: subscription.value,
      };
      if (grouping.value === "tag" && !tagKey.value.trim()) throw new Error("Type the tag key to group by, e.g. cost-center.");
    } catch (error) {
      replace(results, alert(error));
      return;
    }
    setQuery({
      from: chosen.range.from,
      to: chosen.range.to,
      granularity: chosen.granularity,
      groupBy: grouping.value,
      tag: grouping.value === "tag" ? tagKey.value.trim() : "",
      subscription: chosen.subscription,
    });
    replace(results, loading());
    try {
      const summary = await api(summaryUrl(chosen));
      replace(results, summaryView(summary, chosen, grouping.value, tagKey.value.trim(), session));
    } catch (error) {
      replace(results, alert(error));
    }
  }
  await show();
}

function allLabel(session) {
  return session.role === "operator" ? "All subscriptions" : "All my subscriptions";
}

/** Fills the subscription filter from GET /v1/subscriptions (theirs, for a tenant). */
async function fillSubscriptions(control, session, selected) {
  try {
    const seen = await api("/v1/subscriptions");
    const ids = new Set(seen.map((one) => one.subscriptionId));
    if (selected) ids.add(selected);
    replace(control, h("option", { value: "" }, allLabel(session)), [...ids].sort().map((id) => h("option", { value: id }, id)));
    control.value = selected;
  } catch {
    // The filter stays "all"; the summary itself reports errors.
  }
}

/** The chart, totals, table, CSV link and Azure URL of one summary. */
function summaryView(summary, chosen, grouping, tagKey, session) {
  const header = GROUPINGS.find(([value]) => value === grouping)[2];
  const groupName = grouping === "tag" ? `tag ${tagKey}` : grouping;
  const period = `${fmt.dateTime(summary.from)} to ${fmt.dateTime(summary.to)}`;
  if (summary.meters.length === 0) {
    return h(
      "div",
      { class: "stack" },
      status(`No usage was reported from ${period}${chosen.subscription ? ` for ${chosen.subscription}` : ""}.`),
      links(chosen, session, groupName),
    );
  }
  const chartSlot = h("div", { class: "chart-slot" });
  const chartMeter = select(
    { name: "chartMeter" },
    [["", "All meters, stacked (mixed units)"], ...summary.meters.map((meter) => [meter.meterId, `${meter.name} (${meter.unit})`])],
    "",
  );
  const drawChart = () => {
    const picked = summary.meters.filter((meter) => !chartMeter.value || meter.meterId === chartMeter.value);
    const units = [...new Set(picked.map((meter) => meter.unit))];
    replace(
      chartSlot,
      stackedChart({
        buckets: summary.buckets,
        series: picked.map((meter) => ({ label: meter.name, unit: meter.unit, values: meter.series })),
        granularity: summary.granularity,
        yLabel: units.length === 1 ? units[0] : "Quantity (mixed units)",
        caption: `${summary.granularity} usage by usage time, reported ${period}.`,
      }),
    );
  };
  chartMeter.addEventListener("change", drawChart);
  drawChart();

  const totals = table({
    caption: "Totals by meter",
    columns: [
      { label: "Meter", cell: (meter) => meter.name, header: true },
      { label: "Unit", cell: (meter) => meter.unit },
      { label: "Quantity", cell: (meter) => fmt.number(meter.total), numeric: true },
    ],
    rows: summary.meters,
  });
  const rows = table({
    caption: `Usage by ${groupName}`,
    columns: [
      { label: header, cell: (row) => (row.group === "" ? h("span", { class: "subtle" }, grouping === "tag" ? "(no tag)" : "(none)") : row.group) },
      { label: "Meter", cell: (row) => row.meterName },
      { label: "Unit", cell: (row) => row.unit },
      { label: "Quantity", cell: (row) => fmt.number(row.quantity), numeric: true },
    ],
    rows: summary.rows,
    empty: "No usage in this range.",
    tall: true,
  });
  return h(
    "div",
    { class: "stack" },
    h(
      "section",
      { class: "card", "aria-labelledby": "chart-heading" },
      h("div", { class: "card-head" }, h("h2", { id: "chart-heading" }, "Quantity by meter"), field("Chart", chartMeter)),
      chartSlot,
    ),
    h("section", { class: "card" }, h("h2", {}, "Totals"), totals),
    links(chosen, session, groupName),
    h(
      "section",
      { class: "card" },
      h("h2", {}, `By ${groupName}`),
      rows,
      h("p", { class: "subtle" }, `${fmt.count(summary.rows.length)} rows, computed on the server from ${fmt.count(summary.aggregateRows)} aggregate rows.`),
    ),
  );
}

/** "Download CSV" and the Azure usage API URL for the same selection. */
function links(chosen, session, groupName) {
  const ownSubscriptions = session.role === "tenant" ? session.subscriptions ?? [] : [];
  const subscription = chosen.subscription || (ownSubscriptions.length === 1 ? ownSubscriptions[0] : "");
  const perSubscriptionNote =
    !subscription && session.role === "tenant"
      ? h("p", { class: "hint" }, "The Azure usage API reads one subscription at a time: choose one above for its URL.")
      : null;
  const { url, endsEarly } = azureUrl({ ...chosen, subscription: subscription || (ownSubscriptions[0] ?? "") });
  const endsEarlyNote = endsEarly
    ? h("p", { class: "hint" }, `That API answers only for reported times that have passed, so this URL ends at ${fmt.dateTime(endsEarly)}.`)
    : null;
  return h(
    "section",
    { class: "card", "aria-labelledby": "links-heading" },
    h("h2", { id: "links-heading" }, "Take it elsewhere"),
    h("p", {}, h("a", { href: csvUrl(chosen), class: "button", download: "" }, "Download CSV"), " ", h("span", { class: "hint" }, `Exactly the "Usage by ${groupName}" table.`)),
    h("p", { class: "label" }, "The same usage through the Azure-compatible usage API (row by row, paged):"),
    h("code", { class: "url", "aria-label": "Azure usage API URL" }, url),
    endsEarlyNote,
    perSubscriptionNote,
  );
}
