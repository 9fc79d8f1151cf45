// Statements: the documents published to one subscription (a tenant's own;
// an operator chooses any), grouped by window, newest first, each to
// download with its SHA-256 and the provenance of the run that made it.

import { api, query, seg } from "../api.js";
import { adapterHref } from "../health.js";
import { digest } from "../digest.js";
import { h, alert, details, field, loading, replace, select, status } from "../dom.js";
import * as fmt from "../format.js";
import { provenancePairs } from "../provenance.js";
import { MONTH_PRESETS, dateRange, presetDays } from "../range.js";
import { runHref } from "../runs.js";
import { table } from "../table.js";

/** Pages of the listing (1,000 documents each, the API's bound) read at most. */
const MAX_PAGES = 5;

/** Renders the page; its state (subscription, range) lives in the hash's query. */
export async function render(view, { query: hashQuery, session, setQuery }) {
  const operator = session.role === "operator";
  const seen = (await api("/v1/subscriptions")).map((one) => one.subscriptionId);
  const asked = hashQuery.get("subscription");
  // An operator may follow a link to a subscription not seen in usage.
  const ids = operator && asked && !seen.includes(asked) ? [asked, ...seen] : seen;
  const subscription = select({ name: "subscription", required: true }, ids, asked ?? ids[0]);
  const [defaultFrom, defaultTo] = presetDays(MONTH_PRESETS, "Last 12 months");
  const range = dateRange({
    from: hashQuery.get("from") ?? defaultFrom,
    to: hashQuery.get("to") ?? defaultTo,
    legend: "Windows starting (UTC days, both included)",
    presets: MONTH_PRESETS,
  });
  const results = h("section", { class: "stack", "aria-label": "Statements" });
  replace(
    view,
    h(
      "div",
      { class: "page-head" },
      h("h1", { tabindex: -1 }, "Statements"),
      h("p", { class: "subtle" }, operator ? "The documents published to a subscription's tenants." : "The documents published to your subscriptions."),
    ),
    ids.length
      ? h(
          "form",
          { class: "toolbar card", onsubmit: (event) => (event.preventDefault(), show()) },
          h(
            "div",
            { class: "row" },
            field("Subscription", subscription),
            range.element,
            h("div", { class: "field actions" }, h("button", { type: "submit", class: "button primary" }, "Show")),
          ),
        )
      : null,
    results,
  );
  if (!ids.length) {
    replace(results, status(operator ? "No subscription has reported usage yet, so none has a statement." : "Your sign-in names no subscription."));
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
    const id = subscription.value;
    setQuery({ subscription: id, from: chosen.from, to: chosen.to });
    replace(results, loading());
    try {
      const { documents, more } = await listed(`/v1/subscriptions/${seg(id)}/documents${query({ from: chosen.fromTime, to: chosen.toTime })}`);
      replace(results, listView(id, documents, more, chosen, operator));
    } catch (error) {
      replace(results, alert(error));
    }
  }
  await show();
}

/**
 * The listing at `path`, following its `nextLink` up to `MAX_PAGES` pages:
 * `{documents, more}` (`more`: pages were left unread).
 */
async function listed(path) {
  const documents = [];
  let next = path;
  for (let page = 0; next && page < MAX_PAGES; page += 1) {
    const answer = await api(next);
    documents.push(...answer.value);
    next = answer.nextLink;
  }
  return { documents, more: Boolean(next) };
}

/** The documents grouped by window, then by the run that published them. */
function listView(id, documents, more, chosen, operator) {
  if (!documents.length) {
    return status(`No document has been published to ${id} for windows starting ${chosen.from} – ${chosen.to} (UTC).`);
  }
  const windows = new Map();
  for (const document of documents) {
    const windowKey = `${document.window.start}/${document.window.end}`;
    if (!windows.has(windowKey)) windows.set(windowKey, { ...document.window, runs: new Map() });
    const runs = windows.get(windowKey).runs;
    const runKey = `${document.adapter}/${document.runId}`;
    if (!runs.has(runKey)) runs.set(runKey, { ...document, documents: [] });
    runs.get(runKey).documents.push(document);
  }
  return [
    h(
      "p",
      { class: "hint" },
      "Each window shows its latest revision. The provenance says what made the documents: the contract and component that ran, " +
        "a digest of their configuration and one of the usage they read — enough for the operator to make each document again, byte for byte, and compare.",
    ),
    more
      ? h("p", { role: "status", class: "notice" }, `Showing the newest ${fmt.count(documents.length)} documents: choose a shorter range to see the older windows.`)
      : null,
    [...windows.values()].map((window) => windowView(window, operator)),
  ];
}

/** One window's card: a block per run that published to it. */
function windowView(window, operator) {
  const label = fmt.windowRange(window.start, window.end);
  const headingId = `window-${window.start}`;
  return h(
    "section",
    { class: "card statement-window", "aria-labelledby": headingId },
    h("h2", { id: headingId }, label),
    h("p", { class: "hint" }, fmt.windowTimes(window.start, window.end)),
    [...window.runs.values()].map((run) => runView(run, label, operator)),
  );
}

/** The documents one run published, and its provenance. */
function runView(run, windowLabel, operator) {
  const kind = run.revision > 0 ? `Correction ${run.revision}` : "First export";
  return h(
    "div",
    { class: "statement-run" },
    h(
      "h3",
      {},
      operator ? h("a", { href: adapterHref(run.adapter) }, run.adapter) : run.adapter,
      operator ? [" · ", h("a", { href: runHref(run.adapter, run.runId) }, `Run ${run.runId}`)] : null,
    ),
    h("p", { class: "hint" }, `${kind}, published ${fmt.dateTime(run.finishedAt)}.`),
    table({
      caption: `Documents, ${windowLabel}`,
      columns: [
        {
          label: "Document",
          header: true,
          cell: (document) =>
            h("a", { href: document.links.download, download: document.name, "aria-label": `${document.name}, ${windowLabel}` }, document.name),
        },
        { label: "Type", cell: (document) => document.contentType },
        { label: "Size", cell: (document) => fmt.bytes(document.bytes), numeric: true },
        { label: "SHA-256", cell: (document) => digest(document.sha256, `SHA-256 of ${document.name}`) },
      ],
      rows: run.documents,
    }),
    run.provenance
      ? h("div", { class: "provenance" }, h("h4", {}, "Provenance"), details(provenancePairs(run.provenance)))
      : h("p", { class: "hint" }, "No provenance was kept for this run."),
  );
}
