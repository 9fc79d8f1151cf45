// How the console shows export runs: one runs table (adapter page), the
// figures a finished attempt measured and a document's owner (run page).

import { h } from "./dom.js";
import * as fmt from "./format.js";
import { table } from "./table.js";

/** A run's status as a badge tone. */
export function statusTone(status) {
  return { succeeded: "good", failed: "bad", retrying: "warn", running: "muted", pending: "muted" }[status] ?? "muted";
}

/** The link of a run's page. */
export function runHref(name, id) {
  return `#/adapters/${encodeURIComponent(name)}/runs/${id}`;
}

/** A table of runs (caption "Runs"), each linking to its page. */
export function runsTable(name, runs) {
  return table({
    caption: "Runs",
    columns: [
      { label: "Run", cell: (run) => h("a", { href: runHref(name, run.id), class: "nowrap" }, `Run ${run.id}`), header: true },
      { label: "Window (UTC)", cell: (run) => h("span", { class: "nowrap" }, fmt.windowRange(run.windowStart, run.windowEnd)) },
      { label: "Kind", cell: (run) => h("span", { class: "nowrap" }, run.correction ? `Correction ${run.revision}` : "First export") },
      { label: "Status", cell: (run) => h("span", { class: `badge ${statusTone(run.status)}` }, run.status) },
      { label: "Attempts", cell: (run) => fmt.count(run.attempts), numeric: true },
      { label: "Rows read", cell: (run) => fmt.count(run.figures?.rowsRead), numeric: true },
      { label: "Rows written", cell: (run) => fmt.count(run.figures?.rowsWritten), numeric: true },
      { label: "Bytes", cell: (run) => fmt.bytes(run.figures?.bytesWritten), numeric: true },
      { label: "Duration", cell: (run) => fmt.duration(run.figures?.elapsedMs), numeric: true },
      { label: "Peak memory", cell: (run) => fmt.bytes(run.figures?.peakMemoryBytes), numeric: true },
      { label: "Reason", cell: (run) => (run.reason ? h("span", { class: "reason wide-cell" }, run.reason) : "—") },
    ],
    rows: runs,
    empty: "No run yet: the scheduler exports each window once it closes.",
  });
}

/** A run's figures as `[term, detail]` pairs. */
export function figurePairs(figures) {
  if (!figures) return [["Figures", "None yet (no attempt has finished)."]];
  return [
    ["Rows read", fmt.count(figures.rowsRead)],
    ["Rows written", fmt.count(figures.rowsWritten)],
    ["Bytes written", fmt.bytes(figures.bytesWritten)],
    ["Requests sent", fmt.count(figures.requestsSent)],
    ["Duration", fmt.duration(figures.elapsedMs)],
    ["Peak memory", fmt.bytes(figures.peakMemoryBytes)],
  ];
}

/** A document's owner: its subscription, or the operator's when it has none. */
export function documentOwner(doc) {
  return doc.subscriptionId ? h("span", { class: "mono" }, doc.subscriptionId) : h("span", { class: "subtle" }, "Operator (shared)");
}
