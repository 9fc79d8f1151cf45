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

/**
 * A fieldset with inputs "From" and "To" (type=date, UTC days). Answers
 * `{element, value()}`; `value()` is `{from, to, fromTime, toTime}` (days as
 * typed; times as the API's exclusive bounds) or throws an Error in words.
 */
export function dateRange({ from, to, legend = "Reported time (UTC days, both included)", presets = true } = {}) {
  const today = todayUtc();
  const fromInput = h("input", { type: "date", name: "from", required: true, value: from ?? addDays(today, -6) });
  const toInput = h("input", { type: "date", name: "to", required: true, value: to ?? today });
  const presetButtons = presets
    ? h(
        "div",
        { class: "presets", role: "group", "aria-label": "Ranges" },
        PRESETS.map(([label, days]) =>
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
