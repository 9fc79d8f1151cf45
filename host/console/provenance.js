// How the console shows a run's provenance: what anyone needs to re-derive
// its documents byte for byte — the contract and component that ran, the
// configuration's digest (secrets as ***), the window, the granularity and
// the digest of the usage rows it read.

import * as fmt from "./format.js";
import { digest } from "./digest.js";

/** Granularity as people say it ("daily" → "Daily"). */
function granularity(value) {
  return value ? `${value[0].toUpperCase()}${value.slice(1)}` : null;
}

/**
 * A provenance (the API's `provenance` object) as `[term, detail]` pairs for
 * `details()`: contract, window, granularity, rows read and the three
 * digests, each shortened with its whole value to hover or copy.
 */
export function provenancePairs(provenance) {
  const window = provenance.window;
  return [
    ["Contract", provenance.contract],
    ["Window", window ? fmt.windowTimes(window.start, window.end) : null],
    ["Granularity", granularity(provenance.granularity)],
    ["Usage rows read", typeof provenance.rowsRead === "number" ? fmt.count(provenance.rowsRead) : null],
    ["Component SHA-256", digest(provenance.component, "component SHA-256")],
    ["Configuration digest", digest(provenance.config, "configuration digest")],
    ["Usage digest", digest(provenance.usage, "usage digest")],
  ];
}
