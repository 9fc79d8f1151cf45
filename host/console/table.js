// The one table builder: a captioned table in a horizontally scrolling,
// keyboard-focusable region (readable at a phone's width), with an empty
// state in words.

import { h, uniqueId } from "./dom.js";

/**
 * `table({caption, columns, rows, empty})`: each column is
 * `{label, cell: (row) => node | text, numeric?}`; `empty` is the sentence
 * shown when there are no rows. `foot` rows (same columns) go in a <tfoot>.
 */
export function table({ caption, columns, rows, empty = "Nothing to show.", foot = [], className = "" }) {
  const captionId = uniqueId("caption");
  const cellOf = (column, row) =>
    h(column.header ? "th" : "td", { class: column.numeric ? "num" : null, scope: column.header ? "row" : null }, column.cell(row));
  const body = rows.length
    ? rows.map((row) => h("tr", {}, columns.map((column) => cellOf(column, row))))
    : h("tr", {}, h("td", { colspan: columns.length, class: "empty" }, h("span", { role: "status" }, empty)));
  return h(
    "div",
    { class: "table-wrap", role: "region", "aria-labelledby": captionId, tabindex: 0 },
    h(
      "table",
      { class: className || null },
      h("caption", { id: captionId }, caption),
      h("thead", {}, h("tr", {}, columns.map((column) => h("th", { scope: "col", class: column.numeric ? "num" : null }, column.label)))),
      h("tbody", {}, body),
      foot.length ? h("tfoot", {}, foot.map((row) => h("tr", {}, columns.map((column) => cellOf(column, row))))) : null,
    ),
  );
}
