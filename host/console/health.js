// What the console says about an installed adapter's health: held by a
// failed run, retrying, disabled or healthy — failing and held first.

import { h } from "./dom.js";
import * as fmt from "./format.js";

/** `{rank, label, tone, reason}` for an installation (rank 0 is the most urgent). */
export function health(installation) {
  const held = installation.heldBy;
  if (held && held.status === "failed") {
    return { rank: 0, label: "Failed — holding the watermark", tone: "bad", reason: held.reason ?? "" };
  }
  if (held) {
    const next = held.nextAttemptAt ? `; next attempt ${fmt.dateTime(held.nextAttemptAt)}` : "";
    return { rank: 1, label: `Held (${held.status})`, tone: "warn", reason: `${held.reason ?? ""}${next}` };
  }
  if (!installation.enabled) return { rank: 2, label: "Disabled", tone: "muted", reason: "" };
  return { rank: 3, label: "Healthy", tone: "good", reason: "" };
}

/** Installations with the failing and held ones first, then by name. */
export function byUrgency(installations) {
  return [...installations].sort((a, b) => health(a).rank - health(b).rank || a.name.localeCompare(b.name));
}

/** The link of an installation's page. */
export function adapterHref(name) {
  return `#/adapters/${encodeURIComponent(name)}`;
}

/** A status label with its tone (colour is never the only sign: the words say it). */
export function badge({ label, tone }) {
  return h("span", { class: `badge ${tone}` }, label);
}
