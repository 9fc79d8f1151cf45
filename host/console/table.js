// The one table builder: a captioned table in a horizontally scrolling box
// (readable at a phone's width; browsers let the keyboard scroll it), with
// an empty state in words. The box is not a labelled region: its caption
// already names the table, and a second name would make labels ambiguous.

import { h } from "./dom.js";

/**
 * `table({caption, columns, rows, empty})`: each column is
 * `{label, cell: (row) => node | text, numeric?}`; `empty` is the sentence
 * shown when there are no rows. `foot` rows (same columns) go in a <tfoot>.
 * A `tall` table scrolls inside its own box, its header kept in view.
 */
export function table({ caption, columns, rows, empty = "Nothing to show.", foot = [], className = "", tall = false }) {
  const cellOf = (column, row) =>
    h(column.header ? "th" : "td", { class: column.numeric ? "num" : null, scope: column.header ? "row" : null }, column.cell(row));
  const body = rows.length
    ? rows.map((row) => h("tr", {}, columns.map((column) => cellOf(column, row))))
    : h("tr", {}, h("td", { colspan: columns.length, class: "empty" }, h("span", { role: "status" }, empty)));
  return h(
    "div",
    { class: tall ? "table-wrap tall" : "table-wrap" },
    h(
      "table",
      { class: className || null },
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, columns.map((column) => h("th", { scope: "col", class: column.numeric ? "num" : null }, column.label)))),
      h("tbody", {}, body),
      foot.length ? h("tfoot", {}, foot.map((row) => h("tr", {}, columns.map((column) => cellOf(column, row))))) : null,
    ),
  );
}
