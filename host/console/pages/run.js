// One export run: its window, status, attempts, figures and reason, its
// provenance with a Verify button (re-derive the window's documents and
// compare them byte for byte), its documents (owner, SHA-256, download
// link), and its log.

import { api, seg } from "../api.js";
import { adapterHref } from "../health.js";
import { digest } from "../digest.js";
import { h, details, replace, status } from "../dom.js";
import * as fmt from "../format.js";
import { provenancePairs } from "../provenance.js";
import { documentOwner, figurePairs, statusTone } from "../runs.js";
import { table } from "../table.js";
import { verifyCard } from "../verify.js";

/** Renders run `params.id` of installation `params.name`. */
export async function render(view, { params }) {
  const { name, id } = params;
  const crumbs = () => h("p", { class: "breadcrumb" }, h("a", { href: "#/adapters" }, "Adapters"), " › ", h("a", { href: adapterHref(name) }, name), " › ", `Run ${id}`);
  replace(view, crumbs(), h("h1", { tabindex: -1 }, `Run ${id}`), status("Loading…"));
  const run = await api(`/v1/adapters/${seg(name)}/runs/${seg(id)}`);
  replace(
    view,
    crumbs(),
    h("div", { class: "title-row" }, h("h1", { tabindex: -1 }, `Run ${run.id}`), h("span", { class: `badge ${statusTone(run.status)}` }, run.status)),
    run.reason ? h("div", { class: run.status === "failed" ? "alert" : "notice" }, h("strong", {}, "Reason: "), run.reason) : null,
    h(
      "section",
      { class: "card" },
      h("h2", {}, "Run"),
      details([
        ["Installation", h("a", { href: adapterHref(name) }, name)],
        ["Window", fmt.windowRange(run.windowStart, run.windowEnd)],
        ["Kind", run.correction ? `Correction ${run.revision}` : "First export"],
        ["Run id (seen by the adapter)", h("span", { class: "mono" }, run.runId)],
        ["Attempts", fmt.count(run.attempts)],
        ["Next attempt", run.nextAttemptAt ? fmt.dateTime(run.nextAttemptAt) : null],
        ["Created", fmt.dateTime(run.createdAt)],
        ["Finished", run.finishedAt ? fmt.dateTime(run.finishedAt) : "Not yet"],
        ...figurePairs(run.figures),
      ]),
    ),
    h(
      "section",
      { class: "card", "aria-labelledby": "documents-heading" },
      h("h2", { id: "documents-heading" }, "Documents"),
      run.documents.length
        ? table({
            caption: `Documents of run ${run.id}`,
            columns: [
              { label: "Document", header: true, cell: (doc) => h("a", { href: doc.url, download: doc.name }, doc.name) },
              { label: "Owner", cell: documentOwner },
              { label: "Type", cell: (doc) => doc.contentType },
              { label: "Size", cell: (doc) => fmt.bytes(doc.bytes), numeric: true },
              { label: "SHA-256", cell: (doc) => digest(doc.sha256, `SHA-256 of ${doc.name}`) },
            ],
            rows: run.documents,
          })
        : status(run.status === "succeeded" ? "This run published no document." : "No document: documents are published when a run succeeds."),
    ),
    provenanceCard(name, run),
    h(
      "section",
      { class: "card", "aria-labelledby": "log-heading" },
      h("h2", { id: "log-heading" }, "Log"),
      run.log.length
        ? h(
            "pre",
            { class: "log" },
            run.log.map((line) => h("div", {}, h("span", { class: `level level-${line.level}` }, line.level), " ", line.message)),
          )
        : status("The log is empty."),
      run.logDropped ? h("p", { class: "hint" }, `${fmt.count(run.logDropped)} more line(s) were dropped by the run's log cap.`) : null,
    ),
  );
}

/** The run's provenance and, for a succeeded run, the Verify button. */
function provenanceCard(name, run) {
  const body = run.provenance
    ? [
        h("p", { class: "hint" }, "What re-derives this run's documents: the component and configuration it ran, over the usage it read."),
        details(provenancePairs(run.provenance)),
      ]
    : status(
        run.status === "succeeded"
          ? "This run kept no provenance: it finished before tally recorded how documents are made."
          : "Provenance is recorded when a run succeeds.",
      );
  return h(
    "section",
    { class: "card", "aria-labelledby": "provenance-heading" },
    h("h2", { id: "provenance-heading" }, "Provenance"),
    body,
    run.status === "succeeded" ? verifyCard(name, run) : null,
  );
}
