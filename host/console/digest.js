// How the console shows a SHA-256 digest: its first characters, the whole
// value on hover (title) and a Copy button that copies the whole value.
// Where the browser gives no clipboard (a page served over plain http from
// another machine), Copy shows the whole value selected instead.

import { h } from "./dom.js";

/** Characters of a digest shown before the ellipsis. */
const SHOWN = 12;

/** "3f2a9c0b17de…" from a lower-case hex digest. */
export function shortDigest(hex) {
  return hex.length > SHOWN ? `${hex.slice(0, SHOWN)}…` : hex;
}

/**
 * A digest to read and copy: `label` names it for the Copy button
 * ("Copy component SHA-256"). The element carries the whole value in
 * `data-digest` and its title. An absent digest is a dash.
 */
export function digest(hex, label) {
  if (!hex) return "—";
  const text = h("code", { class: "digest-text", title: hex }, shortDigest(hex));
  const said = h("span", { class: "visually-hidden", role: "status" });
  const copy = h(
    "button",
    {
      type: "button",
      class: "chip copy",
      "aria-label": `Copy ${label}`,
      onclick: async () => {
        try {
          await navigator.clipboard.writeText(hex);
          said.textContent = `${label} copied`;
          copy.textContent = "Copied";
          setTimeout(() => (copy.textContent = "Copy"), 2000);
        } catch {
          // No clipboard here: show the whole value, selected, to copy by hand.
          text.textContent = hex;
          text.classList.add("whole");
          getSelection()?.selectAllChildren(text);
          said.textContent = `${label} selected: press Ctrl+C to copy it`;
        }
      },
    },
    "Copy",
  );
  return h("span", { class: "digest", "data-digest": hex }, text, copy, said);
}
