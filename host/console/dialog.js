// The one confirmation dialog (a modal <dialog>): says what will be lost and
// names the action on its button; Escape or "Cancel" keeps everything.

import { h } from "./dom.js";

/**
 * Asks before a destructive action. Resolves true when `confirmLabel` is
 * pressed, false otherwise. `body` is text or nodes naming what is lost.
 */
export function confirmDialog({ title, body, confirmLabel }) {
  return new Promise((resolve) => {
    const titleId = `dialog-title-${Date.now()}`;
    const cancel = h("button", { type: "button", class: "button", onclick: () => dialog.close("cancel") }, "Cancel");
    const confirm = h("button", { type: "button", class: "button danger", onclick: () => dialog.close("confirm") }, confirmLabel);
    const dialog = h(
      "dialog",
      { "aria-labelledby": titleId },
      h("h2", { id: titleId }, title),
      h("div", { class: "dialog-body" }, body),
      h("div", { class: "actions-bar" }, cancel, confirm),
    );
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(dialog.returnValue === "confirm");
    });
    document.body.append(dialog);
    dialog.showModal();
    cancel.focus(); // the safe choice is the default
  });
}
