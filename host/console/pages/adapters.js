// Adapters: every installation with its adapter, contract version, window,
// watermark, health (failing and held first, with the reason) and state.

import { api } from "../api.js";
import { adapterHref, badge, byUrgency, health } from "../health.js";
import { h, alert, replace } from "../dom.js";
import * as fmt from "../format.js";
import { table } from "../table.js";

/** Renders the list. */
export async function render(view) {
  const slot = h("section", { class: "card" });
  replace(
    view,
    h("div", { class: "page-head" }, h("h1", { tabindex: -1 }, "Adapters"), h("p", { class: "subtle" }, "Billing adapters installed on this host. Install with `tally adapters install`.")),
    slot,
  );
  try {
    const installations = await api("/v1/adapters");
    replace(
      slot,
      table({
        caption: `Installed adapters (${installations.length}), failing and held first`,
        columns: [
          { label: "Name", cell: (one) => h("a", { href: adapterHref(one.name) }, one.name), header: true },
          { label: "Adapter", cell: (one) => `${one.adapter.name} ${one.adapter.version}` },
          { label: "Contract", cell: (one) => h("span", { class: "mono" }, one.world) },
          { label: "Window", cell: (one) => `${one.window}, lag ${one.lag}` },
          { label: "Exported up to", cell: (one) => fmt.dateTime(one.watermark) },
          { label: "Status", cell: (one) => badge(health(one)) },
          { label: "Held by", cell: heldBy },
          { label: "Enabled", cell: (one) => (one.enabled ? "Yes" : "No") },
        ],
        rows: byUrgency(installations),
        empty: "No adapter is installed.",
      }),
    );
  } catch (error) {
    replace(slot, alert(error));
  }
}

function heldBy(one) {
  if (!one.heldBy) return "—";
  const run = one.heldBy;
  return h(
    "div",
    {},
    h("a", { href: `${adapterHref(one.name)}/runs/${run.id}` }, `Run ${run.id}`),
    ` (${fmt.windowRange(run.windowStart, run.windowEnd)})`,
    run.reason ? h("div", { class: "reason" }, run.reason) : null,
  );
}
