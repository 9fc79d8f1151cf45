// One export run: its window, status, attempts, figures and reason, its
// documents as download links, and its log.

import { api, seg } from "../api.js";
import { adapterHref } from "../health.js";
import { h, details, replace, status } from "../dom.js";
import * as fmt from "../format.js";
import { figurePairs, statusTone } from "../runs.js";

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
        ? h(
            "ul",
            { class: "plain doc-links" },
            run.documents.map((doc) => h("li", {}, h("a", { href: doc.url, download: doc.name }, doc.name), h("span", { class: "hint" }, ` ${doc.contentType}, ${fmt.bytes(doc.bytes)}`))),
          )
        : status(run.status === "succeeded" ? "This run published no document." : "No document: documents are published when a run succeeds."),
    ),
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
