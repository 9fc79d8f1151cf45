// Usage as tally's server aggregates it (GET /v1/usage/summary): the summary
// URL, its CSV twin and the equivalent Azure usage API URL. The browser never
// sums raw rows; it only shows what the server computed.

import { query } from "./api.js";

/** The ways the summary groups its table: [value, label, column header]. */
export const GROUPINGS = [
  ["subscription", "Subscription", "Subscription"],
  ["meter", "Meter", "Meter ID"],
  ["location", "Location", "Location"],
  ["tag", "Tag…", "Tag value"],
];

/** `groupBy` as the API spells it: "tag:KEY" for a tag. */
export function groupByParam(grouping, tagKey) {
  return grouping === "tag" ? `tag:${tagKey}` : grouping;
}

/** The summary's URL (relative) for a range `{fromTime, toTime}`. */
export function summaryUrl({ range, granularity, groupBy, subscription }) {
  return `/v1/usage/summary${query({ from: range.fromTime, to: range.toTime, granularity, groupBy, subscription })}`;
}

/** The same table as CSV: the "Download CSV" link. */
export function csvUrl(options) {
  return `${summaryUrl(options)}&format=csv`;
}

const API_VERSION = "2015-06-01-preview";

/**
 * The Azure-compatible usage API URL that reads the same usage row by row:
 * the tenant API for one subscription, else the provider API (its
 * subscription is the operator's own: a placeholder here). That API answers
 * only for reported times that have passed, on the granularity's boundaries,
 * so a range reaching into the future ends at the last boundary passed:
 * answers `{url, endsEarly}` (`endsEarly` is that end, or null). A range
 * that has not begun to pass keeps its end (the URL works once it has).
 */
export function azureUrl({ range, granularity, subscription }, now = new Date()) {
  const passed = lastBoundary(now, granularity);
  const clamp = new Date(range.toTime) > passed && passed > new Date(range.fromTime);
  const end = clamp ? passed.toISOString().replace(".000Z", "Z") : range.toTime;
  const times = `reportedStartTime=${range.fromTime}&reportedEndTime=${end}&aggregationGranularity=${granularity}`;
  const url = subscription
    ? `${location.origin}/subscriptions/${encodeURIComponent(subscription)}/providers/Microsoft.Commerce/UsageAggregates?api-version=${API_VERSION}&${times}&showDetails=true`
    : `${location.origin}/subscriptions/{provider-subscription}/providers/Microsoft.Commerce.Admin/subscriberUsageAggregates?api-version=${API_VERSION}&${times}`;
  return { url, endsEarly: end === range.toTime ? null : end };
}

/** The start of the current UTC day (Daily) or hour (Hourly). */
function lastBoundary(now, granularity) {
  const boundary = new Date(now);
  boundary.setUTCMinutes(0, 0, 0);
  if (granularity !== "Hourly") boundary.setUTCHours(0);
  return boundary;
}
