// Operator overview: usage received today and this month, the ingest rate,
// the last report, adapters' health (failing or held first, with the
// reason) and the host (version, database, replicas).

import { api } from "../api.js";
import { adapterHref, badge, byUrgency, health } from "../health.js";
import { h, alert, details, loading, replace } from "../dom.js";
import * as fmt from "../format.js";
import { table } from "../table.js";

/** Renders the overview. */
export async function render(view) {
  const host = h("div", { class: "stack" }, loading());
  const adaptersSlot = h("div", {}, loading());
  replace(
    view,
    h("div", { class: "page-head" }, h("h1", { tabindex: -1 }, "Overview"), h("p", { class: "subtle" }, "Usage by reported time; days and months are UTC.")),
    host,
    h("section", { class: "card", "aria-labelledby": "adapters-heading" }, h("h2", { id: "adapters-heading" }, "Adapters"), adaptersSlot),
  );
  await Promise.all([
    api("/v1/overview").then(
      (overview) => replace(host, figures(overview)),
      (error) => replace(host, alert(error)),
    ),
    api("/v1/adapters").then(
      (installations) => replace(adaptersSlot, adapterHealth(installations)),
      (error) => replace(adaptersSlot, alert(error)),
    ),
  ]);
}

function figures(overview) {
  const usageCard = (title, period) =>
    card(title, [
      ["Records", fmt.count(period.records)],
      ["Subscriptions", fmt.count(period.subscriptions)],
      ["Meters", fmt.count(period.meters)],
    ]);
  const last = overview.lastReportedTime;
  return h(
    "div",
    { class: "stack" },
    h(
      "div",
      { class: "cards" },
      usageCard(`Today (${overview.now.slice(0, 10)} UTC)`, overview.today),
      usageCard(`This month (${overview.now.slice(0, 7)})`, overview.month),
      h(
        "section",
        { class: "card metric" },
        h("h2", {}, "Ingest rate"),
        h("p", { class: "big" }, fmt.count(overview.previousHourRecords)),
        h("p", { class: "subtle" }, `records in the previous hour; ${fmt.count(overview.thisHourRecords)} so far this hour`),
      ),
      h(
        "section",
        { class: "card metric" },
        h("h2", {}, "Last reported"),
        h("p", { class: "big small-big" }, last ? fmt.ago(last, overview.now) : "Never"),
        h("p", { class: "subtle" }, last ? fmt.dateTime(last) : "No usage has been reported yet."),
      ),
    ),
    h(
      "section",
      { class: "card", "aria-labelledby": "host-heading" },
      h("h2", { id: "host-heading" }, "Host"),
      details([
        ["Version", overview.version],
        ["Database", overview.backend === "postgres" ? "PostgreSQL" : overview.backend === "sqlite" ? "SQLite (embedded)" : overview.backend],
        ["Replicas seen", fmt.count(overview.replicas.length)],
      ]),
      table({
        caption: "Replicas",
        columns: [
          { label: "Replica", cell: (replica) => replica.id, header: true },
          { label: "Version", cell: (replica) => replica.version },
          { label: "Last seen", cell: (replica) => `${fmt.dateTime(replica.lastSeen)} (${fmt.ago(replica.lastSeen, overview.now)})` },
        ],
        rows: overview.replicas,
        empty: "No replica has reported in.",
      }),
    ),
  );
}

function card(title, pairs) {
  return h("section", { class: "card metric" }, h("h2", {}, title), details(pairs, "figures"));
}

function adapterHealth(installations) {
  if (installations.length === 0) {
    return h("p", { role: "status", class: "status" }, "No adapter is installed. Install one with `tally adapters install`.");
  }
  const counts = installations.map(health).reduce((acc, one) => ((acc[one.tone] = (acc[one.tone] ?? 0) + 1), acc), {});
  const summary = [
    counts.bad ? `${counts.bad} failed` : null,
    counts.warn ? `${counts.warn} held` : null,
    counts.muted ? `${counts.muted} disabled` : null,
    counts.good ? `${counts.good} healthy` : null,
  ]
    .filter(Boolean)
    .join(", ");
  return h(
    "div",
    {},
    h("p", { class: "subtle" }, summary),
    table({
      caption: "Adapter health, failing first",
      columns: [
        { label: "Installation", cell: (one) => h("a", { href: adapterHref(one.name) }, one.name), header: true },
        { label: "Status", cell: (one) => badge(health(one)) },
        { label: "Reason", cell: (one) => health(one).reason || "—" },
        { label: "Exported up to", cell: (one) => fmt.dateTime(one.watermark) },
      ],
      rows: byUrgency(installations),
    }),
  );
}

