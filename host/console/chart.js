// A small hand-written SVG chart: quantities per time bucket, stacked by
// series (meter), with axes, a legend and an accessible label. Colours are
// the Okabe–Ito palette, told apart with colour-blindness.

import { h, s } from "./dom.js";
import * as fmt from "./format.js";

/** Okabe–Ito, then a neutral grey for "Other meters". */
export const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442"];
const OTHER = "#8c8c8c";
const MAX_SERIES = PALETTE.length - 1;

const WIDTH = 960;
const HEIGHT = 320;
const MARGIN = { top: 16, right: 16, bottom: 40, left: 72 };

/**
 * A <figure> with a stacked bar chart. `series` is `[{label, unit, values}]`
 * (one value per bucket); more than seven series keep the seven largest and
 * stack the rest as "Other meters". `yLabel` names the axis (a unit, or
 * "mixed units").
 */
export function stackedChart({ buckets, series, granularity, yLabel, label = "Quantity by meter over time", caption }) {
  const shown = limitSeries(series);
  const totals = buckets.map((_, i) => shown.reduce((sum, one) => sum + (one.values[i] ?? 0), 0));
  const max = niceMax(Math.max(0, ...totals));
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const plotHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
  const y = (value) => MARGIN.top + plotHeight - (value / max) * plotHeight;
  const step = plotWidth / Math.max(1, buckets.length);
  const barWidth = Math.max(1, step * (buckets.length > 60 ? 0.95 : 0.7));

  const grid = ticks(max).map((tick) =>
    s(
      "g",
      { class: "tick" },
      s("line", { x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: y(tick), y2: y(tick), class: "gridline" }),
      s("text", { x: MARGIN.left - 8, y: y(tick) + 4, "text-anchor": "end", class: "axis-text" }, compact(tick)),
    ),
  );
  const everyNth = Math.max(1, Math.ceil(buckets.length / 8));
  const xLabels = buckets.map((bucket, i) =>
    i % everyNth === 0
      ? s(
          "text",
          { x: MARGIN.left + step * i + step / 2, y: HEIGHT - MARGIN.bottom + 18, "text-anchor": "middle", class: "axis-text" },
          bucketLabel(bucket, granularity),
        )
      : null,
  );
  const bars = buckets.map((bucket, i) => {
    let base = 0;
    return shown.map((one) => {
      const value = one.values[i] ?? 0;
      if (value <= 0) return null;
      const top = y(base + value);
      const rect = s(
        "rect",
        { x: MARGIN.left + step * i + (step - barWidth) / 2, y: top, width: barWidth, height: Math.max(0.5, y(base) - top), fill: one.colour },
        s("title", {}, `${one.label}: ${fmt.quantity(value, one.unit)} — ${fmt.dateTime(bucket)}`),
      );
      base += value;
      return rect;
    });
  });
  const svg = s(
    "svg",
    { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-label": label, class: "chart", preserveAspectRatio: "xMidYMid meet" },
    s("title", {}, label),
    grid,
    s("line", { x1: MARGIN.left, x2: WIDTH - MARGIN.right, y1: y(0), y2: y(0), class: "axis" }),
    bars,
    xLabels,
    s("text", { x: 14, y: MARGIN.top + plotHeight / 2, transform: `rotate(-90 14 ${MARGIN.top + plotHeight / 2})`, "text-anchor": "middle", class: "axis-title" }, yLabel),
  );
  const legend = h(
    "ul",
    { class: "legend", "aria-label": "Legend" },
    shown.map((one) =>
      h("li", {}, h("span", { class: "swatch", "data-colour": one.colour }), `${one.label}${one.unit ? ` (${one.unit})` : ""}`),
    ),
  );
  for (const swatch of legend.querySelectorAll(".swatch")) swatch.style.backgroundColor = swatch.dataset.colour; // CSSOM, allowed by the CSP
  return h("figure", { class: "chart-figure" }, h("div", { class: "chart-scroll" }, svg), legend, caption ? h("figcaption", {}, caption) : null);
}

/** The largest series with their colours, the rest summed as "Other meters". */
function limitSeries(series) {
  const sorted = [...series].sort((a, b) => total(b) - total(a));
  const kept = (sorted.length > MAX_SERIES + 1 ? sorted.slice(0, MAX_SERIES) : sorted).map((one, i) => ({ ...one, colour: PALETTE[i % PALETTE.length] }));
  if (sorted.length <= MAX_SERIES + 1) return kept;
  const rest = sorted.slice(MAX_SERIES);
  const values = rest[0].values.map((_, i) => rest.reduce((sum, one) => sum + (one.values[i] ?? 0), 0));
  return [...kept, { label: `Other meters (${rest.length})`, unit: "", values, colour: OTHER }];
}

function total(one) {
  return one.values.reduce((sum, value) => sum + (value ?? 0), 0);
}

/** A round number at or above `value` for the top of the axis. */
function niceMax(value) {
  if (value <= 0) return 1;
  const magnitude = 10 ** Math.floor(Math.log10(value));
  const nice = [1, 2, 2.5, 5, 10].find((factor) => factor * magnitude >= value);
  return nice * magnitude;
}

function ticks(max) {
  return [0, 0.25, 0.5, 0.75, 1].map((fraction) => max * fraction);
}

/** "1.2k", "3.4M": axis labels that fit. */
function compact(value) {
  return new Intl.NumberFormat("en-GB", { notation: "compact", maximumFractionDigits: 1 }).format(value);
}

function bucketLabel(iso, granularity) {
  const text = new Date(iso).toISOString();
  return granularity === "Hourly" ? `${text.slice(5, 10)} ${text.slice(11, 16)}` : text.slice(5, 10);
}
