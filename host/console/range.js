// The one date-range control (usage, subscriptions, documents, runs): two
// UTC days, both included, with a few presets. The API takes reported-time
// bounds [from, to), so `to` is sent as the day after the last day shown.

import { h, field } from "./dom.js";
import { addDays, midnight, todayUtc } from "./format.js";

/** Presets: a label and a function answering `[from, to]` (days, inclusive). */
const PRESETS = [
  ["Today", (today) => [today, today]],
  ["Last 7 days", (today) => [addDays(today, -6), today]],
  ["Last 30 days", (today) => [addDays(today, -29), today]],
  ["This month", (today) => [`${today.slice(0, 8)}01`, today]],
  [
    "Last month",
    (today) => {
      const firstOfThisMonth = `${today.slice(0, 8)}01`;
      const lastOfLastMonth = addDays(firstOfThisMonth, -1);
      return [`${lastOfLastMonth.slice(0, 8)}01`, lastOfLastMonth];
    },
  ],
];

/** The first day of the month `months` after (or before) a "YYYY-MM-DD" day's month. */
function firstOfMonth(dayText, months = 0) {
  const date = new Date(`${dayText.slice(0, 8)}01T00:00:00Z`);
  date.setUTCMonth(date.getUTCMonth() + months);
  return date.toISOString().slice(0, 10);
}

/** Presets for monthly documents (statements): whole months and years. */
export const MONTH_PRESETS = [
  ["Last 3 months", (today) => [firstOfMonth(today, -2), today]],
  ["Last 12 months", (today) => [firstOfMonth(today, -11), today]],
  ["This year", (today) => [`${today.slice(0, 4)}-01-01`, today]],
  ["Last year", (today) => [`${Number(today.slice(0, 4)) - 1}-01-01`, `${Number(today.slice(0, 4)) - 1}-12-31`]],
];

/** `[from, to]` (days) of the preset named `label` today. */
export function presetDays(presets, label) {
  const preset = presets.find(([name]) => name === label);
  return preset[1](todayUtc());
}

/**
 * A fieldset with inputs "From" and "To" (type=date, UTC days). Answers
 * `{element, value()}`; `value()` is `{from, to, fromTime, toTime}` (days as
 * typed; times as the API's exclusive bounds) or throws an Error in words.
 * `presets` is true (the usual ones), false (none) or a list like
 * `MONTH_PRESETS`.
 */
export function dateRange({ from, to, legend = "Reported time (UTC days, both included)", presets = true } = {}) {
  const today = todayUtc();
  const fromInput = h("input", { type: "date", name: "from", required: true, value: from ?? addDays(today, -6) });
  const toInput = h("input", { type: "date", name: "to", required: true, value: to ?? today });
  const presetList = presets === true ? PRESETS : presets || [];
  const presetButtons = presetList.length
    ? h(
        "div",
        { class: "presets", role: "group", "aria-label": "Ranges" },
        presetList.map(([label, days]) =>
          h(
            "button",
            {
              type: "button",
              class: "chip",
              onclick: () => {
                [fromInput.value, toInput.value] = days(todayUtc());
              },
            },
            label,
          ),
        ),
      )
    : null;
  const element = h(
    "fieldset",
    { class: "range" },
    h("legend", {}, legend),
    h("div", { class: "row" }, field("From", fromInput), field("To", toInput)),
    presetButtons,
  );
  function value() {
    const [first, last] = [fromInput.value, toInput.value];
    if (!first || !last) throw new Error("Choose both days: From and To (UTC).");
    if (last < first) throw new Error("To must be the same day as From or later.");
    return { from: first, to: last, fromTime: midnight(first), toTime: midnight(addDays(last, 1)) };
  }
  return { element, value };
}
