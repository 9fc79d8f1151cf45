// Verifying a run from its page: POST /v1/adapters/{name}/verify for the
// run's window re-runs the stored component with the stored configuration
// over the same usage (sending nothing) and compares every document byte
// for byte; the answer is shown per document, with where it first differs.

import { api, query, seg } from "./api.js";
import { digest } from "./digest.js";
import { h, alert, replace, status } from "./dom.js";
import * as fmt from "./format.js";
import { documentOwner, runHref } from "./runs.js";
import { table } from "./table.js";

/** A window's result in words and a badge tone. */
const RESULTS = {
  match: ["Verified", "good"],
  mismatch: ["Mismatch", "bad"],
  unverifiable: ["Unverifiable", "warn"],
  failed: ["Re-run failed", "bad"],
};

/** A document's result in words and a badge tone. */
const DOCUMENT_RESULTS = {
  match: ["Match", "good"],
  differs: ["Differs", "bad"],
  missing: ["Missing from the re-run", "bad"],
  unexpected: ["Only in the re-run", "bad"],
};

/** The Verify button of a succeeded run, and where its outcome shows. */
export function verifyCard(name, run) {
  const outcome = h("div", { class: "verify-outcome" });
  const button = h(
    "button",
    {
      type: "button",
      class: "button primary",
      onclick: async () => {
        button.disabled = true;
        replace(outcome, status("Verifying: running the adapter again over the window's usage…"));
        try {
          const bounds = query({ from: run.windowStart, to: run.windowEnd });
          const answer = await api(`/v1/adapters/${seg(name)}/verify${bounds}`, { method: "POST" });
          replace(outcome, outcomeView(name, run, answer));
        } catch (error) {
          replace(outcome, alert(error));
        } finally {
          button.disabled = false;
        }
      },
    },
    "Verify",
  );
  return h(
    "div",
    { class: "verify" },
    h("h3", {}, "Verify"),
    h(
      "p",
      { class: "hint" },
      "Runs the same component with the same configuration over the window's usage again, sending no request, and compares each document with the one published.",
    ),
    h("div", { class: "actions-bar" }, button),
    outcome,
  );
}

/** The verification of the run's window. */
function outcomeView(name, run, answer) {
  const window = answer.windows.find((one) => one.runId === run.id) ?? answer.windows.find((one) => one.window.start === run.windowStart);
  if (!window) return h("p", { role: "status", class: "notice" }, "The window has no succeeded run to verify.");
  const [words, tone] = RESULTS[window.result] ?? [window.result, "muted"];
  const headline = {
    match: "Every document matches, byte for byte.",
    mismatch: "The documents made again differ from the ones published.",
    unverifiable: "This run cannot be verified.",
    failed: "Running the adapter again failed.",
  }[window.result];
  return h(
    "div",
    { class: "stack" },
    h(
      "div",
      { role: window.result === "match" ? "status" : "alert", class: tone === "good" ? "success" : tone === "warn" ? "notice" : "alert" },
      h("span", { class: `badge ${tone}` }, words),
      " ",
      headline ?? "",
      window.reason ? h("p", {}, window.reason) : null,
    ),
    window.runId !== run.id
      ? h("p", { class: "notice" }, "The window's latest revision is ", h("a", { href: runHref(name, window.runId) }, `Run ${window.runId}`), ": that is the run verified.")
      : null,
    window.usage ? usageView(window.usage) : null,
    window.documents?.length
      ? table({
          caption: `Documents verified, ${fmt.windowRange(window.window.start, window.window.end)}`,
          columns: [
            { label: "Document", header: true, cell: (doc) => doc.name },
            { label: "Owner", cell: documentOwner },
            {
              label: "Result",
              cell: (doc) => {
                const [text, docTone] = DOCUMENT_RESULTS[doc.result] ?? [doc.result, "muted"];
                return h("span", { class: `badge ${docTone}` }, text);
              },
            },
            { label: "First difference", cell: difference },
          ],
          rows: window.documents,
        })
      : null,
  );
}

/** The usage read then and now. */
function usageView(usage) {
  return h(
    "p",
    { class: usage.matches ? "hint" : "alert" },
    usage.matches ? "Usage read: the same rows as when the run was made " : "Usage read: the window's usage has changed since the run was made ",
    "(recorded ",
    digest(usage.recorded, "recorded usage digest"),
    ", now ",
    digest(usage.now, "usage digest now"),
    ").",
  );
}

/**
 * Where a document first differs: "offset 1,234 (line 5, column 17)"
 * (bytes before it; line and column from 1), or why it differs with the
 * same bytes, or a dash.
 */
function difference(doc) {
  const first = doc.firstDifference;
  if (first) return `offset ${fmt.count(first.offset)} (line ${fmt.count(first.line)}, column ${fmt.count(first.column)})`;
  if (doc.result === "differs") return "Same bytes; the content type, the owner or the recorded SHA-256 differs";
  return "—";
}
