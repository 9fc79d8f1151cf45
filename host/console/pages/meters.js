// Meters: the catalog (GET /v1/meters) with units, and a form to add a meter
// or change one (PUT /v1/meters/{id}).

import { api, seg } from "../api.js";
import { h, alert, field, replace } from "../dom.js";
import { table } from "../table.js";

/** Renders the catalog and the form. */
export async function render(view) {
  const listSlot = h("div", {});
  const messages = h("div", {});
  const inputs = {
    id: h("input", { type: "text", name: "meterId", required: true, autocomplete: "off", class: "wide-input mono" }),
    name: h("input", { type: "text", name: "name", required: true, autocomplete: "off" }),
    category: h("input", { type: "text", name: "category", autocomplete: "off" }),
    unit: h("input", { type: "text", name: "unit", autocomplete: "off", placeholder: "e.g. Hours, GB" }),
    notes: h("input", { type: "text", name: "notes", autocomplete: "off", class: "wide-input" }),
  };
  const form = h(
    "form",
    {
      class: "stack",
      onsubmit: async (event) => {
        event.preventDefault();
        const id = inputs.id.value.trim();
        try {
          const meter = await api(`/v1/meters/${seg(id)}`, {
            method: "PUT",
            json: { name: inputs.name.value, category: inputs.category.value, unit: inputs.unit.value, notes: inputs.notes.value },
          });
          replace(messages, h("p", { role: "status", class: "success" }, `Saved meter ${meter.name} (${meter.id}).`));
          await load();
        } catch (error) {
          replace(messages, alert(error));
        }
      },
    },
    h(
      "div",
      { class: "row" },
      field("Meter ID", inputs.id, "An existing id (any case) changes that meter."),
      field("Name", inputs.name),
      field("Category", inputs.category),
      field("Unit", inputs.unit),
      field("Notes", inputs.notes),
    ),
    h("div", { class: "actions-bar" }, h("button", { type: "submit", class: "button primary" }, "Save meter"), h("button", { type: "reset", class: "button" }, "Clear")),
  );
  replace(
    view,
    h("div", { class: "page-head" }, h("h1", { tabindex: -1 }, "Meters"), h("p", { class: "subtle" }, "The meters usage may be reported against.")),
    h("section", { class: "card", "aria-labelledby": "meter-form-heading" }, h("h2", { id: "meter-form-heading" }, "Add or change a meter"), messages, form),
    h("section", { class: "card" }, listSlot),
  );

  function edit(meter) {
    inputs.id.value = meter.id;
    inputs.name.value = meter.name;
    inputs.category.value = meter.category;
    inputs.unit.value = meter.unit;
    inputs.notes.value = meter.notes ?? "";
    replace(messages);
    inputs.name.focus();
  }

  async function load() {
    try {
      const meters = await api("/v1/meters");
      replace(
        listSlot,
        table({
          caption: `Meter catalog (${meters.length})`,
          columns: [
            { label: "Name", cell: (meter) => meter.name, header: true },
            { label: "Unit", cell: (meter) => meter.unit },
            { label: "Category", cell: (meter) => meter.category },
            { label: "Meter ID", cell: (meter) => h("span", { class: "mono" }, meter.id) },
            { label: "Notes", cell: (meter) => meter.notes },
            { label: "Edit", cell: (meter) => h("button", { type: "button", class: "chip", "aria-label": `Edit ${meter.name}`, onclick: () => edit(meter) }, "Edit") },
          ],
          rows: meters,
          empty: "The catalog is empty.",
          tall: true,
        }),
      );
    } catch (error) {
      replace(listSlot, alert(error));
    }
  }
  await load();
}
